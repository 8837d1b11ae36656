"""The ASGI middleware on a real FastAPI app, driven in-process."""

import pytest
from dqclient.asgi import DQMiddleware
from fastapi import APIRouter, FastAPI, HTTPException, Response
from fastapi.testclient import TestClient

from .conftest import FakeTransport, Recorder


def make_app(recorder, **options):
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"ok": True}

    @app.get("/posts/{slug}")
    def post(slug: str, response: Response):
        if slug == "cached":
            response.headers["X-Cache"] = "HIT"
            response.headers["Age"] = "40"
        return {"slug": slug}

    @app.post("/posts/{slug}/comments", status_code=201)
    async def comment(slug: str):
        return {"slug": slug}

    @app.get("/items/{item_id:int}")
    def item(item_id: int):
        return {"id": item_id}

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    @app.get("/unavailable")
    def unavailable():
        raise HTTPException(503, "down for maintenance")

    router = APIRouter(prefix="/api")

    @router.get("/users/{user_id}")
    def user(user_id: int):
        return {"id": user_id}

    app.include_router(router)

    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    def thing(thing_id: str):
        return {"id": thing_id}

    app.mount("/v2", sub)
    app.add_middleware(DQMiddleware, reporter=recorder, **options)
    return app


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def client(recorder):
    return TestClient(make_app(recorder), raise_server_exceptions=False)


def routes(recorder):
    return [(r["method"], r["route"]) for r in recorder.requests]


def test_it_reports_the_route_template_not_the_raw_path(client, recorder):
    assert client.get("/posts/hello-world").status_code == 200
    assert client.post("/posts/42/comments").status_code == 201
    assert client.get("/api/users/7").status_code == 200
    assert client.get("/items/3").status_code == 200
    assert routes(recorder) == [
        ("GET", "/posts/{slug}"),
        ("POST", "/posts/{slug}/comments"),
        ("GET", "/api/users/{user_id}"),
        ("GET", "/items/{item_id}"),
    ]
    assert all(r["error"] == 0 and r["elapsed_ms"] > 0 for r in recorder.requests)


def test_it_adds_the_mount_prefix_for_a_mounted_app(client, recorder):
    assert client.get("/v2/things/abc").status_code == 200
    assert routes(recorder) == [("GET", "/v2/things/{thing_id}")]


def test_it_reads_the_cache_status_from_the_response(client, recorder):
    client.get("/posts/cached")
    client.get("/posts/fresh")
    assert [r["cache_status"] for r in recorder.requests] == ["HIT", "UNKNOWN"]


def test_it_counts_5xx_and_exceptions_as_errors(client, recorder):
    assert client.get("/boom").status_code == 500
    assert client.get("/unavailable").status_code == 503
    assert [(r["route"], r["error"]) for r in recorder.requests] == [
        ("/boom", 1),
        ("/unavailable", 1),
    ]


def test_the_apps_exception_reaches_the_server_unchanged(recorder):
    client = TestClient(make_app(recorder))
    with pytest.raises(RuntimeError, match="boom"):
        client.get("/boom")
    assert recorder.requests[0]["error"] == 1


def test_it_skips_excluded_paths_unmatched_paths_and_wrong_methods(client, recorder):
    assert client.get("/health").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/posts/x").status_code == 405
    assert recorder.requests == []


def test_excluded_paths_are_configurable(recorder):
    client = TestClient(make_app(recorder, exclude=["/posts/*"]))
    client.get("/posts/a")
    client.get("/health")
    assert routes(recorder) == [("GET", "/health")]


def test_a_broken_reporter_never_breaks_the_request():
    class Broken:
        def record_request(self, *args):
            raise RuntimeError("reporter bug")

    client = TestClient(make_app(Broken()))
    assert client.get("/posts/a").json() == {"slug": "a"}


def test_it_reports_through_a_real_reporter(make_reporter):
    transport = FakeTransport()
    reporter = make_reporter(transport)
    client = TestClient(make_app(reporter))
    client.get("/posts/cached")
    reporter.flush()
    assert {(r["route"], r["signal"], r["cache_status"]) for r in transport.readings} == {
        ("/posts/{slug}", "response_time_ms", "HIT"),
        ("/posts/{slug}", "error_rate", "HIT"),
    }


def test_it_counts_sqlalchemy_queries_per_request(recorder):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine("sqlite://")
    app = FastAPI()

    @app.get("/report/{n}")
    def report(n: int):  # a sync endpoint: runs in a worker thread
        with engine.connect() as conn:
            for _ in range(n):
                conn.execute(sqlalchemy.text("select 1"))
        return {"n": n}

    @app.get("/static")
    async def static():
        return {}

    app.add_middleware(DQMiddleware, reporter=recorder, engine=engine)
    client = TestClient(app)
    client.get("/report/3")
    client.get("/static")
    client.get("/report/1")
    assert [r["db_calls"] for r in recorder.requests] == [3, 0, 1]
