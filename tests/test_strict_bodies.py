"""Resource bodies: a key that is not a writable field is a 400, never silently ignored.

A typo ("window" for window_minutes) used to be dropped and the default used; a read-only
field (id, p95) was dropped too, so a PATCH that meant to change it answered 200 and
changed nothing. A read-only field sent back with the value the resource has is fine: a
client may PUT back what it GOT.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from signals_app.models import Baseline, Change, RollbackNote, Threshold
from tests.api import bearer, call
from tests.builders import (
    environment,
    make_change,
    make_content_item,
    make_key,
    make_route,
    make_threshold,
    signal,
)

UNKNOWN = "unknown_zz"


def unknown_error(response, key=UNKNOWN):
    (error,) = [e for e in response.json()["errors"] if e["field"] == key]
    return error


def make_baseline(route):
    end = timezone.now()
    return Baseline.objects.create(
        route=route,
        signal=signal(),
        environment=environment(),
        window_start=end - timedelta(hours=1),
        window_end=end,
        count=120,
        p50=80.0,
        p95=210.0,
        p99=400.0,
        mean=95.0,
    )


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.mark.django_db
def test_every_write_operation_refuses_an_unknown_key(client, blog, route, root):
    """Every POST/PUT/PATCH of the schema, so a new endpoint cannot forget it."""
    threshold = make_threshold(route)
    baseline = make_baseline(route)
    change = make_change(route, timezone.now())
    note = RollbackNote.objects.create(route=route, steps="revert")
    item = make_content_item("ref-1")
    filled = {
        "/api/v1/routes/{id}": route.pk,
        "/api/v1/thresholds/{id}": threshold.pk,
        "/api/v1/baselines/{id}": baseline.pk,
        "/api/v1/changes/{id}": change.pk,
        "/api/v1/rollback-notes/{id}": note.pk,
        "/api/v1/signals/{key}": "response_time_ms",
        "/api/v1/environments/{slug}": "production",
        "/api/v1/content/{reference}/reviews": item.reference,
    }
    schema = SchemaGenerator().get_schema(request=None, public=True)
    client.force_login(root)
    checked = []
    for path, operations in schema["paths"].items():
        for method in operations.keys() & {"post", "put", "patch"}:
            url = path
            if "{" in path:
                url = path.split("{")[0] + str(filled[path]) + path.split("}")[1]
            body, headers = {UNKNOWN: 1}, {}
            if path == "/api/v1/readings":
                body, headers = {"readings": [], UNKNOWN: 1}, bearer(make_key(blog))
            response = call(client, method.upper(), url, body, expect_status=400, **headers)
            error = unknown_error(response)
            assert (error["message"], error["received"]) == ("unknown field", UNKNOWN), url
            assert isinstance(error["expected"], list) and "id" not in error["expected"], url
            checked.append(f"{method} {path}")
    assert len(checked) == 23, checked  # 9 POST, 7 PUT, 7 PATCH


@pytest.mark.django_db
def test_a_misspelt_threshold_field_is_a_400_and_nothing_is_created(client, alice, route):
    client.force_login(alice)
    body = {
        "route": route.pk,
        "signal": "db_calls",
        "environment": "production",
        "statistic": "max",
        "window": 60,
        "warn": 5,
        "critical": 10,
        "min_sample": 5,
    }
    response = call(client, "POST", "/api/v1/thresholds", body, expect_status=400)
    errors = response.json()["errors"]
    assert [(e["field"], e["message"], e["received"]) for e in errors] == [
        ("window", "unknown field", "window"),
        ("min_sample", "unknown field", "min_sample"),
    ]
    assert "window_minutes" in errors[0]["expected"]
    assert "min_samples" in errors[1]["expected"]
    assert not Threshold.objects.exists()


@pytest.mark.django_db
def test_unknown_keys_are_reported_with_the_other_errors(client, alice, route):
    client.force_login(alice)
    body = {"route": route.pk, "signal": "db_calls", "warn": 5, "critcal": 10}
    response = call(client, "POST", "/api/v1/thresholds", body, expect_status=400)
    fields = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert fields["critcal"] == "unknown field"
    assert fields["critical"] == "This field is required."


@pytest.mark.django_db
def test_a_capture_with_start_and_end_instead_of_window_start_and_end_is_a_400(
    client, alice, route
):
    client.force_login(alice)
    body = {"route": route.pk, "start": "2029-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}
    response = call(client, "POST", "/api/v1/baselines/capture", body, expect_status=400)
    assert {e["field"] for e in response.json()["errors"]} == {"start", "end"}
    assert "window_start" in unknown_error(response, "start")["expected"]
    assert not Baseline.objects.exists()


@pytest.mark.django_db
def test_patching_a_measured_number_is_a_400_not_a_silent_200(client, alice, route):
    baseline = make_baseline(route)
    client.force_login(alice)
    response = call(client, "PATCH", f"/api/v1/baselines/{baseline.pk}", {"p95": 1},
                    expect_status=400)  # fmt: skip
    error = unknown_error(response, "p95")
    assert (error["message"], error["received"]) == ("read-only", 1)
    assert error["expected"] == "leave it out, or send the stored value 210.0"
    baseline.refresh_from_db()
    assert baseline.p95 == 210.0


@pytest.mark.django_db
def test_an_id_that_is_not_the_objects_own_is_refused(client, alice, route):
    threshold = make_threshold(route)
    client.force_login(alice)
    url = f"/api/v1/thresholds/{threshold.pk}"
    response = call(client, "PATCH", url, {"id": 999}, expect_status=400)
    assert unknown_error(response, "id")["message"] == "read-only"
    call(client, "PATCH", url, {"id": threshold.pk, "warn": 250})
    threshold.refresh_from_db()
    assert threshold.warn == 250


@pytest.mark.django_db
def test_a_read_only_field_on_create_is_refused(client, alice, route):
    client.force_login(alice)
    body = {"id": 5, "route": route.pk, "signal": "db_calls", "warn": 5, "critical": 10}
    response = call(client, "POST", "/api/v1/thresholds", body, expect_status=400)
    error = unknown_error(response, "id")
    assert (error["message"], error["expected"]) == (
        "read-only",
        "leave it out: the registry sets it",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("resource", ["thresholds", "baselines", "changes", "rollback-notes"])
def test_a_client_may_put_back_what_it_got(client, alice, route, resource):
    objects = {
        "thresholds": lambda: make_threshold(route),
        "baselines": lambda: make_baseline(route),
        "changes": lambda: make_change(route, timezone.now(), created_by=alice),
        "rollback-notes": lambda: RollbackNote.objects.create(route=route, steps="revert"),
    }
    url = f"/api/v1/{resource}/{objects[resource]().pk}"
    client.force_login(alice)
    got = call(client, "GET", url).json()
    assert call(client, "PUT", url, got).json() == got


@pytest.mark.django_db
def test_a_read_only_instant_written_another_way_is_the_same_value(client, alice, route):
    baseline = make_baseline(route)
    client.force_login(alice)
    start = baseline.window_start.astimezone(timezone.get_fixed_timezone(120)).isoformat()
    call(client, "PATCH", f"/api/v1/baselines/{baseline.pk}", {"window_start": start})
    later = (baseline.window_start + timedelta(seconds=1)).isoformat()
    call(client, "PATCH", f"/api/v1/baselines/{baseline.pk}", {"window_start": later},
         expect_status=400, expect_field="window_start")  # fmt: skip


@pytest.mark.django_db
def test_a_change_created_with_who_created_it_is_refused(client, alice, route):
    client.force_login(alice)
    body = {
        "route": route.pk,
        "environment": "production",
        "variable": "cdn ttl",
        "applied_at": "2026-11-26T07:00:00Z",
        "created_by": "mallory",
    }
    call(client, "POST", "/api/v1/changes", body, expect_status=400, expect_field="created_by")
    assert not Change.objects.exists()


@pytest.mark.django_db
def test_a_readings_batch_names_its_one_top_level_field(client, blog):
    response = call(client, "POST", "/api/v1/readings", {"readings": [], "reading": []},
                    expect_status=400, **bearer(make_key(blog)))  # fmt: skip
    error = unknown_error(response, "reading")
    assert (error["expected"], error["received"]) == (["readings"], "reading")


@pytest.mark.django_db
def test_a_patch_that_changes_nothing_adds_no_history_row(client, alice, route):
    threshold = make_threshold(route)
    url = f"/api/v1/thresholds/{threshold.pk}"
    client.force_login(alice)
    for body in ({}, {"id": threshold.pk}, {"warn": 300, "signal": "response_time_ms"}):
        call(client, "PATCH", url, body)
    call(client, "PUT", url, call(client, "GET", url).json())
    assert threshold.history.count() == 1  # the creation
    call(client, "PATCH", url, {"warn": 250})
    assert [h.warn for h in threshold.history.all()] == [250, 300]


@pytest.mark.django_db
@pytest.mark.parametrize("resource", ["baselines", "changes", "rollback-notes"])
def test_putting_back_what_was_read_adds_no_history_row(client, alice, route, resource):
    made = {
        "baselines": lambda: make_baseline(route),
        "changes": lambda: make_change(route, timezone.now(), created_by=alice),
        "rollback-notes": lambda: RollbackNote.objects.create(route=route, steps="revert"),
    }[resource]()
    url = f"/api/v1/{resource}/{made.pk}"
    client.force_login(alice)
    call(client, "PUT", url, call(client, "GET", url).json())
    assert made.history.count() == 1


@pytest.mark.django_db
def test_a_rollback_note_sent_back_as_read_keeps_who_rehearsed_it(client, alice, bob, route):
    note = RollbackNote.objects.create(
        route=route,
        steps="revert",
        rehearsed_at=timezone.now() - timedelta(days=1),
        rehearsed_by=bob,
        rehearsal_outcome="passed",
    )
    url = f"/api/v1/rollback-notes/{note.pk}"
    client.force_login(alice)
    answer = call(client, "PUT", url, call(client, "GET", url).json()).json()
    assert answer["rehearsed_by"] == "bob"
    assert note.history.count() == 1
    call(client, "PATCH", url, {"rehearsed_at": timezone.now().isoformat()})
    note.refresh_from_db()
    assert note.rehearsed_by == alice  # a new rehearsal is the sender's


@pytest.mark.django_db
def test_a_threshold_saved_out_of_its_signals_range_stays_editable(client, alice, route):
    # Levels were not bounded before; such a row must not block edits that leave them be.
    stale = make_threshold(route, signal_key="error_rate", warn=2, critical=5)
    url = f"/api/v1/thresholds/{stale.pk}"
    client.force_login(alice)
    call(client, "PATCH", url, {"min_samples": 7})
    stale.refresh_from_db()
    assert stale.min_samples == 7
    response = call(client, "PATCH", url, {"warn": 3}, expect_status=400)
    assert {e["field"] for e in response.json()["errors"]} >= {"warn"}


@pytest.mark.django_db
def test_a_patch_of_a_related_field_alone_is_saved(client, alice, route):
    threshold = make_threshold(route)
    client.force_login(alice)
    call(client, "PATCH", f"/api/v1/thresholds/{threshold.pk}", {"environment": "staging"})
    threshold.refresh_from_db()
    assert threshold.environment.slug == "staging"
    assert threshold.history.count() == 2


@pytest.mark.django_db
def test_at_most_100_unknown_keys_are_reported(client, alice, route):
    client.force_login(alice)
    body = {f"typo_{n}": 1 for n in range(5000)}
    response = call(client, "POST", "/api/v1/thresholds", body, expect_status=400)
    errors = response.json()["errors"]
    assert sum(e["message"] == "unknown field" for e in errors) == 100
    assert len(errors) < 120  # and the body's own fields' errors (route is required, ...)
