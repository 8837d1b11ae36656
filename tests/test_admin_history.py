"""Audit history: every edit says who, when and old → new, from the object's admin page."""

from datetime import timedelta

import pytest
from django import forms
from django.urls import reverse
from django.utils import timezone

from signals_app.models import Baseline, Change, ContentItem, RollbackNote, Threshold
from tests.builders import (
    environment,
    give_role,
    make_route,
    make_threshold,
    make_user,
    signal,
    threshold_form,
)


@pytest.fixture
def owner_client(client, alice, blog_team):
    give_role(alice)
    client.force_login(alice)
    return client


def history(client, obj):
    url = reverse(f"admin:signals_app_{obj._meta.model_name}_history", args=[obj.pk])
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def edit(client, obj, **changes):
    """Post the object's admin form back with some fields changed."""
    url = reverse(f"admin:signals_app_{obj._meta.model_name}_change", args=[obj.pk])
    form = client.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.SplitDateTimeField):
            value = timezone.localtime(value) if value else None
            data[f"{name}_0"] = f"{value:%Y-%m-%d}" if value else ""
            data[f"{name}_1"] = f"{value:%H:%M:%S.%f}" if value else ""
            continue
        data[name] = "" if value is None else value
    data.update(changes)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    return response


@pytest.mark.django_db
def test_threshold_history_shows_who_when_and_old_to_new(owner_client, blog):
    threshold = make_threshold(make_route(blog), warn=300, critical=800)
    edit(owner_client, threshold, warn="350")
    html = history(owner_client, threshold)
    assert "alice" in html
    assert "300.0" in html and "350.0" in html
    assert "&rarr;" in html
    assert "updated_at" not in html  # noise left out of the diff
    record = threshold.history.first()
    assert record.history_user.username == "alice"
    assert record.history_date <= timezone.now()


@pytest.mark.django_db
def test_threshold_edited_on_the_route_page_is_in_its_history(owner_client, blog):
    route = make_route(blog)
    threshold = make_threshold(route, warn=300, critical=800)
    url = reverse("admin:signals_app_route_change", args=[route.pk])
    data = {
        "method": route.method,
        "path": route.path,
        "expected_input": "",
        "expected_result": route.expected_result,
        "user_impact": "",
        "notes": "",
        "thresholds-TOTAL_FORMS": 1,
        "thresholds-INITIAL_FORMS": 1,
        "thresholds-0-id": threshold.pk,
        "thresholds-0-signal": threshold.signal_id,
        "thresholds-0-environment": threshold.environment_id,
        "thresholds-0-statistic": "p95",
        "thresholds-0-cache_segment": "all",
        "thresholds-0-window_minutes": 15,
        "thresholds-0-warn": 300,
        "thresholds-0-critical": 700,
        "thresholds-0-min_samples": 5,
        "thresholds-0-sustain_minutes": 0,
        "rollback_notes-TOTAL_FORMS": 0,
        "rollback_notes-INITIAL_FORMS": 0,
    }
    assert owner_client.post(url, data).status_code == 302
    html = history(owner_client, threshold)
    assert "800.0" in html and "700.0" in html
    assert threshold.history.first().history_user.username == "alice"


@pytest.mark.django_db
def test_baseline_history_records_deactivation(owner_client, blog):
    now = timezone.now()
    baseline = Baseline.objects.create(
        route=make_route(blog),
        signal=signal(),
        environment=environment(),
        window_start=now - timedelta(hours=2),
        window_end=now - timedelta(hours=1),
        p50=100,
        p95=200,
    )
    edit(owner_client, baseline, active="", note="superseded")
    html = history(owner_client, baseline)
    assert "superseded" in html
    assert "alice" in html


@pytest.mark.django_db
def test_change_history_records_the_edit(owner_client, blog):
    change = Change.objects.create(
        route=make_route(blog),
        environment=environment(),
        variable="cache ttl 60s",
        applied_at=timezone.now(),
    )
    edit(owner_client, change, variable="cache ttl 300s")
    html = history(owner_client, change)
    assert "cache ttl 60s" in html and "cache ttl 300s" in html


@pytest.mark.django_db
def test_rollback_rehearsal_is_in_the_notes_history(owner_client, alice, blog):
    note = RollbackNote.objects.create(route=make_route(blog), steps="redeploy 1.7.8")
    note.record_rehearsal(alice, RollbackNote.Outcome.PASSED)
    html = history(owner_client, note)
    assert "passed" in html
    assert "rehearsal_outcome" in html or "Rehearsal outcome" in html


@pytest.mark.django_db
def test_content_review_status_history_is_visible(client):
    root = make_user("root", is_staff=True, is_superuser=True)
    item = ContentItem.objects.create(reference="post-1", title="A post")
    item.review_status = ContentItem.ReviewStatus.REVIEWED
    item._history_user = root
    item.save()
    client.force_login(root)
    html = history(client, item)
    assert "needs_review" in html or "needs review" in html
    assert "reviewed" in html
    assert "root" in html


def version_url(obj):
    record = obj.history.earliest("history_date")
    return reverse(
        f"admin:signals_app_{obj._meta.model_name}_simple_history", args=[obj.pk, record.pk]
    )


@pytest.mark.django_db
def test_owner_cannot_revert_another_teams_threshold(owner_client, blog, search):
    # simple_history's version page asked only for the view permission: its "Revert" saved
    # another team's threshold, moved to one of alice's routes with her levels.
    mine = make_route(blog)
    theirs = make_threshold(make_route(search), warn=300, critical=800)
    url = version_url(theirs)
    assert owner_client.get(url).status_code == 403
    response = owner_client.post(url, threshold_form(theirs, route=mine.pk, warn=1, critical=2))
    assert response.status_code == 403
    theirs.refresh_from_db()
    assert (theirs.route.service.slug, theirs.warn, theirs.critical) == ("search", 300, 800)
    assert version_url(theirs) not in history(owner_client, theirs)  # no link to it


@pytest.mark.django_db
def test_owner_reverts_own_threshold_to_a_past_version(owner_client, blog):
    threshold = make_threshold(make_route(blog), warn=300, critical=800)
    edit(owner_client, threshold, warn="350")
    url = version_url(threshold)
    assert url in history(owner_client, threshold)
    assert owner_client.get(url).status_code == 200
    response = owner_client.post(url, threshold_form(threshold, warn=300))
    assert response.status_code == 302
    threshold.refresh_from_db()
    assert threshold.warn == 300


@pytest.mark.django_db
def test_a_deleted_thresholds_past_version_reads_and_is_not_saved_back(admin_client, blog):
    # Refusing every version whose row is gone refused superusers too (a 403 for a page
    # that reads): it reads, and a POST there (which would bring it back) is refused.
    threshold = make_threshold(make_route(blog), warn=300, critical=800)
    url = version_url(threshold)
    fields = threshold_form(threshold)
    threshold.delete()
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, fields).status_code == 403
    assert not Threshold.objects.exists()
