"""GET /api/v1/routes/{id}/status: the route's worst status and one entry per threshold."""

from datetime import timedelta

import pytest
from django.utils import timezone

from signals_app.models import ThresholdState
from tests.api import bearer, call
from tests.builders import make_key, make_readings, make_route, make_threshold


def url(route):
    return f"/api/v1/routes/{route.pk}/status"


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.mark.django_db
def test_it_answers_with_the_fields_of_the_design(client, mallory, route):
    make_threshold(route, statistic="p95", cache_segment="miss", warn=300, critical=800)
    make_threshold(route, signal_key="db_calls", statistic="max", warn=10, critical=20)
    make_readings(route, [100.0] * 10 + [500.0] * 10, start=timezone.now() - timedelta(seconds=5))
    client.force_login(mallory)  # people read everything
    body = call(client, "GET", url(route)).json()
    assert body["route"] == route.pk
    assert body["status"] == "warn"  # the worst of warn and no_data
    db_calls, response_time = body["thresholds"]
    assert response_time == {
        "threshold": response_time["threshold"],
        "signal": "response_time_ms",
        "environment": "production",
        "statistic": "p95",
        "cache_segment": "miss",
        "window_minutes": 15,
        "value": 500.0,
        "samples": 20,
        "min_samples": 5,
        "warn": 300.0,
        "critical": 800.0,
        "status": "warn",
        "breach_started_at": response_time["breach_started_at"],
        "baseline": None,
        "change_pct": None,
        "incident": None,
    }
    assert (db_calls["signal"], db_calls["status"], db_calls["samples"]) == (
        "db_calls",
        "no_data",
        0,
    )


@pytest.mark.django_db
def test_it_evaluates_on_demand_without_writing(client, alice, route):
    make_threshold(route, statistic="max", min_samples=1)
    make_readings(route, [900.0], start=timezone.now() - timedelta(seconds=5))
    client.force_login(alice)
    assert call(client, "GET", url(route) + "/").json()["status"] == "critical"
    assert not ThresholdState.objects.exists()


@pytest.mark.django_db
def test_a_service_key_reads_the_status_of_its_own_routes_only(client, blog, search, route):
    other = make_route(search, "/search")
    key = make_key(blog)
    call(client, "GET", url(route), **bearer(key))
    call(client, "GET", url(other), expect_status=404, **bearer(key))


@pytest.mark.django_db
def test_anonymous_callers_are_refused(client, route):
    call(client, "GET", url(route), expect_status=401)


@pytest.mark.django_db
def test_an_unknown_route_is_404(client, alice):
    client.force_login(alice)
    call(client, "GET", "/api/v1/routes/999999/status", expect_status=404)


@pytest.mark.django_db
def test_its_queries_do_not_grow_with_thresholds(client, alice, route, django_assert_num_queries):
    for statistic in ("p50", "p95", "p99", "mean", "max", "rate"):
        make_threshold(route, statistic=statistic)
    client.force_login(alice)
    call(client, "GET", url(route))
    # session, user, route, thresholds, statistics, states, baselines, open incidents
    with django_assert_num_queries(8):
        body = call(client, "GET", url(route)).json()
    assert len(body["thresholds"]) == 6
