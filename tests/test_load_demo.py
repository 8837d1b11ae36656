from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from signals_app.models import Baseline, Change, ContentItem, Reading, Route, Threshold


def counts():
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_app_config("signals_app").get_models()
    }


def load_demo():
    out = StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_load_demo_twice_leaves_every_count_unchanged():
    load_demo()
    first = counts()
    output = load_demo()
    assert counts() == first
    assert "(0 new)" in output


@pytest.mark.django_db
def test_load_demo_builds_the_documented_registry():
    load_demo()
    routes = Route.objects.exclude(service__slug="content")  # the content source's route
    assert set(routes.values_list("service__slug", flat=True)) == {"blog", "search"}
    assert routes.count() == 6
    assert not Route.objects.filter(expected_result="").exists()
    assert not Route.objects.filter(rollback_notes__isnull=True).exists()
    assert Threshold.objects.count() == 12
    assert Baseline.objects.filter(active=True, cache_segment="miss").count() == 1
    assert Change.objects.filter(release="1.8.0").exists()


@pytest.mark.django_db
def test_demo_readings_have_a_plausible_cache_mix():
    load_demo()
    posts = Reading.objects.filter(route__path="/posts/{slug}", signal__key="response_time_ms")
    hits = posts.filter(cache_status="HIT").count()
    assert 0.6 < hits / posts.count() < 0.85
    assert not Reading.objects.filter(route__method="POST", cache_status="HIT").exists()


@pytest.mark.django_db
def test_demo_baseline_is_the_state_before_the_regression():
    load_demo()
    baseline = Baseline.objects.get(active=True)
    regression = Change.objects.get(release="1.8.0")
    assert baseline.window_end <= regression.applied_at
    assert baseline.count > 100
    assert baseline.p50 < baseline.p95 < baseline.p99


@pytest.mark.django_db
def test_load_demo_imports_the_content_samples_for_carol_to_review():
    output = load_demo()
    item = ContentItem.objects.get(reference="anp-ref-022359-4690")
    assert item.quality == 80
    assert "demo content: created 1, updated 0, unchanged 0, failed 0" in output
    assert ContentItem.can_be_reviewed_by(get_user_model().objects.get(username="carol"))
    assert "demo content: created 0, updated 0, unchanged 1, failed 0" in load_demo()


def roles_and_members():
    from django.contrib.auth.models import Group

    return {
        group.name: (
            set(group.permissions.values_list("codename", flat=True)),
            set(group.user_set.values_list("username", flat=True)),
        )
        for group in Group.objects.all()
    }


@pytest.mark.django_db
def test_load_demo_puts_the_owners_and_the_reviewer_in_their_roles():
    from signals_app.roles import ROLES

    output = load_demo()
    assert "roles: Owners:" in output
    groups = roles_and_members()
    assert groups["Owners"] == (set(ROLES["Owners"]), {"alice", "bob", "dana", "erik"})
    assert groups["Reviewers"] == (set(ROLES["Reviewers"]), {"carol"})
    load_demo()
    assert roles_and_members() == groups


@pytest.mark.django_db
def test_a_demo_owner_with_a_password_can_curate_her_thresholds_in_the_admin(client):
    load_demo()
    alice = get_user_model().objects.get(username="alice")
    alice.set_password("pw-for-tests-only")
    alice.save()
    assert client.login(username="alice", password="pw-for-tests-only")
    index = client.get("/admin/").content.decode()
    assert "You don’t have permission" not in index
    assert "/admin/signals_app/threshold/" in index
    threshold = Threshold.objects.filter(route__service__slug="blog").first()
    assert client.get(f"/admin/signals_app/threshold/{threshold.pk}/change/").status_code == 200
    theirs = Threshold.objects.filter(route__service__slug="search").first()
    # Another team's threshold she reads, read-only.
    response = client.get(f"/admin/signals_app/threshold/{theirs.pk}/change/")
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False


@pytest.mark.django_db
def test_the_demo_regression_shows_where_the_readme_says():
    from signals_app.evaluation import compare_change, compare_to_baseline

    load_demo()
    regression = Change.objects.get(release="1.8.0")
    assert compare_change(regression)["verdict"] == "regressed"
    by_baseline = compare_to_baseline(regression.route)
    assert (by_baseline["verdict"], by_baseline["reason"]) == ("inconclusive", "too_few_samples")
    assert compare_to_baseline(regression.route, minutes=120)["verdict"] == "regressed"
