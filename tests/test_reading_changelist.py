"""The Reading changelist never counts the readings: an estimate, one page, no COUNT(*)."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from signals_app.admin import estimated_count
from signals_app.models import Reading
from tests.builders import give_role, make_readings, make_route


def postgres_only(test):
    skip = pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="pg_class.reltuples and EXPLAIN are PostgreSQL's",
    )
    return pytest.mark.postgres(skip(test))


@pytest.fixture
def owner_client(client, alice, blog_team):
    give_role(alice)
    client.force_login(alice)
    return client


def changelist(client, **params):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:signals_app_reading_changelist"), params)
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


def uncapped_reading_counts(sql_statements):
    """COUNT queries over the readings that are not limited to a few rows."""
    return [
        sql
        for sql in sql_statements
        if re.search(r"COUNT\(", sql, re.I)
        and "signals_app_reading" in sql
        and not re.search(r"LIMIT \d+", sql)
    ]


@pytest.mark.django_db
def test_it_never_counts_all_readings(owner_client, blog):
    make_readings(make_route(blog), [1.0] * 250, step=timedelta(seconds=1))
    response, sql = changelist(owner_client)
    assert uncapped_reading_counts(sql) == []
    cl = response.context["cl"]
    assert cl.full_result_count is None  # show_full_result_count = False
    assert len(cl.result_list) == 100
    assert cl.multi_page


@pytest.mark.django_db
def test_filtered_list_does_not_count_all_readings_either(owner_client, blog):
    route = make_route(blog)
    make_readings(route, [1.0] * 30, cache_status="HIT")
    make_readings(route, [2.0] * 30, cache_status="MISS")
    if connection.vendor == "postgresql":
        # Fresh statistics: earlier tests' rolled-back inserts (load_demo's 52,000 readings
        # each) leave the table's pages behind, and the planner scales its estimate by them.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE signals_app_reading")
    response, sql = changelist(owner_client, cache_status__exact="HIT")
    assert uncapped_reading_counts(sql) == []
    assert response.context["cl"].result_count == 30


@pytest.mark.django_db
def test_a_small_table_is_counted_exactly(blog):
    make_readings(make_route(blog), [1.0] * 42)
    assert estimated_count(Reading.objects.all()) == 42


@pytest.mark.django_db
@postgres_only
def test_a_large_table_is_estimated_from_pg_class(blog):
    make_readings(make_route(blog), [1.0] * 450)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE signals_app_reading")
    assert estimated_count(Reading.objects.all()) == 450


@pytest.mark.django_db
@postgres_only
def test_a_never_analysed_table_still_paginates(blog):
    # reltuples is -1 until the first ANALYZE; the capped count says "more than a page".
    make_readings(make_route(blog), [1.0] * 450)
    assert estimated_count(Reading.objects.all()) >= 201


@pytest.mark.django_db
@postgres_only
def test_a_filtered_count_is_the_planners_estimate(blog):
    route = make_route(blog)
    make_readings(route, [1.0] * 900, cache_status="HIT")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE signals_app_reading")
    estimate = estimated_count(Reading.objects.filter(cache_status="HIT"))
    assert 450 <= estimate <= 1800


@pytest.mark.django_db
def test_readings_are_read_only_in_the_admin(owner_client, blog):
    make_readings(make_route(blog), [1.0])
    reading = Reading.objects.get()
    response = owner_client.get(reverse("admin:signals_app_reading_change", args=[reading.pk]))
    assert response.status_code == 200
    assert 'name="value"' not in response.content.decode()
    assert owner_client.get(reverse("admin:signals_app_reading_add")).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["release=%00", "release=a%00b", "q=%00", "cache_status=%00", "%00=1"]
)
def test_a_nul_in_a_query_parameter_is_a_400_saying_so(owner_client, query):
    # On PostgreSQL the planner's estimate (EXPLAIN) of `?release=%00` was a DataError: a 500.
    url = reverse("admin:signals_app_reading_changelist") + "?" + query
    response = owner_client.get(url)
    assert response.status_code == 400
    assert "NUL character (0x00)" in response.content.decode()


@pytest.mark.django_db
def test_every_changelist_refuses_a_nul_lookup(client, admin_user):
    client.force_login(admin_user)
    for url in ("/admin/signals_app/route/?path=%00", "/admin/signals_app/contentitem/?title=%00"):
        assert client.get(url).status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/admin/signals_app/change/?applied_at__year=0",
        "/admin/signals_app/reading/?observed_at__year=0",
    ],
)
def test_a_date_lookup_out_of_range_is_a_400_saying_so(client, admin_user, url):
    # Django builds the year's bounds with datetime(0, 1, 1): a ValueError, a 500.
    client.force_login(admin_user)
    response = client.get(url)
    assert response.status_code == 400
    assert "A query parameter does not fit this page (year " in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("chosen", ["abc", "1\x00", "²"])
def test_an_action_on_rows_not_named_by_ids_is_a_400(client, admin_user, chosen):
    client.force_login(admin_user)
    for changelist in ("/admin/signals_app/route/", "/admin/signals_app/reading/"):
        data = {"action": "delete_selected", "_selected_action": ["1", chosen]}
        response = client.post(changelist, data)
        assert response.status_code == 400
        assert f"received {chosen!r}" in response.content.decode()


@pytest.mark.django_db
def test_another_value_error_on_an_admin_page_stays_a_500(client, admin_user, monkeypatch):
    # Only a date lookup out of range is the address's fault: a bug stays a bug.
    from signals_app import admin as registry_admin

    def broken(*args, **kwargs):
        raise ValueError("math domain error")

    monkeypatch.setattr(registry_admin.ReadingAdmin, "get_queryset", broken)
    client.raise_request_exception = False
    client.force_login(admin_user)
    response = client.get("/admin/signals_app/reading/?observed_at__year=2026")
    assert response.status_code == 500


HUGE = "99999999999999999999999"


@pytest.mark.django_db
def test_a_filter_by_an_id_beyond_the_column_is_an_empty_list(client, admin_user, blog):
    # Django knows the query is empty and explains nothing: the estimate read '' as JSON.
    make_readings(make_route(blog), [1.0])
    client.force_login(admin_user)
    response = client.get(f"/admin/signals_app/reading/?route__id__exact={HUGE}")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_an_add_form_given_an_id_beyond_the_databases_integers_never_fails(
    client, admin_user, method
):
    # SQLite raised OverflowError drawing the route picker (a 500); PostgreSQL finds nothing.
    client.force_login(admin_user)
    url = "/admin/signals_app/threshold/add/"
    if method == "get":
        response = client.get(f"{url}?route={HUGE}")
    else:
        response = client.post(url, {"route": HUGE, "signal": "1", "warn": "1", "critical": "2"})
    if connection.vendor == "sqlite":
        assert response.status_code == 400
        assert (
            f"A number in the request is too large: {HUGE} (expected at most 9223372036854775807)"
            in (response.content.decode())
        )
    else:
        assert response.status_code == 200
