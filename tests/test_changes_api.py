"""/api/v1/changes: owners record one changed variable on their routes."""

from datetime import UTC, datetime

import pytest

from signals_app.models import Change, RollbackNote
from tests.api import bearer, call
from tests.builders import environment, make_key, make_route

URL = "/api/v1/changes"


@pytest.fixture
def blog_route(blog):
    return make_route(blog, "/posts/{slug}")


def payload(route_obj, **fields):
    values = {
        "route": route_obj.pk,
        "environment": "production",
        "variable": "CDN TTL 60 -> 300 s",
        "summary": "longer edge cache for posts",
        "applied_at": "2026-11-20T10:00:00Z",
        "release": "1.8.0",
        "cache_cleared": "edge",
    }
    values.update(fields)
    return values


@pytest.mark.django_db
def test_an_owner_records_a_change_and_is_recorded_as_its_author(client, alice, blog_route):
    client.force_login(alice)
    # Who did it comes from the request: a body naming someone else is refused.
    call(client, "POST", URL, payload(blog_route, created_by="bob"), expect_status=400,
         expect_field="created_by")  # fmt: skip
    body = call(client, "POST", URL, payload(blog_route), expect_status=201).json()
    change = Change.objects.get()
    assert change.created_by.username == "alice"
    assert body["created_by"] == "alice"
    assert change.applied_at == datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.mark.django_db
def test_outsider_cannot_record_a_change_on_a_route_they_do_not_own(client, mallory, blog_route):
    client.force_login(mallory)
    call(client, "POST", URL, payload(blog_route), expect_status=403)


@pytest.mark.django_db
def test_outsider_cannot_edit_a_change(client, mallory, blog_route):
    change = Change.objects.create(
        route=blog_route, environment=environment(), variable="x", applied_at=datetime.now(UTC)
    )
    client.force_login(mallory)
    call(client, "PATCH", f"{URL}/{change.pk}", {"summary": "y"}, expect_status=403)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"), [("applied_at", "soon"), ("variable", ""), ("environment", "qa")]
)
def test_it_rejects_bad_values(client, alice, blog_route, field, value):
    client.force_login(alice)
    call(client, "POST", URL, payload(blog_route, **{field: value}), expect_status=400,
         expect_field=field)  # fmt: skip


@pytest.mark.django_db
def test_people_list_changes_filtered_by_time(
    client, mallory, blog_route, django_assert_num_queries
):
    for day in (1, 10, 20):
        Change.objects.create(
            route=blog_route,
            environment=environment(),
            variable=f"day {day}",
            applied_at=datetime(2026, 11, day, tzinfo=UTC),
        )
    client.force_login(mallory)
    # session, user, changes with environment and author
    with django_assert_num_queries(3):
        assert len(call(client, "GET", URL).json()["results"]) == 3
    since = call(client, "GET", URL + "?applied_after=2026-11-05T00:00:00Z").json()["results"]
    assert {c["variable"] for c in since} == {"day 10", "day 20"}


@pytest.mark.django_db
def test_a_service_key_cannot_record_changes(client, blog, blog_route):
    call(client, "POST", URL, payload(blog_route), expect_status=403, **bearer(make_key(blog)))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "applied_at", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z"]
)
def test_an_implausible_applied_at_is_refused_naming_the_range(
    client, alice, blog_route, applied_at
):
    # Year 1 overflowed applied_at - 60 minutes on the route page, the change page and the
    # comparison of everyone who opened them.
    client.force_login(alice)
    response = call(
        client, "POST", URL, payload(blog_route, applied_at=applied_at), expect_status=400,
        expect_field="applied_at",
    )  # fmt: skip
    (error,) = response.json()["errors"]
    assert "from 2000-01-01 to 2100-01-01" in error["message"]
    assert error["received"] == applied_at
    assert response.json()["retryable"] is False
    assert not Change.objects.exists()


@pytest.mark.django_db
def test_a_planned_change_may_lie_ahead(client, alice, blog_route):
    client.force_login(alice)
    call(client, "POST", URL, payload(blog_route, applied_at="2099-12-31T23:00:00Z"),
         expect_status=201)  # fmt: skip


@pytest.mark.django_db
def test_a_change_with_rollback_notes_cannot_move_to_another_route(client, alice, blog, blog_route):
    # The note would stay on the first route while its change moved.
    other = make_route(blog, "/tags/{tag}")
    change = Change.objects.create(
        route=blog_route, environment=environment(), variable="x", applied_at=datetime.now(UTC)
    )
    note = RollbackNote.objects.create(route=blog_route, change=change, steps="revert")
    client.force_login(alice)
    url = f"{URL}/{change.pk}"
    response = call(client, "PATCH", url, {"route": other.pk}, expect_status=400,
                    expect_field="route")  # fmt: skip
    (error,) = response.json()["errors"]
    assert error["message"] == (
        f"this change's rollback notes {note.pk} (route {blog_route.pk}) would be left on "
        f"another route: clear their change first, move the change to route {other.pk}, then "
        "move the notes and set their change again"
    )
    assert error["received"] == other.pk
    assert error["expected"] == f"route {blog_route.pk} while rollback notes name this change"

    change.refresh_from_db()
    assert change.route == blog_route
    # Its own route is no move; and once the note goes with it, the change may follow.
    call(client, "PATCH", url, {"route": blog_route.pk, "summary": "y"})
    call(client, "PATCH", f"/api/v1/rollback-notes/{note.pk}", {"route": other.pk, "change": None})
    call(client, "PATCH", url, {"route": other.pk})


@pytest.mark.django_db
def test_a_change_moves_with_its_notes_as_the_error_says(client, alice, blog, blog_route):
    # The error's advice, followed step by step, works ("move the notes first" could not:
    # a note cannot move ahead of its change either).
    other = make_route(blog, "/tags/{tag}")
    change = Change.objects.create(
        route=blog_route, environment=environment(), variable="x", applied_at=datetime.now(UTC)
    )
    note = RollbackNote.objects.create(route=blog_route, change=change, steps="revert")
    client.force_login(alice)
    notes = "/api/v1/rollback-notes"
    call(client, "PATCH", f"{notes}/{note.pk}", {"change": None}, expect_status=200)
    call(client, "PATCH", f"{URL}/{change.pk}", {"route": other.pk}, expect_status=200)
    call(client, "PATCH", f"{notes}/{note.pk}", {"route": other.pk}, expect_status=200)
    call(client, "PATCH", f"{notes}/{note.pk}", {"change": change.pk}, expect_status=200)
    note.refresh_from_db()
    assert (note.route_id, note.change_id) == (other.pk, change.pk)
