"""Admin actions that capture baselines: on routes and on baselines, own routes only."""

from datetime import timedelta

import pytest
from django.contrib.admin import helpers
from django.urls import reverse
from django.utils import timezone

from signals_app.models import Baseline
from tests.builders import environment, give_role, make_readings, make_route, signal


@pytest.fixture
def alice_owner(alice, blog_team):
    return give_role(alice)


@pytest.fixture
def routes(blog, search):
    mine, theirs = make_route(blog, "/posts/{slug}"), make_route(search, "/search")
    for route in (mine, theirs):
        make_readings(route, [100.0] * 10, start=timezone.now() - timedelta(minutes=1))
    return mine, theirs


def act(client, model, action, objects):
    return client.post(
        reverse(f"admin:signals_app_{model}_changelist"),
        {"action": action, helpers.ACTION_CHECKBOX_NAME: [o.pk for o in objects]},
        follow=True,
    )


@pytest.mark.django_db
def test_an_owner_captures_baselines_of_selected_routes(client, alice_owner, routes):
    mine, theirs = routes
    client.force_login(alice_owner)
    response = act(client, "route", "capture_baselines", [mine, theirs])
    assert response.status_code == 200
    message = str(next(iter(response.context["messages"])))
    assert message.startswith("Captured 2 baselines")  # all + miss of response_time_ms
    assert "1 not yours, left alone." in message
    assert set(Baseline.objects.values_list("route", "cache_segment")) == {
        (mine.pk, "all"),
        (mine.pk, "miss"),
    }
    assert Baseline.objects.filter(captured_by=alice_owner).count() == 2


@pytest.mark.django_db
def test_recapturing_a_baseline_keeps_the_old_one_as_history(client, alice_owner, routes):
    mine, _ = routes
    old = Baseline.capture(mine, signal(), environment(), "miss")
    client.force_login(alice_owner)
    act(client, "baseline", "recapture", [old])
    old.refresh_from_db()
    new = Baseline.objects.get(active=True)
    assert (old.active, new.cache_segment, new.count) == (False, "miss", 10)
