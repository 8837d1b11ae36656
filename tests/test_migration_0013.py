"""Migration 0013 brings thresholds saved in the admin beyond the API's bounds within them,
losing none: two long windows of one statistic must not meet on the unique constraint."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("signals_app", "0012_owners_add_routes")]
AFTER = [("signals_app", "0013_threshold_minutes_clamp")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_long_windows_of_one_statistic_become_distinct_windows_within_a_week(capsys):
    apps = migrate(BEFORE)
    try:
        Owner = apps.get_model("signals_app", "Owner")
        Service = apps.get_model("signals_app", "Service")
        Route = apps.get_model("signals_app", "Route")
        Signal = apps.get_model("signals_app", "Signal")
        Environment = apps.get_model("signals_app", "Environment")
        Threshold = apps.get_model("signals_app", "Threshold")
        owner = Owner.objects.create(name="Blog team")
        service = Service.objects.create(slug="blog-m", owner=owner)
        route = Route.objects.create(service=service, path="/m", owner=owner)
        signal, _ = Signal.objects.get_or_create(
            key="response_time_ms", defaults={"kind": "duration", "direction": "higher_worse"}
        )
        environment, _ = Environment.objects.get_or_create(slug="production")
        common = {
            "route": route,
            "signal": signal,
            "environment": environment,
            "warn": 1,
            "critical": 2,
            "direction": "higher_worse",
        }
        week = Threshold.objects.create(window_minutes=10080, **common)
        long_ones = [
            Threshold.objects.create(window_minutes=minutes, **common).pk
            for minutes in (20_000, 2_000_000_000)
        ]
        many = Threshold.objects.create(
            window_minutes=15, min_samples=5_000_000, sustain_minutes=99_999, **common
        )
        apps = migrate(AFTER)
        Threshold = apps.get_model("signals_app", "Threshold")
        windows = dict(Threshold.objects.values_list("pk", "window_minutes"))
        assert windows == {week.pk: 10080, long_ones[0]: 10079, long_ones[1]: 10078, many.pk: 15}
        many = Threshold.objects.get(pk=many.pk)
        assert (many.min_samples, many.sustain_minutes) == (1_000_000, 10080)
        assert f"threshold {long_ones[1]}: window 2000000000 -> 10078 minutes" in (
            capsys.readouterr().out
        )
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
