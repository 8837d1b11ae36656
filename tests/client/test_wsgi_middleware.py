"""The WSGI middleware around a plain WSGI app."""

from wsgiref.util import setup_testing_defaults

import pytest
from dqclient.wsgi import DQMiddleware

from .conftest import Recorder


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/down":
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"down"]
    if path.startswith("/stream/"):
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Cache-Status", "MISS")])
        return (chunk for chunk in [b"a", b"b"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("CF-Cache-Status", "HIT")])
    return [b"hello"]


class Client:
    """Calls a WSGI app as a server would, closing the response when it is sent."""

    def __init__(self, app):
        self.app = app

    def request(self, method, path):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path}
        setup_testing_defaults(environ)
        started = {}

        def start_response(status, headers, exc_info=None):
            started["status"] = int(status[:3])

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return started["status"], body

    def get(self, path):
        return self.request("GET", path)

    def post(self, path):
        return self.request("POST", path)


@pytest.fixture
def recorder():
    return Recorder()


def test_it_reports_the_matching_template(recorder):
    client = Client(DQMiddleware(app, recorder, routes=["/posts/{slug}", "/stream/{n}"]))
    assert client.get("/posts/hello") == (200, b"hello")
    assert client.get("/stream/1") == (200, b"ab")
    client.get("/unlisted")
    client.get("/health")
    assert [(r["method"], r["route"], r["cache_status"]) for r in recorder.requests] == [
        ("GET", "/posts/{slug}", "HIT"),
        ("GET", "/stream/{n}", "MISS"),
    ]


def test_without_routes_it_reports_the_path(recorder):
    client = Client(DQMiddleware(app, recorder))
    client.post("/about")
    assert recorder.requests[0]["route"] == "/about"
    assert recorder.requests[0]["method"] == "POST"


def test_a_resolver_decides_the_route(recorder):
    client = Client(DQMiddleware(app, recorder, route_for=lambda environ: "/fixed"))
    client.get("/anything")
    assert recorder.requests[0]["route"] == "/fixed"


def test_it_counts_5xx_and_exceptions_as_errors(recorder):
    client = Client(DQMiddleware(app, recorder))
    assert client.get("/down")[0] == 503
    with pytest.raises(RuntimeError):
        client.get("/boom")
    assert [(r["route"], r["error"]) for r in recorder.requests] == [("/down", 1), ("/boom", 1)]


def test_a_streamed_body_is_timed_until_it_is_closed(recorder):
    client = Client(DQMiddleware(app, recorder))
    client.get("/stream/2")
    assert len(recorder.requests) == 1
    assert recorder.requests[0]["elapsed_ms"] > 0


def test_it_counts_sqlalchemy_queries(recorder):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine("sqlite://")

    def db_app(environ, start_response):
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
            conn.execute(sqlalchemy.text("select 2"))
        start_response("200 OK", [])
        return [b""]

    Client(DQMiddleware(db_app, recorder, engine=engine)).get("/x")
    assert recorder.requests[0]["db_calls"] == 2
