"""Threshold: a window or sustain saved in the admin longer than a week (it had no upper
bound) is brought to a week, and min_samples to 1,000,000, so that 0014 can add the check
constraints that hold the API's bounds (a window of 2,000,000,000 minutes stopped every
evaluation pass).

A window is unique per route, signal, environment, statistic and segment: one that would
meet another threshold's window takes the longest free one below a week instead (two
thresholds of 14 and 30 days become 10080 and 10079 minutes), so no threshold is lost and
the upgrade cannot stop on the unique constraint. Each threshold changed is printed.

A migration of its own: PostgreSQL refuses to ALTER a table with pending trigger events
in the transaction that updated it.
"""

from django.db import migrations

WEEK = 10080
MAX_MIN_SAMPLES = 1_000_000


def clamp_to_a_week(apps, schema_editor):
    Threshold = apps.get_model("signals_app", "Threshold")
    key = ("route_id", "signal_id", "environment_id", "statistic", "cache_segment")
    for threshold in Threshold.objects.filter(window_minutes__gt=WEEK).order_by("pk"):
        taken = set(
            Threshold.objects.filter(**{name: getattr(threshold, name) for name in key})
            .exclude(pk=threshold.pk)
            .values_list("window_minutes", flat=True)
        )
        window = WEEK
        while window in taken:
            window -= 1
        print(f"  threshold {threshold.pk}: window {threshold.window_minutes} -> {window} minutes")
        Threshold.objects.filter(pk=threshold.pk).update(window_minutes=window)
    for field, bound in (("sustain_minutes", WEEK), ("min_samples", MAX_MIN_SAMPLES)):
        for pk, value in Threshold.objects.filter(**{f"{field}__gt": bound}).values_list(
            "pk", field
        ):
            print(f"  threshold {pk}: {field} {value} -> {bound}")
        Threshold.objects.filter(**{f"{field}__gt": bound}).update(**{field: bound})


class Migration(migrations.Migration):
    dependencies = [
        ("signals_app", "0012_owners_add_routes"),
    ]

    operations = [
        migrations.RunPython(clamp_to_a_week, migrations.RunPython.noop),
    ]
