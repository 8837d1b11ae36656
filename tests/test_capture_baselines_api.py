"""POST /api/v1/baselines/capture: owners capture baselines of their routes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from signals_app.models import Baseline
from tests.api import call
from tests.builders import make_readings, make_route

URL = "/api/v1/baselines/capture"


@pytest.fixture
def route(blog):
    route = make_route(blog, "/posts/{slug}")
    now = timezone.now()
    make_readings(route, [10.0] * 20, start=now - timedelta(minutes=1), cache_status="HIT")
    make_readings(route, [300.0] * 10, start=now - timedelta(minutes=2), cache_status="MISS")
    make_readings(route, [3.0] * 30, signal_key="db_calls", start=now - timedelta(minutes=1))
    return route


@pytest.mark.django_db
def test_an_owner_captures_every_signal_and_segment_with_readings(client, bob, route):
    client.force_login(bob)
    body = call(
        client, "POST", URL, {"route": route.pk, "note": "before caching"}, expect_status=201
    ).json()
    captured = {(b["signal"], b["cache_segment"]): b for b in body["baselines"]}
    assert set(captured) == {
        ("db_calls", "all"),
        ("db_calls", "miss"),
        ("response_time_ms", "all"),
        ("response_time_ms", "hit"),
        ("response_time_ms", "miss"),
    }
    assert body["skipped"] == [
        {
            "signal": "db_calls",
            "environment": "production",
            "cache_segment": "hit",
            "reason": "no readings in the window",
        }
    ]
    rt_all = captured["response_time_ms", "all"]
    assert (rt_all["count"], rt_all["p50"], rt_all["captured_by"], rt_all["note"]) == (
        30,
        10.0,
        "bob",
        "before caching",
    )
    assert rt_all["active"] is True
    assert Baseline.objects.filter(active=True).count() == 5


@pytest.mark.django_db
def test_one_key_over_an_explicit_window(client, alice, route):
    client.force_login(alice)
    end = timezone.now()
    payload = {
        "route": route.pk,
        "signal": "response_time_ms",
        "environment": "production",
        "cache_segment": "miss",
        "window_start": (end - timedelta(hours=1)).isoformat(),
        "window_end": end.isoformat(),
    }
    body = call(client, "POST", URL, payload, expect_status=201).json()
    (baseline,) = body["baselines"]
    assert (baseline["count"], baseline["p95"]) == (10, 300.0)
    # again: the first one is kept as history
    call(client, "POST", URL, payload, expect_status=201)
    assert Baseline.objects.count() == 2
    assert Baseline.objects.filter(active=True).count() == 1


@pytest.mark.django_db
def test_outsider_cannot_capture_baselines_of_a_route_they_do_not_own(client, mallory, route):
    client.force_login(mallory)
    call(client, "POST", URL, {"route": route.pk}, expect_status=403)
    assert not Baseline.objects.exists()


@pytest.mark.django_db
def test_a_superuser_captures_any_route(client, route):
    from tests.builders import make_user

    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    call(client, "POST", URL, {"route": route.pk, "signal": "db_calls"}, expect_status=201)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "route"),
        ({"route": 999999}, "route"),
        ({"signal": "latency"}, "signal"),
        ({"cache_segment": "warm"}, "cache_segment"),
        ({"minutes": 0}, "minutes"),
        ({"window_end": "2999-01-01T00:00:00Z"}, "window_end"),
        ({"window_start": "2026-01-01T00:00:00Z", "minutes": 5}, "minutes"),
        # Year 1 overflowed window_end - 60 minutes: a 400 that named no field.
        ({"window_end": "0001-01-01T00:30:00Z"}, "window_end"),
        ({"window_start": "1970-01-01T00:00:00Z"}, "window_start"),
    ],
)
def test_it_rejects_invalid_requests(client, alice, route, payload, field):
    client.force_login(alice)
    body = {"route": route.pk, **payload} if "route" not in payload and payload else payload
    call(client, "POST", URL, body, expect_status=400, expect_field=field)


@pytest.mark.django_db
def test_a_window_without_readings_captures_nothing(client, alice, route):
    client.force_login(alice)
    problem = call(
        client,
        "POST",
        URL,
        {"route": route.pk, "window_end": "2020-01-01T00:00:00Z"},
        expect_status=400,
    ).json()
    assert "nothing was captured" in problem["detail"]
    assert not Baseline.objects.exists()
