"""Content quality as signals, and the Reviewers group.

Each import_content run records, for every item it creates or updates, one reading of
each signal below on the route that stands for the content source (service `content`,
`GET /content/{reference}`), so owners set thresholds on content quality like on any
other signal.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CONTENT_SIGNALS = [
    # key, name, unit, kind, direction
    ("content_quality", "Content quality score", "points", "score", "lower_worse"),
    ("content_freshness", "Content freshness score", "points", "score", "lower_worse"),
    ("content_depth", "Content depth score", "points", "score", "lower_worse"),
    ("content_clarity", "Content clarity score", "points", "score", "lower_worse"),
    ("content_missing_meta", "Missing content meta fields", "fields", "count", "higher_worse"),
]

REVIEWERS = "Reviewers"
REVIEWER_PERMISSIONS = ["review_contentitem", "view_contentitem", "view_review"]


def create_signals(apps, schema_editor):
    Signal = apps.get_model("signals_app", "Signal")
    for key, name, unit, kind, direction in CONTENT_SIGNALS:
        Signal.objects.get_or_create(
            key=key, defaults={"name": name, "unit": unit, "kind": kind, "direction": direction}
        )


def create_reviewers(apps, schema_editor):
    # Permissions are normally created after `migrate` finishes; create them now so the
    # group can hold them on a fresh database.
    app_config = apps.get_app_config("signals_app")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=REVIEWERS)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="signals_app", codename__in=REVIEWER_PERMISSIONS
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("signals_app", "0003_content_missing_fields"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_signals, migrations.RunPython.noop),
        migrations.RunPython(create_reviewers, migrations.RunPython.noop),
    ]
