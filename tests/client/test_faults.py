"""A registry that is down, slow, failing or stalled never harms the service it measures.

Real HTTP servers on localhost stand in for the registry; the app is a FastAPI app with the
middleware and a real Reporter thread with the standard-library transport.
"""

import logging
import socket
import statistics
import threading
import time

import pytest
from dqclient.asgi import DQMiddleware
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dqclient import HttpTransport, Reporter

from .conftest import accept, slow

# A request held by the registry would take seconds (the slow registry answers in 2 s, the
# stalled one never): each request stays below HELD. Not a speed target (that is
# bench-client); CI machines are shared, and one request took 0.41 s there under load.
# Normal requests take milliseconds, so their median stays below FAST.
FAST = 0.25
HELD = 1.5


def make_client(reporter):
    app = FastAPI()

    @app.get("/posts/{slug}")
    async def post(slug: str):
        return {"slug": slug}

    app.add_middleware(DQMiddleware, reporter=reporter)
    return TestClient(app)


class WatchedTransport:
    """The standard-library transport, noting the threads it is called from."""

    def __init__(self, url):
        self.http = HttpTransport(url)
        self.threads = set()

    def __call__(self, body, headers, timeout):
        self.threads.add(threading.current_thread().name)
        return self.http(body, headers, timeout)

    def abort(self):
        self.http.abort()


def reporter_for(url, **options):
    options = {"flush_interval": 0.05, "backoff_base": 0.05, "backoff_max": 0.2, **options}
    return Reporter(
        url=url,
        key="dq_test.secret",
        environment="staging",
        transport=WatchedTransport(url),
        **options,
    )


def drive(client, n):
    """n requests, each of which must succeed; returns their durations."""
    durations = []
    for i in range(n):
        started = time.perf_counter()
        response = client.get(f"/posts/p{i}")
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200
        assert response.json() == {"slug": f"p{i}"}
    return durations


def assert_unhindered(reporter, durations):
    """The requests did not wait on the registry: only the reporter's thread talked to it,
    and no request took as long as a registry round trip would have."""
    assert reporter._transport.threads <= {"dqclient"}
    assert statistics.median(durations) < FAST
    assert max(durations) < HELD


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stalled_registry():
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def hold():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(1)
    for conn in held:
        conn.close()
    server.close()


def test_registry_down_the_app_still_answers(closed_port, caplog):
    reporter = reporter_for(f"http://127.0.0.1:{closed_port}")
    client = make_client(reporter)

    assert_unhindered(reporter, drive(client, 30))
    time.sleep(0.3)  # the reporter tries, fails and backs off meanwhile
    assert_unhindered(reporter, drive(client, 30))

    started = time.monotonic()
    reporter.close(timeout=0.5)
    assert time.monotonic() - started < 5.0  # well below any registry timeout
    stats = reporter.stats()
    assert stats["retries"] > 0
    assert stats["sent"] == 0
    assert "cannot reach the registry" in caplog.text


def test_registry_slow_the_app_does_not_wait_and_readings_arrive(registry_server):
    registry = registry_server(slow(2.0))
    reporter = reporter_for(registry.url, timeout=5.0)
    client = make_client(reporter)

    assert_unhindered(reporter, drive(client, 5))
    time.sleep(0.2)  # the first batch is now waiting on the slow registry
    assert_unhindered(reporter, drive(client, 20))

    reporter.close(timeout=8.0)
    stats = reporter.stats()
    assert (stats["sent"], stats["failed"], stats["dropped"]) == (50, 0, 0)
    assert len(registry.readings) == 50


def test_registry_answering_503_is_retried_after_retry_after(registry_server):
    answers = iter(["503"])

    def behaviour(body):
        if next(answers, None) == "503":
            return (
                503,
                {"Content-Type": "application/problem+json", "Retry-After": "1"},
                {"title": "Database unavailable", "status": 503, "retryable": True},
            )
        return accept(body)

    registry = registry_server(behaviour)
    reporter = reporter_for(registry.url)
    client = make_client(reporter)

    assert_unhindered(reporter, drive(client, 10))
    time.sleep(0.2)
    assert_unhindered(reporter, drive(client, 10))
    reporter.close(timeout=5.0)

    first, second = registry.requests[0], registry.requests[1]
    assert [r["idempotency_key"] for r in first["readings"]] == [
        r["idempotency_key"] for r in second["readings"]
    ]
    assert reporter.stats()["sent"] == 40
    assert len({r["idempotency_key"] for r in registry.readings}) == 40


def test_registry_answering_503_forever_gives_up_at_close(registry_server):
    registry = registry_server(
        lambda body: (503, {"Retry-After": "0"}, {"status": 503, "retryable": True})
    )
    reporter = reporter_for(registry.url)
    client = make_client(reporter)
    assert_unhindered(reporter, drive(client, 10))
    time.sleep(0.2)
    started = time.monotonic()
    reporter.close(timeout=0.5)
    assert time.monotonic() - started < 5.0  # well below any registry timeout
    assert reporter.stats()["sent"] == 0
    assert len(registry.requests) >= 2


def test_registry_stalled_the_queue_stays_bounded(stalled_registry, caplog):
    caplog.set_level(logging.WARNING, logger="dqclient")
    reporter = reporter_for(stalled_registry, timeout=30.0, max_queue=20, batch_size=30)
    client = make_client(reporter)

    time.sleep(0.1)
    assert_unhindered(reporter, drive(client, 200))

    stats = reporter.stats()
    assert stats["pending"] <= 20
    assert stats["dropped"] > 0
    assert "queue full" in caplog.text
    started = time.monotonic()
    reporter.close(timeout=0.5)
    # the request in flight is cut at the deadline instead of waiting out its 30 s timeout
    assert time.monotonic() - started < 5.0  # not the 30 s timeout
    assert not reporter._thread.is_alive()
    assert "shutdown deadline passed" in caplog.text
