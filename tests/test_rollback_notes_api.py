"""/api/v1/rollback-notes: the rollback of a route lives next to it, owned by its team."""

from datetime import UTC, datetime, timedelta

import pytest

from signals_app.models import Change, RollbackNote
from tests.api import bearer, call
from tests.builders import environment, make_key, make_route

URL = "/api/v1/rollback-notes"


@pytest.fixture
def blog_route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def blog_change(blog_route):
    return Change.objects.create(
        route=blog_route, environment=environment(), variable="TTL", applied_at=datetime.now(UTC)
    )


@pytest.mark.django_db
def test_an_owner_writes_a_rollback_note_that_defaults_to_the_routes_owner(
    client, alice, blog_route, blog_change
):
    client.force_login(alice)
    body = call(
        client,
        "POST",
        URL,
        {
            "route": blog_route.pk,
            "change": blog_change.pk,
            "steps": "revert TTL",
            "command": "make x",
        },
        expect_status=201,
    ).json()
    assert body["owner"] == "Blog team"
    assert body["rehearsed_by"] is None


@pytest.mark.django_db
def test_a_rehearsal_records_who_rehearsed(client, bob, blog_route):
    note = RollbackNote.objects.create(route=blog_route, steps="revert")
    client.force_login(bob)
    rehearsal = {"rehearsed_at": "2026-11-25T09:00:00Z", "rehearsal_outcome": "passed"}
    # Who rehearsed comes from the request: a body naming someone is refused.
    call(client, "PATCH", f"{URL}/{note.pk}", {**rehearsal, "rehearsed_by": 1},
         expect_status=400, expect_field="rehearsed_by")  # fmt: skip
    body = call(client, "PATCH", f"{URL}/{note.pk}", rehearsal).json()
    assert body["rehearsed_by"] == "bob"
    note.refresh_from_db()
    assert note.rehearsed_by.username == "bob"


@pytest.mark.django_db
@pytest.mark.parametrize("rehearsed_at", ["2030-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_a_rehearsal_cannot_lie_ahead_or_before_2000(client, bob, blog_route, rehearsed_at):
    # 2030 kept the route off the "rehearsal due" list for years.
    note = RollbackNote.objects.create(route=blog_route, steps="revert")
    client.force_login(bob)
    body = {"rehearsed_at": rehearsed_at, "rehearsal_outcome": "passed"}
    response = call(client, "PATCH", f"{URL}/{note.pk}", body, expect_status=400,
                    expect_field="rehearsed_at")  # fmt: skip
    assert "at most 5 minutes ahead" in response.json()["errors"][0]["message"]
    note.refresh_from_db()
    assert note.rehearsed_at is None
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    call(client, "PATCH", f"{URL}/{note.pk}", {**body, "rehearsed_at": soon})


@pytest.mark.django_db
def test_a_rehearsal_needs_both_when_and_outcome(client, bob, blog_route):
    note = RollbackNote.objects.create(route=blog_route, steps="revert")
    client.force_login(bob)
    call(client, "PATCH", f"{URL}/{note.pk}", {"rehearsal_outcome": "passed"}, expect_status=400,
         expect_field="rehearsal_outcome")  # fmt: skip


@pytest.mark.django_db
def test_the_change_must_be_on_the_same_route(client, alice, blog, blog_change):
    other = make_route(blog, "/tags/{tag}")
    client.force_login(alice)
    payload = {"route": other.pk, "change": blog_change.pk, "steps": "revert"}
    response = call(client, "POST", URL, payload, expect_status=400, expect_field="change")
    (error,) = response.json()["errors"]
    assert (error["received"], error["expected"]) == (
        blog_change.pk,
        f"a change of route {other.pk}, or null",
    )


@pytest.mark.django_db
def test_moving_a_note_away_from_its_change_blames_the_route_sent(
    client, alice, blog, blog_route, blog_change
):
    other = make_route(blog, "/tags/{tag}")
    note = RollbackNote.objects.create(route=blog_route, change=blog_change, steps="revert")
    client.force_login(alice)
    response = call(client, "PATCH", f"{URL}/{note.pk}", {"route": other.pk}, expect_status=400)
    (error,) = response.json()["errors"]
    assert (error["field"], error["received"]) == ("route", other.pk)
    assert error["message"] == f"the note's change {blog_change.pk} is on route {blog_route.pk}"
    assert error["expected"] == (
        f"route {blog_route.pk} (the route of change {blog_change.pk}), or change: null"
    )


@pytest.mark.django_db
def test_outsider_cannot_write_or_edit_rollback_notes(client, mallory, blog_route):
    note = RollbackNote.objects.create(route=blog_route, steps="revert")
    client.force_login(mallory)
    call(client, "POST", URL, {"route": blog_route.pk, "steps": "x"}, expect_status=403)
    call(client, "PATCH", f"{URL}/{note.pk}", {"steps": "x"}, expect_status=403)


@pytest.mark.django_db
def test_owner_cannot_name_a_foreign_team_as_the_notes_owner(
    client, alice, blog_route, search_team
):
    client.force_login(alice)
    payload = {"route": blog_route.pk, "steps": "x", "owner": search_team.name}
    call(client, "POST", URL, payload, expect_status=403)


@pytest.mark.django_db
def test_people_list_and_filter_rollback_notes(
    client, mallory, blog_route, blog_change, django_assert_num_queries
):
    RollbackNote.objects.create(route=blog_route, change=blog_change, steps="a")
    RollbackNote.objects.create(route=blog_route, steps="b")
    client.force_login(mallory)
    # session, user, notes with owner and rehearser
    with django_assert_num_queries(3):
        assert len(call(client, "GET", URL).json()["results"]) == 2
    only = call(client, "GET", f"{URL}?change={blog_change.pk}").json()["results"]
    assert [n["steps"] for n in only] == ["a"]


@pytest.mark.django_db
def test_a_service_key_cannot_read_rollback_notes(client, blog):
    call(client, "GET", URL, expect_status=403, **bearer(make_key(blog)))
