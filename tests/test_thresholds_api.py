"""/api/v1/thresholds: owners curate the thresholds of their routes (§Roles)."""

import threading

import pytest
from django.db import connection, connections
from django.db.models.signals import pre_save

from signals_app.models import Threshold
from tests.api import bearer, call
from tests.builders import make_key, make_route, make_threshold, make_user

URL = "/api/v1/thresholds"


@pytest.fixture
def blog_route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def search_route(search):
    return make_route(search, "/search")


def payload(route_obj, **fields):
    values = {
        "route": route_obj.pk,
        "signal": "response_time_ms",
        "environment": "production",
        "statistic": "p95",
        "cache_segment": "miss",
        "window_minutes": 15,
        "warn": 300,
        "critical": 800,
        "min_samples": 20,
        "sustain_minutes": 5,
    }
    values.update(fields)
    return values


@pytest.mark.django_db
def test_an_owner_creates_a_threshold_on_their_route(client, alice, blog_route):
    client.force_login(alice)
    body = call(client, "POST", URL, payload(blog_route), expect_status=201).json()
    assert body == {
        "id": Threshold.objects.get().pk,
        **payload(blog_route),
        "warn": 300.0,
        "critical": 800.0,
    }
    assert Threshold.objects.get().direction == "higher_worse"


@pytest.mark.django_db
def test_outsider_cannot_create_a_threshold_on_a_route_they_do_not_own(client, mallory, blog_route):
    client.force_login(mallory)
    call(client, "POST", URL, payload(blog_route), expect_status=403)
    assert not Threshold.objects.exists()


@pytest.mark.django_db
def test_outsider_cannot_edit_threshold(client, mallory, blog_route):
    threshold = make_threshold(blog_route)
    client.force_login(mallory)
    call(client, "PATCH", f"{URL}/{threshold.pk}", {"warn": 1}, expect_status=403)
    call(client, "DELETE", f"{URL}/{threshold.pk}", expect_status=403)


@pytest.mark.django_db
def test_owner_cannot_move_a_threshold_to_a_route_they_do_not_own(
    client, alice, blog_route, search_route
):
    threshold = make_threshold(blog_route)
    client.force_login(alice)
    call(client, "PATCH", f"{URL}/{threshold.pk}", {"route": search_route.pk}, expect_status=403)
    threshold.refresh_from_db()
    assert threshold.route == blog_route


@pytest.mark.django_db
def test_an_owner_edits_and_deletes_their_threshold(client, bob, blog_route):
    threshold = make_threshold(blog_route)
    client.force_login(bob)
    call(client, "PATCH", f"{URL}/{threshold.pk}", {"warn": 250, "critical": 700})
    threshold.refresh_from_db()
    assert (threshold.warn, threshold.critical) == (250, 700)
    call(client, "DELETE", f"{URL}/{threshold.pk}", expect_status=204)


@pytest.mark.django_db
def test_with_a_personal_token_team_membership_decides_not_admin_permissions(
    client, alice, mallory, blog_route
):
    # By design (README, Curation in the admin): the API's rule is
    # Route.objects.owned_by, membership of the route's Owner. alice holds no model
    # permission (no Owners group), so the admin shows her nothing, yet her token edits
    # her team's threshold; mallory, on no team, gets 403 whatever she holds.
    from rest_framework.authtoken.models import Token

    from tests.builders import give_role

    threshold = make_threshold(blog_route)
    assert not alice.get_all_permissions()
    alice_token = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=alice).key}"}
    call(client, "PATCH", f"{URL}/{threshold.pk}", {"warn": 250}, **alice_token)
    give_role(mallory)
    mallory_token = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=mallory).key}"}
    call(client, "PATCH", f"{URL}/{threshold.pk}", {"warn": 1}, expect_status=403, **mallory_token)
    threshold.refresh_from_db()
    assert threshold.warn == 250


@pytest.mark.django_db
def test_a_superuser_edits_any_threshold(client, blog_route, django_user_model):
    threshold = make_threshold(blog_route)
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    call(client, "PATCH", f"{URL}/{threshold.pk}", {"min_samples": 3})


@pytest.mark.django_db
def test_critical_must_lie_beyond_warn_in_the_worse_direction(client, alice, blog_route):
    client.force_login(alice)
    call(client, "POST", URL, payload(blog_route, warn=800, critical=300), expect_status=400,
         expect_field="critical")  # fmt: skip
    lower = payload(blog_route, signal="cache_hit", warn=0.5, critical=0.8)
    call(client, "POST", URL, lower, expect_status=400, expect_field="critical")
    call(client, "POST", URL, payload(blog_route, signal="cache_hit", warn=0.8, critical=0.5),
         expect_status=201)  # fmt: skip


@pytest.mark.django_db
def test_an_ordering_error_says_which_side_of_warn_and_the_critical_in_use(
    client, alice, blog_route
):
    client.force_login(alice)
    response = call(client, "POST", URL, payload(blog_route, warn=800, critical=300),
                    expect_status=400)  # fmt: skip
    (error,) = response.json()["errors"]
    assert (error["expected"], error["received"]) == ("a number at or above warn (800.0)", 300)
    threshold = make_threshold(blog_route, signal_key="error_rate", warn=0.2, critical=0.5)
    response = call(client, "PATCH", f"{URL}/{threshold.pk}", {"signal": "cache_hit"},
                    expect_status=400)  # fmt: skip
    (error,) = response.json()["errors"]
    assert (error["field"], error["expected"], error["received"]) == (
        "critical",
        "a number at or below warn (0.2)",
        0.5,
    )
    assert "lower is worse" in error["message"]


@pytest.mark.django_db
def test_a_number_of_5000_digits_is_a_400_in_the_clients_terms(client, alice, blog_route):
    client.force_login(alice)
    body = '{"route": %d, "signal": "db_calls", "warn": 1, "critical": %s}'
    response = client.post(URL, body % (blog_route.pk, "1" * 5000), content_type="application/json")
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["message"] == "a number of 5000 digits, more than any field takes"
    assert "set_int_max_str_digits" not in response.content.decode()


@pytest.mark.django_db
def test_levels_must_lie_in_the_range_of_the_signals_readings(client, alice, blog_route):
    client.force_login(alice)
    negative = payload(blog_route, warn=-100, critical=-50)
    response = call(client, "POST", URL, negative, expect_status=400)
    assert [(e["field"], e["expected"], e["received"]) for e in response.json()["errors"]] == [
        ("warn", "a finite number >= 0 and <= 1e12 (duration)", -100),
        ("critical", "a finite number >= 0 and <= 1e12 (duration)", -50),
    ]
    ratio = payload(blog_route, signal="error_rate", statistic="mean", warn=0.5, critical=10)
    (error,) = call(client, "POST", URL, ratio, expect_status=400).json()["errors"]
    assert (error["field"], error["message"], error["expected"], error["received"]) == (
        "critical",
        "out of range for the mean of error_rate",
        "a finite number within [0, 1] (ratio)",
        10,
    )
    assert not Threshold.objects.exists()


@pytest.mark.django_db
def test_count_and_rate_levels_count_readings_whatever_the_signal(client, alice, blog_route):
    client.force_login(alice)
    call(client, "POST", URL, payload(blog_route, signal="error_rate", statistic="rate", warn=5,
         critical=10), expect_status=201)  # fmt: skip
    call(client, "POST", URL, payload(blog_route, signal="error_rate", statistic="count",
         warn=-1, critical=10), expect_status=400, expect_field="warn")  # fmt: skip


@pytest.mark.django_db
def test_a_patch_of_the_signal_checks_the_stored_levels_against_its_range(
    client, alice, blog_route
):
    threshold = make_threshold(blog_route, warn=300, critical=800)
    client.force_login(alice)
    url = f"{URL}/{threshold.pk}"
    response = call(client, "PATCH", url, {"signal": "error_rate"}, expect_status=400)
    assert {(e["field"], e["received"]) for e in response.json()["errors"]} == {
        ("warn", 300.0),
        ("critical", 800.0),
    }
    call(client, "PATCH", url, {"signal": "error_rate", "warn": 0.05, "critical": 0.2})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_minutes", 0),
        ("min_samples", 0),
        ("sustain_minutes", -1),
        ("warn", "NaN"),
        ("statistic", "p42"),
        ("cache_segment", "warm"),
        ("signal", "nope"),
        ("environment", "qa"),
        ("route", 987654),
    ],
)
def test_it_rejects_bad_values(client, alice, blog_route, field, value):
    client.force_login(alice)
    call(client, "POST", URL, payload(blog_route, **{field: value}), expect_status=400,
         expect_field=field)  # fmt: skip


@pytest.mark.django_db
def test_a_duplicate_threshold_is_a_409_naming_the_existing_one(client, alice, blog_route):
    client.force_login(alice)
    first = call(client, "POST", URL, payload(blog_route), expect_status=201).json()["id"]
    response = call(client, "POST", URL, payload(blog_route, warn=250), expect_status=409)
    problem = response.json()
    assert problem["type"].endswith(":duplicate")
    assert problem["retryable"] is False
    assert f"threshold {first} already has this route, signal" in problem["detail"]
    (error,) = problem["errors"]
    assert error["message"] == (
        f"threshold {first} already has this route, signal, environment, statistic, "
        "cache_segment, window_minutes"
    )
    assert "no other threshold has" in error["expected"]
    assert error["received"] == {
        "route": blog_route.pk,
        "signal": "response_time_ms",
        "environment": "production",
        "statistic": "p95",
        "cache_segment": "miss",
        "window_minutes": 15,
    }
    assert Threshold.objects.count() == 1


@pytest.mark.django_db
def test_a_duplicate_is_said_with_the_defaults_it_would_take(client, alice, blog_route):
    client.force_login(alice)
    existing = make_threshold(blog_route, statistic="p95", cache_segment="all", window_minutes=15)
    body = {"route": blog_route.pk, "signal": "response_time_ms", "environment": "production",
            "warn": 1, "critical": 2}  # fmt: skip
    (error,) = call(client, "POST", URL, body, expect_status=409).json()["errors"]
    assert error["message"].startswith(f"threshold {existing.pk} already has")
    assert error["received"]["statistic"] == "p95"
    assert error["received"]["window_minutes"] == 15


@pytest.mark.django_db
def test_another_team_posting_a_duplicate_is_refused_as_for_any_other_body(
    client, blog_route, search_team
):
    # The duplicate check hid the permission check: dana got "must make a unique set".
    dana = make_user("dana")
    search_team.members.add(dana)
    make_threshold(blog_route, statistic="p95", cache_segment="miss", window_minutes=15)
    client.force_login(dana)
    call(client, "POST", URL, payload(blog_route), expect_status=403)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("levels", "field"),
    [
        ({"warn": 900, "critical": 800}, "critical"),
        ({"warn": -1}, "warn"),
        ({"warn": 1e308, "critical": 1e308}, "warn"),
    ],
)
def test_a_duplicate_with_invalid_levels_is_told_its_levels_first(
    client, alice, blog_route, levels, field
):
    client.force_login(alice)
    call(client, "POST", URL, payload(blog_route), expect_status=201)
    call(client, "POST", URL, payload(blog_route, **levels), expect_status=400,
         expect_field=field)  # fmt: skip


@pytest.mark.django_db
def test_a_patch_onto_another_thresholds_set_is_a_409(client, alice, blog_route):
    kept = make_threshold(blog_route, statistic="p95", window_minutes=15)
    moved = make_threshold(blog_route, statistic="p95", window_minutes=30)
    client.force_login(alice)
    url = f"{URL}/{moved.pk}"
    (error,) = call(client, "PATCH", url, {"window_minutes": 15}, expect_status=409).json()[
        "errors"
    ]
    assert error["message"].startswith(f"threshold {kept.pk} already has")
    # Its own set, sent back as it is, is no conflict.
    call(client, "PATCH", url, {"window_minutes": 30, "warn": 200})
    call(client, "PUT", url, call(client, "GET", url).json())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrency test needs PostgreSQL")
def test_a_duplicate_stored_concurrently_is_the_same_409_and_stores_nothing(
    client, alice, blog_route
):
    """Another request stores the same set after this one's check and before its INSERT:
    the unique constraint refuses ours, and the answer names the other (not a 500)."""
    raced, started = [], []

    def store_the_same_elsewhere(sender, instance, **kwargs):
        if started:  # once, and not for the other thread's own save
            return
        started.append(True)

        def insert():
            try:
                raced.append(make_threshold(blog_route, statistic="p95", cache_segment="miss"))
            finally:
                connections.close_all()

        thread = threading.Thread(target=insert)
        thread.start()
        thread.join()

    pre_save.connect(store_the_same_elsewhere, sender=Threshold, dispatch_uid="test-race")
    client.force_login(alice)
    try:
        response = call(client, "POST", URL, payload(blog_route), expect_status=409)
    finally:
        pre_save.disconnect(sender=Threshold, dispatch_uid="test-race")
    (error,) = response.json()["errors"]
    assert error["message"].startswith(f"threshold {raced[0].pk} already has")
    assert list(Threshold.objects.values_list("pk", flat=True)) == [raced[0].pk]


@pytest.mark.django_db
def test_people_list_and_filter_thresholds(
    client, mallory, blog_route, search_route, django_assert_num_queries
):
    make_threshold(blog_route)
    make_threshold(blog_route, environment="staging")
    make_threshold(search_route)
    client.force_login(mallory)
    # session, user, thresholds with signal and environment
    with django_assert_num_queries(3):
        everything = call(client, "GET", URL).json()["results"]
    assert len(everything) == 3
    staging = call(client, "GET", URL + "?environment=staging").json()["results"]
    assert [t["environment"] for t in staging] == ["staging"]
    assert len(call(client, "GET", f"{URL}?route={search_route.pk}").json()["results"]) == 1
    assert (
        len(call(client, "GET", URL + "?service=blog&signal=response_time_ms").json()["results"])
        == 2
    )


@pytest.mark.django_db
def test_a_service_key_cannot_read_or_write_thresholds(client, blog, blog_route):
    key = bearer(make_key(blog))
    call(client, "GET", URL, expect_status=403, **key)
    call(client, "POST", URL, payload(blog_route), expect_status=403, **key)


@pytest.mark.django_db
def test_a_bad_filter_value_is_400(client, mallory):
    client.force_login(mallory)
    call(client, "GET", URL + "?route=abc", expect_status=400, expect_field="route")
