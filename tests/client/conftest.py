"""Helpers for the client's tests: a fake clock, a fake transport, local HTTP registries."""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# The client is its own package (dqclient/dqclient); make it importable without installing
# it, ahead of the repository root where `dqclient/` would be an empty namespace package.
_CLIENT_ROOT = str(Path(__file__).resolve().parents[2] / "dqclient")
if _CLIENT_ROOT not in sys.path:
    sys.path.insert(0, _CLIENT_ROOT)

from dqclient import Reporter, Response  # noqa: E402


class FakeClock:
    """Monotonic and wall time that only move when something sleeps or the test says so."""

    def __init__(self):
        self.t = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.t

    def time(self):
        return 1_790_000_000.0 + self.t

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.t += seconds

    def advance(self, seconds):
        self.t += seconds


def created(batch_size, duplicates=0):
    body = {"accepted": batch_size - duplicates, "duplicates": duplicates}
    return Response(201, {"content-type": "application/json"}, json.dumps(body).encode())


def problem(status, *, retryable=False, headers=None, errors=(), type_="about:blank", title=""):
    body = {
        "type": type_,
        "title": title or f"status {status}",
        "status": status,
        "detail": f"detail of {status}",
        "retryable": retryable,
        "errors": list(errors),
    }
    all_headers = {"content-type": "application/problem+json", **(headers or {})}
    return Response(status, all_headers, json.dumps(body).encode())


class FakeTransport:
    """Answers from a script (Response, exception, or callable(batch)), then 201s."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []

    def __call__(self, body, headers, timeout):
        payload = json.loads(body)
        self.calls.append({"readings": payload["readings"], "headers": headers, "timeout": timeout})
        answer = self.script.pop(0) if self.script else None
        if answer is None:
            return created(len(payload["readings"]))
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(payload["readings"])
        return answer

    @property
    def readings(self):
        return [r for call in self.calls for r in call["readings"]]

    def keys(self, call=None):
        calls = self.calls if call is None else [self.calls[call]]
        return [r["idempotency_key"] for c in calls for r in c["readings"]]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_reporter(clock):
    """A reporter with no thread, the fake clock and a fake transport."""
    made = []

    def make(transport=None, **options):
        options = {
            "url": "http://registry.invalid",
            "key": "dq_test.secret",
            "environment": "staging",
            "release": "1.2.3",
            "transport": transport if transport is not None else FakeTransport(),
            "clock": clock.monotonic,
            "now": clock.time,
            "sleep": clock.sleep,
            "random": lambda: 0.5,
            "start": False,
            "instance_id": "web-1",
            **options,
        }
        reporter = Reporter(**options)
        made.append(reporter)
        return reporter

    yield make
    for reporter in made:
        reporter.close(timeout=0)


class Recorder:
    """Stands in for a Reporter in middleware tests: keeps what it is given."""

    def __init__(self):
        self.requests = []

    def record_request(self, method, route, elapsed_ms, error, cache_status, db_calls):
        self.requests.append(
            {
                "method": method,
                "route": route,
                "elapsed_ms": elapsed_ms,
                "error": error,
                "cache_status": cache_status,
                "db_calls": db_calls,
            }
        )


class Registry:
    """A real HTTP server in a thread, standing in for the registry; `behaviour` decides."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                registry.requests.append({"path": self.path, "headers": dict(self.headers), **body})
                status, headers, payload = registry.behaviour(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def readings(self):
        return [r for request in self.requests for r in request["readings"]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def accept(body):
    n = len(body["readings"])
    return 201, {"Content-Type": "application/json"}, {"accepted": n, "duplicates": 0}


def slow(seconds):
    def behaviour(body):
        time.sleep(seconds)
        return accept(body)

    return behaviour


def unavailable(body):
    return (
        503,
        {"Content-Type": "application/problem+json", "Retry-After": "1"},
        {"type": "about:blank", "title": "Database unavailable", "status": 503, "retryable": True},
    )


@pytest.fixture
def registry_server():
    servers = []

    def start(behaviour=accept):
        server = Registry(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
