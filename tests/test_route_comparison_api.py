"""GET /api/v1/routes/{id}/comparison: the active baseline vs the last N minutes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from signals_app.models import Baseline
from tests.api import call
from tests.builders import environment, make_readings, make_route, signal


@pytest.fixture
def route(blog):
    route = make_route(blog, "/posts/{slug}")
    now = timezone.now()
    step = timedelta(minutes=1)
    make_readings(route, [200.0 + i for i in range(40)], start=now - timedelta(hours=3), step=step)
    Baseline.capture(route, signal(), environment(), end=now - timedelta(hours=3))
    make_readings(
        route, [300.0 + i for i in range(40)], start=now - timedelta(seconds=1), step=step
    )
    return route


def url(route, query=""):
    return f"/api/v1/routes/{route.pk}/comparison{query}"


@pytest.mark.django_db
def test_it_compares_the_active_baseline_with_the_last_minutes(client, mallory, route):
    client.force_login(mallory)
    body = call(client, "GET", url(route)).json()
    assert (body["kind"], body["route"], body["minutes_requested"]) == ("baseline", route.pk, 60)
    (entry,) = body["signals"]
    assert (entry["signal"], entry["environment"], entry["verdict"]) == (
        "response_time_ms",
        "production",
        "regressed",
    )
    (segment,) = entry["segments"]
    assert segment["before"]["samples"] == 40 and segment["after"]["samples"] == 40
    assert segment["delta"]["p50"] == pytest.approx(100.0)
    assert len(entry["baselines"]) == 1


@pytest.mark.django_db
def test_it_filters_by_environment(client, alice, route):
    client.force_login(alice)
    body = call(client, "GET", url(route, "?environment=staging")).json()
    assert (body["signals"], body["reason"]) == ([], "no_window")
    call(
        client,
        "GET",
        url(route, "?environment=mars"),
        expect_status=400,
        expect_field="environment",
    )


@pytest.mark.django_db
def test_minutes_come_from_the_query(client, alice, route):
    client.force_login(alice)
    body = call(client, "GET", url(route, "?minutes=10")).json()
    assert body["signals"][0]["segments"][0]["after"]["samples"] == 10
    assert body["signals"][0]["reason"] == "too_few_samples"


@pytest.mark.django_db
def test_an_empty_environment_is_refused(client, alice, route):
    client.force_login(alice)
    call(client, "GET", url(route, "?environment="), expect_status=400, expect_field="environment")
