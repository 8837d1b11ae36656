"""Delete confirmation pages count the rows of the big tables instead of listing each one.

Django's page loaded every reading a delete cascades to and wrote a line for each: a route
with a month of readings made a page of millions of lines.
"""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.timezone import now

from signals_app.models import IdempotentRequest, Incident, Reading, Route, Service
from tests.builders import (
    environment,
    give_role,
    make_readings,
    make_route,
    make_threshold,
    signal,
)


def delete_page(client, model, obj):
    return client.get(reverse(f"admin:signals_app_{model}_delete", args=[obj.pk]))


def delete_action_page(client, model, objs):
    data = {"action": "delete_selected", "_selected_action": [obj.pk for obj in objs]}
    return client.post(reverse(f"admin:signals_app_{model}_changelist"), data)


@pytest.mark.django_db
def test_a_route_delete_page_counts_its_readings_without_listing_them(admin_client, blog):
    route = make_route(blog, "/posts/{slug}")
    make_threshold(route)
    make_readings(route, [100.0] * 7)
    make_readings(make_route(blog, "/feed"), [100.0] * 2)  # not this route's
    response = delete_page(admin_client, "route", route)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Readings: 7 (not listed)" in page
    assert "<li>Readings: 7</li>" in page  # the summary
    assert "Reading: 100.0 at" not in page
    assert "Threshold: <a href=" in page  # other rows are listed as Django lists them
    assert dict(response.context["model_count"])["readings"] == 7


@pytest.mark.django_db
def test_the_route_delete_page_costs_the_same_queries_for_few_or_many_readings(admin_client, blog):
    route = make_route(blog, "/posts/{slug}")
    make_readings(route, [100.0] * 3)
    with CaptureQueriesContext(connection) as few:
        assert delete_page(admin_client, "route", route).status_code == 200
    make_readings(route, [100.0] * 300)
    with CaptureQueriesContext(connection) as many:
        response = delete_page(admin_client, "route", route)
    assert "Readings: 303 (not listed)" in response.content.decode()
    assert len(many) == len(few)


@pytest.mark.django_db
def test_the_service_delete_page_costs_the_same_queries_for_few_or_many_rows(admin_client, blog):
    # Each threshold's line names its route, service, signal and environment, an incident's
    # its threshold's: Django's
    # collector fetched them one query per row (8,848 queries for a service of 1,000 routes).
    make_threshold(make_route(blog, "/posts/{slug}"))
    with CaptureQueriesContext(connection) as few:
        assert delete_page(admin_client, "service", blog).status_code == 200
    for key in ("db_calls", "error_rate", "response_time_ms"):
        route = make_route(blog)
        threshold = make_threshold(route, signal_key=key, warn=0.5, critical=0.9)
        Incident.objects.create(
            threshold=threshold, route=route, level="warn", peak_value=0.6, opened_at=now()
        )
        make_readings(route, [0.0] * 2, signal_key=key, env="staging")
    with CaptureQueriesContext(connection) as many:
        assert delete_page(admin_client, "service", blog).status_code == 200
    assert len(many) == len(few)


@pytest.mark.django_db
def test_a_service_delete_page_counts_each_reading_once(admin_client, blog, search):
    # A service's readings are reached twice, through the service and through its routes.
    make_readings(make_route(blog, "/posts/{slug}"), [100.0] * 4)
    make_readings(make_route(blog, "/feed"), [100.0] * 3)
    make_readings(make_route(search, "/search"), [100.0] * 5)  # another service's
    IdempotentRequest.objects.create(service=blog, key="k", fingerprint="f")
    page = delete_page(admin_client, "service", blog).content.decode()
    assert "Readings: 7 (not listed)" in page
    assert "Idempotent requests: 1 (not listed)" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "target"),
    [("signal", lambda: signal("db_calls")), ("environment", lambda: environment("staging"))],
)
def test_a_signal_or_environment_delete_page_counts_its_readings(admin_client, blog, model, target):
    route = make_route(blog, "/posts/{slug}")
    make_readings(route, [100.0] * 2)
    make_readings(route, [3.0] * 6, signal_key="db_calls", env="staging")
    page = delete_page(admin_client, model, target()).content.decode()
    assert "Readings: 6 (not listed)" in page


@pytest.mark.django_db
def test_a_page_without_readings_names_none(admin_client, blog):
    route = make_route(blog, "/posts/{slug}")
    page = delete_page(admin_client, "route", route).content.decode()
    assert "(not listed)" not in page
    assert "<li>Readings:" not in page


@pytest.mark.django_db
def test_the_delete_action_counts_the_readings_of_every_selected_route(admin_client, blog):
    routes = [make_route(blog, "/posts/{slug}"), make_route(blog, "/feed")]
    make_readings(routes[0], [100.0] * 4)
    make_readings(routes[1], [100.0] * 5)
    response = delete_action_page(admin_client, "route", routes)
    assert response.status_code == 200
    assert "Readings: 9 (not listed)" in response.content.decode()
    # Confirming deletes them.
    data = {
        "action": "delete_selected",
        "_selected_action": [r.pk for r in routes],
        "post": "yes",
    }
    admin_client.post(reverse("admin:signals_app_route_changelist"), data)
    assert not Route.objects.exists()
    assert not Reading.objects.exists()


@pytest.mark.django_db
def test_a_user_who_may_not_delete_readings_is_told_so(client, alice, blog_team, blog):
    # Readings are deleted by superusers only: an owner given delete_route by hand still
    # cannot delete a route with readings, and the page says why, as Django's did.
    owner = give_role(alice)
    owner.user_permissions.add(Permission.objects.get(codename="delete_route"))
    route = make_route(blog, "/posts/{slug}")
    make_readings(route, [100.0] * 2)
    client.force_login(owner)
    response = delete_page(client, "route", route)
    assert response.status_code == 200
    assert response.context["perms_lacking"] == {"reading"}
    assert Service.objects.filter(pk=blog.pk).exists()
