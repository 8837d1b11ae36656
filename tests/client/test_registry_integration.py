"""End to end: a FastAPI service served by uvicorn reports through dqclient to the registry.

The registry runs as pytest-django's live_server; the service is a real FastAPI app served
by uvicorn in a thread and called over HTTP. Its requests go through the ASGI middleware,
the reporter flushes on close(), and the registry must hold the readings with the route
templates, cache statuses and counts the requests produced.
"""

import threading
import time
from collections import Counter
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from dqclient.asgi import DQMiddleware
from fastapi import FastAPI, HTTPException, Response

from dqclient import HttpTransport, Reporter
from signals_app.models import Reading, ServiceKey
from tests.builders import make_route

# serialized_rollback: a transactional test flushes the tables, and with them the
# default signals and environments of the data migration that later tests need.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def blog_app(reporter):
    app = FastAPI()
    seen = set()

    @app.get("/health")
    def health():
        return {"ok": True}

    @app.get("/posts/{slug}")
    def post(slug: str, response: Response):
        if slug == "broken":
            raise HTTPException(503, "origin down")
        response.headers["X-Cache"] = "HIT" if slug in seen else "MISS"
        seen.add(slug)
        return {"slug": slug}

    @app.get("/tags/{tag}")
    def tag(tag: str, response: Response):
        response.headers["CF-Cache-Status"] = "DYNAMIC"
        return {"tag": tag}

    @app.post("/comments", status_code=201)
    def comment():
        return {"id": 1}

    @app.get("/drafts/{slug}")  # a route the registry does not know
    def draft(slug: str):
        return {"slug": slug}

    app.add_middleware(DQMiddleware, reporter=reporter, exclude=["/health"])
    return app


@contextmanager
def serve(app):
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
def blog_routes(blog):
    return {
        ("GET", "/posts/{slug}"): make_route(blog, "/posts/{slug}"),
        ("GET", "/tags/{tag}"): make_route(blog, "/tags/{tag}"),
        ("POST", "/comments"): make_route(blog, "/comments", method="POST"),
    }


@pytest.fixture
def blog_key(blog):
    return ServiceKey.issue(blog, name="dqclient integration")[1]


def test_readings_from_a_fastapi_service_arrive_in_the_registry(
    live_server, blog, blog_routes, blog_key
):
    reporter = Reporter(
        url=live_server.url, key=blog_key, environment="production", release="it-1",
        flush_interval=60,
    )  # fmt: skip
    with serve(blog_app(reporter)) as base, httpx.Client(base_url=base) as http:
        for path in ["/posts/a", "/posts/a", "/posts/a", "/posts/b", "/tags/python"]:
            assert http.get(path).status_code == 200
        assert http.post("/comments").status_code == 201
        assert http.get("/posts/broken").status_code == 503
        assert http.get("/health").status_code == 200
        assert http.get("/nowhere").status_code == 404
        assert http.get("/drafts/x").status_code == 200
    reporter.close(timeout=10)

    readings = Reading.objects.filter(service=blog).select_related("route", "signal")
    by_route_signal = Counter((r.route.method, r.route.path, r.signal.key) for r in readings)
    assert by_route_signal == {
        ("GET", "/posts/{slug}", "response_time_ms"): 5,
        ("GET", "/posts/{slug}", "error_rate"): 5,
        ("GET", "/tags/{tag}", "response_time_ms"): 1,
        ("GET", "/tags/{tag}", "error_rate"): 1,
        ("POST", "/comments", "response_time_ms"): 1,
        ("POST", "/comments", "error_rate"): 1,
    }
    posts = readings.filter(route=blog_routes[("GET", "/posts/{slug}")])
    response_times = posts.filter(signal__key="response_time_ms")
    assert Counter(response_times.values_list("cache_status", flat=True)) == {
        "MISS": 2,
        "HIT": 2,
        "UNKNOWN": 1,  # the 503 carried no cache header
    }
    assert sorted(posts.filter(signal__key="error_rate").values_list("value", flat=True)) == [
        0.0,
        0.0,
        0.0,
        0.0,
        1.0,
    ]
    tags = readings.filter(route=blog_routes[("GET", "/tags/{tag}")])
    assert set(tags.values_list("cache_status", flat=True)) == {"DYNAMIC"}  # CF-Cache-Status
    assert set(readings.values_list("release", flat=True)) == {"it-1"}
    assert set(readings.values_list("environment__slug", flat=True)) == {"production"}
    assert all(r.value > 0 for r in response_times)

    stats = reporter.stats()
    # the two readings of the unregistered route are refused; the rest of the batch is kept
    assert (stats["sent"], stats["rejected"], stats["failed"]) == (14, 2, 0)


class LoseFirstResponse:
    """The registry stores the batch, but its answer is lost on the way back."""

    def __init__(self, url):
        self.http = HttpTransport(url)
        self.calls = 0

    def __call__(self, body, headers, timeout):
        self.calls += 1
        response = self.http(body, headers, timeout)
        if self.calls == 1:
            raise ConnectionResetError("answer lost")
        return response


def test_a_retried_batch_is_not_stored_twice(live_server, blog, blog_routes, blog_key):
    transport = LoseFirstResponse(live_server.url)
    reporter = Reporter(
        url=live_server.url, key=blog_key, transport=transport, flush_interval=60,
        backoff_base=0.01,
    )  # fmt: skip
    for _ in range(3):
        reporter.record_request("GET", "/posts/{slug}", 12.0, 0, "HIT", 2)
    reporter.close(timeout=10)

    assert transport.calls == 2
    assert Reading.objects.filter(service=blog).count() == 9
    stats = reporter.stats()
    # the retry is either replayed (Idempotency-Key header) or counted as duplicates
    assert stats["failed"] == 0
    assert stats["sent"] + stats["duplicates"] == 9
