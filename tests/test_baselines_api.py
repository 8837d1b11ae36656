"""/api/v1/baselines: read by people; owners annotate or retire their routes' baselines."""

from datetime import timedelta

import pytest
from django.utils import timezone

from signals_app.models import Baseline
from tests.api import bearer, call
from tests.builders import environment, make_key, make_route, signal

URL = "/api/v1/baselines"


def make_baseline(route, **fields):
    end = timezone.now()
    values = {
        "route": route,
        "signal": signal(),
        "environment": environment(),
        "window_start": end - timedelta(hours=1),
        "window_end": end,
        "count": 120,
        "p50": 80.0,
        "p95": 210.0,
        "p99": 400.0,
        "mean": 95.0,
    }
    values.update(fields)
    return Baseline.objects.create(**values)


@pytest.fixture
def blog_baseline(blog, alice):
    return make_baseline(make_route(blog, "/posts/{slug}"), captured_by=alice, note="before CDN")


@pytest.mark.django_db
def test_people_list_baselines_with_the_design_fields(
    client, mallory, blog_baseline, django_assert_num_queries
):
    client.force_login(mallory)
    # session, user, baselines with signal, environment and who captured them
    with django_assert_num_queries(3):
        results = call(client, "GET", URL).json()["results"]
    assert set(results[0]) == {
        "id", "route", "signal", "environment", "cache_segment", "window_start", "window_end",
        "count", "p50", "p95", "p99", "mean", "captured_by", "note", "active",
    }  # fmt: skip
    assert results[0]["captured_by"] == "alice"
    assert results[0]["signal"] == "response_time_ms"


@pytest.mark.django_db
def test_a_stored_number_json_cannot_carry_is_null_not_a_500(client, mallory, blog):
    # A capture over readings stored before values were bounded at 1e12 kept mean=inf.
    make_baseline(make_route(blog, "/posts/{slug}"), mean=float("inf"), p99=float("nan"))
    client.force_login(mallory)
    (result,) = call(client, "GET", URL).json()["results"]
    assert (result["mean"], result["p99"], result["p95"]) == (None, None, 210.0)


@pytest.mark.django_db
def test_it_filters_baselines(client, mallory, blog_baseline, search):
    make_baseline(make_route(search, "/search"), active=True)
    client.force_login(mallory)
    assert len(call(client, "GET", URL + "?service=blog").json()["results"]) == 1
    assert (
        len(call(client, "GET", URL + "?signal=response_time_ms&active=true").json()["results"])
        == 2
    )
    assert call(client, "GET", URL + "?cache_segment=hit").json()["results"] == []


@pytest.mark.django_db
def test_an_owner_annotates_and_retires_a_baseline(client, bob, blog_baseline):
    client.force_login(bob)
    url = f"{URL}/{blog_baseline.pk}"
    call(client, "PATCH", url, {"note": "before CDN, weekday", "active": False})
    blog_baseline.refresh_from_db()
    assert (blog_baseline.note, blog_baseline.active) == ("before CDN, weekday", False)


@pytest.mark.django_db
def test_the_measured_numbers_are_not_settable(client, bob, blog_baseline):
    client.force_login(bob)
    response = call(client, "PATCH", f"{URL}/{blog_baseline.pk}", {"p95": 1.0, "count": 1},
                    expect_status=400)  # fmt: skip
    assert {(e["field"], e["message"]) for e in response.json()["errors"]} == {
        ("p95", "read-only"),
        ("count", "read-only"),
    }
    blog_baseline.refresh_from_db()
    assert (blog_baseline.p95, blog_baseline.count) == (210.0, 120)


@pytest.mark.django_db
def test_outsider_cannot_edit_or_delete_a_baseline(client, mallory, blog_baseline):
    client.force_login(mallory)
    call(client, "PATCH", f"{URL}/{blog_baseline.pk}", {"note": "x"}, expect_status=403)
    call(client, "DELETE", f"{URL}/{blog_baseline.pk}", expect_status=403)


@pytest.mark.django_db
def test_baselines_are_not_typed_in_but_captured(client, alice, blog_baseline):
    client.force_login(alice)
    call(client, "POST", URL, {"route": blog_baseline.route_id}, expect_status=405)


@pytest.mark.django_db
def test_a_service_key_cannot_read_baselines(client, blog, blog_baseline):
    call(client, "GET", URL, expect_status=403, **bearer(make_key(blog)))
