"""POST /api/v1/readings: DESIGN.md §Ingestion contract, every status code and field."""

import json
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import override_settings

from signals_app.models import IdempotentRequest, Reading, ServiceKey
from tests.builders import make_key, make_route

URL = "/api/v1/readings"


@pytest.fixture
def post_route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def blog_key(blog):
    return make_key(blog)


@pytest.fixture
def post(client, blog_key, post_route):
    """post(payload, expect_status=201, expect_field=None, **headers) -> response."""

    def send(payload, expect_status=201, expect_field=None, *, key=blog_key, raw=None, **extra):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        headers.update(extra)
        content_type = headers.pop("content_type", "application/json")
        headers.setdefault("CONTENT_TYPE", content_type)
        data = raw if raw is not None else json.dumps(payload)
        response = client.generic("POST", URL, data, content_type=content_type, **headers)
        assert response.status_code == expect_status, response.content
        if expect_status >= 400:
            assert response["Content-Type"] == "application/problem+json"
            problem = response.json()
            assert problem["status"] == expect_status
            assert set(problem) >= {"type", "title", "status", "detail", "retryable", "errors"}
            if expect_field:
                fields = {error["field"] for error in problem["errors"]}
                assert expect_field in fields, problem
        return response

    return send


def reading(**fields):
    values = {"route": "/posts/{slug}", "signal": "response_time_ms", "value": 182.5}
    values.update(fields)
    return values


def batch(*items):
    return {"readings": list(items)}


@pytest.mark.django_db
def test_it_stores_a_reading_with_the_contract_defaults(post, post_route):
    before = datetime.now(UTC)
    response = post(batch(reading()))
    assert response.json() == {"accepted": 1, "duplicates": 0}
    stored = Reading.objects.get()
    assert stored.route == post_route
    assert stored.service == post_route.service
    assert stored.environment.slug == "production"
    assert stored.signal.key == "response_time_ms"
    assert stored.cache_status == "UNKNOWN"
    assert stored.release == ""
    assert stored.idempotency_key is None
    assert stored.observed_at >= before - timedelta(seconds=1)
    assert stored.received_at >= before - timedelta(seconds=1)


@pytest.mark.django_db
def test_it_stores_every_field_of_the_contract_example(post, blog):
    make_route(blog, "/posts/{slug}", method="POST")
    response = post(
        batch(
            reading(
                method="post",
                environment="staging",
                observed_at="2026-01-26T07:00:00Z",
                cache_status="miss",
                release="1.7.9",
                idempotency_key="web-1:000123",
            )
        )
    )
    assert response.status_code == 201
    stored = Reading.objects.get()
    assert stored.route.method == "POST"
    assert stored.environment.slug == "staging"
    assert stored.observed_at == datetime(2026, 1, 26, 7, tzinfo=UTC)
    assert stored.cache_status == "MISS"
    assert (stored.release, stored.idempotency_key) == ("1.7.9", "web-1:000123")


@pytest.mark.django_db
def test_the_path_with_a_trailing_slash_works_too(client, blog_key, post_route):
    response = client.post(
        URL + "/",
        json.dumps(batch(reading())),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {blog_key}",
    )
    assert response.status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["HIT", "stale", "Revalidated", "expired", "BYPASS", "dynamic"])
def test_it_accepts_cache_status_in_any_case(post, status):
    post(batch(reading(cache_status=status)))
    assert Reading.objects.get().cache_status == status.upper()


# ---- bad values, field by field


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_it_rejects_non_finite_tokens(post, token):
    raw = '{"readings": [{"route": "/posts/{slug}", "signal": "response_time_ms", "value": %s}]}'
    response = post(None, 400, "value", raw=raw % token)
    assert response.json()["errors"][0]["received"] == token
    assert response.json()["errors"][0]["index"] == 0
    assert response.json()["retryable"] is False


@pytest.mark.django_db
def test_it_rejects_a_value_that_overflows_to_infinity(post):
    raw = '{"readings": [{"route": "/posts/{slug}", "signal": "response_time_ms", "value": 1e400}]}'
    post(None, 400, "value", raw=raw)


@pytest.mark.django_db
def test_it_rejects_a_huge_integer_value(post):
    raw = '{"readings": [{"route": "/posts/{slug}", "signal": "db_calls", "value": 1%s}]}'
    post(None, 400, "value", raw=raw % ("0" * 400))


@pytest.mark.django_db
def test_a_value_of_5000_digits_is_a_field_error_in_the_clients_terms(post):
    raw = '{"readings": [{"route": "/posts/{slug}", "signal": "db_calls", "value": %s}]}'
    response = post(None, 400, "value", raw=raw % ("1" * 5000))
    (error,) = response.json()["errors"]
    assert (error["index"], error["message"]) == (0, "must be a finite number")
    assert error["received"] == "11111111111111111111… (5000 digits)"
    assert "set_int_max_str_digits" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("signal", "value"), [("response_time_ms", 1.7e308), ("db_calls", 1e12 + 1), ("db_calls", 1e13)]
)
def test_it_rejects_a_finite_value_beyond_1e12(post, signal, value):
    # Three readings of 1.7e308 overflowed every mean: the evaluation pass failed for all.
    response = post(batch(reading(signal=signal, value=value)), 400, "value")
    problem = response.json()
    (error,) = problem["errors"]
    assert error["expected"].endswith(
        "<= 1e12 (duration)" if signal == "response_time_ms" else "<= 1e12 (count)"
    )
    assert error["received"] == value
    assert problem["retryable"] is False
    assert not Reading.objects.exists()


@pytest.mark.django_db
def test_it_accepts_a_value_of_exactly_1e12(post):
    post(batch(reading(value=1e12), reading(signal="db_calls", value=10**12)))


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["182.5", True, False, None, [1], {"v": 1}])
def test_it_rejects_a_value_that_is_not_a_number(post, value):
    post(batch(reading(value=value)), 400, "value")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("signal", "value"),
    [
        ("response_time_ms", -0.1),
        ("db_calls", -1),
        ("error_rate", 1.5),
        ("error_rate", -0.01),
        ("cache_hit", 2),
    ],
)
def test_it_rejects_a_value_outside_its_signal_kind(post, signal, value):
    response = post(batch(reading(signal=signal, value=value)), 400, "value")
    assert "[0, 1]" in str(response.json()["errors"]) or ">= 0" in str(response.json()["errors"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("signal", "value"), [("error_rate", 0), ("error_rate", 1), ("db_calls", 0)]
)
def test_it_accepts_the_edges_of_a_kind(post, signal, value):
    post(batch(reading(signal=signal, value=value)))


@pytest.mark.django_db
def test_a_score_must_lie_within_0_and_100(post):
    from signals_app.models import Signal

    Signal.objects.create(key="lighthouse", kind="score", direction="lower_worse")
    post(batch(reading(signal="lighthouse", value=100)))
    post(batch(reading(signal="lighthouse", value=100.5)), 400, "value")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "observed_at", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-26T07:00:00", 1764140400, True]
)
def test_it_rejects_an_unparseable_timestamp(post, observed_at):
    post(batch(reading(observed_at=observed_at)), 400, "observed_at")


@pytest.mark.django_db
def test_a_timestamp_without_offset_is_refused_saying_it_needs_one(post):
    response = post(batch(reading(observed_at="2026-11-26T10:00:00")), 400, "observed_at")
    (error,) = response.json()["errors"]
    assert error["message"] == "no UTC offset: add one, e.g. Z or +00:00"
    assert error["received"] == "2026-11-26T10:00:00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "observed_at", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "1999-12-31T23:59:59Z"]
)
def test_it_rejects_a_timestamp_before_2000(post, observed_at):
    # 1970-01-01 is a client whose clock was never set (epoch 0).
    response = post(batch(reading(observed_at=observed_at)), 400, "observed_at")
    (error,) = response.json()["errors"]
    assert error["expected"] == "at or after 2000-01-01T00:00:00+00:00"
    assert error["received"] == observed_at


@pytest.mark.django_db
def test_it_accepts_a_backfill_of_months_old_readings(post):
    post(batch(reading(observed_at="2000-01-01T00:00:00Z")))
    months_ago = datetime.now(UTC) - timedelta(days=200)
    post(batch(reading(observed_at=months_ago.isoformat())))
    assert Reading.objects.count() == 2


@pytest.mark.django_db
def test_it_rejects_a_timestamp_more_than_5_minutes_ahead(post):
    soon = datetime.now(UTC) + timedelta(minutes=4)
    post(batch(reading(observed_at=soon.isoformat())))
    later = datetime.now(UTC) + timedelta(minutes=6)
    post(batch(reading(observed_at=later.isoformat())), 400, "observed_at")
    post(batch(reading(observed_at="9999-12-31T23:59:59+00:00")), 400, "observed_at")


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["FRESH", "", 1, None])
def test_it_rejects_an_unknown_cache_status(post, status):
    if status is None:  # null means "not given": the default applies
        post(batch(reading(cache_status=status)))
        return
    post(batch(reading(cache_status=status)), 400, "cache_status")


@pytest.mark.django_db
def test_it_rejects_an_unknown_signal(post):
    post(batch(reading(signal="latency")), 400, "signal")


@pytest.mark.django_db
def test_it_rejects_an_unknown_environment(post):
    post(batch(reading(environment="qa")), 400, "environment")


@pytest.mark.django_db
def test_an_unknown_route_names_method_path_and_service(post):
    response = post(batch(reading(route="/nowhere", method="DELETE")), 400, "route")
    message = response.json()["errors"][0]["message"]
    assert "DELETE /nowhere" in message
    assert "blog" in message
    assert "registered by their owner" in message


@pytest.mark.django_db
def test_it_refuses_a_route_of_another_service(post, search):
    make_route(search, "/search")
    response = post(batch(reading(), reading(route="/search")), 403, "route")
    assert response.json()["errors"][0]["index"] == 1
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_it_rejects_an_unknown_method(post):
    post(batch(reading(method="FETCH")), 400, "method")


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [("route", None), ("route", ""), ("signal", 3)])
def test_it_rejects_a_missing_or_mistyped_name(post, field, value):
    post(batch(reading(**{field: value})), 400, field)


@pytest.mark.django_db
def test_it_rejects_an_over_long_idempotency_key(post):
    post(batch(reading(idempotency_key="k" * 255)))
    post(batch(reading(idempotency_key="k" * 256)), 400, "idempotency_key")


@pytest.mark.django_db
def test_it_rejects_an_unknown_field(post):
    post(batch(reading(service="search")), 400, "service")


@pytest.mark.django_db
def test_it_rejects_an_over_long_release(post):
    post(batch(reading(release="r" * 101)), 400, "release")


# ---- the body


@pytest.mark.django_db
def test_it_rejects_an_empty_batch(post):
    post(batch(), 400, "readings")


@pytest.mark.django_db
def test_it_refuses_1001_readings_as_too_large(post):
    response = post(batch(*[reading() for _ in range(1001)]), 413, "readings")
    assert response.json()["retryable"] is False
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_it_accepts_1000_readings(post):
    post(batch(*[reading(value=i) for i in range(1000)]))
    assert Reading.objects.count() == 1000


@pytest.mark.django_db
def test_it_refuses_a_body_over_1_mib_before_parsing(post):
    raw = '{"readings": [' + " " * (1024 * 1024) + "]}"
    post(None, 413, raw=raw)


@pytest.mark.django_db
def test_it_refuses_a_declared_length_over_1_mib_without_reading(post):
    # The declared length alone decides: the small body is never read.
    post(batch(reading()), 413, CONTENT_LENGTH=str(1024 * 1024 + 1))
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_a_lying_short_content_length_truncates_the_body_to_invalid_json(post):
    post(batch(reading()), 400, CONTENT_LENGTH="10")


@pytest.mark.django_db
def test_it_refuses_a_chunked_body_over_1_mib(client, blog_key, post_route):
    import io

    big = b'{"readings": [' + b" " * (2 * 1024 * 1024) + b"]}"
    response = client.generic(
        "POST",
        URL,
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {blog_key}",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_TYPE="application/json",
        **{"wsgi.input": io.BytesIO(big), "wsgi.input_terminated": True},
    )
    assert response.status_code == 413


@pytest.mark.django_db
def test_it_reads_a_small_chunked_body(client, blog_key, post_route):
    import io

    payload = json.dumps(batch(reading())).encode()
    response = client.generic(
        "POST",
        URL,
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {blog_key}",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_TYPE="application/json",
        **{"wsgi.input": io.BytesIO(payload), "wsgi.input_terminated": True},
    )
    assert response.status_code == 201, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_it_refuses_a_body_that_is_not_json(post, content_type):
    post(batch(reading()), 415, content_type=content_type)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw", ['{"readings": [', "", "null", "[]", '"readings"', '{"rows": []}', "\xff", "[" * 100000]
)
def test_it_rejects_malformed_json(post, raw):
    post(None, 400, raw=raw)


@pytest.mark.django_db
def test_a_body_nested_too_deeply_is_a_400_naming_the_limit(post):
    response = post(None, 400, raw='{"readings": ' + "[" * 100000 + "]" * 100000 + "}")
    assert "deeper than 32 levels" in response.json()["detail"]


@pytest.mark.django_db
def test_it_rejects_readings_that_are_not_a_list(post):
    post({"readings": {"route": "/posts/{slug}"}}, 400, "readings")


@pytest.mark.django_db
@pytest.mark.parametrize("item", [1, "reading", None, [1, 2]])
def test_it_rejects_items_that_are_not_objects(post, item):
    response = post(batch(reading(), item), 400)
    problem = response.json()
    assert problem["errors"][0]["index"] == 1
    assert "First: readings[1]: each reading must be a JSON object" in problem["detail"]


# ---- atomicity and idempotency


@pytest.mark.django_db
def test_one_bad_reading_stores_nothing(post):
    response = post(batch(reading(), reading(), reading(value=-1)), 400, "value")
    assert response.json()["errors"][0]["index"] == 2
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_it_lists_every_invalid_reading(post):
    response = post(batch(reading(value="x"), reading(), reading(signal="nope")), 400)
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (0, "value"),
        (2, "signal"),
    ]


@pytest.mark.django_db
def test_it_counts_a_retried_batch_as_duplicates(post):
    first = batch(reading(idempotency_key="a"), reading(idempotency_key="b"))
    assert post(first).json() == {"accepted": 2, "duplicates": 0}
    # The client re-batched: one old key, one new.
    again = batch(reading(idempotency_key="b"), reading(idempotency_key="c"), reading())
    assert post(again).json() == {"accepted": 2, "duplicates": 1}
    assert Reading.objects.count() == 4


@pytest.mark.django_db
def test_the_same_key_twice_in_one_batch_is_a_duplicate(post):
    response = post(batch(reading(idempotency_key="a"), reading(idempotency_key="a", value=1)))
    assert response.json() == {"accepted": 1, "duplicates": 1}
    assert Reading.objects.get().value == 182.5


@pytest.mark.django_db
def test_idempotency_keys_are_per_service(post, client, search):
    make_route(search, "/posts/{slug}")
    post(batch(reading(idempotency_key="a")))
    response = post(batch(reading(idempotency_key="a")), key=make_key(search))
    assert response.json() == {"accepted": 1, "duplicates": 0}


@pytest.mark.django_db
def test_a_replayed_header_with_the_same_body_replays_the_first_response(post):
    payload = batch(reading(idempotency_key="a"))
    first = post(payload, HTTP_IDEMPOTENCY_KEY="req-1")
    assert "Idempotent-Replayed" not in first
    again = post(payload, HTTP_IDEMPOTENCY_KEY="req-1")
    assert again.json() == first.json() == {"accepted": 1, "duplicates": 0}
    assert again["Idempotent-Replayed"] == "true"
    assert Reading.objects.count() == 1


@pytest.mark.django_db
def test_a_replayed_header_with_another_body_is_422(post):
    post(batch(reading()), HTTP_IDEMPOTENCY_KEY="req-1")
    response = post(batch(reading(value=1)), 422, HTTP_IDEMPOTENCY_KEY="req-1")
    assert response.json()["retryable"] is False
    assert Reading.objects.count() == 1


@pytest.mark.django_db
def test_a_retry_while_the_first_is_running_is_409(post, blog):
    payload = batch(reading())
    digest = __import__("hashlib").sha256(json.dumps(payload).encode()).hexdigest()
    IdempotentRequest.objects.create(service=blog, key="req-1", fingerprint=digest)
    response = post(payload, 409, HTTP_IDEMPOTENCY_KEY="req-1")
    # "retry after it finishes": the retry replays the first request's response.
    assert response.json()["retryable"] is True
    assert response["Retry-After"] == "1"
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_a_stale_running_request_is_taken_over(post, blog):
    payload = batch(reading())
    digest = __import__("hashlib").sha256(json.dumps(payload).encode()).hexdigest()
    IdempotentRequest.objects.create(
        service=blog,
        key="req-1",
        fingerprint=digest,
        created_at=datetime.now(UTC) - timedelta(hours=1),
    )
    post(payload, HTTP_IDEMPOTENCY_KEY="req-1")
    assert IdempotentRequest.objects.get().state == "done"


@pytest.mark.django_db
def test_a_failed_request_frees_its_idempotency_key(post):
    post(batch(reading(signal="nope")), 400, HTTP_IDEMPOTENCY_KEY="req-1")
    post(batch(reading(route="/elsewhere")), 400, HTTP_IDEMPOTENCY_KEY="req-2")
    assert IdempotentRequest.objects.count() == 0
    post(batch(reading()), HTTP_IDEMPOTENCY_KEY="req-2")


@pytest.mark.django_db
def test_an_over_long_idempotency_header_is_400(post):
    post(batch(reading()), 400, HTTP_IDEMPOTENCY_KEY="k" * 256)


# ---- keys


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer dq_nope.nope", "Bearer not-a-key", "Basic YTpi", "Bearer a b"],
)
def test_it_refuses_a_missing_or_unknown_key(client, post_route, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.post(
        URL, json.dumps(batch(reading())), content_type="application/json", **headers
    )
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["retryable"] is False


@pytest.mark.django_db
def test_it_refuses_a_wrong_secret(post, blog_key):
    prefix = blog_key.split(".")[0]
    post(batch(reading()), 401, key=prefix + ".wrong")


@pytest.mark.django_db
def test_it_refuses_a_revoked_key(post, blog_key):
    ServiceKey.objects.update(revoked_at=datetime.now(UTC))
    response = post(batch(reading()), 401)
    assert "revoked" in response.json()["detail"]


@pytest.mark.django_db
def test_it_refuses_an_expired_key(post, blog_key):
    ServiceKey.objects.update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = post(batch(reading()), 401)
    assert "expired" in response.json()["detail"]


@pytest.mark.django_db
def test_a_person_cannot_post_readings(client, alice, post_route):
    client.force_login(alice)
    response = client.post(URL, json.dumps(batch(reading())), content_type="application/json")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_it_records_last_use_at_most_once_a_minute(post, django_assert_num_queries):
    post(batch(reading()))
    first = ServiceKey.objects.get().last_used_at
    assert first is not None
    # the key and the batch's names are remembered: the insert alone, no UPDATE of the key
    with django_assert_num_queries(1):
        post(batch(reading()))
    assert ServiceKey.objects.get().last_used_at == first
    ServiceKey.objects.update(last_used_at=first - timedelta(minutes=2))
    from signals_app.api import authentication

    authentication.keys.clear()  # as when DQ_INGEST_CACHE_SECONDS has passed
    post(batch(reading()))
    assert ServiceKey.objects.get().last_used_at > first


# ---- limits and failures


@pytest.fixture
def frozen_throttle_clock(monkeypatch):
    """The throttle's clock stopped 20 s into a one-minute window. With the real clock a
    window could end between two requests of a test and reset the count (seen once: a
    201 where the 429 was expected)."""
    from signals_app.api import throttling

    window_start = 1_800_000_000.0  # a multiple of 60
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: window_start + 20))


@pytest.mark.django_db
def test_it_rate_limits_per_key_with_retry_after(post, blog, post_route, frozen_throttle_clock):
    with override_settings(DQ_INGEST_RATE="2/min"):
        post(batch(reading()))
        post(batch(reading()))
        response = post(batch(reading()), 429)
        assert response.json()["retryable"] is True
        assert response["Retry-After"] == "40"  # the window's remaining 40 s
        # another key of the same service has its own budget
        post(batch(reading()), key=make_key(blog))


@pytest.fixture
def redis_cache():
    """CACHES pointing at the test Redis (DQ_TEST_REDIS_URL, e.g. db 15), under a key prefix
    of its own so parallel runs and earlier runs never share a counter."""
    url = os.environ.get("DQ_TEST_REDIS_URL")
    if not url:
        pytest.skip("DQ_TEST_REDIS_URL is not set (.ci/run sets it and starts Redis)")
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"dq-test-{uuid.uuid4().hex}",
        }
    }


@pytest.mark.django_db
def test_workers_sharing_a_redis_cache_share_one_count(post, redis_cache, frozen_throttle_clock):
    with override_settings(DQ_INGEST_RATE="3/min"):
        # Each override builds a new cache client with its own connections, as each
        # gunicorn worker has: the count must still be one.
        for _ in range(3):
            with override_settings(CACHES=redis_cache):
                post(batch(reading()))
        with override_settings(CACHES=redis_cache):
            post(batch(reading()), 429)


@pytest.mark.django_db
def test_it_lets_readings_through_with_a_warning_when_the_cache_is_unreachable(
    post, frozen_throttle_clock, caplog, monkeypatch
):
    from signals_app.api.throttling import ServiceKeyRateThrottle

    monkeypatch.setattr(ServiceKeyRateThrottle, "_warned_at", None)
    monkeypatch.setattr(ServiceKeyRateThrottle, "_down_until", None)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
        }
    }
    with override_settings(DQ_INGEST_RATE="1/min", CACHES=down):
        post(batch(reading()))
        post(batch(reading()))  # over the rate, but nothing can count it
    assert Reading.objects.count() == 2
    warnings = [r for r in caplog.records if "rate limit not applied" in r.getMessage()]
    assert len(warnings) == 1  # once per minute, not once per request
    assert warnings[0].levelname == "WARNING"


@pytest.mark.django_db
def test_a_cache_that_hangs_is_asked_once_then_skipped(
    post, frozen_throttle_clock, caplog, monkeypatch
):
    """A Redis that accepts connections but never answers costs one request its socket
    timeout; the process's next requests do not ask it again (SKIP_CACHE_SECONDS)."""
    from signals_app.api.throttling import ServiceKeyRateThrottle

    monkeypatch.setattr(ServiceKeyRateThrottle, "_warned_at", None)
    monkeypatch.setattr(ServiceKeyRateThrottle, "_down_until", None)
    accepted = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)

        def accept_and_stay_silent():
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except TimeoutError:
                    continue

        stop = threading.Event()
        thread = threading.Thread(target=accept_and_stay_silent)
        thread.start()
        hanging = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{listener.getsockname()[1]}/0",
                "OPTIONS": {"socket_connect_timeout": 0.1, "socket_timeout": 0.1},
            }
        }
        try:
            with override_settings(DQ_INGEST_RATE="1/min", CACHES=hanging):
                for value in (1.0, 2.0, 3.0):
                    post(batch(reading(value=value)))
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()
    assert Reading.objects.count() == 3
    assert len(accepted) == 1  # asked by the first request only


@pytest.mark.django_db
def test_it_answers_503_retryable_when_the_database_is_unavailable(post, monkeypatch):
    from django.db import OperationalError

    from signals_app.api import ingest

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ingest, "store", down)
    response = post(batch(reading()), 503)
    assert response.json()["retryable"] is True
    assert response["Retry-After"]


@pytest.mark.django_db
def test_get_is_405_problem(client, blog_key):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {blog_key}")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
@pytest.mark.parametrize("size", [1, 1000])
def test_queries_per_request_do_not_grow_with_the_batch(post, size, django_assert_num_queries):
    from signals_app.api import authentication, ingest

    post(batch(reading()))  # records the key's last use, so no UPDATE follows
    readings = [reading(value=i, idempotency_key=f"k-{size}-{i}") for i in range(size)]
    authentication.keys.clear()
    ingest.names.clear()
    # key lookup, routes+signals+environments of the batch, insert
    with django_assert_num_queries(3):
        post(batch(*readings))
    readings = [reading(value=i, idempotency_key=f"again-{size}-{i}") for i in range(size)]
    # the key and the names are remembered now: the insert alone
    with django_assert_num_queries(1):
        post(batch(*readings))


@pytest.mark.django_db
def test_a_route_registered_after_a_refusal_is_found_at_once(post, blog):
    post(batch(reading()))
    post(batch(reading(route="/new")), 400, "route")
    make_route(blog, "/new")
    post(batch(reading(route="/new")))


# Transactional: the foreign key is checked when the insert commits, as in production.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("header", [{}, {"HTTP_IDEMPOTENCY_KEY": "req-1"}])
def test_a_route_removed_while_remembered_is_refused_not_a_500(post, post_route, header):
    post(batch(reading()))
    post_route.delete()
    response = post(batch(reading()), 400, "route", **header)
    assert "no route GET /posts/{slug}" in response.json()["errors"][0]["message"]


@pytest.mark.django_db
def test_a_revoked_key_stops_working_within_the_cache_time(post, settings):
    post(batch(reading()))
    ServiceKey.objects.update(revoked_at=datetime.now(UTC))
    settings.DQ_INGEST_CACHE_SECONDS = 0
    from signals_app.api import authentication

    authentication.keys.clear()  # what the passing of DQ_INGEST_CACHE_SECONDS does
    post(batch(reading()), 401)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrency test needs PostgreSQL")
def test_two_threads_posting_the_same_keys_store_one_row_each(blog_key, post_route):
    from django.db import connections
    from django.test import Client

    payload = json.dumps(batch(*[reading(idempotency_key=f"k-{i}") for i in range(300)]))
    barrier = threading.Barrier(2)
    results = []

    def send():
        try:
            barrier.wait()
            response = Client().post(
                URL,
                payload,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {blog_key}",
            )
            results.append(response.json())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Reading.objects.count() == 300
    # exactly one row per key, whichever thread won each one
    assert sum(result["accepted"] for result in results) == 300
    assert sum(result["duplicates"] for result in results) == 300


@pytest.mark.django_db
def test_a_replay_answers_even_after_the_route_was_removed(post, post_route):
    payload = batch(reading())
    post(payload, HTTP_IDEMPOTENCY_KEY="req-1")
    Reading.objects.all().delete()
    post_route.delete()
    again = post(payload, HTTP_IDEMPOTENCY_KEY="req-1")
    assert again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["route", "signal", "environment", "release", "idempotency_key"])
def test_a_lone_surrogate_is_refused_not_a_500(post, field):
    raw = json.dumps(batch(reading(**{field: "x"}))).replace('"x"', '"\\ud800"')
    post(None, 400, field, raw=raw)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("idempotency_key", "a\x00b", "contains NUL (\\u0000)"),
        ("idempotency_key", "\ud800", "contains a lone surrogate (not valid Unicode)"),
        ("release", "\ud800", "contains a lone surrogate (not valid Unicode)"),
        ("release", "a\x00b", "contains NUL (\\u0000)"),
        ("route", "\ud800", "contains a lone surrogate (not valid Unicode)"),
        ("idempotency_key", "", "must not be empty"),
        ("idempotency_key", "k" * 256, "longer than 255 characters"),
        ("release", 7, "must be a string"),
    ],
)
def test_a_text_error_says_what_is_wrong_with_the_text(post, field, text, message):
    (error,) = post(batch(reading(**{field: text})), 400, field).json()["errors"]
    assert error["message"] == message


def _wsgi_post(application, key, payload):
    """One request through the real WSGI handler, with its request_started/finished signals."""
    import io

    body = json.dumps(payload).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": URL,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
    }
    status = []
    chunks = application(environ, lambda line, headers, exc_info=None: status.append(line))
    content = b"".join(chunks)
    chunks.close()  # sends request_finished, as a WSGI server does
    return int(status[0].split()[0]), json.loads(content)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
def test_a_connection_lost_with_the_database_fails_one_request_retryably(
    blog_key, post_route, settings
):
    """Without health checks (CONN_HEALTH_CHECKS off, the default) a kept connection that the
    server closed costs one retryable 503; the next request gets a new connection."""
    import psycopg
    from django.core.wsgi import get_wsgi_application
    from django.db import connections

    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is False
    database = connections["default"].settings_dict
    kept = database["CONN_MAX_AGE"]
    database["CONN_MAX_AGE"] = 600  # the connection is kept between requests
    application = get_wsgi_application()
    try:
        assert _wsgi_post(application, blog_key, batch(reading()))[0] == 201
        pid = connection.connection.info.backend_pid  # the connection kept for the next request
        dsn = connection.connection.info.dsn
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        status, problem = _wsgi_post(application, blog_key, batch(reading(value=2.0)))
        assert (status, problem["retryable"]) == (503, True), problem
        status, result = _wsgi_post(application, blog_key, batch(reading(value=3.0)))
        assert (status, result) == (201, {"accepted": 1, "duplicates": 0})
        assert connection.connection.info.backend_pid != pid
    finally:
        database["CONN_MAX_AGE"] = kept
        connections.close_all()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "application/json",
        "application/json, application/problem+json",
        "text/html",
    ],
)
def test_any_accept_header_gets_json_never_a_406(post, accept):
    extra = {"HTTP_ACCEPT": accept} if accept is not None else {}
    response = post(batch(reading()), **extra)
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"accepted": 1, "duplicates": 0}
    problem = post(batch(reading(value="x")), 400, "value", **extra)
    assert problem["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_a_bad_key_is_401_whatever_the_accept_header(post):
    post(batch(reading()), 401, key="dq_nope.nothing", HTTP_ACCEPT="text/html")
