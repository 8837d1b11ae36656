"""What the dqclient middleware adds to a request, with a healthy and a stalled registry.

A FastAPI "hello" endpoint is driven in-process over ASGI (no sockets, no server), so the
difference between the app with and without the middleware is the middleware's own cost.
The two apps run in alternating blocks so drift (CPU frequency, other load) hits both
alike. The first phase reports to a local registry that answers 201 at once; the second to
one that accepts connections and never answers: the figures must not grow there, and the
queue must stay at its bound.

    make bench-client            # or: .venv/bin/python bench/bench_client.py --requests 20000
"""

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

try:
    from dqclient.asgi import DQMiddleware

    from dqclient import Reporter
except ImportError:  # running from a checkout: use the package beside this file
    sys.modules.pop("dqclient", None)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dqclient"))
    from dqclient.asgi import DQMiddleware

    from dqclient import Reporter

BLOCK = 250
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/hello",
    "raw_path": b"/hello",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 80),
}


def hello_app(reporter=None):
    app = FastAPI()

    @app.get("/hello")
    async def hello():
        return PlainTextResponse("hello")

    @app.get("/health")
    async def health():
        return PlainTextResponse("ok")

    if reporter is not None:
        app.add_middleware(DQMiddleware, reporter=reporter)
    return app


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message):
    pass


async def timed_requests(app, n, out):
    clock = time.perf_counter_ns
    for _ in range(n):
        scope = dict(SCOPE)  # the router writes into the scope: a fresh one per request
        started = clock()
        await app(scope, _receive, _send)
        out.append(clock() - started)


async def compare(apps, requests):
    """Durations (ns) per app, alternating blocks of BLOCK requests."""
    results = {name: [] for name in apps}
    for app in apps.values():  # warm up: first calls build FastAPI's middleware stack
        await timed_requests(app, 500, [])
    done = 0
    while done < requests:
        n = min(BLOCK, requests - done)
        for name, app in apps.items():
            await timed_requests(app, n, results[name])
        done += n
    return results


def pct(durations, q):
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


ACCEPTING_REGISTRY = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = json.dumps({"accepted": len(body["readings"]), "duplicates": 0}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def accepting_registry():
    """A registry that answers 201 at once, in its own process so that its work does not
    compete with the measured requests for this process's GIL (the reporter's does)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ACCEPTING_REGISTRY], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline())

    def stop():
        proc.terminate()
        proc.wait(5)

    return f"http://127.0.0.1:{port}", stop


def stalled_registry():
    """Accepts connections (the kernel completes the handshake) and never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock.close


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(label, url, requests, max_queue):
    reporter = Reporter(url=url, key="dq_bench.secret", flush_interval=1.0, max_queue=max_queue)
    apps = {"without": hello_app(), "with": hello_app(reporter)}
    rss_before = rss_mb()
    results = asyncio.run(compare(apps, requests))
    stats = reporter.stats()
    close_started = time.perf_counter()
    reporter.close(timeout=2.0)
    close_s = time.perf_counter() - close_started
    final = reporter.stats()
    bare, measured = results["without"], results["with"]
    quarter = len(measured) // 4
    return {
        "label": label,
        "without": (pct(bare, 0.5), pct(bare, 0.99)),
        "with": (pct(measured, 0.5), pct(measured, 0.99)),
        "with_first_quarter_p50": pct(measured[:quarter], 0.5),
        "with_last_quarter_p50": pct(measured[-quarter:], 0.5),
        "stats": stats,
        "final": final,
        "close_s": close_s,
        "rss_growth_mb": rss_mb() - rss_before,
    }


def record_request_cost(calls=200_000):
    reporter = Reporter(url="http://127.0.0.1:9", key="k", start=False, max_queue=calls + 1)
    record = reporter.record_request
    started = time.perf_counter_ns()
    for _ in range(calls):
        record("GET", "/hello", 0.05, 0, "UNKNOWN", None)
    per_call = (time.perf_counter_ns() - started) / calls
    reporter._queue.clear()
    reporter.close(timeout=0)
    return per_call


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per app and phase")
    parser.add_argument("--max-queue", type=int, default=10_000)
    parser.add_argument(
        "--max-added-p50", type=float, default=None, help="exit 1 if the added p50 (µs) is above"
    )
    args = parser.parse_args()

    healthy_url, stop_healthy = accepting_registry()
    stalled_url, stop_stalled = stalled_registry()
    try:
        phases = [
            phase("healthy registry", healthy_url, args.requests, args.max_queue),
            phase("stalled registry", stalled_url, args.requests, args.max_queue),
        ]
    finally:
        stop_healthy()
        stop_stalled()

    print(
        f"dqclient middleware cost: FastAPI hello endpoint, in-process ASGI, "
        f"{args.requests} requests per app and phase, alternating blocks of {BLOCK}"
    )
    print(f"{'':18} {'without p50/p99 µs':>20} {'with p50/p99 µs':>18} {'added p50/p99 µs':>18}")
    worst_added = 0.0
    for p in phases:
        added = (p["with"][0] - p["without"][0], p["with"][1] - p["without"][1])
        worst_added = max(worst_added, added[0])
        print(
            f"{p['label']:18} {p['without'][0]:>10.1f} /{p['without'][1]:>7.1f}"
            f" {p['with'][0]:>9.1f} /{p['with'][1]:>6.1f}"
            f" {added[0]:>+9.1f} /{added[1]:>+6.1f}"
        )
    for p in phases:
        s, f = p["stats"], p["final"]
        print(
            f"{p['label']}: with-middleware p50 first quarter {p['with_first_quarter_p50']:.1f} µs,"
            f" last quarter {p['with_last_quarter_p50']:.1f} µs; queue {s['pending']}"
            f" requests (bound {args.max_queue}), dropped {s['dropped']} requests,"
            f" readings sent {f['sent']}, given up {f['failed']};"
            f" close() took {p['close_s']:.2f} s; max RSS grew {p['rss_growth_mb']:.1f} MB"
        )
    print(f"record_request() alone: {record_request_cost():.0f} ns per call")
    if args.max_added_p50 is not None and worst_added > args.max_added_p50:
        print(f"FAIL: added p50 {worst_added:.1f} µs > {args.max_added_p50} µs")
        sys.exit(1)


if __name__ == "__main__":
    main()
