"""Benchmark evaluation on PostgreSQL: 10M readings, 4,000 thresholds, 4,000 baselines.

    python bench/bench_evaluate.py [--fresh] [--brin] [--repeat 5]     # or: make bench-evaluate

Works in its own database `bench_evaluate` on the server of BENCH_POSTGRES_URL (default
DATABASE_URL when it is PostgreSQL, else postgres://postgres@127.0.0.1:5432/postgres). The
first run generates the data with generate_series (1,000 routes × 4 signals × 30 days =
10,000,000 readings, in time order as ingestion writes them; a few minutes) and keeps it for
the next runs; --fresh generates it again.

For a 15-minute and a 24-hour window over all 4,000 thresholds it times (median of --repeat):
- the limit: ONE hand-written SQL query computing count, mean, max and p50/p95/p99 with
  percentile_cont per (route, signal, environment) over the window;
- our statistics (evaluation.threshold_stats as a full pass runs it: the threshold table
  joined to the readings with each threshold's window and segment, grouped, one query);
- a full evaluation pass (evaluation.run_evaluation: statistics, evaluation lock, state
  reads, the update of the states that changed, incidents, the run row), one pass a minute
  as the clock runs them, the last at the newest reading;
and the capture of 4,000 baselines over one hour (its statistics query, and the whole
capture with its writes) next to the same hand-written query. Targets: statistics within 2x
of the hand-written query; the 15-minute full evaluation under 1 second. Exits 1 when one is
missed. The full pass and the capture also read and write what a read-only query does not
(the pass: 4,000 thresholds and states read, decided in Python, the states that changed and
the incidents written; the capture: 4,000 baselines, the 4,000 they replace and 8,000 history
rows): their ratios are printed for information. --brin also times both with a BRIN index on
reading.observed_at (created for the measurement, then dropped).
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
ROUTES, SIGNALS, DAYS = 1000, 4, 30
PER_SERIES = 2500  # 1,000 × 4 × 2,500 = 10,000,000 readings over 30 days
SIGNAL_KEYS = ["response_time_ms", "error_rate", "db_calls", "cache_hit"]
DATABASE = "bench_evaluate"
STATS_RATIO_TARGET, FULL_15M_TARGET_S = 2.0, 1.0

HAND_WRITTEN = """
SELECT route_id, signal_id, environment_id, count(*), avg(value), max(value),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value)
FROM signals_app_reading
WHERE observed_at > %s AND observed_at <= %s
GROUP BY route_id, signal_id, environment_id
"""

GENERATE = """
INSERT INTO signals_app_reading (service_id, route_id, signal_id, environment_id, value,
                                 observed_at, received_at, cache_status, release)
SELECT x.service_id, x.route_id, x.signal_id, %(environment)s,
       CASE x.signal_key
         WHEN 'response_time_ms' THEN CASE WHEN x.hit THEN 8 + 30 * x.u ELSE 80 + 420 * x.u * x.u END
         WHEN 'error_rate' THEN CASE WHEN x.u < 0.01 THEN 1 ELSE 0 END
         WHEN 'db_calls' THEN CASE WHEN x.hit THEN 0 ELSE floor(1 + 12 * x.u) END
         ELSE CASE WHEN x.hit THEN 1 ELSE 0 END
       END,
       x.observed_at, x.observed_at + interval '1 second',
       CASE WHEN x.hit THEN 'HIT' WHEN x.u < 0.2 THEN 'EXPIRED' ELSE 'MISS' END, ''
FROM generate_series(%(last)s, 0, -1) AS k,
LATERAL (
    SELECT s.service_id, s.route_id, s.signal_id, s.signal_key,
           random() < 0.6 AS hit, random() AS u,
           %(end)s::timestamptz - (k + random()) * %(step)s::interval AS observed_at
    FROM bench_series s
) AS x
"""  # noqa: E501 - SQL reads better unwrapped


def server_url():
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = "postgres://postgres@127.0.0.1:5432/postgres"
    return url


def with_database(url, name):
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def ensure_database(url, fresh):
    import psycopg

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{DATABASE}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def setup_django(url):
    os.environ["DATABASE_URL"] = with_database(url, DATABASE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dqregistry.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def median_time(function, repeat):
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def generate():
    """Routes, thresholds and 10M readings; returns the time of the newest reading."""
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from signals_app.models import Environment, Owner, Reading, Route, Service, Signal, Threshold

    call_command("migrate", verbosity=0)
    if Reading.objects.exists():
        return Reading.objects.latest("observed_at").observed_at
    print(f"generating {ROUTES * SIGNALS * PER_SERIES:,} readings (once; --fresh to redo) ...")
    started = time.perf_counter()
    end = timezone.now().replace(second=0, microsecond=0)
    production = Environment.objects.get(slug="production")
    signals = [Signal.objects.get(key=key) for key in SIGNAL_KEYS]
    with transaction.atomic():
        owner = Owner.objects.create(name="Bench team")
        services = Service.objects.bulk_create(
            Service(slug=f"bench-{i:02d}", owner=owner) for i in range(10)
        )
        routes = Route.objects.bulk_create(
            Route(service=services[i % 10], path=f"/bench/{i}/{{id}}", owner=owner)
            for i in range(ROUTES)
        )
        # One threshold per route and signal; the statistic cycles so all four percentile
        # kinds are exercised. Levels make a few thresholds breach.
        statistics_cycle = ["p95", "p50", "p99", "mean"]
        levels = {
            "response_time_ms": (450.0, 490.0),
            "error_rate": (0.05, 0.2),
            "db_calls": (12.0, 13.0),
            "cache_hit": (0.3, 0.1),
        }
        Threshold.objects.bulk_create(
            Threshold(
                route=route,
                signal=sig,
                environment=production,
                statistic=statistics_cycle[(route.pk + index) % 4],
                cache_segment="all",
                window_minutes=15,
                warn=levels[sig.key][0],
                critical=levels[sig.key][1],
                min_samples=1,
                direction=sig.direction,
            )
            for route in routes
            for index, sig in enumerate(signals)
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_series AS "
            "SELECT r.service_id, r.id AS route_id, s.id AS signal_id, s.key AS signal_key "
            "FROM signals_app_route r CROSS JOIN signals_app_signal s "
            "WHERE s.key = ANY(%s) ORDER BY r.id, s.id",
            [SIGNAL_KEYS],
        )
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'signals_app_reading' AND indexname <> 'signals_app_reading_pkey'"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        # The rows are consistent by construction: skip the per-row foreign key triggers.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            GENERATE,
            {
                "environment": production.pk,
                "last": PER_SERIES - 1,
                "end": end,
                "step": f"{DAYS * 86400 / PER_SERIES} seconds",
            },
        )
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute("VACUUM ANALYZE signals_app_reading")
    count = Reading.objects.count()
    print(f"generated {count:,} readings in {time.perf_counter() - started:.0f}s")
    return Reading.objects.latest("observed_at").observed_at


def vacuum():
    from django.db import connection

    with connection.cursor() as cursor:
        for table in (
            "signals_app_threshold",
            "signals_app_thresholdstate",
            "signals_app_baseline",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")


def hand_written(start, end):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(HAND_WRITTEN, [start, end])
        return cursor.fetchall()


def measure_window(minutes, now, repeat):
    from signals_app.evaluation import ThresholdSpec, run_evaluation, threshold_stats
    from signals_app.models import EvaluationRun, Threshold

    Threshold.objects.update(window_minutes=minutes)  # bypasses history on purpose
    vacuum()  # the update above rewrote every threshold row; production does not
    # Passes of an earlier bench run (at the same `now`) would count as later passes, and a
    # pass older than a finished pass stores nothing.
    EvaluationRun.objects.all().delete()
    start = now - timedelta(minutes=minutes)
    # As the clock runs them: one pass a minute, the last at `now`; the warm-up pass before
    # them leaves the states of steady operation.
    passes = iter(now - timedelta(minutes=repeat - i) for i in range(repeat + 1))
    run_evaluation(now=next(passes))
    limit, rows = median_time(lambda: hand_written(start, now), repeat)
    # The statistics of a full pass: the thresholds joined to their readings, one query.
    specs = ThresholdSpec.all()  # a full pass loads them anyway, next to the statistics
    ours, stats = median_time(lambda: threshold_stats(specs, now, every_threshold=True), repeat)
    runs = []
    full, _ = median_time(lambda: runs.append(run_evaluation(now=next(passes))), repeat)
    return {
        "minutes": minutes,
        "limit": limit,
        "groups": len(rows),
        "ours": ours,
        "full": full,
        "written": statistics.median(run.states_changed for run in runs),
        "samples": sum(s.count for s in stats),
        "thresholds": len(stats),
        "statuses": runs[-1].statuses,
    }


def measure_capture(now, repeat):
    from signals_app.evaluation import BaselineKey, Window, capture_baselines, window_stats
    from signals_app.models import Threshold

    keys = [
        BaselineKey(route_id, signal_id, environment_id, "all")
        for route_id, signal_id, environment_id in Threshold.objects.values_list(
            "route_id", "signal_id", "environment_id"
        )
    ]
    start = now - timedelta(hours=1)
    windows = [
        Window(key.route_id, key.signal_id, key.environment_id, key.cache_segment, start, now)
        for key in keys
    ]
    limit, _ = median_time(lambda: hand_written(start, now), repeat)
    stats, _ = median_time(lambda: window_stats(windows), repeat)
    ours, result = median_time(
        lambda: capture_baselines(keys, start=start, end=now, note="bench"), repeat
    )
    return {
        "keys": len(keys),
        "captured": len(result.baselines),
        "limit": limit,
        "stats": stats,
        "ours": ours,
    }


def ms(seconds):
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def report_window(figures):
    ratio = figures["ours"] / figures["limit"]
    ok_ratio = ratio <= STATS_RATIO_TARGET
    line = (
        f"{figures['minutes']:>5} min window, {figures['thresholds']:,} thresholds, "
        f"{figures['samples']:,} readings: hand-written query {ms(figures['limit'])}; "
        f"our statistics {ms(figures['ours'])} = {ratio:.2f}x "
        f"(target <= {STATS_RATIO_TARGET:g}x {'ok' if ok_ratio else 'MISSED'}); "
        f"full evaluation pass {ms(figures['full'])} = {figures['full'] / figures['limit']:.2f}x, "
        f"{figures['written']:,.0f} states written a pass (median)"
    )
    ok_full = True
    if figures["minutes"] == 15:
        ok_full = figures["full"] < FULL_15M_TARGET_S
        line += f" (target < 1 s {'ok' if ok_full else 'MISSED'})"
    print(line)
    return ok_ratio and ok_full


def brin(now, repeat):
    from django.db import connection

    from signals_app.evaluation import ThresholdSpec, threshold_stats
    from signals_app.models import Threshold

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE INDEX bench_reading_observed_brin ON signals_app_reading "
            "USING brin (observed_at)"
        )
        cursor.execute("ANALYZE signals_app_reading")
    try:
        for minutes in (15, 1440):
            Threshold.objects.update(window_minutes=minutes)
            vacuum()
            start = now - timedelta(minutes=minutes)
            limit, _ = median_time(lambda start=start: hand_written(start, now), repeat)
            specs = ThresholdSpec.all()
            ours, _ = median_time(
                lambda specs=specs: threshold_stats(specs, now, every_threshold=True), repeat
            )
            print(
                f"  + BRIN on observed_at, {minutes:>4} min: hand-written {ms(limit)}, "
                f"our statistics {ms(ours)} = {ours / limit:.2f}x"
            )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX bench_reading_observed_brin")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="generate the data again")
    parser.add_argument("--brin", action="store_true", help="also time with a BRIN index")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    url = server_url()
    ensure_database(url, args.fresh)
    setup_django(url)
    from django.db import connection

    from signals_app.models import Reading

    now = generate()
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('signals_app_reading'))")
        size = cursor.fetchone()[0]
    estimate = f"{Reading.objects.count():,}" if args.fresh else "10,000,000 (generated)"
    print(
        f"{version}; database {DATABASE}; readings: {estimate} ({size} with indexes); "
        f"evaluated at the newest reading, {now:%Y-%m-%d %H:%M} UTC; median of {args.repeat}"
    )
    ok = True
    for minutes in (15, 1440):
        ok &= report_window(measure_window(minutes, now, args.repeat))
    capture = measure_capture(now, args.repeat)
    ratio = capture["stats"] / capture["limit"]
    ok &= ratio <= STATS_RATIO_TARGET
    print(
        f"baseline capture of {capture['keys']:,} keys over 60 min: hand-written query "
        f"{ms(capture['limit'])}; our statistics {ms(capture['stats'])} = {ratio:.2f}x "
        f"(target <= {STATS_RATIO_TARGET:g}x {'ok' if ratio <= STATS_RATIO_TARGET else 'MISSED'}); "
        f"whole capture {ms(capture['ours'])} = {capture['ours'] / capture['limit']:.2f}x "
        f"({capture['captured']:,} baselines inserted, as many deactivated, 2 history rows each)"
    )
    if args.brin:
        brin(now, args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
