"""Owners change thresholds, baselines, changes and rollback notes of their routes only."""

from datetime import timedelta

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone

from signals_app.models import (
    Baseline,
    Change,
    EvaluationRun,
    Incident,
    Notification,
    Reading,
    RollbackNote,
    Route,
    Threshold,
)
from tests.builders import (
    environment,
    give_role,
    make_readings,
    make_route,
    make_threshold,
    make_user,
    signal,
    threshold_form,
)
from tests.threads import evaluation_lock_held_elsewhere


@pytest.fixture
def alice_owner(alice, blog_team):
    return give_role(alice)


@pytest.fixture
def blog_route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def search_route(search):
    return make_route(search, "/search")


def change_url(obj):
    return reverse(f"admin:signals_app_{obj._meta.model_name}_change", args=[obj.pk])


def make_owned_objects(route):
    """One threshold, baseline, change and rollback note on `route`."""
    now = timezone.now()
    return {
        "threshold": make_threshold(route),
        "baseline": Baseline.objects.create(
            route=route,
            signal=signal(),
            environment=environment(),
            window_start=now - timedelta(hours=2),
            window_end=now - timedelta(hours=1),
        ),
        "change": Change.objects.create(
            route=route, environment=environment(), variable="ttl", applied_at=now
        ),
        "rollbacknote": RollbackNote.objects.create(route=route, steps="redeploy 1.7.8"),
    }


MODELS = ["threshold", "baseline", "change", "rollbacknote"]


def changelist(client, model, query=""):
    response = client.get(reverse(f"admin:signals_app_{model}_changelist") + query)
    assert response.status_code == 200
    return response


def listed(response):
    return {obj.pk for obj in response.context["cl"].result_list}


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_changelist_lists_the_owners_rows_unless_asked_for_every_teams(
    client, alice_owner, blog_route, search_route, model
):
    mine = make_owned_objects(blog_route)[model]
    theirs = make_owned_objects(search_route)[model]
    client.force_login(alice_owner)
    default = changelist(client, model)
    assert listed(default) == {mine.pk}
    assert default.context["cl"].full_result_count == 1  # not "1 result (2 total)"
    assert listed(changelist(client, model, "?mine=1")) == {mine.pk}
    every = changelist(client, model, "?mine=0")
    assert listed(every) == {mine.pk, theirs.pk}
    assert every.context["cl"].full_result_count == 2


@pytest.mark.django_db
def test_the_ownership_filter_offers_mine_selected_by_default_then_every_teams(
    client, alice_owner, blog_route
):
    client.force_login(alice_owner)
    html = changelist(client, "threshold").content.decode()
    assert '<li class="selected">\n    <a href="?mine=1">routes I own</a>' in html
    assert 'href="?mine=0">every team&#x27;s routes</a>' in html
    html = changelist(client, "threshold", "?mine=0").content.decode()
    assert '<li class="selected">\n    <a href="?mine=0">' in html


@pytest.mark.django_db
def test_an_unknown_ownership_value_is_the_admins_flagged_list(client, alice_owner, blog_route):
    client.force_login(alice_owner)
    response = client.get(reverse("admin:signals_app_threshold_changelist") + "?mine=2")
    assert response.status_code == 302
    assert response.url.endswith("?e=1")


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_owner_reads_another_teams_row_on_its_view_only_page(
    client, alice_owner, search_route, model
):
    theirs = make_owned_objects(search_route)[model]
    client.force_login(alice_owner)
    response = client.get(change_url(theirs))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False
    html = response.content.decode()
    assert 'name="_save"' not in html
    assert 'name="_continue"' not in html
    assert reverse(f"admin:signals_app_{model}_delete", args=[theirs.pk]) not in html
    assert '<div class="readonly">' in html


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_owner_cannot_save_another_teams_row(client, alice_owner, blog_route, search_route, model):
    theirs = make_owned_objects(search_route)[model]
    client.force_login(alice_owner)
    # Her own row's form, posted to theirs: moving it to her route is what it would do.
    form = client.get(change_url(make_owned_objects(blog_route)[model])).context["adminform"]
    data = dict.fromkeys(form.form.fields, "")
    data.update(route=blog_route.pk, _save="Save")
    response = client.post(change_url(theirs), data)
    assert response.status_code == 403
    theirs.refresh_from_db()
    assert theirs.route_id == search_route.pk


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_owner_reads_another_teams_rows_history(client, alice_owner, search_route, model):
    theirs = make_owned_objects(search_route)[model]
    theirs.save()
    client.force_login(alice_owner)
    url = reverse(f"admin:signals_app_{model}_history", args=[theirs.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert len(response.context["page_obj"]) == 2
    assert response.context["revert_disabled"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_own_rows_page_is_editable_as_before(client, alice_owner, blog_route, model):
    mine = make_owned_objects(blog_route)[model]
    client.force_login(alice_owner)
    response = client.get(change_url(mine))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is True
    assert 'name="_save"' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_outsider_cannot_delete_another_owners_row(client, alice_owner, search_route, model):
    theirs = make_owned_objects(search_route)[model]
    client.force_login(alice_owner)
    url = reverse(f"admin:signals_app_{model}_delete", args=[theirs.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert type(theirs).objects.filter(pk=theirs.pk).exists()


def act(client, model, action, objects, **extra):
    """Run a changelist action on every team's list (?mine=0), following the redirect."""
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [o.pk for o in objects], **extra}
    url = reverse(f"admin:signals_app_{model}_changelist") + "?mine=0"
    return client.post(url, data, follow=True)


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def left_alone(obj):
    return (
        f"Left alone: 1 selected {obj._meta.verbose_name} on another team's routes; "
        "you change only your own routes' rows."
    )


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_the_delete_action_leaves_another_teams_rows_and_says_so(
    client, alice_owner, blog_route, search_route, model
):
    mine = make_owned_objects(blog_route)[model]
    theirs = make_owned_objects(search_route)[model]
    client.force_login(alice_owner)
    confirm = act(client, model, "delete_selected", [mine, theirs])
    assert confirm.status_code == 200
    assert list(confirm.context["queryset"]) == [mine]  # the page asks about hers only
    assert messages_of(confirm) == [left_alone(theirs)]
    done = act(client, model, "delete_selected", [mine], post="yes")
    assert done.status_code == 200
    assert not type(mine).objects.filter(pk=mine.pk).exists()
    assert type(theirs).objects.filter(pk=theirs.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "action"),
    [
        ("threshold", "delete_selected"),
        ("baseline", "delete_selected"),
        ("baseline", "recapture"),
        ("change", "delete_selected"),
        ("rollbacknote", "delete_selected"),
        ("rollbacknote", "rehearsed_passed"),
        ("rollbacknote", "rehearsed_failed"),
    ],
)
def test_no_action_runs_on_another_teams_rows(client, alice_owner, search_route, model, action):
    theirs = make_owned_objects(search_route)[model]
    make_readings(search_route, [100.0] * 5)  # what a capture would capture
    before = list(type(theirs).objects.values())
    client.force_login(alice_owner)
    response = act(client, model, action, [theirs], post="yes")
    assert response.status_code == 200
    # Only this message: the action itself did not run to say anything.
    assert messages_of(response) == [left_alone(theirs)]
    assert list(type(theirs).objects.values()) == before


@pytest.mark.django_db
def test_a_superusers_list_has_no_ownership_filter(admin_client, blog_route, search_route):
    make_owned_objects(blog_route), make_owned_objects(search_route)
    response = changelist(admin_client, "threshold")
    assert len(listed(response)) == 2
    assert "routes I own" not in response.content.decode()


@pytest.mark.django_db
def test_rollback_notes_change_picker_suggests_only_own_routes_changes(
    client, alice_owner, blog_route, search_route
):
    mine = make_owned_objects(blog_route)["change"]
    make_owned_objects(search_route)
    client.force_login(alice_owner)
    response = client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "signals_app",
            "model_name": "rollbacknote",
            "field_name": "change",
            "term": "",
        },
    )
    assert response.status_code == 200
    assert [int(r["id"]) for r in response.json()["results"]] == [mine.pk]


@pytest.mark.django_db
def test_outsider_cannot_edit_threshold(client, alice_owner, search_route):
    theirs = make_threshold(search_route, warn=300, critical=800)
    client.force_login(alice_owner)
    client.post(change_url(theirs), threshold_form(theirs, warn=1, critical=2))
    theirs.refresh_from_db()
    assert (theirs.warn, theirs.critical) == (300, 800)


@pytest.mark.django_db
def test_owner_edits_own_threshold(client, alice_owner, blog_route):
    mine = make_threshold(blog_route, warn=300, critical=800)
    client.force_login(alice_owner)
    response = client.post(change_url(mine), threshold_form(mine, warn=350))
    assert response.status_code == 302, response.context["adminform"].form.errors
    mine.refresh_from_db()
    assert mine.warn == 350


@pytest.mark.django_db
def test_team_member_edits_the_teams_threshold(client, bob, blog_route):
    give_role(bob)
    mine = make_threshold(blog_route, warn=300, critical=800)
    client.force_login(bob)
    response = client.post(change_url(mine), threshold_form(mine, critical=900))
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.critical == 900


@pytest.mark.django_db
def test_add_form_rejects_a_route_of_another_owner(client, alice_owner, search_route):
    client.force_login(alice_owner)
    data = threshold_form(make_threshold(make_route(search_route.service)))
    data["route"] = search_route.pk
    response = client.post(reverse("admin:signals_app_threshold_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Select a valid choice" in errors["route"][0]
    assert not Threshold.objects.filter(route=search_route).exists()


@pytest.mark.django_db
def test_add_form_offers_only_own_routes(client, alice_owner, blog_route, search_route):
    client.force_login(alice_owner)
    response = client.get(reverse("admin:signals_app_threshold_add"))
    field = response.context["adminform"].form.fields["route"]
    assert set(field.queryset) == {blog_route}


@pytest.mark.django_db
def test_route_picker_suggests_only_own_routes(client, alice_owner, blog_route, search_route):
    client.force_login(alice_owner)
    response = client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "signals_app",
            "model_name": "threshold",
            "field_name": "route",
            "term": "",
        },
    )
    assert response.status_code == 200
    assert [int(r["id"]) for r in response.json()["results"]] == [blog_route.pk]


@pytest.mark.django_db
def test_owner_adds_a_threshold_to_an_own_route(client, alice_owner, blog_route):
    client.force_login(alice_owner)
    data = {
        "route": blog_route.pk,
        "signal": signal().pk,
        "environment": environment().pk,
        "statistic": "p95",
        "cache_segment": "miss",
        "window_minutes": 15,
        "warn": 300,
        "critical": 800,
        "min_samples": 20,
        "sustain_minutes": 5,
    }
    response = client.post(reverse("admin:signals_app_threshold_add"), data)
    assert response.status_code == 302
    threshold = Threshold.objects.get(route=blog_route)
    assert threshold.direction == "higher_worse"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # 2,000,000,000 overflowed `now - window`: the clock exited, the route page 500ed.
        ("window_minutes", 2_000_000_000, "less than or equal to 10080"),
        ("window_minutes", 10081, "less than or equal to 10080"),
        ("window_minutes", 0, "greater than or equal to 1"),
        ("window_minutes", -5, "greater than or equal to 1"),
        ("sustain_minutes", 10081, "less than or equal to 10080"),
        ("min_samples", 0, "greater than or equal to 1"),
    ],
)
def test_threshold_form_keeps_window_and_sustain_within_a_week(
    client, alice_owner, blog_route, field, value, message
):
    mine = make_threshold(blog_route, warn=300, critical=800)
    before = threshold_form(mine)
    client.force_login(alice_owner)
    response = client.post(change_url(mine), threshold_form(mine, **{field: value}))
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors[field]
    assert message in error
    mine.refresh_from_db()
    assert threshold_form(mine) == before


@pytest.mark.django_db
def test_the_route_pages_threshold_rows_share_the_bounds():
    from signals_app.admin import ThresholdForm, ThresholdInline

    assert ThresholdInline.form is ThresholdForm
    form = ThresholdForm()
    assert (form.fields["window_minutes"].min_value, form.fields["window_minutes"].max_value) == (
        1,
        10080,
    )


@pytest.mark.django_db
def test_threshold_form_says_what_was_expected_when_levels_are_inverted(
    client, alice_owner, blog_route
):
    mine = make_threshold(blog_route, warn=300, critical=800)
    client.force_login(alice_owner)
    response = client.post(change_url(mine), threshold_form(mine, warn=900, critical=800))
    assert response.status_code == 200
    message = response.context["adminform"].form.errors["critical"][0]
    assert "critical must be at or above warn" in message
    assert "warn 900" in message


@pytest.mark.django_db
def test_threshold_form_refuses_levels_outside_the_signals_range(client, alice_owner, blog_route):
    mine = make_threshold(blog_route, warn=300, critical=800)
    client.force_login(alice_owner)
    response = client.post(change_url(mine), threshold_form(mine, warn=-100, critical=-50))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["warn"] == [
        "out of range for the p95 of response_time_ms: "
        "expected a finite number >= 0 and <= 1e12 (duration)."
    ]
    assert "critical" in errors
    mine.refresh_from_db()
    assert (mine.warn, mine.critical) == (300, 800)


@pytest.mark.django_db
def test_route_page_of_another_owner_is_read_only(client, alice_owner, search_route):
    make_threshold(search_route)
    client.force_login(alice_owner)
    response = client.get(change_url(search_route))
    assert response.status_code == 200
    html = response.content.decode()
    assert "You do not own this route" in html
    assert 'name="thresholds-0-warn"' not in html
    assert 'name="path"' not in html
    assert "Acknowledge" not in html


@pytest.mark.django_db
def test_outsider_cannot_save_another_owners_route_page(client, alice_owner, search_route):
    theirs = make_threshold(search_route, warn=300, critical=800)
    client.force_login(alice_owner)
    response = client.post(change_url(search_route), route_page_form(search_route, theirs, warn=1))
    assert response.status_code == 403
    theirs.refresh_from_db()
    assert theirs.warn == 300


def route_page_form(route, threshold, **threshold_changes):
    data = {
        "method": route.method,
        "path": route.path,
        "expected_input": route.expected_input,
        "expected_result": route.expected_result,
        "user_impact": route.user_impact,
        "notes": route.notes,
        "thresholds-TOTAL_FORMS": 1,
        "thresholds-INITIAL_FORMS": 1,
        "thresholds-MIN_NUM_FORMS": 0,
        "thresholds-MAX_NUM_FORMS": 1000,
        "rollback_notes-TOTAL_FORMS": 0,
        "rollback_notes-INITIAL_FORMS": 0,
        "rollback_notes-MIN_NUM_FORMS": 0,
        "rollback_notes-MAX_NUM_FORMS": 1000,
    }
    for key, value in threshold_form(threshold, **threshold_changes).items():
        data[f"thresholds-0-{key}"] = value
    data["thresholds-0-id"] = threshold.pk
    return data


@pytest.mark.django_db
def test_a_threshold_saved_out_of_range_does_not_block_the_route_page(
    client, alice_owner, blog_route
):
    # Levels were not bounded before: an untouched row must not refuse the page's save.
    stale = make_threshold(blog_route, signal_key="error_rate", warn=2, critical=5)
    client.force_login(alice_owner)
    data = route_page_form(blog_route, stale)
    data["user_impact"] = "Readers see a spinner instead of the post."
    response = client.post(change_url(blog_route), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    blog_route.refresh_from_db()
    assert blog_route.user_impact == "Readers see a spinner instead of the post."
    data = route_page_form(blog_route, stale, warn=3)
    assert client.post(change_url(blog_route), data).status_code == 200  # its levels: checked


@pytest.mark.django_db
def test_owner_edits_thresholds_inline_on_the_route_page(client, alice_owner, blog_route):
    mine = make_threshold(blog_route, warn=300, critical=800)
    client.force_login(alice_owner)
    data = route_page_form(blog_route, mine, warn=250)
    data["user_impact"] = "Readers see a spinner instead of the post."
    response = client.post(change_url(blog_route), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    mine.refresh_from_db()
    blog_route.refresh_from_db()
    assert mine.warn == 250
    assert blog_route.user_impact == "Readers see a spinner instead of the post."


@pytest.mark.django_db
def test_owner_cannot_move_a_route_to_another_team(client, alice_owner, blog_route, search):
    mine = make_threshold(blog_route)
    client.force_login(alice_owner)
    data = route_page_form(blog_route, mine)
    data.update(service=search.pk, owner=search.owner_id)
    client.post(change_url(blog_route), data)
    blog_route.refresh_from_db()
    assert (blog_route.service_id, blog_route.owner_id) != (search.pk, search.owner_id)
    assert blog_route.service.slug == "blog"


def new_route_form(service, owner, path):
    data = {"service": service.pk, "method": "GET", "path": path, "owner": owner.pk}
    for prefix in ("thresholds", "rollback_notes"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": 0,
                f"{prefix}-INITIAL_FORMS": 0,
                f"{prefix}-MIN_NUM_FORMS": 0,
                f"{prefix}-MAX_NUM_FORMS": 1000,
            }
        )
    return data


@pytest.mark.django_db
def test_owner_registers_a_route_of_their_team_in_the_admin(client, alice_owner, blog, search):
    client.force_login(alice_owner)
    add_url = reverse("admin:signals_app_route_add")
    form = client.get(add_url).context["adminform"].form
    assert [label for _, label in form.fields["owner"].choices][1:] == ["Blog team"]
    assert [label for _, label in form.fields["service"].choices][1:] == [str(blog)]

    response = client.post(add_url, new_route_form(blog, blog.owner, "/archive/{year}"))

    assert response.status_code == 302, response.context and response.context["errors"]
    assert blog.routes.filter(path="/archive/{year}", owner=blog.owner).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["new", "/new/{id}?q=1", "/new/ {id}", "#frag"])
def test_a_path_no_reading_can_name_is_refused_in_the_admin(client, alice_owner, blog, path):
    client.force_login(alice_owner)
    response = client.post(
        reverse("admin:signals_app_route_add"), new_route_form(blog, blog.owner, path)
    )
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["path"]
    assert "expected a path template starting with /" in error
    assert not Route.objects.filter(path=path).exists()


@pytest.mark.django_db
def test_a_route_registered_with_a_bad_path_stays_editable(client, alice_owner, blog):
    legacy = make_route(blog, "legacy/{id}")  # stored before paths were checked
    mine = make_threshold(legacy)
    client.force_login(alice_owner)
    data = route_page_form(legacy, mine)
    data["notes"] = "to be renamed"
    response = client.post(change_url(legacy), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    data["path"] = "legacy/{id}/"
    assert client.post(change_url(legacy), data).status_code == 200  # a new path: checked


@pytest.mark.django_db
@pytest.mark.parametrize("theirs", ["service", "owner", "both"])
def test_owner_cannot_register_a_route_for_another_team(client, alice_owner, blog, search, theirs):
    client.force_login(alice_owner)
    service = search if theirs in ("service", "both") else blog
    owner = search.owner if theirs in ("owner", "both") else blog.owner

    response = client.post(
        reverse("admin:signals_app_route_add"), new_route_form(service, owner, "/sneaky")
    )

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Route.objects.filter(path="/sneaky").exists()


@pytest.mark.django_db
def test_someone_owning_nothing_sees_no_curated_rows(client, mallory, blog_route):
    give_role(mallory)
    make_owned_objects(blog_route)
    client.force_login(mallory)
    response = client.get(reverse("admin:signals_app_threshold_changelist"))
    assert list(response.context["cl"].result_list) == []


@pytest.mark.django_db
def test_superuser_sees_and_edits_everything(client, blog_route, search_route):
    admin_user = make_user("root", is_staff=True, is_superuser=True)
    theirs = make_threshold(search_route, warn=300, critical=800)
    make_threshold(blog_route)
    client.force_login(admin_user)
    response = client.get(reverse("admin:signals_app_threshold_changelist"))
    assert len(response.context["cl"].result_list) == 2
    response = client.post(change_url(theirs), threshold_form(theirs, warn=310))
    assert response.status_code == 302
    theirs.refresh_from_db()
    assert theirs.warn == 310


@pytest.mark.django_db
def test_rollback_note_cannot_point_at_a_change_of_another_route(client, alice_owner, blog_route):
    other_route = make_route(blog_route.service, "/feed")
    change = Change.objects.create(
        route=other_route, environment=environment(), variable="ttl", applied_at=timezone.now()
    )
    client.force_login(alice_owner)
    response = client.post(
        reverse("admin:signals_app_rollbacknote_add"),
        {"route": blog_route.pk, "change": change.pk, "steps": "redeploy", "command": ""},
    )
    assert response.status_code == 200
    assert "another route" in response.context["adminform"].form.errors["change"][0]


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL locks")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_saving_the_route_page_waits_for_a_pass_that_is_writing(client, alice_owner, blog_route):
    """The form may delete thresholds after saving others: it takes the evaluation lock
    before any row lock, so it cannot deadlock with a pass (even a save that deletes
    nothing waits, which is how this test sees the order)."""
    mine = make_threshold(blog_route, warn=300, critical=800)
    client.force_login(alice_owner)
    try:
        with evaluation_lock_held_elsewhere():
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
            with pytest.raises(OperationalError, match="lock timeout"):
                client.post(change_url(blog_route), route_page_form(blog_route, mine, warn=250))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    response = client.post(change_url(blog_route), route_page_form(blog_route, mine, warn=250))
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.warn == 250


@pytest.mark.django_db
def test_evaluation_runs_cannot_be_deleted_in_the_admin(admin_client):
    run = EvaluationRun.objects.create(started_at=timezone.now(), finished_at=timezone.now())
    url = reverse("admin:signals_app_evaluationrun_delete", args=[run.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert EvaluationRun.objects.filter(pk=run.pk).exists()


# ---- deleting a route: its readings before its thresholds take the evaluation lock


def route_delete_url(route):
    return reverse("admin:signals_app_route_delete", args=[route.pk])


def delete_request(route, how):
    """The delete page's confirmation, or the changelist's delete action's."""
    if how == "page":
        return route_delete_url(route), {"post": "yes"}
    data = {"action": "delete_selected", "_selected_action": [route.pk], "post": "yes"}
    return reverse("admin:signals_app_route_changelist"), data


@pytest.mark.django_db
def test_deleting_a_route_deletes_its_readings_and_thresholds(admin_client, blog_route):
    kept = make_route(blog_route.service, "/feed")
    make_threshold(blog_route)
    make_readings(blog_route, [100.0] * 3)
    make_readings(kept, [100.0])
    response = admin_client.post(route_delete_url(blog_route), {"post": "yes"})
    assert response.status_code == 302
    assert not Route.objects.filter(pk=blog_route.pk).exists()
    assert not Threshold.objects.filter(route_id=blog_route.pk).exists()
    assert list(Reading.objects.values_list("route_id", flat=True)) == [kept.pk]


@pytest.mark.django_db
def test_the_delete_action_deletes_the_routes_readings(admin_client, blog_route, search_route):
    make_threshold(blog_route)
    make_readings(blog_route, [100.0] * 3)
    make_readings(search_route, [100.0])
    response = admin_client.post(*delete_request(blog_route, "action"))
    assert response.status_code == 302
    assert list(Route.objects.values_list("pk", flat=True)) == [search_route.pk]
    assert list(Reading.objects.values_list("route_id", flat=True)) == [search_route.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("may_delete_routes", [False, True])
def test_a_refused_route_delete_leaves_its_readings(
    client, alice_owner, blog_route, may_delete_routes
):
    # Owners may not delete routes; one who may (a permission given by hand) still may not
    # delete readings (superusers only), so Django refuses the route: no reading goes first.
    if may_delete_routes:
        alice_owner.user_permissions.add(Permission.objects.get(codename="delete_route"))
    make_readings(blog_route, [100.0] * 3)
    client.force_login(alice_owner)
    assert client.post(route_delete_url(blog_route), {"post": "yes"}).status_code == 403
    assert Reading.objects.filter(route=blog_route).count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["page", "action"])
def test_a_superuser_deletes_a_route_whose_incident_was_notified(admin_client, blog_route, how):
    # The Notification admin lets no one delete a notification; Django asked it about each
    # one the delete cascades to, and refused the whole delete (403) for everyone.
    incident = Incident.objects.create(
        threshold=make_threshold(blog_route), route=blog_route, level="warn", peak_value=1.0
    )
    Notification.objects.create(
        incident=incident, owner=blog_route.owner, event="opened", payload={}
    )
    make_readings(blog_route, [100.0] * 3)
    response = admin_client.post(*delete_request(blog_route, how))
    assert response.status_code == 302
    assert not Route.objects.filter(pk=blog_route.pk).exists()
    assert Notification.objects.get().incident_id == incident.pk  # outlives its incident
    assert not Reading.objects.exists()


@pytest.mark.django_db
def test_a_superuser_deletes_a_threshold_whose_incident_was_notified(admin_client, blog_route):
    # (Owners may not delete incidents, so not a threshold with any: its history stays.)
    threshold = make_threshold(blog_route)
    incident = Incident.objects.create(
        threshold=threshold, route=blog_route, level="warn", peak_value=1.0
    )
    Notification.objects.create(
        incident=incident, owner=blog_route.owner, event="opened", payload={}
    )
    url = reverse("admin:signals_app_threshold_delete", args=[threshold.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Threshold.objects.filter(pk=threshold.pk).exists()


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL locks")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("how", ["page", "action"])
def test_an_admin_route_delete_that_times_out_on_the_lock_loses_nothing(
    admin_client, blog_route, how
):
    """As the API's: with a pass writing (the lock held elsewhere) the delete waits, times
    out and rolls back whole, the readings included; deleting again succeeds."""
    make_threshold(blog_route)
    make_readings(blog_route, [100.0] * 3)
    url, data = delete_request(blog_route, how)
    try:
        with evaluation_lock_held_elsewhere():
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
            with pytest.raises(OperationalError, match="lock timeout"):
                admin_client.post(url, data)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert Reading.objects.filter(route=blog_route).count() == 3
    assert Threshold.objects.filter(route=blog_route).exists()
    assert admin_client.post(url, data).status_code == 302
    assert not Route.objects.filter(pk=blog_route.pk).exists()


@pytest.mark.django_db
def test_another_teams_route_page_links_to_its_rows_view_only_pages(
    client, alice_owner, search_route
):
    theirs = make_owned_objects(search_route)
    Baseline.objects.filter(pk=theirs["baseline"].pk).update(active=True)
    client.force_login(alice_owner)
    page = client.get(change_url(search_route)).content.decode()
    assert "You do not own this route" in page
    # The page's tables link each row by its name (removed when the row's page answered
    # "doesn't exist. Perhaps it was deleted?").
    labels = {"threshold": "response_time_ms", "baseline": "response_time_ms"}
    labels.update(change="ttl", rollbacknote="redeploy 1.7.8")
    for model, obj in theirs.items():
        assert f'<a href="{change_url(obj)}">{labels[model]}</a>' in page, model
        response = client.get(change_url(obj))
        assert response.status_code == 200
        assert 'name="_save"' not in response.content.decode()


@pytest.mark.django_db
def test_another_teams_route_page_rows_say_view_not_change(client, alice_owner, search_route):
    theirs = make_owned_objects(search_route)
    client.force_login(alice_owner)
    page = client.get(change_url(search_route)).content.decode()
    for model in ("threshold", "rollbacknote"):  # the inlines
        assert f'<a href="{change_url(theirs[model])}" class="inlineviewlink">View</a>' in page


@pytest.mark.django_db
def test_a_change_with_rollback_notes_cannot_move_to_another_route(client, alice_owner, blog_route):
    # Its notes would stay on the first route (the note form refuses that state itself).
    other_route = make_route(blog_route.service, "/feed")
    change = Change.objects.create(
        route=blog_route, environment=environment(), variable="ttl", applied_at=timezone.now()
    )
    note = RollbackNote.objects.create(route=blog_route, change=change, steps="redeploy")
    form = {
        "route": other_route.pk,
        "environment": change.environment_id,
        "variable": "ttl",
        "summary": "",
        "applied_at_0": change.applied_at.strftime("%Y-%m-%d"),
        "applied_at_1": change.applied_at.strftime("%H:%M:%S"),
        "release": "",
        "cache_cleared": "",
        "created_at_0": change.created_at.strftime("%Y-%m-%d"),
        "created_at_1": change.created_at.strftime("%H:%M:%S"),
    }
    client.force_login(alice_owner)
    response = client.post(change_url(change), form)
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["route"]
    assert f"rollback notes {note.pk} (route {blog_route.pk})" in error
    change.refresh_from_db()
    assert change.route == blog_route
    note.change = None
    note.save()
    assert client.post(change_url(change), form).status_code == 302
    change.refresh_from_db()
    assert change.route == other_route
