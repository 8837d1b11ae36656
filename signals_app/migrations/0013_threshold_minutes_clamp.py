"""Threshold: a window or sustain saved in the admin longer than a week (it had no upper
bound) is set to a week, so that 0014 can add the check constraints that hold the API's
bounds (a window of 2,000,000,000 minutes stopped every evaluation pass anyway).

A migration of its own: PostgreSQL refuses to ALTER a table with pending trigger events
in the transaction that updated it. Should a clamped window meet another threshold of the
same statistic with a week's window, the unique constraint stops this migration: delete
one of the two and migrate again.
"""

from django.db import migrations

WEEK = 10080


def clamp_to_a_week(apps, schema_editor):
    Threshold = apps.get_model("signals_app", "Threshold")
    Threshold.objects.filter(window_minutes__gt=WEEK).update(window_minutes=WEEK)
    Threshold.objects.filter(sustain_minutes__gt=WEEK).update(sustain_minutes=WEEK)


class Migration(migrations.Migration):
    dependencies = [
        ("signals_app", "0012_owners_add_routes"),
    ]

    operations = [
        migrations.RunPython(clamp_to_a_week, migrations.RunPython.noop),
    ]
