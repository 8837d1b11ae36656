"""/api/v1/routes: people read all, owners write their own, a service key reads its own."""

import pytest
from django.db import connection
from django.db.models.signals import pre_delete

from signals_app.models import Reading, Route, Threshold
from tests.api import bearer, call
from tests.builders import make_key, make_readings, make_route, make_threshold, make_user
from tests.threads import evaluation_lock_held_elsewhere

URL = "/api/v1/routes"


@pytest.fixture
def blog_routes(blog):
    return [make_route(blog, "/posts/{slug}"), make_route(blog, "/tags/{tag}")]


@pytest.fixture
def search_route(search):
    return make_route(search, "/search")


@pytest.mark.django_db
def test_a_person_lists_every_route_with_the_design_fields(
    client, mallory, blog_routes, search_route, django_assert_num_queries
):
    client.force_login(mallory)
    # session, user, routes with service and owner
    with django_assert_num_queries(3):
        response = call(client, "GET", URL)
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    assert len(body["results"]) == 3
    first = next(r for r in body["results"] if r["path"] == "/posts/{slug}")
    assert first == {
        "id": blog_routes[0].pk,
        "service": "blog",
        "method": "GET",
        "path": "/posts/{slug}",
        "owner": "Blog team",
        "expected_input": "",
        "expected_result": "200 with the thing",
        "user_impact": "",
        "notes": "",
    }


@pytest.mark.django_db
def test_a_service_key_lists_exactly_its_own_routes(client, blog, blog_routes, search_route):
    response = call(client, "GET", URL, **bearer(make_key(blog)))
    assert {r["path"] for r in response.json()["results"]} == {"/posts/{slug}", "/tags/{tag}"}


@pytest.mark.django_db
def test_a_service_key_cannot_read_a_route_of_another_service(client, blog, search_route):
    call(client, "GET", f"{URL}/{search_route.pk}", expect_status=404, **bearer(make_key(blog)))


@pytest.mark.django_db
def test_a_service_key_cannot_write_routes(client, blog, blog_routes):
    key = bearer(make_key(blog))
    call(client, "POST", URL, {"service": "blog", "path": "/x"}, expect_status=403, **key)
    route_url = f"{URL}/{blog_routes[0].pk}"
    call(client, "PATCH", route_url, {"notes": "x"}, expect_status=403, **key)


@pytest.mark.django_db
def test_the_list_is_paginated_by_cursor(client, mallory, blog):
    for index in range(5):
        make_route(blog, f"/p/{index}")
    client.force_login(mallory)
    page = call(client, "GET", URL + "?page_size=2").json()
    seen = [r["id"] for r in page["results"]]
    while page["next"]:
        page = call(client, "GET", page["next"]).json()
        seen += [r["id"] for r in page["results"]]
    assert sorted(seen) == sorted(Route.objects.values_list("pk", flat=True))
    assert len(seen) == 5


@pytest.mark.django_db
def test_it_filters_by_service_method_and_path(client, mallory, blog_routes, search_route):
    client.force_login(mallory)
    assert len(call(client, "GET", URL + "?service=search").json()["results"]) == 1
    assert len(call(client, "GET", URL + "?method=GET&service=blog").json()["results"]) == 2
    path = call(client, "GET", URL + "?path=/tags/{tag}").json()["results"]
    assert [r["id"] for r in path] == [blog_routes[1].pk]


@pytest.mark.django_db
def test_a_filter_given_twice_is_a_400_not_its_last_value(client, mallory, blog_routes):
    client.force_login(mallory)
    call(
        client, "GET", URL + "?service=blog&service=nope", expect_status=400, expect_field="service"
    )


@pytest.mark.django_db
def test_an_owner_registers_a_route_of_their_service(client, alice, blog):
    client.force_login(alice)
    payload = {"service": "blog", "method": "POST", "path": "/comments", "expected_result": "201"}
    response = call(client, "POST", URL, payload, expect_status=201)
    route = Route.objects.get(pk=response.json()["id"])
    assert (route.service, route.owner.name, route.method) == (blog, "Blog team", "POST")


@pytest.mark.django_db
def test_outsider_cannot_register_a_route_for_a_service_they_do_not_own(client, mallory, blog):
    client.force_login(mallory)
    call(client, "POST", URL, {"service": "blog", "path": "/x"}, expect_status=403)
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_owner_cannot_hand_a_route_to_a_team_they_are_not_in(client, alice, blog, search_team):
    client.force_login(alice)
    payload = {"service": "blog", "path": "/x", "owner": search_team.name}
    call(client, "POST", URL, payload, expect_status=403)


@pytest.mark.django_db
def test_an_owner_edits_the_expected_result_of_their_route(client, bob, blog_routes):
    client.force_login(bob)
    url = f"{URL}/{blog_routes[0].pk}"
    call(client, "PATCH", url, {"expected_result": "200 with the post", "notes": "cached 5 min"})
    blog_routes[0].refresh_from_db()
    assert blog_routes[0].expected_result == "200 with the post"


@pytest.mark.django_db
def test_outsider_cannot_edit_a_route(client, mallory, blog_routes):
    client.force_login(mallory)
    call(client, "PATCH", f"{URL}/{blog_routes[0].pk}", {"notes": "mine"}, expect_status=403)


@pytest.mark.django_db
def test_owner_cannot_move_their_route_to_another_service(client, alice, blog_routes, search):
    client.force_login(alice)
    url = f"{URL}/{blog_routes[0].pk}"
    call(client, "PATCH", url, {"service": "search"}, expect_status=403)


@pytest.mark.django_db
def test_only_an_administrator_deletes_a_route(client, alice, blog_routes, django_user_model):
    client.force_login(alice)
    url = f"{URL}/{blog_routes[0].pk}"
    call(client, "DELETE", url, expect_status=403)
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    call(client, "DELETE", url, expect_status=204)


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "r@example.com", "pw")


@pytest.mark.django_db
def test_deleting_a_route_deletes_its_readings_and_thresholds(client, root, blog_routes):
    gone, kept = blog_routes
    make_threshold(gone)
    make_readings(gone, [100.0] * 3)
    make_readings(kept, [100.0] * 2)
    client.force_login(root)
    call(client, "DELETE", f"{URL}/{gone.pk}", expect_status=204)
    assert not Route.objects.filter(pk=gone.pk).exists()
    assert not Threshold.objects.filter(route_id=gone.pk).exists()
    assert list(Reading.objects.values_list("route_id", flat=True)) == [kept.pk] * 2


@pytest.mark.django_db
def test_a_routes_readings_are_gone_before_its_thresholds_take_the_lock(blog_routes):
    # Django sends every pre_delete before it deletes anything, and a threshold's takes the
    # evaluation lock (signals_app.apps): what is left of the readings then waits with it.
    gone, kept = blog_routes
    make_threshold(gone)
    make_readings(gone, [100.0] * 3)
    make_readings(kept, [100.0])
    left_when_locking = []

    def count_readings(sender, instance, **kwargs):
        left_when_locking.append(Reading.objects.filter(route_id=instance.route_id).count())

    pre_delete.connect(count_readings, sender=Threshold, dispatch_uid="test-count-readings")
    try:
        gone.delete_with_readings()
    finally:
        pre_delete.disconnect(sender=Threshold, dispatch_uid="test-count-readings")
    assert left_when_locking == [0]
    assert list(Reading.objects.values_list("route_id", flat=True)) == [kept.pk]


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL locks")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_route_delete_that_times_out_on_the_lock_loses_nothing(client, root, blog_routes):
    """With a pass writing (the lock held elsewhere) the route's delete waits and times out
    (503, retryable); it rolls back whole: the readings are all still there."""
    route = blog_routes[0]
    make_threshold(route)
    make_readings(route, [100.0] * 3)
    client.force_login(root)
    try:
        with evaluation_lock_held_elsewhere():
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
            call(client, "DELETE", f"{URL}/{route.pk}", expect_status=503)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert Reading.objects.filter(route=route).count() == 3
    assert Threshold.objects.filter(route=route).exists()
    call(client, "DELETE", f"{URL}/{route.pk}", expect_status=204)  # again: it goes
    assert not Reading.objects.filter(route_id=route.pk).exists()


@pytest.mark.django_db
def test_a_duplicate_route_is_a_409_naming_the_existing_one(client, alice, blog_routes):
    client.force_login(alice)
    body = {"service": "blog", "path": "/posts/{slug}"}
    problem = call(client, "POST", URL, body, expect_status=409).json()
    (error,) = problem["errors"]
    assert error["message"] == f"route {blog_routes[0].pk} already has this service, method, path"
    assert error["received"] == {"service": "blog", "method": "GET", "path": "/posts/{slug}"}
    assert problem["retryable"] is False
    # Another method is another route.
    call(client, "POST", URL, {**body, "method": "HEAD"}, expect_status=201)


@pytest.mark.django_db
def test_another_team_registering_a_duplicate_route_is_403(client, blog_routes, search_team):
    dana = make_user("dana")
    search_team.members.add(dana)
    client.force_login(dana)
    call(client, "POST", URL, {"service": "blog", "path": "/posts/{slug}"}, expect_status=403)


@pytest.mark.django_db
def test_a_patch_onto_another_routes_path_is_a_409(client, alice, blog_routes):
    posts, tags = blog_routes
    client.force_login(alice)
    response = call(client, "PATCH", f"{URL}/{tags.pk}", {"path": "/posts/{slug}"},
                    expect_status=409)  # fmt: skip
    assert response.json()["errors"][0]["message"].startswith(f"route {posts.pk} already has")
    tags.refresh_from_db()
    assert tags.path == "/tags/{tag}"


@pytest.mark.django_db
def test_the_id_field_is_not_settable(client, alice, blog):
    client.force_login(alice)
    payload = {"id": 999, "service": "blog", "path": "/x"}
    call(client, "POST", URL, payload, expect_status=400, expect_field="id")
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_anonymous_is_401(client, blog_routes):
    response = call(client, "GET", URL, expect_status=401)
    assert response.json()["retryable"] is False


@pytest.mark.django_db
def test_a_personal_token_reads_routes(client, mallory, blog_routes):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=mallory)
    response = call(client, "GET", URL, HTTP_AUTHORIZATION=f"Token {token.key}")
    assert len(response.json()["results"]) == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("new", "must start with /"),
        ("/new/{id}?q=1", "has a query string (?): register the path alone"),
        ("/new/ {id}", "has whitespace or a control character"),
        ("/new/\t{id}", "has whitespace or a control character"),
        ("#frag", "must start with /"),
        ("/new#frag", "has a fragment (#): register the path alone"),
    ],
)
def test_a_path_no_reading_can_name_is_refused(client, alice, blog, path, message):
    client.force_login(alice)
    body = {"service": "blog", "path": path}
    response = call(client, "POST", URL, body, expect_status=400, expect_field="path")
    (error,) = response.json()["errors"]
    assert (error["message"], error["received"]) == (message, path)
    assert error["expected"] == Route.PATH_TEMPLATE
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_a_route_registered_with_a_bad_path_stays_editable(client, alice, blog):
    legacy = make_route(blog, "legacy/{id}")  # stored before paths were checked
    client.force_login(alice)
    url = f"{URL}/{legacy.pk}"
    call(client, "PATCH", url, {"notes": "to be renamed", "path": "legacy/{id}"})
    call(client, "PUT", url, call(client, "GET", url).json())
    call(client, "PATCH", url, {"path": "legacy/{id}/"}, expect_status=400, expect_field="path")
    call(client, "PATCH", url, {"path": "/legacy/{id}"})
