from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command

from signals_app.models import Baseline, Change, Reading, Route, Threshold


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
    assert set(Route.objects.values_list("service__slug", flat=True)) == {"blog", "search"}
    assert Route.objects.count() == 6
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
