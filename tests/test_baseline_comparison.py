"""The active baseline vs the last N minutes on a route."""

from datetime import UTC, datetime, timedelta

import pytest

from signals_app.evaluation import compare_to_baseline
from signals_app.models import Baseline
from tests.builders import environment, make_change, make_readings, make_route, signal

CAPTURED = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)  # the baseline window ends here
NOW = CAPTURED + timedelta(hours=2)
STEP = timedelta(minutes=1)


def spread(center, n=40):
    return [center * (0.9 + 0.2 * i / (n - 1)) for i in range(n)]


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def baseline(route):
    make_readings(route, spread(200.0), start=CAPTURED, step=STEP)
    return Baseline.capture(route, signal(), environment(), end=CAPTURED, minutes=60)


def entry_of(result, key="response_time_ms"):
    return next(e for e in result["signals"] if e["signal"] == key)


@pytest.mark.django_db
def test_now_faster_than_the_baseline_is_improved(route, baseline):
    make_readings(route, spread(120.0), start=NOW, step=STEP)
    result = compare_to_baseline(route, minutes=60, now=NOW)
    entry = entry_of(result)
    assert (entry["verdict"], entry["environment"]) == ("improved", "production")
    (segment,) = entry["segments"]  # only the captured segment is compared
    assert segment["segment"] == "all"
    assert segment["before"] == {
        "samples": 40,
        "p50": baseline.p50,
        "p95": baseline.p95,
        "mean": baseline.mean,
    }
    assert segment["after"]["samples"] == 40
    assert segment["delta_pct"]["p50"] == pytest.approx(-40.0)
    assert entry["baselines"][0]["id"] == baseline.pk
    assert entry["window"] == {"start": NOW - timedelta(minutes=60), "end": NOW, "minutes": 60}
    assert result["verdict"] == "improved"


@pytest.mark.django_db
def test_the_window_never_overlaps_the_baseline(route, baseline):
    make_readings(route, spread(400.0), start=CAPTURED + timedelta(minutes=30), step=STEP)
    now = CAPTURED + timedelta(minutes=30)
    entry = entry_of(compare_to_baseline(route, minutes=60, now=now))
    # asked for 60 minutes, but only the 30 after the baseline's end are compared
    assert entry["window"] == {"start": CAPTURED, "end": now, "minutes": 30}
    assert entry["segments"][0]["after"]["samples"] == 30
    assert entry["verdict"] == "regressed"


@pytest.mark.django_db
def test_a_baseline_ending_now_has_no_window_yet(route, baseline):
    result = compare_to_baseline(route, now=CAPTURED)
    assert (entry_of(result)["verdict"], entry_of(result)["reason"]) == (
        "inconclusive",
        "no_window",
    )


@pytest.mark.django_db
def test_a_change_between_the_windows_is_what_is_judged(route, baseline):
    make_change(route, CAPTURED + timedelta(minutes=30))
    make_readings(route, spread(120.0), start=NOW, step=STEP)
    assert entry_of(compare_to_baseline(route, now=NOW))["verdict"] == "improved"


@pytest.mark.django_db
def test_a_change_at_the_end_of_the_baseline_window_does_not_confound_it(route, baseline):
    # readings at the change's time count as before it: the baseline window is not mixed
    make_change(route, CAPTURED)
    make_readings(route, spread(120.0), start=NOW, step=STEP)
    assert entry_of(compare_to_baseline(route, now=NOW))["verdict"] == "improved"


@pytest.mark.django_db
def test_a_change_inside_a_window_confounds_it(route, baseline):
    change = make_change(route, NOW - timedelta(minutes=10))
    make_readings(route, spread(120.0), start=NOW, step=STEP)
    entry = entry_of(compare_to_baseline(route, now=NOW))
    assert (entry["verdict"], entry["reason"]) == ("inconclusive", "confounded")
    assert [c["id"] for c in entry["confounded_by"]] == [change.pk]


@pytest.mark.django_db
def test_the_cache_mix_of_the_baseline_window_counts(route):
    # baseline: 20% hits; now: 80% hits with the same latencies per segment
    make_readings(route, spread(20.0, 10), start=CAPTURED, step=STEP, cache_status="HIT")
    make_readings(route, spread(200.0), start=CAPTURED - timedelta(seconds=30), step=STEP)
    for segment in ("all", "hit", "miss"):
        Baseline.capture(route, signal(), environment(), segment, end=CAPTURED)
    make_readings(route, spread(20.0), start=NOW, step=STEP, cache_status="HIT")
    make_readings(route, spread(200.0, 10), start=NOW - timedelta(seconds=30), step=STEP)
    entry = entry_of(compare_to_baseline(route, now=NOW))
    assert entry["cache_hit_ratio"]["before"] == pytest.approx(0.2)
    assert entry["cache_hit_ratio"]["after"] == pytest.approx(0.8)
    assert (entry["verdict"], entry["reason"]) == ("inconclusive", "cache_mix_moved")
    assert [s["segment"] for s in entry["segments"]] == ["all", "hit", "miss"]


@pytest.mark.django_db
def test_a_route_without_baselines_says_so(route, django_assert_num_queries):
    with django_assert_num_queries(1):
        result = compare_to_baseline(route, now=NOW)
    assert (result["verdict"], result["reason"], result["signals"]) == (
        "inconclusive",
        "no_window",
        [],
    )
    assert "capture one first" in result["detail"]


@pytest.mark.django_db
def test_it_costs_three_queries(route, baseline, django_assert_num_queries):
    Baseline.capture(route, signal(), environment(), "miss", end=CAPTURED)
    # baselines, statistics, changes
    with django_assert_num_queries(3):
        compare_to_baseline(route, now=NOW)
