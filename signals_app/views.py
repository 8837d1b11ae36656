from collections import defaultdict

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import charts
from .evaluation import worst_status
from .models import Incident, Owner, Route, Status, Threshold


@never_cache
@require_GET
def health(request):
    """Liveness: the process answers. Never touches the database."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request):
    """Readiness: the database answers and no migration is pending, else 503."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return JsonResponse(
            {
                "status": "unavailable",
                "database": "unreachable",
                "detail": str(exc).strip().splitlines()[0]
                if str(exc).strip()
                else type(exc).__name__,
                "retryable": True,
            },
            status=503,
        )
    if plan:
        pending = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
        return JsonResponse(
            {
                "status": "unavailable",
                "database": "ok",
                "pending_migrations": pending,
                "detail": "run `python manage.py migrate`",
                "retryable": True,
            },
            status=503,
        )
    return JsonResponse({"status": "ok", "database": "ok", "pending_migrations": []})


# --- status board -------------------------------------------------------------

BOARD_STATUSES = [Status.CRITICAL, Status.WARN, Status.PENDING, Status.NO_DATA, Status.OK]


@login_required
@require_GET
def board(request):
    """Services → routes with status, sparkline, owner, last reading and open incidents."""
    owner_filter = request.GET.get("owner", "")
    status_filter = request.GET.get("status", "")
    owners = list(Owner.objects.order_by("name"))
    # An unknown value is said, not read as "all" or "none": "²".isdigit() is true and int()
    # refused it (a 500), and an id past bigint was a 500 on SQLite.
    problems = []
    if owner_filter not in ("", "mine") and owner_filter not in {str(o.pk) for o in owners}:
        problems.append(f"No owner {owner_filter!r}: showing every owner's routes.")
        owner_filter = ""
    if status_filter and status_filter not in Status.values:
        problems.append(f"No status {status_filter!r}: showing every status.")
        status_filter = ""
    routes = Route.objects.select_related("service", "owner").order_by(
        "service__slug", "path", "method"
    )
    if owner_filter == "mine":
        routes = routes.owned_by(request.user) if not request.user.is_superuser else routes
    elif owner_filter:
        routes = routes.filter(owner_id=int(owner_filter))
    routes = list(routes)
    route_ids = [route.pk for route in routes]

    thresholds = defaultdict(list)
    for threshold in (
        Threshold.objects.filter(route_id__in=route_ids)
        .select_related("signal", "environment", "state")
        .order_by("-environment__is_production", "signal__key", "statistic")
    ):
        thresholds[threshold.route_id].append(threshold)
    incidents = defaultdict(list)
    for incident in (
        Incident.objects.open()
        .filter(route_id__in=route_ids)
        .only("route_id", "level", "silenced_until")
    ):
        incidents[incident.route_id].append(incident)
    now = timezone.now()
    activity, start, bucket_seconds = charts.route_activity(
        None if owner_filter == "" else route_ids, end=now
    )

    services, counts = {}, defaultdict(int)
    for route in routes:
        states = [getattr(t, "state", None) for t in thresholds[route.pk]]
        status = worst_status(state.status if state else Status.NO_DATA for state in states)
        counts[status] += 1
        if status_filter and status != status_filter:
            continue
        seen = activity.get(route.pk)
        # The sparkline follows a duration threshold (response time) when there is one.
        watched = thresholds[route.pk]
        primary = next((t for t in watched if t.signal.kind == "duration"), None) or (
            watched[0] if watched else None
        )
        spark_title, points = "no readings in 24 h", {}
        if seen:
            if primary and (primary.signal_id, primary.environment_id) in seen["series"]:
                pair = (primary.signal_id, primary.environment_id)
                spark_title = f"{primary.signal.key} ({primary.environment.slug}), hourly mean"
            else:
                pair = max(seen["samples"], key=seen["samples"].get)
                spark_title = "its busiest signal, hourly mean"
            points = seen["series"][pair]
        open_incidents = incidents[route.pk]
        services.setdefault(route.service, []).append(
            {
                "route": route,
                "status": status,
                "status_label": Status(status).label,
                "sparkline": charts.sparkline(
                    points, start=start, end=now, bucket_seconds=bucket_seconds, title=spark_title
                ),
                "spark_title": spark_title,
                "last_reading": seen["last"] if seen else None,
                "open_incidents": len(open_incidents),
                "incident_level": worst_status(i.level for i in open_incidents)
                if open_incidents
                else "",
                "silenced": sum(1 for i in open_incidents if i.is_silenced),
            }
        )
    return render(
        request,
        "board.html",
        {
            "services": list(services.items()),
            "owners": owners,
            "problems": problems,
            "owner_filter": owner_filter,
            "status_filter": status_filter,
            "statuses": [(s.value, s.label, counts[s.value]) for s in BOARD_STATUSES],
            "route_count": len(routes),
            "refresh_seconds": settings.DQ_BOARD_REFRESH_SECONDS,
            "now": now,
        },
    )
