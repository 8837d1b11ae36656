"""Every error of the whole API is problem details with `retryable` (404, 405, 500, 503)."""

import base64

import pytest
from django.db import OperationalError

from signals_app.models import Signal, Statistic
from tests.api import bearer, call
from tests.builders import make_content_item, make_key, make_route, make_threshold


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/nowhere", "/api/v1/routes/abc"])
def test_an_unknown_api_path_is_a_404_problem(client, mallory, path):
    client.force_login(mallory)
    response = call(client, "GET", path, expect_status=404)
    assert response.json()["retryable"] is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/routes/987654", "no route with id 987654"),
        ("/api/v1/thresholds/987654", "no threshold with id 987654"),
        ("/api/v1/signals/nope", "no signal with key 'nope'"),
        ("/api/v1/environments/nope", "no environment with slug 'nope'"),
        ("/api/v1/content/nope", "no content item with reference 'nope'"),
        ("/api/v1/content/nope/reviews", "no content item with reference 'nope'"),
        ("/api/v1/routes/987654/status", "no route with id 987654"),
        ("/api/v1/routes/987654/comparison", "no route with id 987654"),
        ("/api/v1/changes/987654/comparison", "no change with id 987654"),
    ],
)
def test_an_unknown_object_is_a_404_naming_the_resource_and_id(client, mallory, path, detail):
    client.force_login(mallory)
    assert call(client, "GET", path, expect_status=404).json()["detail"] == detail


@pytest.mark.django_db
def test_a_name_or_id_in_a_body_or_query_that_does_not_exist_is_said_as_filters_say_it(
    client, alice, blog
):
    route = make_route(blog)
    client.force_login(alice)
    url = f"/api/v1/routes/{route.pk}/comparison?environment=nope"
    (error,) = call(client, "GET", url, expect_status=400).json()["errors"]
    assert (error["field"], error["message"]) == ("environment", "no environment with slug 'nope'")
    body = threshold_body(route, route=987654)
    (error,) = call(client, "POST", "/api/v1/thresholds", body, expect_status=400).json()["errors"]
    assert (error["field"], error["message"]) == ("route", "no route with id 987654")


@pytest.mark.django_db
def test_a_method_not_allowed_is_a_405_problem(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    response = call(client, "DELETE", "/api/v1/signals/response_time_ms", expect_status=405)
    assert "DELETE" not in response["Allow"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/routes", "/api/v1/content"])
def test_an_invalid_cursor_is_a_400_problem(client, mallory, path):
    client.force_login(mallory)
    response = call(client, "GET", f"{path}?cursor=garbage", expect_status=400)
    (error,) = response.json()["errors"]
    assert (error["field"], error["received"]) == ("cursor", "garbage")
    assert "next or previous link" in error["expected"]


@pytest.mark.django_db
def test_malformed_json_on_any_endpoint_is_a_400_problem(client, alice):
    client.force_login(alice)
    response = client.post("/api/v1/thresholds", "{", content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith(":invalid-json")
    (error,) = problem["errors"]
    assert error["expected"] == "a JSON object"
    assert "Expecting property name" in error["message"]


@pytest.mark.django_db
def test_form_bodies_are_415(client, alice):
    client.force_login(alice)
    response = client.post("/api/v1/thresholds", "a=b", content_type="text/plain")
    assert response.status_code == 415
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_an_unexpected_error_is_a_500_problem(client, mallory, monkeypatch):
    from signals_app.api import views

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.RouteViewSet, "get_queryset", broken)
    client.raise_request_exception = False
    client.force_login(mallory)
    response = call(client, "GET", "/api/v1/routes", expect_status=500)
    assert response.json()["retryable"] is False
    assert "boom" not in response.content.decode()


@pytest.mark.django_db
def test_an_unavailable_database_is_a_503_retryable_problem(client, blog, monkeypatch):
    from signals_app.models import ServiceKey

    key = make_key(blog)

    def down(raw):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(ServiceKey, "authenticate", staticmethod(down))
    response = call(client, "GET", "/api/v1/routes", expect_status=503, **bearer(key))
    assert response.json()["retryable"] is True


@pytest.mark.django_db
def test_errors_are_json_even_for_a_browser(client, mallory):
    client.force_login(mallory)
    response = client.get("/api/v1/routes/987654", HTTP_ACCEPT="text/html")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_problem_even_with_debug_on(client, mallory, settings):
    # With DEBUG on Django answers its technical 404 page; under /api/ it becomes a problem.
    settings.DEBUG = True
    client.force_login(mallory)
    response = call(client, "GET", "/api/v1/nowhere", expect_status=404)
    assert "no API resource" in response.json()["detail"]


@pytest.mark.django_db
def test_a_lone_surrogate_in_any_body_is_a_400_problem(client, alice, blog):
    route = make_route(blog)
    client.force_login(alice)
    response = client.patch(
        f"/api/v1/routes/{route.pk}", '{"notes": "\\ud800"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


# ---- bodies nested too deeply: a RecursionError (500) in the JSON decoder from ~2,000
# levels, in Django's lookup of a related field given nested lists from ~500.


STATISTICS = Statistic.values


# Stands for the keys of the signals that ship by default (and the demo's), from the database.
SIGNALS = "<signal keys>"


def known(expected):
    if expected == SIGNALS:
        return list(Signal.objects.order_by("key").values_list("key", flat=True))
    return expected


def nested(depth, inner='"x"'):
    return "[" * depth + inner + "]" * depth


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def writes(blog):
    """(method, path) of every DRF-parsed write endpoint."""
    threshold = make_threshold(make_route(blog, "/posts/{slug}"))
    item = make_content_item()
    return [
        ("POST", "/api/v1/thresholds"),
        ("PATCH", f"/api/v1/thresholds/{threshold.pk}"),
        ("POST", "/api/v1/changes"),
        ("POST", "/api/v1/rollback-notes"),
        ("POST", "/api/v1/baselines/capture"),
        ("POST", f"/api/v1/content/{item.reference}/reviews"),
        ("POST", "/api/v1/routes"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        '{"route": ' + nested(500, "1") + "}",
        '{"signal": ' + nested(500) + ', "environment": ' + nested(450) + "}",
        '{"note": ' + nested(2000) + "}",
        '{"route": ' + nested(100_000) + "}",
        '{"decision": ' + nested(32) + "}",
    ],
    ids=["route-500", "slugs-500", "any-field-2000", "100000", "33-levels"],
)
def test_a_body_nested_too_deeply_is_a_400_naming_the_limit_on_every_write(
    client, root, writes, body
):
    client.force_login(root)
    for method, path in writes:
        response = client.generic(method, path, body, content_type="application/json")
        assert response.status_code == 400, (path, response.content)
        problem = response.json()
        assert "deeper than 32 levels" in problem["detail"], path
        (error,) = problem["errors"]
        assert error["expected"] == "JSON nested at most 32 levels deep"


@pytest.mark.django_db
def test_a_body_nested_32_levels_is_parsed(client, root, writes):
    client.force_login(root)
    response = client.post(
        "/api/v1/changes", '{"summary": ' + nested(31) + "}", content_type="application/json"
    )
    problem = response.json()
    assert response.status_code == 400
    assert "deeper" not in problem["detail"]
    assert "summary" in {error["field"] for error in problem["errors"]}


# ---- related fields take only their own type


def threshold_body(route, /, **changes):
    """A valid POST /api/v1/thresholds body for `route`, with `changes`."""
    return {
        "route": route.pk,
        "signal": "response_time_ms",
        "environment": "production",
        "statistic": "p95",
        "warn": 300,
        "critical": 800,
        **changes,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message", "received"),
    [
        ("route", 1.5, "Expected an integer id, received float", 1.5),
        ("route", True, "Expected an integer id, received bool", True),
        ("route", [1], "Expected an integer id, received list", "<list>"),
        ("route", {"id": 1}, "Expected an integer id, received dict", "<dict>"),
        ("route", 2**70, f"no route with id {2**70}", str(2**70)),
        ("signal", [["x"]], "Expected a key string, received list", "<list>"),
        ("environment", 1, "Expected a slug string, received int", 1),
    ],
)
def test_a_related_field_of_the_wrong_type_is_a_400_saying_what_was_expected(
    client, alice, blog, field, value, message, received
):
    route = make_route(blog, "/posts/{slug}")
    client.force_login(alice)
    payload = threshold_body(route, **{field: value})
    response = call(client, "POST", "/api/v1/thresholds", payload, expect_status=400)
    (error,) = response.json()["errors"]
    assert error["field"] == field
    assert message in error["message"]
    assert error["received"] == received
    expected = {
        "route": "an integer id of an existing route",
        "signal": SIGNALS,
        "environment": ["production", "staging"],
    }[field]
    assert error["expected"] == known(expected)


@pytest.mark.django_db
def test_a_route_given_as_a_float_is_not_read_as_another_route(client, alice, blog):
    route = make_route(blog, "/posts/{slug}")
    client.force_login(alice)
    call(client, "POST", "/api/v1/changes", {"route": route.pk + 0.5}, expect_status=400)


@pytest.mark.django_db
def test_write_errors_say_what_each_field_expects(client, alice, blog):
    route = make_route(blog, "/posts/{slug}")
    client.force_login(alice)
    payload = {"route": route.pk, "signal": "response_time_ms", "statistic": "p42", "warn": "x"}
    response = call(client, "POST", "/api/v1/thresholds", payload, expect_status=400)
    errors = {error["field"]: error for error in response.json()["errors"]}
    assert errors["statistic"]["expected"] == STATISTICS
    assert errors["statistic"]["received"] == "p42"
    assert errors["warn"]["expected"] == "a finite number"
    assert errors["critical"]["expected"] == "a finite number"
    assert errors["critical"]["received"] is None  # required, not sent


# ---- query parameters: what each expects and what it received


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field", "expected", "received"),
    [
        (
            "thresholds?route=abc",
            "route",
            f"the id of an existing route, an integer from 1 to {2**63 - 1}",
            "abc",
        ),
        (
            "thresholds?statistic=p42",
            "statistic",
            STATISTICS,
            "p42",
        ),
        (
            "changes?applied_after=garbage",
            "applied_after",
            "an ISO 8601 date-time with a UTC offset, e.g. 2026-11-26T07:00:00Z",
            "garbage",
        ),
        ("baselines?active=maybe", "active", "true or false", "maybe"),
        ("content?score_band=weird", "score_band", ["low", "medium", "high", "unscored"], "weird"),
        ("routes?page_size=0", "page_size", "an integer from 1 to 1000", "0"),
        ("content?page_size=abc", "page_size", "an integer from 1 to 1000", "abc"),
        ("routes?service=a&service=b", "service", ["blog"], ["a", "b"]),
        ("thresholds?environment=nope", "environment", ["production", "staging"], "nope"),
        (
            "thresholds?signal=nope",
            "signal",
            SIGNALS,
            "nope",
        ),
        ("routes?service=nope", "service", ["blog"], "nope"),
        ("routes?owner=nope", "owner", ["Blog team"], "nope"),
        ("changes?service=nope", "service", ["blog"], "nope"),
        ("rollback-notes?service=nope", "service", ["blog"], "nope"),
        ("baselines?environment=nope", "environment", ["production", "staging"], "nope"),
    ],
)
def test_an_invalid_query_parameter_says_what_it_expected_and_received(
    client, mallory, blog, query, field, expected, received
):
    client.force_login(mallory)
    response = call(client, "GET", f"/api/v1/{query}", expect_status=400)
    problem = response.json()
    (error,) = problem["errors"]
    assert (error["field"], error["received"]) == (field, received)
    assert error["expected"] == known(expected)
    assert problem["detail"].startswith(f"{field}: ")


@pytest.mark.django_db
def test_an_unknown_name_in_a_filter_is_named_in_the_message(client, mallory):
    client.force_login(mallory)
    response = call(client, "GET", "/api/v1/thresholds?environment=nope", expect_status=400)
    assert response.json()["detail"] == "environment: no environment with slug 'nope'"
    response = call(client, "GET", "/api/v1/thresholds?environment=a%00b", expect_status=400)
    assert response.json()["errors"][0]["received"] == "a\x00b"


@pytest.mark.django_db
def test_a_known_name_filters_with_one_lookup(client, mallory, blog, django_assert_num_queries):
    make_threshold(make_route(blog, "/posts/{slug}"))
    client.force_login(mallory)
    # session, user, the environment's slug, thresholds with signal and environment
    with django_assert_num_queries(4):
        results = call(client, "GET", "/api/v1/thresholds?environment=production").json()
    assert len(results["results"]) == 1
    assert call(client, "GET", "/api/v1/thresholds?environment=staging").json()["results"] == []


@pytest.mark.django_db
def test_many_known_names_are_described_not_listed(client, mallory, settings):
    from signals_app.models import Environment

    Environment.objects.bulk_create(Environment(slug=f"env-{n}") for n in range(25))
    client.force_login(mallory)
    response = call(client, "GET", "/api/v1/thresholds?environment=nope", expect_status=400)
    assert response.json()["errors"][0]["expected"] == "an existing environment slug"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field", "expected", "received"),
    [
        ("minutes=abc", "minutes", "an integer from 1 to 10080", "abc"),
        ("noise_band_pct=200", "noise_band_pct", "a finite number from 0 to 100", "200"),
        ("environment=nope", "environment", ["production", "staging"], "nope"),
    ],
)
def test_a_comparison_parameter_says_what_it_expected_and_received(
    client, mallory, blog, query, field, expected, received
):
    route = make_route(blog, "/posts/{slug}")
    client.force_login(mallory)
    response = call(
        client, "GET", f"/api/v1/routes/{route.pk}/comparison?{query}", expect_status=400
    )
    (error,) = response.json()["errors"]
    assert (error["field"], error["expected"], error["received"]) == (field, expected, received)


# ---- what the errors may tell, and forged input that must not reach the database


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["service=search", "service=nope", "owner=Search%20team"])
def test_a_service_key_is_told_nothing_of_other_services_or_teams(client, blog, search, query):
    make_route(blog, "/posts/{slug}")
    make_route(search, "/search")
    key = make_key(blog)
    response = call(client, "GET", f"/api/v1/routes?{query}", expect_status=400, **bearer(key))
    (error,) = response.json()["errors"]
    field = query.split("=")[0]
    # Another team's name is as unknown as a misspelt one, and only its own are listed.
    assert error["expected"] == {"service": ["blog"], "owner": ["Blog team"]}[field]


@pytest.mark.django_db
def test_a_service_key_filters_by_its_own_service(client, blog):
    route = make_route(blog, "/posts/{slug}")
    key = make_key(blog)
    response = call(client, "GET", "/api/v1/routes?service=blog", **bearer(key))
    assert [r["id"] for r in response.json()["results"]] == [route.pk]


@pytest.mark.django_db
def test_a_name_filter_ignores_surrounding_spaces_and_refuses_empty(client, mallory, blog, search):
    ours = make_route(blog, "/posts/{slug}")
    make_route(search, "/search")
    client.force_login(mallory)
    found = call(client, "GET", "/api/v1/routes?service=blog%20").json()["results"]
    assert [r["id"] for r in found] == [ours.pk]
    call(client, "GET", "/api/v1/routes?service=", expect_status=400, expect_field="service")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field", "expected"),
    [
        ("routes?service=%20%20", "service", ["blog"]),
        ("routes?owner=%20", "owner", ["Blog team"]),
        ("thresholds?environment=%20%09", "environment", ["production", "staging"]),
        ("thresholds?signal=%20", "signal", SIGNALS),
        ("baselines?signal=%20%20", "signal", SIGNALS),
        ("changes?service=%20", "service", ["blog"]),
        ("rollback-notes?service=%20", "service", ["blog"]),
    ],
)
def test_a_name_filter_of_only_spaces_is_refused_as_empty_is(
    client, mallory, blog, query, field, expected
):
    make_route(blog, "/posts/{slug}")
    client.force_login(mallory)
    blank = call(client, "GET", f"/api/v1/{query}", expect_status=400).json()
    empty = call(client, "GET", f"/api/v1/{query.split('=')[0]}=", expect_status=400).json()
    (error,) = blank["errors"]
    received = query.split("=")[1].replace("%20", " ").replace("%09", "\t")
    assert (error["field"], error["received"]) == (field, received)
    assert error["expected"] == known(expected)
    assert "empty value" in error["message"]
    assert blank["retryable"] is False
    assert error["expected"] == empty["errors"][0]["expected"]


def forged_cursor(position):
    return base64.b64encode(f"p={position}".encode()).decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("/api/v1/routes", "abc"),
        ("/api/v1/routes", "1.5"),
        ("/api/v1/routes", str(2**63)),
        ("/api/v1/content", "a\x00b"),
    ],
)
def test_a_forged_cursor_is_a_400_not_a_database_error(client, mallory, blog, path, position):
    make_route(blog, "/posts/{slug}")
    make_content_item()
    client.force_login(mallory)
    cursor = forged_cursor(position)
    response = call(client, "GET", f"{path}?cursor={cursor}", expect_status=400)
    (error,) = response.json()["errors"]
    assert (error["field"], error["received"]) == ("cursor", cursor)


@pytest.mark.django_db
def test_a_cursor_of_a_next_link_still_pages(client, mallory, blog):
    routes = [make_route(blog, f"/r/{i}") for i in range(3)]
    client.force_login(mallory)
    first = call(client, "GET", "/api/v1/routes?page_size=2").json()
    second = call(client, "GET", first["next"]).json()
    seen = [r["id"] for r in first["results"] + second["results"]]
    assert sorted(seen) == sorted(route.pk for route in routes)


@pytest.mark.django_db
def test_a_nul_in_a_slug_field_is_a_400_naming_the_field(client, alice, blog):
    route = make_route(blog, "/posts/{slug}")
    client.force_login(alice)
    payload = threshold_body(route, signal="response_time_ms\x00")
    response = call(client, "POST", "/api/v1/thresholds", payload, expect_status=400)
    (error,) = response.json()["errors"]
    assert error["field"] == "signal"
    assert error["message"] == "no signal with key 'response_time_ms\\x00'"


@pytest.mark.django_db
@pytest.mark.parametrize("route_id", [" {} ", "+{}", "{}_0", "0x{}"])
def test_a_route_id_string_is_only_digits(client, alice, blog, route_id):
    route = make_route(blog, "/posts/{slug}")
    client.force_login(alice)
    payload = {"route": route_id.format(route.pk), "variable": "cdn ttl"}
    response = call(client, "POST", "/api/v1/changes", payload, expect_status=400)
    assert "route" in {error["field"] for error in response.json()["errors"]}


@pytest.mark.django_db
def test_a_route_id_of_digits_in_a_string_is_the_route(client, alice, blog):
    route = make_route(blog, "/posts/{slug}")
    client.force_login(alice)
    payload = threshold_body(route, route=str(route.pk))
    call(client, "POST", "/api/v1/thresholds", payload, expect_status=201)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/thresholds", "/api/v1/readings"])
def test_a_compressed_body_is_a_415_naming_the_coding(client, alice, blog, url):
    import gzip

    client.force_login(alice)
    body = gzip.compress(b'{"readings": []}')
    response = client.post(url, body, content_type="application/json",
                           HTTP_CONTENT_ENCODING="gzip", **bearer(make_key(blog)))  # fmt: skip
    assert response.status_code == 415
    assert response["Accept-Encoding"] == "identity"
    problem = response.json()
    assert problem["detail"] == (
        "Content-Encoding gzip is not supported; send the body uncompressed (identity)"
    )
    (error,) = problem["errors"]
    assert (error["field"], error["expected"], error["received"]) == (
        "Content-Encoding",
        ["identity"],
        "gzip",
    )


@pytest.mark.django_db
def test_identity_coding_and_a_bodiless_request_are_fine(client, mallory):
    client.force_login(mallory)
    call(client, "GET", "/api/v1/routes", HTTP_CONTENT_ENCODING="gzip")
    response = client.post("/api/v1/thresholds", "{", content_type="application/json",
                           HTTP_CONTENT_ENCODING="identity")  # fmt: skip
    assert response.status_code == 400  # on to the JSON, which is invalid


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/thresholds", "/api/v1/readings"])
def test_an_empty_idempotency_key_is_a_400_naming_the_header(client, alice, blog, url):
    client.force_login(alice)
    response = call(client, "POST", url, {}, expect_status=400, expect_field="Idempotency-Key",
                    HTTP_IDEMPOTENCY_KEY="", **bearer(make_key(blog)))  # fmt: skip
    (error,) = response.json()["errors"]
    assert (error["message"], error["expected"], error["received"]) == (
        "empty",
        "1 to 255 characters",
        0,
    )


@pytest.mark.django_db
def test_a_value_out_of_range_names_the_request_parts_it_can_come_from(
    client, alice, blog, monkeypatch
):
    # The database does not say which value; the 400 said nothing more than "a value".
    from django.db import DataError
    from django.utils import timezone

    from signals_app import evaluation
    from signals_app.models import Change
    from tests.builders import make_change

    route = make_route(blog)
    change = make_change(route, timezone.now())
    client.force_login(alice)

    def overflow(*args, **kwargs):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(evaluation, "compare_change", overflow)
    url = f"/api/v1/changes/{change.pk}/comparison?minutes=60&noise_band_pct=5"
    problem = call(client, "GET", url, expect_status=400).json()
    assert problem["detail"] == (
        "a value is out of range for the database: check the path's pk; "
        "the query parameters minutes, noise_band_pct"
    )
    assert problem["retryable"] is False

    def too_long(*args, **kwargs):
        raise DataError("value too long for type character varying(200)")

    monkeypatch.setattr(Change, "save", too_long)
    body = {
        "route": route.pk,
        "environment": "production",
        "variable": "TTL",
        "applied_at": "2026-11-20T10:00:00Z",
    }
    problem = call(client, "POST", "/api/v1/changes", body, expect_status=400).json()
    assert problem["detail"] == (
        "a value is out of range for the database: check the body fields applied_at, "
        "environment, route, variable"
    )


# ---- date-times: with a UTC offset everywhere, as a reading's observed_at

NO_OFFSET = "no UTC offset: add one, e.g. Z or +00:00"
TIMESTAMP = "an ISO 8601 date-time with a UTC offset, e.g. 2026-11-26T07:00:00Z"


@pytest.fixture
def owned(blog):
    from signals_app.models import Change, RollbackNote
    from tests.builders import environment

    route = make_route(blog)
    change = Change.objects.create(
        route=route, environment=environment(), variable="x", applied_at="2026-11-20T10:00Z"
    )
    return {"route": route, "change": change, "note": RollbackNote.objects.create(route=route)}


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["2026-11-26T18:00:00", "2026-11-26", "2026-11-26 18:00"])
@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("POST", "/api/v1/changes", {"variable": "x", "environment": "production"}, "applied_at"),
        ("PATCH", "/api/v1/changes/{change}", {}, "applied_at"),
        (
            "PATCH",
            "/api/v1/rollback-notes/{note}",
            {"rehearsal_outcome": "passed"},
            "rehearsed_at",
        ),  # fmt: skip
        ("POST", "/api/v1/baselines/capture", {}, "window_end"),
        ("POST", "/api/v1/baselines/capture", {}, "window_start"),
    ],
)
def test_a_body_date_time_without_offset_is_refused_as_a_readings_is(
    client, alice, owned, method, url, body, field, value
):
    # DRF read 2026-11-26T18:00:00 in the server's zone, silently; readings refuse it.
    client.force_login(alice)
    url = url.format(change=owned["change"].pk, note=owned["note"].pk)
    body = {"route": owned["route"].pk, **body, field: value}
    response = call(client, method, url, body, expect_status=400, expect_field=field)
    (error,) = [e for e in response.json()["errors"] if e["field"] == field]
    assert (error["message"], error["expected"], error["received"]) == (NO_OFFSET, TIMESTAMP, value)


@pytest.mark.django_db
@pytest.mark.parametrize("parameter", ["applied_after", "applied_before"])
def test_a_filter_date_time_without_offset_is_refused_as_a_readings_is(
    client, mallory, owned, parameter
):
    client.force_login(mallory)
    url = f"/api/v1/changes?{parameter}=2026-11-01T00:00:00"
    (error,) = call(client, "GET", url, expect_status=400).json()["errors"]
    assert (error["field"], error["message"], error["expected"], error["received"]) == (
        parameter,
        NO_OFFSET,
        TIMESTAMP,
        "2026-11-01T00:00:00",
    )
    # With one (any), and with the spaces a query string may carry around it, it filters.
    for value in ("2026-11-01T00:00:00Z", "2026-11-01T01:00:00%2B01:00", "%202026-11-01T00:00Z"):
        call(client, "GET", f"/api/v1/changes?{parameter}={value}")


@pytest.mark.django_db
def test_a_date_time_sent_back_in_another_offset_is_still_the_stored_one(client, alice, owned):
    client.force_login(alice)
    url = f"/api/v1/changes/{owned['change'].pk}"
    got = call(client, "GET", url).json()
    call(client, "PUT", url, {**got, "applied_at": "2026-11-20T11:00:00+01:00"})
    owned["change"].refresh_from_db()
    assert owned["change"].applied_at.isoformat() == "2026-11-20T10:00:00+00:00"


# ---- ids in filters: one that does not exist is said, as in a body


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("thresholds?route=987654", "route", "no route with id 987654"),
        ("baselines?route=987654", "route", "no route with id 987654"),
        ("changes?route=987654", "route", "no route with id 987654"),
        ("rollback-notes?route=987654", "route", "no route with id 987654"),
        ("rollback-notes?change=987654", "change", "no change with id 987654"),
    ],
)
def test_an_unknown_id_in_a_filter_is_a_400_naming_it(client, mallory, query, field, message):
    # It answered 200 with no results, as for a route without thresholds yet.
    client.force_login(mallory)
    response = call(client, "GET", f"/api/v1/{query}", expect_status=400)
    assert response.json()["detail"] == f"{field}: {message}"
    (error,) = response.json()["errors"]
    assert (error["field"], error["message"], error["received"]) == (field, message, "987654")
    assert error["expected"].startswith(f"the id of an existing {field}")


@pytest.mark.django_db
def test_a_known_id_filters_with_one_lookup(client, mallory, blog, django_assert_num_queries):
    route = make_route(blog)
    make_threshold(route)
    make_threshold(make_route(blog))
    client.force_login(mallory)
    # session, user, the route's existence, thresholds
    with django_assert_num_queries(4):
        results = call(client, "GET", f"/api/v1/thresholds?route={route.pk}").json()["results"]
    assert [t["route"] for t in results] == [route.pk]
    # A route without thresholds yet is an empty list, not an error.
    assert call(client, "GET", f"/api/v1/changes?route={route.pk}").json()["results"] == []
