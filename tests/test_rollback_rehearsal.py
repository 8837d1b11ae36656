"""Rollback notes: a rehearsal in staging records who, when and the outcome; the route
list finds routes whose rollback was never rehearsed or not recently."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from signals_app.models import RollbackNote, Route
from tests.builders import give_role, make_route


def rehearse(note, days_ago, outcome="passed", user=None):
    note.record_rehearsal(user, outcome, when=timezone.now() - timedelta(days=days_ago))


@pytest.fixture
def routes(blog):
    """never: no note; failed: only a failed rehearsal; fresh: 10 days; stale: 120 days."""
    never = make_route(blog, "/never")
    failed = make_route(blog, "/failed")
    fresh = make_route(blog, "/fresh")
    stale = make_route(blog, "/stale")
    rehearse(RollbackNote.objects.create(route=failed, steps="x"), 5, "failed")
    rehearse(RollbackNote.objects.create(route=fresh, steps="x"), 10)
    rehearse(RollbackNote.objects.create(route=fresh, steps="y"), 200)
    rehearse(RollbackNote.objects.create(route=stale, steps="x"), 120)
    RollbackNote.objects.create(route=stale, steps="never rehearsed")
    return {"never": never, "failed": failed, "fresh": fresh, "stale": stale}


def paths(queryset):
    return {route.path for route in queryset}


@pytest.mark.django_db
def test_record_rehearsal_keeps_who_when_and_outcome(alice, blog):
    note = RollbackNote.objects.create(route=make_route(blog), steps="redeploy 1.7.8")
    note.record_rehearsal(alice, RollbackNote.Outcome.FAILED)
    note.refresh_from_db()
    assert note.rehearsed_by == alice
    assert note.rehearsal_outcome == "failed"
    assert timezone.now() - note.rehearsed_at < timedelta(seconds=5)


@pytest.mark.django_db
def test_only_a_passed_rehearsal_counts(routes):
    assert paths(Route.objects.rehearsal_missing()) == {"/never", "/failed"}


@pytest.mark.django_db
def test_the_latest_passed_rehearsal_decides_staleness(routes):
    assert paths(Route.objects.rehearsal_stale(90)) == {"/stale"}
    assert paths(Route.objects.rehearsal_due(90)) == {"/never", "/failed", "/stale"}
    assert paths(Route.objects.rehearsal_due(365)) == {"/never", "/failed"}


@pytest.fixture
def owner_client(client, alice, blog_team):
    give_role(alice)
    client.force_login(alice)
    return client


def changelist(client, **params):
    response = client.get(reverse("admin:signals_app_route_changelist"), params)
    assert response.status_code == 200
    return paths(response.context["cl"].result_list)


@pytest.mark.django_db
def test_route_list_filters_routes_without_a_rehearsed_note(owner_client, routes):
    assert changelist(owner_client, rehearsal="missing") == {"/never", "/failed"}


@pytest.mark.django_db
def test_route_list_filters_rehearsals_older_than_the_setting(owner_client, routes, settings):
    assert changelist(owner_client, rehearsal="stale") == {"/stale"}
    assert changelist(owner_client, rehearsal="due") == {"/never", "/failed", "/stale"}
    settings.DQ_REHEARSAL_MAX_AGE_DAYS = 7
    assert changelist(owner_client, rehearsal="stale") == {"/stale", "/fresh"}


@pytest.mark.django_db
def test_filter_names_the_configured_age(owner_client, routes, settings):
    settings.DQ_REHEARSAL_MAX_AGE_DAYS = 30
    html = owner_client.get(reverse("admin:signals_app_route_changelist")).content.decode()
    assert "older than 30 days" in html


@pytest.mark.django_db
def test_rehearsal_action_records_who_when_and_outcome(owner_client, alice, blog):
    note = RollbackNote.objects.create(route=make_route(blog), steps="redeploy")
    response = owner_client.post(
        reverse("admin:signals_app_rollbacknote_changelist"),
        {"action": "rehearsed_passed", "_selected_action": [note.pk]},
    )
    assert response.status_code == 302
    note.refresh_from_db()
    assert (note.rehearsed_by, note.rehearsal_outcome) == (alice, "passed")
    assert note.history.first().history_user == alice


@pytest.mark.django_db
def test_rehearsal_action_leaves_other_owners_notes_alone(owner_client, search):
    theirs = RollbackNote.objects.create(route=make_route(search), steps="redeploy")
    owner_client.post(
        reverse("admin:signals_app_rollbacknote_changelist"),
        {"action": "rehearsed_failed", "_selected_action": [theirs.pk]},
    )
    theirs.refresh_from_db()
    assert theirs.rehearsed_at is None


@pytest.mark.django_db
def test_rehearsal_fields_cannot_be_typed_in(owner_client, blog):
    note = RollbackNote.objects.create(route=make_route(blog), steps="redeploy")
    url = reverse("admin:signals_app_rollbacknote_change", args=[note.pk])
    form = owner_client.get(url).context["adminform"].form
    assert not {"rehearsed_at", "rehearsed_by", "rehearsal_outcome"} & set(form.fields)
