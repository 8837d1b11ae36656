"""Route and change charts: one aggregated query, HIT and MISS apart, drawn as inline SVG."""

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from signals_app import charts
from signals_app.models import Baseline, Change, Reading, Signal
from tests.builders import environment, make_readings, make_route, make_threshold, signal

# A fixed hour boundary keeps buckets predictable.
END = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def reference_percentile(values, fraction):
    """percentile_cont by another route: statistics' inclusive quantiles are linear too."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(fraction * 100) - 1]


def series(route, threshold, statistic="p95", *, bucket_seconds=1800, hours=24):
    return charts.bucket_series(
        Reading.objects.filter(route=route),
        pairs=[(threshold.signal_id, threshold.environment_id)],
        statistics={statistic},
        start=END - timedelta(hours=hours),
        end=END,
        bucket_seconds=bucket_seconds,
    )


@pytest.mark.django_db
def test_hit_and_miss_are_separate_lines_and_unknown_is_left_out(blog):
    route = make_route(blog)
    threshold = make_threshold(route)
    start = END - timedelta(minutes=1)
    make_readings(route, [500, 600, 700], cache_status="MISS", start=start)
    make_readings(route, [10, 20, 30], cache_status="HIT", start=start)
    make_readings(route, [10_000], cache_status="UNKNOWN", start=start)
    make_readings(route, [40], cache_status="STALE", start=start)
    data = series(route, threshold, "max")
    bucket = int((END - timedelta(minutes=1)).timestamp()) // 1800
    key = (threshold.signal_id, threshold.environment_id)
    assert data[(*key, "miss", "max")][bucket] == (700, 3)
    assert data[(*key, "hit", "max")][bucket] == (40, 4)


@pytest.mark.django_db
@pytest.mark.parametrize("statistic,fraction", [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)])
def test_percentiles_per_bucket_match_linear_interpolation(blog, statistic, fraction):
    route = make_route(blog)
    threshold = make_threshold(route)
    rng = random.Random(7)
    values = [round(rng.lognormvariate(5, 0.6), 3) for _ in range(137)]
    # All inside one 30-minute bucket: [11:30, 12:00).
    make_readings(route, values, start=END - timedelta(seconds=1), step=timedelta(seconds=12))
    data = series(route, threshold, statistic)
    bucket = int((END - timedelta(minutes=30)).timestamp()) // 1800
    value, samples = data[(threshold.signal_id, threshold.environment_id, "miss", statistic)][
        bucket
    ]
    assert samples == 137
    assert value == pytest.approx(reference_percentile(sorted(values), fraction), rel=1e-9)


@pytest.mark.django_db
def test_mean_count_and_rate_per_bucket(blog):
    route = make_route(blog)
    threshold = make_threshold(route)
    make_readings(route, [1, 2, 3, 6], start=END - timedelta(seconds=1))
    bucket = int((END - timedelta(seconds=1)).timestamp()) // 1800
    key = (threshold.signal_id, threshold.environment_id, "miss")
    assert series(route, threshold, "mean")[(*key, "mean")][bucket][0] == pytest.approx(3.0)
    assert series(route, threshold, "count")[(*key, "count")][bucket][0] == 4
    assert series(route, threshold, "rate")[(*key, "rate")][bucket][0] == pytest.approx(4 / 30)


@pytest.mark.django_db
def test_a_reading_on_a_bucket_boundary_opens_the_next_bucket(blog):
    route = make_route(blog)
    threshold = make_threshold(route)
    boundary = END - timedelta(minutes=30)
    make_readings(route, [1.0], start=boundary)
    make_readings(route, [2.0], start=boundary - timedelta(microseconds=1))
    data = series(route, threshold, "max")[
        (threshold.signal_id, threshold.environment_id, "miss", "max")
    ]
    assert data[int(boundary.timestamp()) // 1800] == (1.0, 1)
    assert data[int(boundary.timestamp()) // 1800 - 1] == (2.0, 1)


@pytest.mark.django_db
def test_readings_outside_the_window_or_of_other_routes_are_left_out(blog):
    route, other = make_route(blog), make_route(blog)
    threshold = make_threshold(route)
    make_readings(route, [1.0], start=END - timedelta(hours=25))
    make_readings(route, [1.0], start=END)  # the window is [start, end)
    make_readings(other, [1.0], start=END - timedelta(minutes=5))
    make_readings(route, [1.0], start=END - timedelta(minutes=5), env="staging")
    assert series(route, threshold, "count") == {}


@pytest.mark.django_db
def test_all_charts_of_a_route_page_take_one_query(blog, django_assert_num_queries):
    route = make_route(blog)
    thresholds = [
        make_threshold(route),
        make_threshold(route, signal_key="error_rate", warn=0.01, critical=0.05),
        make_threshold(route, environment="staging"),
    ]
    make_readings(route, [100.0] * 50, start=timezone.now(), step=timedelta(minutes=20))
    thresholds = list(route.thresholds.select_related("signal", "environment"))
    # the bucketed statistics of every signal+environment
    with django_assert_num_queries(1):
        drawn = charts.route_charts(route, thresholds, baselines=[])
    assert len(drawn) == 3


@pytest.mark.django_db
def test_route_chart_draws_levels_baseline_band_and_labelled_axes(blog):
    route = make_route(blog)
    make_threshold(route, warn=300, critical=800)
    now = timezone.now()
    make_readings(route, [120.0] * 30, start=now, step=timedelta(minutes=10))
    make_readings(route, [15.0] * 30, start=now, cache_status="HIT", step=timedelta(minutes=10))
    baseline = Baseline.objects.create(
        route=route,
        signal=signal(),
        environment=environment(),
        window_start=now - timedelta(days=3),
        window_end=now - timedelta(days=2),
        count=500,
        p50=100,
        p95=250,
    )
    thresholds = list(route.thresholds.select_related("signal", "environment"))
    (chart,) = charts.route_charts(route, thresholds, [baseline], now=now)
    svg = chart.render()
    assert 'class="series hit"' in svg
    assert 'class="series miss"' in svg
    assert 'class="level warn"' in svg
    assert 'class="level critical"' in svg
    assert 'class="baseline"' in svg
    assert "baseline p50–p95 100–250 ms" in svg
    assert "p95 ms" in svg  # y axis: statistic and unit
    assert "time (UTC)" in svg  # x axis
    assert "<script" not in svg
    # the y axis reaches above the critical line
    assert chart.y_ticks[-1]["label"] in {"1,000", "900", "850"}


def test_levels_sit_at_their_values_on_the_y_axis():
    sig = Signal(key="response_time_ms", unit="ms", kind="duration")
    chart = charts.build_chart(
        title="t",
        signal=sig,
        statistic="p95",
        series={"hit": {}, "miss": {}},
        start=END - timedelta(hours=24),
        end=END,
        bucket_seconds=1800,
        warn=250,
        critical=500,
    )
    bottom, top = chart.y_ticks[0], chart.y_ticks[-1]
    top_value = float(top["label"].replace(",", ""))
    assert bottom["label"] == "0"
    assert bottom["y"] == chart.bottom_edge
    assert top_value >= 500  # the axis reaches above critical

    def y_of(value):
        return bottom["y"] + (top["y"] - bottom["y"]) * value / top_value

    warn, critical = chart.levels
    assert critical.y == pytest.approx(y_of(500), abs=0.1)
    assert warn.y == pytest.approx(y_of(250), abs=0.1)
    assert chart.empty
    assert "no HIT or MISS readings" in chart.render()


@pytest.mark.django_db
def test_change_chart_shows_before_and_after_in_one_query(blog, django_assert_num_queries):
    route = make_route(blog)
    applied = timezone.now() - timedelta(hours=2)
    make_readings(
        route, [300.0] * 12, start=applied - timedelta(seconds=1), step=timedelta(minutes=5)
    )
    make_readings(
        route, [150.0] * 12, start=applied + timedelta(minutes=59), step=timedelta(minutes=5)
    )
    change = Change.objects.create(
        route=route, environment=environment(), variable="n+1 fix", applied_at=applied
    )
    signals = list(Signal.objects.all())
    with django_assert_num_queries(1):
        (chart,) = charts.change_charts(change, signals, [], minutes=60)
    svg = chart.render()
    assert "change applied" in svg
    assert 'class="marker"' in svg
    assert 'class="after"' in svg
    assert chart.samples == 24


@pytest.mark.parametrize("span", [float("inf"), float("nan"), 0.0, -1.0, 5e-324])
def test_nice_step_of_a_span_it_cannot_cut_is_1(span):
    assert charts.nice_step(span) == 1.0


def test_nice_step_of_the_largest_float_is_finite():
    assert charts.nice_step(1.7e308) == 5e307


def test_a_point_that_is_not_finite_is_a_gap_and_a_huge_one_still_draws():
    # Statistics of readings stored before values were bounded at 1e12: a bucket's mean of
    # three 1.7e308 is inf, and one of 1.7e308 left no room for the axis' 8% headroom.
    first = int((END - timedelta(hours=24)).timestamp()) // 1800
    chart = charts.build_chart(
        title="t",
        signal=Signal(key="response_time_ms", unit="ms", kind="duration"),
        statistic="mean",
        series={
            "hit": {first: (float("inf"), 3), first + 1: (float("nan"), 1)},
            "miss": {first + 2: (1.7e308, 1), first + 3: (120.0, 1)},
        },
        start=END - timedelta(hours=24),
        end=END,
        bucket_seconds=1800,
        warn=300,
        critical=800,
        baseline=Baseline(p50=float("inf"), p95=200.0),
    )
    svg = chart.render()
    assert "inf" not in svg and "nan" not in svg
    hit, miss = (line for line in chart.lines if line.css in {"hit", "miss"})
    assert hit.points == []
    assert len(miss.points) == 2
    assert chart.band is None
    assert len(chart.y_ticks) <= 10


def test_a_sparkline_leaves_out_a_value_that_is_not_finite():
    start = END - timedelta(hours=24)
    first = int(start.timestamp()) // 3600
    svg = charts.sparkline(
        {first: float("inf"), first + 1: 100.0, first + 2: 120.0},
        start=start,
        end=END,
        bucket_seconds=3600,
    )
    assert "inf" not in svg and "nan" not in svg
