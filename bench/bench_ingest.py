"""Benchmark POST /api/v1/readings under gunicorn on 127.0.0.1 against PostgreSQL.

    python bench/bench_ingest.py [--duration 10] [--clients 8] [--workers 2]
    make bench-ingest

In one run, on a throwaway PostgreSQL database `bench_ingest` (on the server of
BENCH_POSTGRES_URL, default DATABASE_URL when it is PostgreSQL, else
postgres://postgres@127.0.0.1:5432/postgres), it measures:

- batch ingestion: 500-reading batches from 8 concurrent clients for a fixed time
  -> readings/s and p50/p99 request latency;
- single-reading POSTs from 8 concurrent clients -> requests/s and p50/p99;
  (the clients are 8 connections driven by one selector loop over raw sockets, as wrk
  does: ~0.3 ms of CPU per request, where 8 processes with http.client took ~0.7 ms of
  the same 2 cores the server runs on;)
- the physical limit: psycopg 3 binary COPY of the same rows into the same table;
- the naive peer: the same batch endpoint written the textbook way (DRF
  ModelSerializer(many=True) + per-item lookups and unique check + bulk_create), served
  by the same gunicorn from bench/ingest_naive_urls.py, kept inside the benchmark only;

and prints each figure with the ratios ours/COPY and ours/naive. Every reading carries an
idempotency key, as dqclient sends them. The readings table is emptied between runs.
Targets (issue 3): batch >= 25% of COPY and >= 3x naive; single-POST p99 <= 25 ms.
Exits 1 when a target is missed.
"""

import argparse
import http.client
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_ingest"
ROUTES = ["/posts/{slug}", "/tags/{tag}", "/search", "/feed.xml"]
SIGNALS = [  # key, value generator by index
    ("response_time_ms", lambda i: 40.0 + (i * 7919) % 900 / 3),
    ("error_rate", lambda i: float(i % 50 == 0)),
    ("db_calls", lambda i: float(i % 12)),
    ("cache_hit", lambda i: float(i % 3 != 0)),
]
CACHE = ["HIT", "MISS", "STALE", "DYNAMIC", "UNKNOWN"]
TARGET_COPY_SHARE, TARGET_NAIVE_RATIO, TARGET_SINGLE_P99_MS = 0.25, 3.0, 25.0


def postgres_server_url():
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = "postgres://postgres@127.0.0.1:5432/postgres"
    return url


def with_database(url, name):
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate_database(server_url):
    import psycopg

    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def drop_database(server_url):
    import psycopg

    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def server_env(database_url):
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="ingest_naive_settings",
        PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
        DEBUG="off",
        SECRET_KEY="bench-ingest-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="off",
        SECURE_HSTS_SECONDS="0",
        SESSION_COOKIE_SECURE="off",
        CSRF_COOKIE_SECURE="off",
        DQ_INGEST_RATE="100000000/min",
        CONN_MAX_AGE="600",
        LOG_LEVEL="ERROR",
    )
    return env


def prepare(env):
    """Migrate, register the routes, issue a key; returns (key, ids for COPY)."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    code = """
import json
from signals_app.models import Environment, Owner, Route, Service, ServiceKey, Signal
owner = Owner.objects.create(name="Bench team")
service = Service.objects.create(slug="bench", owner=owner)
routes = {path: Route.objects.create(service=service, path=path, owner=owner).pk
          for path in ROUTES}
key = ServiceKey.issue(service, name="bench")[1]
print(json.dumps({"key": key, "service": service.pk, "routes": routes,
    "signals": dict(Signal.objects.values_list("key", "pk")),
    "environment": Environment.objects.get(slug="production").pk}))
""".replace("ROUTES", repr(ROUTES))
    out = subprocess.run(
        [*manage, "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env, port, workers):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [
            str(gunicorn),
            "dqregistry.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--backlog",
            "256",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("gunicorn did not answer /health within 30 s")


def reading_json(index, observed_at):
    signal, value = SIGNALS[index % len(SIGNALS)]
    return json.dumps(
        {
            "method": "GET",
            "route": ROUTES[(index // len(SIGNALS)) % len(ROUTES)],
            "signal": signal,
            "value": value(index),
            "environment": "production",
            "observed_at": observed_at,
            "cache_status": CACHE[index % len(CACHE)],
            "release": "1.7.9",
            "idempotency_key": f"@K@:{index}",
        }
    )


def body_template(size):
    observed_at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return (
        '{"readings": [' + ", ".join(reading_json(i, observed_at) for i in range(size)) + "]}"
    ).encode()


class _Connection:
    """One request in flight: a non-blocking socket, what is left to send, what came back."""

    __slots__ = ("client", "sock", "pending", "response", "started")

    def __init__(self, client, request):
        self.client = client
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.pending = memoryview(request)
        self.response = bytearray()
        self.started = time.perf_counter()


def load(port, path, key, batch, clients, duration, label):
    """`clients` concurrent connections driven by one selector loop over raw sockets (as wrk
    does), so the load generator takes as little of the 2 cores as it can from the server
    it measures. One connection per request: gunicorn's sync workers close each one."""
    template = body_template(batch)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    sequence = [0] * clients
    latencies, failures = [], []  # failures: (response head, or None when the connection failed)

    def start(client):
        sequence[client] += 1
        body = template.replace(b"@K@", f"{label}-{client}-{sequence[client]}".encode())
        request = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        conn = _Connection(client, request)
        conn.sock.connect_ex(("127.0.0.1", port))
        selector.register(conn.sock, selectors.EVENT_WRITE, conn)

    def finish(conn, ok):
        selector.unregister(conn.sock)
        conn.sock.close()
        if not ok:
            failures.append(None)
        else:
            latencies.append(time.perf_counter() - conn.started)
            if conn.response[9:12] != b"201":
                failures.append(bytes(conn.response[:300]))
        if time.monotonic() < deadline:
            start(conn.client)

    started = time.perf_counter()
    deadline = time.monotonic() + duration
    for client in range(clients):
        start(client)
    while selector.get_map():
        ready = selector.select(timeout=30)
        if not ready:  # nothing moved for 30 s: count what is in flight as failed
            for conn in [selected.data for selected in selector.get_map().values()]:
                deadline = 0
                finish(conn, ok=False)
        for selected, events in ready:
            conn = selected.data
            try:
                if events & selectors.EVENT_WRITE:
                    sent = conn.sock.send(conn.pending)
                    conn.pending = conn.pending[sent:]
                    if not conn.pending:
                        selector.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                chunk = conn.sock.recv(65536)
            except OSError:
                finish(conn, ok=False)
                continue
            if chunk:
                conn.response += chunk
            else:  # the server closed: the response is complete
                finish(conn, ok=True)
    elapsed = time.perf_counter() - started
    for failure in failures[:2]:
        print(f"  {path}: {failure or 'connection failed'!r}", file=sys.stderr)
    latencies.sort()
    ok = len(latencies) - sum(failure is not None for failure in failures)
    return {
        "requests": len(latencies),
        "errors": len(failures),
        "requests_per_s": ok / elapsed,
        "readings_per_s": ok * batch / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }


def percentile(ordered, share):
    if not ordered:
        return float("nan")
    rank = share * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def truncate(database_url):
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE signals_app_reading")
        conn.execute("TRUNCATE signals_app_idempotentrequest")
        conn.execute("VACUUM ANALYZE signals_app_reading")


def copy_limit(database_url, ids, rows, run):
    """Rows/s of a binary COPY of the same readings into the same table (and its indexes)."""
    import psycopg

    observed_at = datetime.now(UTC) - timedelta(minutes=1)
    received_at = datetime.now(UTC)
    data = []
    for index in range(rows):
        signal, value = SIGNALS[index % len(SIGNALS)]
        data.append(
            (
                ids["service"],
                ids["routes"][ROUTES[(index // len(SIGNALS)) % len(ROUTES)]],
                ids["signals"][signal],
                ids["environment"],
                value(index),
                observed_at,
                received_at,
                CACHE[index % len(CACHE)],
                "1.7.9",
                f"copy{run}:{index}",
            )
        )
    columns = (
        "service_id, route_id, signal_id, environment_id, value, observed_at, received_at, "
        "cache_status, release, idempotency_key"
    )
    types = [
        "int8", "int8", "int8", "int8", "float8", "timestamptz", "timestamptz",
        "text", "text", "text",
    ]  # fmt: skip
    with psycopg.connect(database_url) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY signals_app_reading ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(types)
            for row in data:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
    return rows / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--naive-duration", type=float, default=5.0, help="seconds, naive peer")
    parser.add_argument("--copy-rows", type=int, default=100_000, help="rows per COPY (3 runs)")
    args = parser.parse_args()

    server_url = postgres_server_url()
    database_url = with_database(server_url, DATABASE)
    recreate_database(server_url)
    env = server_env(database_url)
    gunicorn = None
    try:
        ids = prepare(env)
        port = free_port()
        gunicorn = start_gunicorn(env, port, args.workers)
        key = ids["key"]
        print(
            f"bench-ingest: gunicorn {args.workers} sync workers on 127.0.0.1:{port}, "
            f"PostgreSQL {DATABASE}, {args.clients} clients, {args.duration:.0f} s per run, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before"
        )
        # warm up both endpoints (imports, connections, plans)
        load(port, "/api/v1/readings", key, args.batch, 2, 1.0, "warm")
        load(port, "/bench/naive-readings", key, args.batch, 2, 1.0, "warmnaive")
        truncate(database_url)

        ours = load(port, "/api/v1/readings", key, args.batch, args.clients, args.duration, "b")
        truncate(database_url)
        naive = load(
            port, "/bench/naive-readings", key, args.batch, args.clients, args.naive_duration, "n"
        )
        truncate(database_url)
        single = load(port, "/api/v1/readings", key, 1, args.clients, args.duration, "s")
        truncate(database_url)
        copy_rate = statistics.median(
            copy_limit(database_url, ids, args.copy_rows, run) for run in range(3)
        )
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(10)
        drop_database(server_url)

    # The machine is shared: the load average says how much else competed for the cores.
    print(f"load average {os.getloadavg()[0]:.1f} after")
    copy_share = ours["readings_per_s"] / copy_rate
    naive_ratio = ours["readings_per_s"] / naive["readings_per_s"]
    rows = [
        ("batch, ours (500 x 8 clients)", ours, "readings/s"),
        ("batch, naive DRF peer", naive, "readings/s"),
        ("single POST, ours (8 clients)", single, "requests/s"),
    ]
    print(f"\n{'run':34} {'rate':>16} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, result, unit in rows:
        rate = result["readings_per_s"] if unit == "readings/s" else result["requests_per_s"]
        print(
            f"{label:34} {rate:>9,.0f} {unit:<6} {result['p50_ms']:>8.1f} "
            f"{result['p99_ms']:>8.1f} {result['errors']:>7}"
        )
    print(f"{'COPY binary (psycopg 3), limit':34} {copy_rate:>9,.0f} rows/s (median of 3)")
    checks = [
        (f"ours/COPY  = {copy_share:6.1%}", copy_share >= TARGET_COPY_SHARE, ">= 25%"),
        (f"ours/naive = {naive_ratio:6.1f}x", naive_ratio >= TARGET_NAIVE_RATIO, ">= 3x"),
        (
            f"single p99 = {single['p99_ms']:5.1f} ms",
            single["p99_ms"] <= TARGET_SINGLE_P99_MS,
            "<= 25 ms",
        ),
    ]
    print()
    for text, met, target in checks:
        print(f"{text}   target {target:9} {'met' if met else 'MISSED'}")
    errors = ours["errors"] + naive["errors"] + single["errors"]
    if errors:
        print(f"{errors} requests failed")
    return 0 if all(met for _, met, _ in checks) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
