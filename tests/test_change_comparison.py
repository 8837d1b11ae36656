"""Before vs after a change, per signal and cache segment, with a verdict and its reason."""

from datetime import UTC, datetime, timedelta

import pytest

from signals_app.evaluation import compare_change, compare_changes
from tests.builders import make_change, make_readings, make_route

APPLIED = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
LATER = APPLIED + timedelta(hours=3)
STEP = timedelta(minutes=1)


def before(route, values, *, step=STEP, **kwargs):
    """Readings before APPLIED, one a minute, the last exactly at APPLIED (still before)."""
    make_readings(route, values, start=APPLIED, step=step, **kwargs)


def after(route, values, *, step=STEP, **kwargs):
    """Readings after APPLIED, one a minute, the last at APPLIED + 59 min."""
    make_readings(route, values, start=APPLIED + timedelta(minutes=59), step=step, **kwargs)


def spread(center, n=40):
    """n values around `center`, ±10%."""
    return [center * (0.9 + 0.2 * i / (n - 1)) for i in range(n)]


def signal_entry(result, key="response_time_ms"):
    return next(entry for entry in result["signals"] if entry["signal"] == key)


def segment(entry, name):
    return next(s for s in entry["segments"] if s["segment"] == name)


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def change(route):
    return make_change(route, APPLIED, variable="index on posts.slug")


@pytest.mark.django_db
def test_faster_after_the_change_is_improved(route, change):
    before(route, spread(200.0))
    after(route, spread(150.0))
    result = compare_change(change, now=LATER)
    entry = signal_entry(result)
    assert (entry["verdict"], entry["reason"]) == ("improved", None)
    all_ = segment(entry, "all")
    assert all_["before"]["samples"] == 40 and all_["after"]["samples"] == 40
    assert all_["before"]["p50"] == pytest.approx(200.0)
    assert all_["after"]["p50"] == pytest.approx(150.0)
    assert all_["delta"]["p50"] == pytest.approx(-50.0)
    assert all_["delta_pct"]["p50"] == pytest.approx(-25.0)
    assert all_["after"]["mean"] == pytest.approx(150.0)
    assert entry["cache_hit_ratio"] == {"before": 0.0, "after": 0.0, "moved_points": 0.0}
    assert segment(entry, "miss")["verdict"] == "improved"
    assert segment(entry, "hit")["reason"] == "too_few_samples"
    assert result["verdict"] == "improved"


@pytest.mark.django_db
def test_slower_after_the_change_is_regressed(route, change):
    before(route, spread(200.0))
    after(route, spread(260.0))
    result = compare_change(change, now=LATER)
    assert signal_entry(result)["verdict"] == "regressed"
    assert result["verdict"] == "regressed"


@pytest.mark.django_db
def test_a_better_median_with_a_worse_tail_is_regressed(route, change):
    before(route, spread(200.0))
    after(route, [150.0] * 35 + [900.0] * 5)
    assert signal_entry(compare_change(change, now=LATER))["verdict"] == "regressed"


@pytest.mark.django_db
def test_a_move_within_the_noise_band_is_unchanged(route, change):
    before(route, spread(200.0))
    after(route, spread(192.0))  # -4%
    entry = signal_entry(compare_change(change, now=LATER))
    assert (entry["verdict"], entry["reason"]) == ("unchanged", None)
    assert segment(entry, "all")["delta_pct"]["p50"] == pytest.approx(-4.0)


@pytest.mark.django_db
def test_too_few_samples_is_inconclusive(route, change):
    before(route, spread(200.0, n=19))
    after(route, spread(100.0))
    entry = signal_entry(compare_change(change, now=LATER))
    assert (entry["verdict"], entry["reason"]) == ("inconclusive", "too_few_samples")
    assert "19 readings before" in entry["detail"]


@pytest.mark.django_db
def test_a_lucky_cache_hit_is_not_an_improvement(route, change):
    # Before: 20% HIT. After: 80% HIT. Origin (MISS) latency does not move at all.
    before(route, spread(20.0, 10), cache_status="HIT")
    make_readings(route, spread(200.0), start=APPLIED - timedelta(seconds=30), step=STEP)
    after(route, spread(20.0), cache_status="HIT")
    make_readings(
        route, spread(200.0, 10), start=APPLIED + timedelta(minutes=59, seconds=30), step=STEP
    )
    result = compare_change(change, now=LATER, settings=None)
    entry = signal_entry(result)
    assert entry["cache_hit_ratio"]["before"] == pytest.approx(0.2)
    assert entry["cache_hit_ratio"]["after"] == pytest.approx(0.8)
    assert entry["cache_hit_ratio"]["moved_points"] == pytest.approx(60.0)
    # The mix of all readings got much faster ...
    assert segment(entry, "all")["delta_pct"]["p50"] < -50
    # ... but that is the cache, not a fix:
    assert entry["verdict"] != "improved"
    assert (entry["verdict"], entry["reason"]) == ("inconclusive", "cache_mix_moved")
    assert "moved +60.0 points" in entry["detail"]
    assert segment(entry, "hit")["reason"] == "too_few_samples"  # 10 hits before


@pytest.mark.django_db
def test_with_enough_samples_per_segment_the_segments_show_nothing_changed(route, change):
    before(route, spread(20.0, 25), cache_status="HIT")
    make_readings(route, spread(200.0, 100), start=APPLIED, step=timedelta(seconds=30))
    make_readings(
        route,
        spread(20.0, 100),
        start=APPLIED + timedelta(minutes=59),
        step=timedelta(seconds=30),
        cache_status="HIT",
    )
    after(route, spread(200.0, 25), step=timedelta(minutes=2))
    entry = signal_entry(compare_change(change, now=LATER))
    assert entry["reason"] == "cache_mix_moved"
    assert segment(entry, "hit")["verdict"] == "unchanged"
    assert segment(entry, "miss")["verdict"] == "unchanged"


@pytest.mark.django_db
def test_another_change_overlapping_the_windows_confounds_it(route, change):
    other = make_change(route, APPLIED + timedelta(minutes=20), variable="new CDN rule")
    before(route, spread(200.0))
    after(route, spread(100.0))
    result = compare_change(change, now=LATER)
    entry = signal_entry(result)
    assert (entry["verdict"], entry["reason"]) == ("inconclusive", "confounded")
    assert all(s["reason"] == "confounded" for s in entry["segments"])
    assert [c["id"] for c in result["confounded_by"]] == [other.pk]
    assert (result["verdict"], result["reason"]) == ("inconclusive", "confounded")
    assert "new CDN rule" in result["detail"]


@pytest.mark.django_db
def test_changes_outside_the_windows_or_elsewhere_do_not_confound(route, change, blog):
    make_change(route, APPLIED + timedelta(minutes=61))
    make_change(route, APPLIED - timedelta(minutes=60))  # exactly at the before window's start
    make_change(route, APPLIED + timedelta(minutes=60))  # exactly at the after window's end
    make_change(route, APPLIED, env="staging")
    make_change(make_route(blog), APPLIED)
    before(route, spread(200.0))
    after(route, spread(100.0))
    result = compare_change(change, now=LATER)
    assert result["confounded_by"] == []
    assert signal_entry(result)["verdict"] == "improved"


@pytest.mark.django_db
def test_direction_comes_from_the_signal(route, change):
    # cache_hit: lower is worse, so more hits is an improvement (and its own mix is the result)
    before(route, [1.0] * 10 + [0.0] * 30, signal_key="cache_hit")
    after(route, [1.0] * 30 + [0.0] * 10, signal_key="cache_hit")
    entry = signal_entry(compare_change(change, now=LATER), "cache_hit")
    assert (entry["verdict"], entry["reason"]) == ("improved", None)
    assert segment(entry, "all")["delta"]["mean"] == pytest.approx(0.5)


@pytest.mark.django_db
def test_windows_have_equal_length_around_applied_at(route, change):
    result = compare_change(change, minutes=30, now=LATER)
    assert result["before"] == {"start": APPLIED - timedelta(minutes=30), "end": APPLIED}
    assert result["after"] == {"start": APPLIED, "end": APPLIED + timedelta(minutes=30)}
    # While the after window fills, both sides shrink to the time elapsed.
    result = compare_change(change, minutes=60, now=APPLIED + timedelta(minutes=10))
    assert result["minutes"] == 10
    assert result["before"]["start"] == APPLIED - timedelta(minutes=10)


@pytest.mark.django_db
def test_a_change_not_applied_yet_has_nothing_to_compare(route, change):
    result = compare_change(change, now=APPLIED - timedelta(minutes=5))
    assert (result["verdict"], result["reason"]) == ("inconclusive", "no_window")
    assert result["signals"] == []


@pytest.mark.django_db
def test_signals_without_readings_are_left_out(route, change):
    before(route, spread(200.0))
    result = compare_change(change, now=LATER)
    assert [entry["signal"] for entry in result["signals"]] == ["response_time_ms"]
    assert signal_entry(result)["reason"] == "too_few_samples"


@pytest.mark.django_db
def test_it_costs_the_same_queries_for_any_number_of_signals(
    route, change, django_assert_num_queries
):
    for key in ("response_time_ms", "db_calls", "error_rate"):
        before(route, spread(1.0), signal_key=key)
        after(route, spread(1.0), signal_key=key)
    # overlapping changes, signals, statistics (the view selects the environment with the change)
    with django_assert_num_queries(3):
        result = compare_change(change, now=LATER)
    assert len(result["signals"]) == 3


@pytest.mark.django_db
def test_many_changes_are_compared_in_three_queries(route, change, django_assert_num_queries):
    before(route, spread(200.0))
    after(route, spread(150.0))
    later = make_change(route, APPLIED + timedelta(hours=2), variable="second")
    pending = make_change(route, LATER + timedelta(hours=1), variable="tomorrow")
    # overlapping changes, signals, statistics of every window
    with django_assert_num_queries(3):
        first, second, third = compare_changes([change, later, pending], now=LATER)
    assert first == compare_change(change, now=LATER)
    assert (second["verdict"], second["reason"]) == ("inconclusive", "too_few_samples")
    assert third["reason"] == "no_window"


@pytest.mark.django_db
def test_one_error_more_in_forty_requests_is_chance_not_a_regression(route, change):
    before(route, [0.0] * 40, signal_key="error_rate")
    after(route, [0.0] * 39 + [1.0], signal_key="error_rate")
    entry = signal_entry(compare_change(change, now=LATER), "error_rate")
    assert segment(entry, "all")["delta"]["mean"] == pytest.approx(0.025)
    assert entry["verdict"] == "unchanged"


@pytest.mark.django_db
def test_many_more_errors_are_a_regression(route, change):
    before(route, [0.0] * 39 + [1.0], signal_key="error_rate")
    after(route, [0.0] * 30 + [1.0] * 10, signal_key="error_rate")
    assert signal_entry(compare_change(change, now=LATER), "error_rate")["verdict"] == "regressed"
