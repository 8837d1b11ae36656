"""The Reporter with a fake clock and a fake transport: batching, retries, overflow, shutdown."""

import logging
import time

import pytest
from dqclient.reporter import OPTIONS

from dqclient import Reporter

from .conftest import FakeTransport, created, problem


def record_requests(reporter, n, route="/posts/{slug}"):
    for _ in range(n):
        reporter.record_request("GET", route, 12.5, 0, "HIT", 3)


def test_a_request_becomes_three_readings_with_stable_keys(make_reporter, clock):
    transport = FakeTransport()
    reporter = make_reporter(transport)
    reporter.record_request("GET", "/posts/{slug}", 182.456, 0, "MISS", 4)

    reporter.flush()

    assert transport.readings == [
        {
            "method": "GET",
            "route": "/posts/{slug}",
            "environment": "staging",
            "observed_at": "2026-09-21T14:30:00.000Z",
            "cache_status": "MISS",
            "release": "1.2.3",
            "signal": signal,
            "value": value,
            "idempotency_key": f"web-1:1:{suffix}",
        }
        for signal, value, suffix in [
            ("response_time_ms", 182.456, "t"),
            ("error_rate", 0, "e"),
            ("db_calls", 4, "d"),
        ]
    ]
    headers = transport.calls[0]["headers"]
    assert headers["Authorization"] == "Bearer dq_test.secret"
    assert headers["Content-Type"] == "application/json"


def test_it_leaves_db_calls_out_when_unknown(make_reporter):
    transport = FakeTransport()
    reporter = make_reporter(transport)
    reporter.record_request("POST", "/comments", 5.0, 1, "UNKNOWN", None)
    reporter.flush()
    assert [(r["signal"], r["value"]) for r in transport.readings] == [
        ("response_time_ms", 5.0),
        ("error_rate", 1),
    ]


def test_it_sends_batches_of_at_most_batch_size(make_reporter):
    transport = FakeTransport()
    reporter = make_reporter(transport)
    record_requests(reporter, 400)  # 1,200 readings

    reporter.run_pending()

    # two full batches go at once; the rest waits for the interval
    assert [len(call["readings"]) for call in transport.calls] == [500, 500]
    reporter.flush()
    assert [len(call["readings"]) for call in transport.calls] == [500, 500, 200]
    assert len(set(transport.keys())) == 1200


def test_it_sends_a_partial_batch_when_the_interval_is_due(make_reporter, clock):
    transport = FakeTransport()
    reporter = make_reporter(transport, flush_interval=5.0)
    record_requests(reporter, 10)

    reporter.run_pending()
    assert transport.calls == []

    clock.advance(5.0)
    reporter.run_pending()
    assert len(transport.readings) == 30


def test_it_retries_503_with_the_same_readings_and_keys(make_reporter, clock):
    transport = FakeTransport(problem(503, retryable=True), problem(503, retryable=True))
    reporter = make_reporter(transport)
    record_requests(reporter, 5)

    reporter.flush()

    assert len(transport.calls) == 3
    assert transport.keys(0) == transport.keys(1) == transport.keys(2)
    assert (
        transport.calls[0]["headers"]["Idempotency-Key"]
        == (transport.calls[2]["headers"]["Idempotency-Key"])
    )
    stats = reporter.stats()
    assert (stats["sent"], stats["retries"], stats["failed"]) == (15, 2, 0)


def test_it_backs_off_exponentially_with_jitter(make_reporter, clock):
    transport = FakeTransport(*[OSError("connection refused")] * 5)
    jitter = iter([0.0, 1.0, 0.5, 0.0, 1.0])
    reporter = make_reporter(
        transport, backoff_base=1.0, backoff_max=10.0, random=lambda: next(jitter)
    )
    record_requests(reporter, 1)

    reporter.flush()

    # half of min(max, base * 2**attempt) is fixed, the other half random
    assert clock.sleeps == [0.5, 2.0, 3.0, 4.0, 10.0]
    assert reporter.stats()["sent"] == 3


def test_it_honours_retry_after_seconds(make_reporter, clock):
    transport = FakeTransport(problem(429, retryable=True, headers={"retry-after": "7"}))
    reporter = make_reporter(transport)
    record_requests(reporter, 1)

    reporter.flush()

    assert clock.sleeps == [7.0]
    assert len(transport.calls) == 2


def test_it_honours_retry_after_as_a_date(make_reporter, clock):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock.time() + 30))
    transport = FakeTransport(problem(503, retryable=True, headers={"retry-after": when}))
    reporter = make_reporter(transport)
    record_requests(reporter, 1)

    reporter.flush()

    assert 29.0 <= clock.sleeps[0] <= 30.0


def test_backoff_is_never_shorter_than_retry_after_nor_longer_than_the_cap(make_reporter):
    reporter = make_reporter(backoff_base=1.0, backoff_max=8.0, max_retry_after=60.0)
    assert reporter.backoff_delay(0, retry_after=5.0) == 5.0
    assert reporter.backoff_delay(6, retry_after=1.0) == 6.0  # 8 * (0.5 + 0.5 * 0.5)
    assert reporter.backoff_delay(0, retry_after=3600.0) == 60.0


def test_it_retries_what_the_problem_marks_retryable(make_reporter):
    transport = FakeTransport(problem(409, retryable=True, title="Request in progress"))
    reporter = make_reporter(transport)
    record_requests(reporter, 1)
    reporter.flush()
    assert len(transport.calls) == 2
    assert reporter.stats()["sent"] == 3


def test_it_does_not_retry_a_400_and_logs_the_problem_once(make_reporter, caplog):
    invalid = problem(
        400,
        title="Invalid readings",
        errors=[
            {
                "index": 0,
                "field": "value",
                "message": "must be >= 0",
                "expected": ">= 0",
                "received": -1,
            }
        ],
    )
    transport = FakeTransport(invalid, invalid, invalid)
    reporter = make_reporter(transport, batch_size=1)
    caplog.set_level(logging.DEBUG, logger="dqclient")

    reporter.record("/posts/{slug}", "custom", 1.0)
    reporter.record("/posts/{slug}", "custom", 2.0)
    reporter.record("/posts/{slug}", "custom", 3.0)
    reporter.flush()

    assert len(transport.calls) == 3  # one per batch, no retries
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "400 Invalid readings" in errors[0].getMessage()
    assert "reading 0 value: must be >= 0 (expected >= 0, received -1)" in errors[0].getMessage()
    assert reporter.stats()["rejected"] == 3


def test_it_logs_each_kind_of_rejection(make_reporter, caplog):
    transport = FakeTransport(problem(401, title="Unknown key"), problem(415, title="Not JSON"))
    reporter = make_reporter(transport, batch_size=1)
    reporter.record("/a", "custom", 1.0)
    reporter.record("/a", "custom", 2.0)
    reporter.flush()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(messages) == 2
    assert "401 Unknown key" in messages[0]
    assert "415 Not JSON" in messages[1]


def test_it_resends_the_rest_of_a_batch_without_the_readings_the_registry_refused(
    make_reporter,
):
    unknown_route = problem(
        400, errors=[{"index": 1, "field": "route", "message": "no such route"}]
    )
    transport = FakeTransport(unknown_route)
    reporter = make_reporter(transport)
    reporter.record("/a", "custom", 1.0)
    reporter.record("/unknown", "custom", 2.0)
    reporter.record("/a", "custom", 3.0)

    reporter.flush()

    assert [r["value"] for r in transport.calls[1]["readings"]] == [1.0, 3.0]
    assert (
        transport.calls[1]["headers"]["Idempotency-Key"]
        != (transport.calls[0]["headers"]["Idempotency-Key"])
    )
    stats = reporter.stats()
    assert (stats["sent"], stats["rejected"]) == (2, 1)


def test_it_splits_a_batch_the_registry_finds_too_large(make_reporter):
    transport = FakeTransport(problem(413, title="Too large"))
    reporter = make_reporter(transport)
    for i in range(4):
        reporter.record("/a", "custom", float(i))
    reporter.flush()
    assert [len(c["readings"]) for c in transport.calls] == [4, 2, 2]
    assert reporter.stats()["sent"] == 4


def test_it_gives_up_after_max_retries_and_moves_on(make_reporter):
    transport = FakeTransport(*[problem(503, retryable=True)] * 3)
    reporter = make_reporter(transport, max_retries=2, batch_size=3)
    record_requests(reporter, 2)  # 6 readings: two batches
    reporter.flush()
    stats = reporter.stats()
    assert (stats["failed"], stats["sent"]) == (3, 3)


def test_it_drops_and_counts_when_the_queue_is_full(make_reporter):
    transport = FakeTransport()
    reporter = make_reporter(transport, max_queue=100)

    started = time.perf_counter()
    record_requests(reporter, 150)
    assert time.perf_counter() - started < 5.0  # never blocks (blocking would hang)

    assert reporter.stats()["dropped"] == 50
    reporter.flush()
    assert len(transport.readings) == 300


def test_close_sends_what_is_queued(make_reporter):
    transport = FakeTransport()
    reporter = make_reporter(transport)
    record_requests(reporter, 3)
    reporter.close()
    assert len(transport.readings) == 9
    # a closed reporter ignores what comes later, without raising
    record_requests(reporter, 3)
    assert reporter.record("/a", "custom", 1.0) is False
    assert len(transport.readings) == 9


def test_close_gives_up_at_its_deadline_instead_of_waiting(make_reporter, clock):
    transport = FakeTransport(*[problem(503, retryable=True, headers={"retry-after": "60"})] * 9)
    reporter = make_reporter(transport)
    record_requests(reporter, 2)

    started = clock.monotonic()
    reporter.close(timeout=10)

    assert clock.monotonic() - started <= 10
    assert len(transport.calls) == 1  # the Retry-After wait would pass the deadline
    assert reporter.stats()["failed"] == 6


def test_it_passes_the_time_left_before_the_deadline_as_the_timeout(make_reporter, clock):
    transport = FakeTransport()
    reporter = make_reporter(transport, timeout=5.0)
    record_requests(reporter, 1)
    reporter.close(timeout=2.0)
    assert transport.calls[0]["timeout"] == 2.0


def test_custom_readings_get_their_own_keys(make_reporter):
    transport = FakeTransport()
    reporter = make_reporter(transport)
    assert reporter.record("/checkout", "cart_value", 42.0, method="POST", cache_status="BYPASS")
    assert reporter.record("/checkout", "cart_value", float("nan")) is False
    reporter.flush()
    [reading] = transport.readings
    assert reading["signal"] == "cart_value"
    assert reading["method"] == "POST"
    assert reading["cache_status"] == "BYPASS"
    assert reading["idempotency_key"] == "web-1:1"


def test_a_retried_batch_counted_as_duplicates_is_not_resent(make_reporter):
    transport = FakeTransport(OSError("reset"), lambda batch: created(len(batch), duplicates=3))
    reporter = make_reporter(transport)
    record_requests(reporter, 1)
    reporter.flush()
    stats = reporter.stats()
    assert (stats["sent"], stats["duplicates"], stats["retries"]) == (0, 3, 1)


def test_it_is_disabled_without_url_or_key(monkeypatch, caplog):
    monkeypatch.delenv("DQ_URL", raising=False)
    monkeypatch.delenv("DQ_KEY", raising=False)
    reporter = Reporter(start=False)
    assert not reporter.enabled
    reporter.record_request("GET", "/a", 1.0, 0)
    assert reporter.flush() is True
    reporter.close()
    assert "DQ_URL or DQ_KEY is not set" in caplog.text


def test_a_malformed_url_disables_it_instead_of_raising(caplog):
    reporter = Reporter(url="registry:8000", key="k", start=False)
    assert not reporter.enabled
    assert "DQ_URL must be an http(s) URL" in caplog.text


def test_a_malformed_url_is_one_log_line(caplog):
    Reporter(url="registry:8000", key="dq_k.s", start=False)
    assert [r.getMessage() for r in caplog.records] == [
        "dqclient: reporting disabled: DQ_URL must be an http(s) URL like "
        "https://dq.example.com, got 'registry:8000'"
    ]


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("batch_size", "abc", "batch_size expects a whole number of readings from 1 to 1000"),
        ("flush_interval", "x", "flush_interval expects a number of seconds from 0.05 to 3600"),
        ("max_queue", None, "max_queue expects a whole number of requests from 1 to 1e+07"),
        ("timeout", float("nan"), "timeout expects a number of seconds from 0.1 to 600"),
        ("max_retries", 1.5, "max_retries expects a whole number of retries from 0 to 1000"),
        ("shutdown_timeout", True, "shutdown_timeout expects a number of seconds from 0 to 3600"),
    ],
)
def test_a_bad_option_disables_it_with_one_log_line_never_raising(caplog, option, value, expected):
    reporter = Reporter(url="http://r.invalid", key="dq_k.s", **{option: value})
    try:
        assert not reporter.enabled
        assert reporter._thread is None
        reporter.record_request("GET", "/a", 1.0, 0)
        assert reporter.stats()["queued"] == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"dqclient: reporting disabled: {expected}; received {value!r}"
        ]
    finally:
        reporter.close()


@pytest.mark.parametrize(
    "option, value, kept",
    [
        # earlier releases clamped these: an upgrade must not stop a host's reporting
        ("batch_size", 5000, 1000),
        ("batch_size", 0, 1),
        ("max_queue", 0, 1),
        ("flush_interval", 0, 0.05),
        ("timeout", -1, 0.1),
        # beyond what threading and the clock accept: OverflowError in the thread or close()
        ("flush_interval", 1e300, 3600.0),
        ("shutdown_timeout", 1e300, 3600.0),
    ],
)
def test_a_number_out_of_range_is_brought_into_it_with_a_warning(caplog, option, value, kept):
    reporter = Reporter(url="http://r.invalid", key="dq_k.s", **{option: value})
    try:
        assert reporter.enabled
        assert getattr(reporter, option) == kept
        assert [r.getMessage() for r in caplog.records] == [
            f"dqclient: {option} {value!r} is out of range "
            f"({OPTIONS[option][1]:g} to {OPTIONS[option][2]:g} {OPTIONS[option][4]}); "
            f"using {kept:g}"
        ]
    finally:
        assert reporter.close() is not False


def test_a_zero_flush_interval_does_not_spin(caplog):
    reporter = Reporter(url="http://r.invalid", key="dq_k.s", flush_interval=0)
    started = time.process_time()
    time.sleep(0.5)
    reporter.close()
    assert time.process_time() - started < 0.2


@pytest.mark.parametrize(
    "url",
    [
        "http://dq.example.com",
        "http://dq.example.com/",
        "http://dq.example.com/api/v1",
        "http://dq.example.com/api/v1/",
        "http://dq.example.com/api/v1/readings",
        "http://dq.example.com/api/v1/readings/",
    ],
)
def test_the_url_may_be_the_registry_its_api_or_the_readings_endpoint(url):
    reporter = Reporter(url=url, key="dq_k.s", start=False)
    assert reporter.url == "http://dq.example.com/api/v1/readings"


def test_a_pasted_bearer_prefix_is_taken_off_the_key(caplog):
    transport = FakeTransport()
    reporter = Reporter(
        url="http://r.invalid", key="Bearer dq_k.s", transport=transport, start=False
    )
    reporter.record_request("GET", "/a", 1.0, 0)
    reporter.flush()
    assert transport.calls[0]["headers"]["Authorization"] == "Bearer dq_k.s"
    assert caplog.records == []


def test_a_key_not_in_the_service_key_form_is_warned_about(caplog):
    reporter = Reporter(url="http://r.invalid", key="my-password", start=False)
    assert reporter.enabled
    assert "DQ_KEY does not look like a service key" in caplog.text
    assert "my-password" not in caplog.text


def test_it_reads_its_configuration_from_the_environment(monkeypatch):
    monkeypatch.setenv("DQ_URL", "https://dq.example.com/")
    monkeypatch.setenv("DQ_KEY", "dq_abc.def")
    monkeypatch.setenv("DQ_ENVIRONMENT", "staging")
    monkeypatch.setenv("DQ_RELEASE", "2.0.1")
    reporter = Reporter(start=False)
    try:
        assert reporter.enabled
        assert reporter.url == "https://dq.example.com/api/v1/readings"
        assert (reporter.key, reporter.environment, reporter.release) == (
            "dq_abc.def",
            "staging",
            "2.0.1",
        )
        assert Reporter(url="http://x:1/api/v1/readings/", start=False).url == (
            "http://x:1/api/v1/readings"
        )
    finally:
        reporter.close(timeout=0)


def test_the_thread_flushes_a_full_batch_without_being_asked():
    transport = FakeTransport()
    reporter = Reporter(
        url="http://r.invalid", key="k", transport=transport, batch_size=30, flush_interval=60
    )
    try:
        record_requests(reporter, 10)  # 30 readings
        deadline = time.monotonic() + 5
        while not transport.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(transport.readings) == 30
    finally:
        reporter.close(timeout=1)


def test_the_thread_flushes_on_request_and_on_close():
    transport = FakeTransport()
    reporter = Reporter(url="http://r.invalid", key="k", transport=transport, flush_interval=60)
    record_requests(reporter, 2)
    assert reporter.flush(timeout=5) is True
    assert len(transport.readings) == 6
    record_requests(reporter, 1)
    reporter.close(timeout=5)
    assert len(transport.readings) == 9
    assert not reporter._thread.is_alive()


def test_it_builds_readings_one_batch_at_a_time(make_reporter):
    unsent = []

    def answer(batch):
        unsent.append(reporter.stats()["unsent"])
        return created(len(batch))

    reporter = make_reporter(FakeTransport(*[answer] * 7))
    record_requests(reporter, 1000)  # 3,000 readings

    reporter.flush()

    # however long the queue, at most one batch of readings (plus a request's) is built
    assert len(unsent) == 6
    assert max(unsent) <= 2
    assert reporter.stats()["sent"] == 3000


def unknown_route_problem(batch, route="/drafts/{slug}", shown=100):
    """The registry's 400 for unregistered routes: it lists at most `shown` errors."""
    errors = [
        {"index": i, "field": "route", "message": f"no route GET {route}"}
        for i, reading in enumerate(batch)
        if reading["route"] == route
    ]
    return problem(400, title="Invalid readings", errors=errors[:shown])


def test_it_drops_every_reading_of_a_refused_route_not_only_those_listed(make_reporter):
    transport = FakeTransport(unknown_route_problem)
    reporter = make_reporter(transport)
    for _ in range(150):
        reporter.record_request("GET", "/drafts/{slug}", 1.0, 0)
        reporter.record_request("GET", "/posts/{slug}", 1.0, 0)

    reporter.flush()

    # 600 readings: the first batch of 500 is refused (100 of its 250 drafts listed), resent
    # without any draft; the drafts left in the queue never leave the client.
    assert [len(call["readings"]) for call in transport.calls] == [500, 250, 50]
    assert {r["route"] for c in transport.calls[1:] for r in c["readings"]} == {"/posts/{slug}"}
    stats = reporter.stats()
    assert (stats["sent"], stats["rejected"]) == (300, 300)


def test_a_refused_route_is_tried_again_later(make_reporter, clock):
    transport = FakeTransport(unknown_route_problem)
    reporter = make_reporter(transport)
    reporter.record_request("GET", "/drafts/{slug}", 1.0, 0)
    reporter.record_request("GET", "/posts/{slug}", 1.0, 0)
    reporter.flush()
    reporter.record_request("GET", "/drafts/{slug}", 1.0, 0)
    reporter.flush()
    assert len(transport.calls) == 2  # refused batch, its rest; the next draft stays here

    clock.advance(601)  # meanwhile the owner registered the route
    reporter.record_request("GET", "/drafts/{slug}", 1.0, 0)
    reporter.flush()
    assert [r["route"] for r in transport.calls[-1]["readings"]] == ["/drafts/{slug}"] * 2
