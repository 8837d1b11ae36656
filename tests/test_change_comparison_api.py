"""GET /api/v1/changes/{id}/comparison: before vs after, per signal and cache segment."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.api import bearer, call
from tests.builders import make_change, make_key, make_readings, make_route


@pytest.fixture
def change(blog):
    route = make_route(blog, "/posts/{slug}")
    applied = timezone.now() - timedelta(hours=2)
    change = make_change(route, applied, variable="select_related on the post page")
    step = timedelta(minutes=1)
    make_readings(route, [200.0 + i for i in range(40)], start=applied, step=step)
    make_readings(
        route, [120.0 + i for i in range(40)], start=applied + timedelta(minutes=50), step=step
    )
    return change


def url(change, query=""):
    return f"/api/v1/changes/{change.pk}/comparison{query}"


@pytest.mark.django_db
def test_it_reports_each_segment_and_a_verdict(client, mallory, change):
    client.force_login(mallory)
    body = call(client, "GET", url(change)).json()
    assert body["kind"] == "change"
    assert body["change"]["id"] == change.pk
    assert body["change"]["environment"] == "production"
    assert (body["minutes"], body["minutes_requested"]) == (60.0, 60)
    assert (body["noise_band_pct"], body["min_samples"], body["cache_mix_points"]) == (5, 20, 10)
    assert (body["verdict"], body["reason"]) == ("improved", None)
    (signal,) = body["signals"]
    assert signal["signal"] == "response_time_ms"
    assert signal["cache_hit_ratio"] == {"before": 0.0, "after": 0.0, "moved_points": 0.0}
    all_, hit, miss = signal["segments"]
    assert [all_["segment"], hit["segment"], miss["segment"]] == ["all", "hit", "miss"]
    assert all_["before"] == {
        "samples": 40,
        "p50": 219.5,
        "p95": pytest.approx(237.05),
        "mean": 219.5,
    }
    assert all_["after"]["p50"] == 139.5
    assert all_["delta"]["p50"] == -80.0
    assert all_["delta_pct"]["p50"] == pytest.approx(-36.45, abs=0.01)
    assert all_["verdict"] == "improved"
    assert (hit["verdict"], hit["reason"]) == ("inconclusive", "too_few_samples")


@pytest.mark.django_db
def test_minutes_and_min_samples_come_from_the_query(client, alice, change):
    client.force_login(alice)
    body = call(client, "GET", url(change, "?minutes=15&min_samples=5")).json()
    assert body["minutes"] == 15.0
    assert body["signals"][0]["segments"][0]["before"]["samples"] == 15
    assert body["signals"][0]["segments"][0]["after"]["samples"] == 5  # applied + 11..15 min
    body = call(client, "GET", url(change, "?minutes=30&min_samples=50")).json()
    assert body["signals"][0]["reason"] == "too_few_samples"
    body = call(client, "GET", url(change, "?noise_band_pct=50")).json()
    assert (body["noise_band_pct"], body["verdict"]) == (50.0, "unchanged")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?minutes=0", "minutes"),
        ("?minutes=abc", "minutes"),
        ("?minutes=20000", "minutes"),
        ("?min_samples=0", "min_samples"),
        ("?noise_band_pct=-1", "noise_band_pct"),
        # found by tests/test_evaluation_api_fuzzing.py: the last value was used, with a 200
        ("?minutes=30&minutes=90", "minutes"),
    ],
)
def test_it_rejects_bad_query_parameters(client, alice, change, query, field):
    client.force_login(alice)
    call(client, "GET", url(change, query), expect_status=400, expect_field=field)


@pytest.mark.django_db
def test_a_service_key_may_not_read_comparisons(client, blog, change):
    call(client, "GET", url(change), expect_status=403, **bearer(make_key(blog)))


@pytest.mark.django_db
def test_an_unknown_change_is_404(client, alice):
    client.force_login(alice)
    call(client, "GET", "/api/v1/changes/999999/comparison", expect_status=404)


@pytest.mark.django_db
def test_its_queries_are_fixed(client, alice, change, django_assert_num_queries):
    client.force_login(alice)
    # session, user, change with environment, overlapping changes, signals, statistics
    with django_assert_num_queries(6):
        call(client, "GET", url(change))


@pytest.mark.django_db
def test_a_change_stored_in_year_1_is_reported_without_a_window(client, alice, blog):
    # Stored before applied_at was bounded: applied_at - 60 minutes overflowed (a 400 that
    # named no field).
    from datetime import UTC, datetime

    old = make_change(make_route(blog), datetime(1, 1, 1, tzinfo=UTC), variable="epoch")
    client.force_login(alice)
    body = call(client, "GET", url(old)).json()
    assert (body["verdict"], body["reason"]) == ("inconclusive", "no_window")
    assert body["detail"] == "applied_at 0001-01-01 is too early for a window"
