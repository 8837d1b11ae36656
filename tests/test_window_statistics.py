"""Statistics in the database against a Python reference (percentile_cont's interpolation)."""

import math
import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from signals_app.evaluation import Window, window_stats
from signals_app.models import Reading
from tests.builders import environment, make_route, signal

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
HIT = ("HIT", "STALE", "REVALIDATED")
MISS = ("MISS", "EXPIRED", "BYPASS", "DYNAMIC")
ALL_STATUSES = (*HIT, *MISS, "UNKNOWN")


def percentile_cont(values, p):
    """PostgreSQL's percentile_cont: linear interpolation between closest ranks."""
    ordered = sorted(values)
    pos = p * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def in_segment(status, segment):
    return {"all": True, "hit": status in HIT, "miss": status in MISS}[segment]


def store(route, rows, signal_key="response_time_ms", env="production"):
    sig, environment_obj = signal(signal_key), environment(env)
    Reading.objects.bulk_create(
        Reading(
            service=route.service,
            route=route,
            signal=sig,
            environment=environment_obj,
            value=value,
            observed_at=observed_at,
            cache_status=status,
        )
        for value, observed_at, status in rows
    )


def window(route, segment, start, end, signal_key="response_time_ms", env="production"):
    return Window(
        route_id=route.pk,
        signal_id=signal(signal_key).pk,
        environment_id=environment(env).pk,
        segment=segment,
        start=start,
        end=end,
    )


# Few spans: PostgreSQL reads each (route, start, end) once for its three segments; over 100
# spans it takes the joined form with bounds on observed_at. Both must give the same numbers.
FEW_SPANS = ((0, 60), (15, 30), (59.5, 120), (-10, 180), (30, 31))
MANY_SPANS = FEW_SPANS + tuple((minute, minute + 45) for minute in range(0, 150, 5))


@pytest.mark.django_db
@pytest.mark.parametrize("spans", [FEW_SPANS, MANY_SPANS], ids=["few-spans", "many-spans"])
def test_it_matches_the_python_reference_on_random_data(blog, spans, django_assert_num_queries):
    rng = random.Random(20261126)
    routes = [make_route(blog) for _ in range(3)]
    rows_by_route = {}
    for route in routes:
        # Whole seconds put many readings exactly on the window edges below.
        rows = [
            (
                rng.choice([rng.lognormvariate(5, 0.8), rng.uniform(0, 50), 100.0]),
                T0 + timedelta(seconds=rng.randrange(0, 3 * 3600, 30)),
                rng.choice(ALL_STATUSES),
            )
            for _ in range(rng.randrange(150, 400))
        ]
        store(route, rows)
        rows_by_route[route.pk] = rows
    # Noise the windows must not pick up: another signal and another environment.
    store(routes[0], [(1e6, T0 + timedelta(minutes=5), "MISS")], signal_key="db_calls")
    store(routes[0], [(1e6, T0 + timedelta(minutes=5), "MISS")], env="staging")

    windows = [
        window(route, segment, T0 + timedelta(minutes=start), T0 + timedelta(minutes=end))
        for route in routes
        for segment in ("all", "hit", "miss")
        for start, end in spans
    ]
    assert (len(spans) * len(routes) > 100) == (spans is MANY_SPANS)
    # one grouped query for every window
    with django_assert_num_queries(1):
        results = window_stats(windows)

    checked = 0
    for win, result in zip(windows, results, strict=True):
        values = [
            value
            for value, observed_at, status in rows_by_route[win.route_id]
            if win.start < observed_at <= win.end and in_segment(status, win.segment)
        ]
        assert result.count == len(values)
        assert result.rate == pytest.approx(len(values) / win.minutes)
        if not values:
            assert result.p50 is None and result.mean is None
            continue
        checked += 1
        for name, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert getattr(result, name) == pytest.approx(percentile_cont(values, p), rel=1e-12)
        assert result.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert result.maximum == max(values)
        assert result.minimum == min(values)
        if len(values) > 1:
            # statistics.quantiles(method="inclusive") is the same interpolation (R type 7).
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            assert result.p95 == pytest.approx(cuts[94], rel=1e-9)
            assert result.p50 == pytest.approx(cuts[49], rel=1e-9)
    assert checked > 30


@pytest.mark.django_db
def test_a_reading_exactly_at_the_start_belongs_to_the_window_before(blog):
    route = make_route(blog)
    store(route, [(1.0, T0, "MISS"), (2.0, T0 + timedelta(minutes=15), "MISS")])
    before, current = window_stats(
        [
            window(route, "all", T0 - timedelta(minutes=15), T0),
            window(route, "all", T0, T0 + timedelta(minutes=15)),
        ]
    )
    assert (before.count, before.maximum) == (1, 1.0)
    assert (current.count, current.maximum) == (1, 2.0)


@pytest.mark.django_db
def test_unknown_cache_status_counts_only_in_all(blog):
    route = make_route(blog)
    at = T0 + timedelta(minutes=1)
    store(route, [(10.0, at, "HIT"), (20.0, at, "MISS"), (30.0, at, "UNKNOWN")])
    all_, hit, miss = window_stats(
        window(route, segment, T0, T0 + timedelta(minutes=5)) for segment in ("all", "hit", "miss")
    )
    assert (all_.count, hit.count, miss.count) == (3, 1, 1)
    assert (all_.p50, hit.p50, miss.p50) == (20.0, 10.0, 20.0)


@pytest.mark.django_db
def test_one_reading_is_every_percentile_and_two_interpolate(blog):
    one, two = make_route(blog), make_route(blog)
    at = T0 + timedelta(minutes=1)
    store(one, [(42.0, at, "MISS")])
    store(two, [(10.0, at, "MISS"), (20.0, at, "MISS")])
    first, second = window_stats(
        window(route, "all", T0, T0 + timedelta(minutes=10)) for route in (one, two)
    )
    assert (first.p50, first.p95, first.p99, first.mean) == (42.0, 42.0, 42.0, 42.0)
    assert second.p50 == 15.0
    assert second.p95 == pytest.approx(19.5)
    assert second.p99 == pytest.approx(19.9)
    assert first.rate == pytest.approx(0.1)


@pytest.mark.django_db
def test_a_window_without_readings_has_count_zero(blog):
    (result,) = window_stats([window(make_route(blog), "hit", T0, T0 + timedelta(hours=1))])
    assert result.count == 0
    assert result.value("count") == 0.0
    assert result.value("rate") == 0.0
    assert result.value("p95") is None


@pytest.mark.django_db
def test_no_windows_needs_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert window_stats([]) == []


@pytest.mark.django_db
@pytest.mark.parametrize("segment", ["all", "hit", "miss"])
def test_many_windows_of_one_span_give_the_same_numbers(blog, segment, django_assert_num_queries):
    # Over 100 windows sharing a span and segment take PostgreSQL's constant-span form.
    rng = random.Random(7)
    routes = [make_route(blog) for _ in range(3)]
    rows_by_route = {}
    for route in routes:
        rows = [
            (rng.uniform(1, 500), T0 + timedelta(seconds=rng.randrange(0, 3600, 15)), status)
            for status in rng.choices(ALL_STATUSES, k=120)
        ]
        store(route, rows)
        rows_by_route[route.pk] = rows
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=50)
    windows = [window(route, segment, start, end) for route in routes] * 40
    with django_assert_num_queries(1):
        results = window_stats(windows)
    for win, result in zip(windows, results, strict=True):
        values = [
            v
            for v, at, status in rows_by_route[win.route_id]
            if start < at <= end and in_segment(status, segment)
        ]
        assert result.count == len(values)
        assert result.p95 == pytest.approx(percentile_cont(values, 0.95), rel=1e-12)
        assert result.mean == pytest.approx(statistics.fmean(values), rel=1e-12)


@pytest.mark.django_db
@pytest.mark.parametrize("form", ["few spans", "one span of many windows", "many spans"])
def test_a_value_stored_beyond_1e12_counts_at_the_bound_in_a_mean(blog, form):
    # Stored before readings were bounded: three of 1.7e308 overflowed PostgreSQL's avg()
    # ("value out of range"), failing every query that held them; SQLite's mean was inf.
    route = make_route(blog)
    end = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    store(route, [(1.7e308, end - timedelta(minutes=1), "MISS")] * 3)
    starts = {
        "few spans": [end - timedelta(minutes=10)],
        "one span of many windows": [end - timedelta(minutes=10)] * 101,
        "many spans": [end - timedelta(minutes=10, seconds=i) for i in range(101)],
    }[form]
    stats = window_stats(window(route, "all", start, end) for start in starts)
    assert {(s.count, s.mean, s.maximum, s.p95) for s in stats} == {(3, 1e12, 1.7e308, 1.7e308)}
