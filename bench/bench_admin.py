"""Benchmark the admin at 1,000,000 readings on PostgreSQL: the Reading changelist, every
route page, a change page and the status board.

    python bench/bench_admin.py [--readings 1000000] [--routes 60] [--reload]
    make bench-admin

Loads a throwaway database `bench_admin_<name>` on the server of BENCH_POSTGRES_URL
(default DATABASE_URL when it is PostgreSQL, else postgres://postgres@127.0.0.1:5432/postgres)
with generate_series: routes of three services, four signals, production and staging, cache
HIT/MISS/UNKNOWN, skewed traffic (the busiest route gets about a quarter of all readings),
spread over 7 days and stored in time order (as they arrive); thresholds, baselines,
changes, rollback notes, one evaluation pass.
The database is kept for the next run (--reload rebuilds it, --drop removes it).

Each page is rendered through Django's test client (middleware, ORM, templates; no
network): one warm-up, then --repeat timed runs; the median is held against the target
of 300 ms, the fastest and slowest runs are printed next to it with the load average (on a
shared machine the load of other processes shows in every figure). Exits 1 when a page's
median misses the target.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 300.0


def postgres_url():
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    return "postgres://postgres@127.0.0.1:5432/postgres"


def setup_django():
    os.environ["DATABASE_URL"] = postgres_url()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dqregistry.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def use_bench_database(reload):
    """Point the default connection at bench_admin_<name>; True when it must be loaded."""
    from django.conf import settings
    from django.db import connection

    database = settings.DATABASES["default"]
    name = f"bench_admin_{database['NAME']}"
    database["TEST"]["NAME"] = name
    if reload:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        return True
    connection.creation.create_test_db(verbosity=0, keepdb=True, serialize=False)
    from signals_app.models import Reading

    return not Reading.objects.exists()


def load(readings, routes_count):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from signals_app import evaluation
    from signals_app.models import (
        Baseline,
        Change,
        Environment,
        Owner,
        RollbackNote,
        Route,
        Service,
        Signal,
        Threshold,
    )

    User = get_user_model()
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        call_command("setup_roles", stdout=quiet)
    owner_user = User.objects.create_user("bench-owner", password="bench", is_staff=True)
    owner_user.groups.add(Group.objects.get(name="Owners"))
    User.objects.create_superuser("bench-root", password="bench")
    services = []
    for slug in ("blog", "search", "shop"):
        team = Owner.objects.create(name=f"{slug} team", contact_email=f"{slug}@example.com")
        if slug == "blog":
            team.members.add(owner_user)
        services.append(Service.objects.create(slug=slug, owner=team))
    routes = []
    for index in range(routes_count):
        service = services[index % len(services)]
        routes.append(
            Route.objects.create(
                service=service,
                owner=service.owner,
                method="GET",
                path=f"/{service.slug}/things-{index}/{{id}}",
                expected_input="an id",
                expected_result="200 with the thing",
                user_impact="the page spins",
            )
        )
    signals = {
        s.key: s
        for s in Signal.objects.filter(
            key__in=["response_time_ms", "error_rate", "db_calls", "cache_hit"]
        )
    }
    production = Environment.objects.get(slug="production")
    staging = Environment.objects.get(slug="staging")

    now = timezone.now()
    route_ids = [r.pk for r in routes]
    service_ids = [r.service_id for r in routes]
    signal_ids = [
        signals[k].pk for k in ("response_time_ms", "error_rate", "db_calls", "cache_hit")
    ]
    with connection.cursor() as cursor:
        # Skewed traffic: route index floor(n * u^3) sends ~n^(-1/3) of it to route 0.
        cursor.execute(
            """
            INSERT INTO signals_app_reading
                (service_id, route_id, signal_id, environment_id, value, observed_at,
                 received_at, cache_status, release, idempotency_key)
            SELECT (%(services)s::bigint[])[ri + 1], (%(routes)s::bigint[])[ri + 1],
                   (%(signals)s::bigint[])[si + 1],
                   CASE WHEN e < 0.9 THEN %(production)s ELSE %(staging)s END,
                   CASE si
                     WHEN 0 THEN CASE WHEN c < 0.6 THEN 8 + 30 * random()
                                      ELSE 90 + 400 * power(random(), 2) END
                     WHEN 1 THEN 0.02 * random()
                     WHEN 2 THEN floor(20 * random())
                     ELSE CASE WHEN c < 0.6 THEN 1 ELSE 0 END
                   END,
                   t, t,
                   CASE WHEN c < 0.6 THEN 'HIT' WHEN c < 0.95 THEN 'MISS' ELSE 'UNKNOWN' END,
                   '1.7.9', NULL
            FROM (
                SELECT floor(%(n)s * power(random(), 3))::int AS ri,
                       floor(4 * random())::int AS si,
                       random() AS e, random() AS c,
                       %(now)s - random() * interval '7 days' AS t
                FROM generate_series(1, %(count)s)
            ) AS generated
            ORDER BY t  -- stored in arrival order, as ingestion stores them
            """,
            {
                "services": service_ids,
                "routes": route_ids,
                "signals": signal_ids,
                "production": production.pk,
                "staging": staging.pk,
                "n": len(routes),
                "now": now,
                "count": readings,
            },
        )
        cursor.execute("VACUUM ANALYZE signals_app_reading")
    loaded = time.perf_counter() - started

    for index, route in enumerate(routes):
        for signal_key, statistic, segment, environment, warn, critical in (
            ("response_time_ms", "p95", "all", production, 300, 800),
            ("response_time_ms", "p95", "miss", production, 400, 900),
            ("error_rate", "mean", "all", production, 0.01, 0.05),
            ("db_calls", "p95", "all", production, 15, 25),
            ("response_time_ms", "p95", "all", staging, 400, 1000),
        ):
            Threshold.objects.create(
                route=route,
                signal=signals[signal_key],
                environment=environment,
                statistic=statistic,
                cache_segment=segment,
                warn=warn,
                critical=critical,
                min_samples=5,
            )
        Baseline.objects.create(
            route=route,
            signal=signals["response_time_ms"],
            environment=production,
            window_start=now - timedelta(days=6),
            window_end=now - timedelta(days=5),
            count=1000,
            p50=40,
            p95=350,
            p99=460,
            mean=120,
        )
        for hours in (5, 20, 40):
            change = Change.objects.create(
                route=route,
                environment=production,
                variable=f"cache ttl {hours}",
                applied_at=now - timedelta(hours=hours),
            )
        RollbackNote.objects.create(route=route, change=change, steps="redeploy the last release")
        if index % 3 == 0:
            threshold = route.thresholds.first()
            threshold.warn += 10
            threshold.save()
    run = evaluation.run_evaluation()
    print(
        f"loaded {readings:,} readings over {len(routes)} routes in {loaded:.1f}s; "
        f"one evaluation pass over {run.thresholds} thresholds took {run.duration_ms:.0f} ms"
    )


def time_page(client, url, repeat):
    response = client.get(url)  # warm-up (and a check)
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code}")
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        response.content  # noqa: B018 - rendered
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs), min(runs), max(runs)


def measure(repeat):
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from signals_app.models import Change, Reading, Route, Signal

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-root"))
    owner = Client()
    owner.force_login(get_user_model().objects.get(username="bench-owner"))
    readings = reverse("admin:signals_app_reading_changelist")
    signal = Signal.objects.get(key="db_calls")
    busiest = Route.objects.order_by("pk").first()
    results = []

    def row(label, who, url):
        median, best, worst = time_page(who, url, repeat)
        results.append((label, median, worst))
        print(f"  {label:<44} median {median:6.1f} ms  (min {best:6.1f}, max {worst:6.1f})")

    print(
        f"pages (median of {repeat} runs after a warm-up; target {TARGET_MS:.0f} ms); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:"
    )
    row("Reading changelist (superuser)", client, readings)
    row("Reading changelist (owner)", owner, readings)
    row("Reading changelist, page 50", client, f"{readings}?p=50")
    row("Reading changelist ?signal=db_calls", client, f"{readings}?signal__id__exact={signal.pk}")
    row("Reading changelist ?route=busiest", client, f"{readings}?route__id__exact={busiest.pk}")
    row("status board /board", client, "/board")
    row("Threshold changelist (owner)", owner, reverse("admin:signals_app_threshold_changelist"))
    change = Change.objects.filter(route=busiest).order_by("-applied_at").first()
    row(
        "Change page, before vs after (busiest)",
        client,
        reverse("admin:signals_app_change_change", args=[change.pk]),
    )
    route_times = []
    for route in Route.objects.order_by("pk"):
        url = reverse("admin:signals_app_route_change", args=[route.pk])
        median, best, worst = time_page(client, url, repeat)
        count = Reading.objects.filter(route=route).count()
        route_times.append((median, best, worst, route, count))
    route_times.sort(key=lambda item: item[0], reverse=True)
    print(f"  route pages: {len(route_times)} (slowest five, with their readings):")
    for median, best, worst, route, count in route_times[:5]:
        label = f"{route.path} ({count:,} readings)"
        results.append((f"route page {route.path}", median, worst))
        print(f"    {label:<42} median {median:6.1f} ms  (min {best:6.1f}, max {worst:6.1f})")
    medians = [item[0] for item in route_times]
    print(
        f"    all {len(medians)} route pages: median {statistics.median(medians):.1f} ms, "
        f"slowest median {max(medians):.1f} ms"
    )
    results.extend((f"route page {r.path}", m, w) for m, _, w, r, _ in route_times[5:])
    missed = [label for label, median, _ in results if median > TARGET_MS]
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("missed the target: " + ", ".join(missed) if missed else "every page within target")
    return not missed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--routes", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reload", action="store_true", help="rebuild the bench database")
    parser.add_argument("--drop", action="store_true", help="drop the bench database and exit")
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("bench-admin needs PostgreSQL (BENCH_POSTGRES_URL or DATABASE_URL)")
    if args.drop:
        from django.conf import settings

        connection.creation.destroy_test_db(
            f"bench_admin_{settings.DATABASES['default']['NAME']}", verbosity=0
        )
        return 0
    if use_bench_database(args.reload):
        load(args.readings, args.routes)
    else:
        from signals_app.models import Reading

        print(
            f"reusing {connection.settings_dict['NAME']} (--reload rebuilds it): "
            f"~{Reading.objects.count():,} readings"
        )
    return 0 if measure(args.repeat) else 1


if __name__ == "__main__":
    sys.exit(main())
