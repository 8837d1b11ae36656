from django.db import migrations

DEFAULT_SIGNALS = [
    # key, name, unit, kind, direction
    ("response_time_ms", "Response time", "ms", "duration", "higher_worse"),
    ("error_rate", "Error rate", "ratio", "ratio", "higher_worse"),
    ("db_calls", "Database calls", "calls", "count", "higher_worse"),
    ("cache_hit", "Cache hit", "ratio", "ratio", "lower_worse"),
]

DEFAULT_ENVIRONMENTS = [
    ("production", "Production", True),
    ("staging", "Staging", False),
]


def create_defaults(apps, schema_editor):
    Signal = apps.get_model("signals_app", "Signal")
    Environment = apps.get_model("signals_app", "Environment")
    for key, name, unit, kind, direction in DEFAULT_SIGNALS:
        Signal.objects.get_or_create(
            key=key, defaults={"name": name, "unit": unit, "kind": kind, "direction": direction}
        )
    for slug, name, is_production in DEFAULT_ENVIRONMENTS:
        Environment.objects.get_or_create(
            slug=slug, defaults={"name": name, "is_production": is_production}
        )


class Migration(migrations.Migration):
    dependencies = [("signals_app", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
