"""The status board at /board: services → routes with status, sparkline, owner, last
reading and open incidents; filters; auto-refresh; local assets; fixed query count."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from signals_app.models import Incident, ThresholdState
from tests.builders import make_readings, make_route, make_threshold


def set_status(threshold, status, value=None):
    ThresholdState.objects.update_or_create(
        threshold=threshold,
        defaults={"status": status, "value": value, "samples": 30, "changed_at": timezone.now()},
    )


@pytest.fixture
def board(client, alice):
    client.force_login(alice)

    def get(**params):
        response = client.get("/board", params)
        assert response.status_code == 200
        return response.content.decode()

    return get


def routes_on(html):
    return re.findall(r'<a href="/admin/signals_app/route/\d+/change/">([^<]+)</a>', html)


@pytest.mark.django_db
def test_it_needs_a_login(client):
    response = client.get("/board")
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


@pytest.mark.django_db
def test_it_groups_routes_by_service_with_status_owner_and_incidents(board, blog, search):
    posts = make_route(blog, "/posts/{slug}")
    feed = make_route(blog, "/feed")
    make_route(search, "/search")
    threshold = make_threshold(posts)
    set_status(threshold, "critical", 950)
    set_status(make_threshold(feed), "ok", 10)
    Incident.objects.create(threshold=threshold, route=posts, level="critical", peak_value=990)
    make_readings(posts, [100.0] * 10, step=timedelta(minutes=30))
    html = board()
    assert html.index(">blog<") < html.index(">search<")
    assert routes_on(html) == ["GET /feed", "GET /posts/{slug}", "GET /search"]
    assert 'class="route status-critical"' in html
    assert 'class="route status-ok"' in html
    assert 'class="route status-no_data"' in html
    assert "owner: Blog team" in html
    assert "1 open incident (critical)" in html
    assert "0\xa0minutes ago</time>" in html
    assert "none in 24 h" in html
    assert html.count('<svg class="spark"') == 3


@pytest.mark.django_db
def test_route_status_is_the_worst_of_its_thresholds(board, blog):
    route = make_route(blog)
    set_status(make_threshold(route), "ok")
    set_status(make_threshold(route, statistic="p50"), "warn")
    set_status(make_threshold(route, statistic="p99"), "pending")
    assert 'class="route status-warn"' in board()


@pytest.mark.django_db
def test_it_filters_by_owner(board, alice, blog, search):
    make_route(blog, "/posts")
    make_route(search, "/search")
    assert routes_on(board(owner=search.owner_id)) == ["GET /search"]
    assert routes_on(board(owner="mine")) == ["GET /posts"]


@pytest.mark.django_db
def test_it_filters_by_status(board, blog):
    set_status(make_threshold(make_route(blog, "/bad")), "critical")
    set_status(make_threshold(make_route(blog, "/good")), "ok")
    make_route(blog, "/unwatched")
    assert routes_on(board(status="critical")) == ["GET /bad"]
    assert routes_on(board(status="no_data")) == ["GET /unwatched"]
    assert "1 critical</span>" in board().lower()  # counts in the summary


@pytest.mark.django_db
def test_it_refreshes_itself_and_fits_a_phone(board, settings):
    settings.DQ_BOARD_REFRESH_SECONDS = 30
    html = board()
    assert '<meta http-equiv="refresh" content="30">' in html
    assert 'name="viewport" content="width=device-width' in html


@pytest.mark.django_db
def test_it_loads_only_local_assets(board, blog):
    make_route(blog)
    html = board()
    assert "<script" not in html
    external = re.findall(r'(?:src|href)="(https?:)?//', html)
    assert external == []
    assert '/static/signals_app/dq.css"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("routes_per_service", [1, 6])
def test_its_query_count_does_not_grow_with_rows(
    board, blog, search, django_assert_num_queries, routes_per_service
):
    for service in (blog, search):
        for index in range(routes_per_service):
            route = make_route(service)
            threshold = make_threshold(route)
            set_status(threshold, "warn")
            Incident.objects.create(threshold=threshold, route=route, level="warn", peak_value=1)
            make_readings(route, [1.0] * 5, step=timedelta(minutes=50 + index))
    # session, user, routes, thresholds with states, open incidents,
    # the one activity query (sparklines + last reading), owners for the filter
    with django_assert_num_queries(7):
        board()


@pytest.mark.django_db
def test_the_sparkline_follows_the_response_time_threshold(board, blog):
    route = make_route(blog)
    make_threshold(route, signal_key="error_rate", warn=0.01, critical=0.05)
    make_threshold(route)
    make_readings(route, [0.0] * 5, signal_key="error_rate", step=timedelta(minutes=30))
    make_readings(route, [100.0] * 5, step=timedelta(minutes=30))
    assert "response_time_ms (production), hourly mean" in board()


@pytest.mark.django_db
def test_last_reading_is_the_newest_of_any_signal(board, blog):
    route = make_route(blog)
    now = timezone.now()
    make_readings(route, [1.0], start=now - timedelta(hours=5))
    make_readings(route, [1.0], signal_key="db_calls", start=now - timedelta(hours=2, minutes=5))
    html = board()
    card = html.split(f'data-route="{route.pk}"')[1].split("</li>")[0]
    assert "2\xa0hours, 5\xa0minutes ago" in card


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"owner": "²"}, "No owner &#x27;²&#x27;: showing every owner&#x27;s routes."),
        ({"owner": "99999999999999999999"}, "No owner &#x27;99999999999999999999&#x27;"),
        ({"owner": "12345"}, "No owner &#x27;12345&#x27;"),
        ({"owner": "blog"}, "No owner &#x27;blog&#x27;"),
        ({"status": "broken"}, "No status &#x27;broken&#x27;: showing every status."),
    ],
)
def test_an_unknown_filter_value_is_said_and_every_route_shown(board, blog, params, message):
    # "²" passed isdigit() and int() refused it: a 500; a number past bigint too, on SQLite.
    make_route(blog, "/posts")
    html = board(**params)
    assert message in html
    assert routes_on(html) == ["GET /posts"]


@pytest.mark.django_db
def test_readings_stored_beyond_1e12_do_not_break_the_board(board, blog):
    # Stored before readings were bounded: the hourly mean overflowed PostgreSQL's avg().
    make_readings(make_route(blog, "/posts"), [1.7e308] * 3)
    assert routes_on(board()) == ["GET /posts"]
