"""Threshold statuses: levels, no_data, sustain (pending) and the route's worst status."""

from datetime import UTC, datetime, timedelta

import pytest

from signals_app.evaluation import (
    ROUTE_STATUS_ORDER,
    evaluate_thresholds,
    route_status,
    run_evaluation,
)
from signals_app.models import Baseline, EvaluationRun, Incident, ThresholdState
from tests.builders import environment, make_readings, make_route, make_threshold, signal

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def status_at(threshold, now=NOW):
    (result,) = evaluate_thresholds([threshold], now)
    return result


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "expected"),
    [(100.0, "ok"), (299.9, "ok"), (300.0, "warn"), (799.0, "warn"), (800.0, "critical")],
)
def test_the_value_against_warn_and_critical_gives_the_level(route, value, expected):
    threshold = make_threshold(route, statistic="max", warn=300, critical=800)
    make_readings(route, [50.0] * 5 + [value], start=NOW)
    result = status_at(threshold)
    assert (result.value, result.samples, result.status) == (value, 6, expected)


@pytest.mark.django_db
def test_fewer_readings_than_min_samples_is_no_data(route):
    threshold = make_threshold(route, min_samples=5)
    make_readings(route, [900.0] * 4, start=NOW)
    result = status_at(threshold)
    assert result.status == "no_data"
    assert result.samples == 4
    assert result.value == 900.0  # still reported, just not judged


@pytest.mark.django_db
def test_only_readings_inside_the_window_count(route):
    threshold = make_threshold(route, statistic="max", window_minutes=15, min_samples=1)
    make_readings(route, [10.0], start=NOW - timedelta(minutes=15))  # exactly on the edge: out
    make_readings(route, [20.0], start=NOW - timedelta(minutes=14, seconds=59))
    make_readings(route, [999.0], start=NOW + timedelta(seconds=1))  # after now: out
    result = status_at(threshold)
    assert (result.samples, result.value) == (1, 20.0)


@pytest.mark.django_db
def test_the_cache_segment_of_the_threshold_selects_readings(route):
    threshold = make_threshold(route, statistic="p50", cache_segment="miss", min_samples=1)
    make_readings(route, [900.0] * 3, start=NOW, cache_status="MISS")
    make_readings(route, [5.0] * 30, start=NOW, cache_status="HIT")
    assert status_at(threshold).status == "critical"


@pytest.mark.django_db
def test_lower_is_worse_signals_breach_downwards(route):
    threshold = make_threshold(
        route, signal_key="cache_hit", statistic="mean", warn=0.8, critical=0.5, min_samples=1
    )
    make_readings(route, [1.0, 0.0, 0.0, 1.0], signal_key="cache_hit", start=NOW)
    assert status_at(threshold).status == "critical"


@pytest.mark.django_db
def test_rate_is_readings_per_minute(route):
    threshold = make_threshold(
        route, statistic="rate", window_minutes=10, warn=5, critical=10, min_samples=1
    )
    make_readings(route, [1.0] * 60, start=NOW, step=timedelta(seconds=9))  # 60 in 9 minutes
    result = status_at(threshold)
    assert result.value == 6.0
    assert result.status == "warn"


@pytest.mark.django_db
def test_a_breach_is_pending_until_it_lasts_sustain_minutes(route):
    threshold = make_threshold(route, statistic="max", sustain_minutes=5, min_samples=1)
    for minute in range(0, 7):
        at = NOW + timedelta(minutes=minute)
        make_readings(route, [500.0], start=at)
        run = run_evaluation(now=at)
        state = ThresholdState.objects.get(threshold=threshold)
        assert state.status == ("pending" if minute < 5 else "warn"), minute
        assert state.breach_started_at == NOW
        assert run.statuses[state.status] == 1


@pytest.mark.django_db
def test_a_steady_breach_counts_though_its_state_is_not_rewritten(route):
    # A reading a minute in a 3-minute window: after minute 2 the state (max 500 over 3
    # readings, pending since NOW) stays the same and is not written, for longer than the
    # window. The breach stays continuous because a pass ran every minute (the runs count,
    # not when the state last changed), and counts after sustain_minutes.
    threshold = make_threshold(
        route, statistic="max", window_minutes=3, sustain_minutes=8, min_samples=1
    )
    changed = []
    for minute in range(0, 10):
        at = NOW + timedelta(minutes=minute)
        make_readings(route, [500.0], start=at)
        changed.append(run_evaluation(now=at).states_changed)
    state = ThresholdState.objects.get(threshold=threshold)
    assert (state.status, state.samples, state.breach_started_at) == ("warn", 3, NOW)
    assert changed == [1, 1, 1, 0, 0, 0, 0, 0, 1, 0]
    assert state.changed_at == NOW + timedelta(minutes=8)


@pytest.mark.django_db
def test_a_one_minute_window_breach_lasts_across_the_clocks_jitter(route):
    # The clock starts a pass every 60 s; each starts a few milliseconds late.
    threshold = make_threshold(
        route, statistic="max", window_minutes=1, sustain_minutes=2, min_samples=1
    )
    statuses = []
    for minute in range(0, 4):
        at = NOW + timedelta(minutes=minute, milliseconds=15 * minute)
        make_readings(route, [500.0], start=at)
        run_evaluation(now=at)
        statuses.append(ThresholdState.objects.get(threshold=threshold).status)
    assert statuses == ["pending", "pending", "warn", "warn"]


@pytest.mark.django_db
def test_a_failed_pass_does_not_bridge_a_gap(route):
    threshold = make_threshold(
        route, statistic="max", window_minutes=5, sustain_minutes=10, min_samples=1
    )
    make_readings(route, [500.0], start=NOW)
    run_evaluation(now=NOW)
    # A pass that started but never finished (it crashed) is not an evaluation.
    EvaluationRun.objects.create(started_at=NOW + timedelta(minutes=4))
    later = NOW + timedelta(minutes=7)
    make_readings(route, [500.0], start=later)
    run_evaluation(now=later)
    state = ThresholdState.objects.get(threshold=threshold)
    assert (state.status, state.breach_started_at) == ("pending", later)


@pytest.mark.django_db
def test_critical_must_last_sustain_minutes_on_its_own(route):
    threshold = make_threshold(route, statistic="max", sustain_minutes=2, min_samples=1)
    values = [500, 500, 500, 900, 900, 900]  # warn from 0, critical from 3
    statuses = []
    for minute, value in enumerate(values):
        at = NOW + timedelta(minutes=minute)
        make_readings(route, [value], start=at)
        run_evaluation(now=at)
        statuses.append(ThresholdState.objects.get(threshold=threshold).status)
        # the window keeps the max of the last 15 minutes
    assert statuses == ["pending", "pending", "warn", "warn", "warn", "critical"]


@pytest.mark.django_db
def test_recovery_ends_the_breach(route):
    threshold = make_threshold(
        route, statistic="max", window_minutes=1, sustain_minutes=5, min_samples=1
    )
    make_readings(route, [500.0], start=NOW)
    run_evaluation(now=NOW)
    make_readings(route, [10.0], start=NOW + timedelta(minutes=2))
    run_evaluation(now=NOW + timedelta(minutes=2))
    state = ThresholdState.objects.get(threshold=threshold)
    assert (state.status, state.breach_started_at) == ("ok", None)


@pytest.mark.django_db
def test_a_breach_restarts_after_a_gap_longer_than_the_window_plus_a_minute(route):
    threshold = make_threshold(
        route, statistic="max", window_minutes=5, sustain_minutes=10, min_samples=1
    )
    make_readings(route, [500.0], start=NOW)
    run_evaluation(now=NOW)
    later = NOW + timedelta(hours=3)  # the clock was stopped meanwhile
    make_readings(route, [500.0], start=later)
    run_evaluation(now=later)
    state = ThresholdState.objects.get(threshold=threshold)
    assert (state.status, state.breach_started_at) == ("pending", later)


# CLOCK_GRACE is one minute: with a 1-minute window a pass at most 2 minutes after the
# previous one continues its breach. Written out here, not read from evaluation, so that a
# changed grace or a `<` for the `<=` fails these.
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("gap", "continues"),
    [
        (timedelta(minutes=1, seconds=30), True),  # window + 30 s
        (timedelta(minutes=2), True),  # window + CLOCK_GRACE exactly
        (timedelta(minutes=2, seconds=1), False),  # window + CLOCK_GRACE + 1 s
    ],
    ids=["window+30s", "window+grace", "window+grace+1s"],
)
def test_a_breach_continues_across_a_gap_of_at_most_the_window_plus_clock_grace(
    route, gap, continues
):
    threshold = make_threshold(
        route, statistic="max", window_minutes=1, sustain_minutes=10, min_samples=1
    )
    make_readings(route, [500.0], start=NOW)
    run_evaluation(now=NOW)
    later = NOW + gap
    make_readings(route, [500.0], start=later)
    run_evaluation(now=later)
    state = ThresholdState.objects.get(threshold=threshold)
    assert (state.status, state.breach_started_at) == ("pending", NOW if continues else later)


@pytest.mark.django_db
def test_on_demand_evaluation_writes_nothing(route, django_assert_num_queries):
    threshold = make_threshold(route)
    make_readings(route, [500.0] * 10, start=NOW)
    # statistics, stored states
    with django_assert_num_queries(2):
        (result,) = evaluate_thresholds([threshold], NOW)
    assert result.status == "warn"
    assert not ThresholdState.objects.exists()


@pytest.mark.django_db
def test_route_status_is_the_worst_of_its_thresholds(route, django_assert_num_queries):
    make_threshold(route, statistic="p50", warn=300, critical=800)
    make_threshold(route, statistic="max", warn=300, critical=800)
    make_threshold(route, signal_key="db_calls", statistic="max", warn=10, critical=20)
    make_readings(route, [100.0] * 9 + [900.0], start=NOW)
    # thresholds, statistics, states, baselines, open incidents
    with django_assert_num_queries(5):
        status = route_status(route, NOW)
    assert status["status"] == "critical"
    by_statistic = {(e["signal"], e["statistic"]): e for e in status["thresholds"]}
    assert by_statistic["response_time_ms", "p50"]["status"] == "ok"
    assert by_statistic["response_time_ms", "max"]["status"] == "critical"
    assert by_statistic["db_calls", "max"]["status"] == "no_data"
    entry = by_statistic["response_time_ms", "p50"]
    assert set(entry) >= {
        "signal",
        "environment",
        "statistic",
        "cache_segment",
        "window_minutes",
        "value",
        "samples",
        "warn",
        "critical",
        "status",
        "baseline",
        "change_pct",
    }
    assert (entry["environment"], entry["cache_segment"], entry["window_minutes"]) == (
        "production",
        "all",
        15,
    )
    assert (entry["value"], entry["samples"]) == (100.0, 10)


@pytest.mark.django_db
def test_route_without_thresholds_has_no_data(route):
    assert route_status(route, NOW) == {
        "route": route.pk,
        "status": "no_data",
        "evaluated_at": NOW,
        "thresholds": [],
    }


@pytest.mark.django_db
def test_route_status_compares_with_a_baseline_that_ends_before_the_window(route):
    make_threshold(route, statistic="p50")
    make_readings(route, [150.0] * 10, start=NOW)
    fields = {
        "route": route,
        "signal": signal(),
        "environment": environment(),
        "p50": 100.0,
        "count": 50,
    }
    baseline = Baseline.objects.create(
        **fields, window_start=NOW - timedelta(hours=2), window_end=NOW - timedelta(hours=1)
    )
    (entry,) = route_status(route, NOW)["thresholds"]
    assert (entry["baseline"], entry["change_pct"]) == (100.0, 50.0)

    # A baseline overlapping the threshold's window is shown but not compared.
    Baseline.objects.filter(pk=baseline.pk).update(window_end=NOW - timedelta(minutes=5))
    (entry,) = route_status(route, NOW)["thresholds"]
    assert (entry["baseline"], entry["change_pct"]) == (100.0, None)


@pytest.mark.django_db
def test_route_status_from_what_a_page_has_read_is_the_same(route, django_assert_num_queries):
    first = make_threshold(route, statistic="p50")
    make_threshold(route, statistic="p95", window_minutes=60)
    make_threshold(route, statistic="p95", window_minutes=30, cache_segment="hit")
    make_readings(route, [150.0] * 10, start=NOW)
    Baseline.objects.create(
        route=route,
        signal=signal(),
        environment=environment(),
        p50=100.0,
        count=50,
        window_start=NOW - timedelta(hours=2),
        window_end=NOW - timedelta(hours=1),
    )
    Incident.objects.create(threshold=first, route=route, level="warn", peak_value=150.0)
    read = {
        "thresholds": list(
            route.thresholds.select_related("signal", "environment").order_by(*ROUTE_STATUS_ORDER)
        ),
        "baselines": list(Baseline.objects.filter(route=route, active=True)),
        "open_incidents": list(Incident.objects.open().filter(route=route)),
    }
    expected = route_status(route, NOW)
    assert expected["thresholds"][0]["incident"] is not None
    assert expected["thresholds"][0]["change_pct"] == 50.0
    with django_assert_num_queries(2):  # states, ONE statistics query
        assert route_status(route, NOW, **read) == expected
