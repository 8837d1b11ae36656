from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


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
