"""An existing Owners group (made by `setup_roles`) gets the notification permissions, so
an upgrade needs no `setup_roles` run: owners see their routes' notifications and may
deliver them again. Without the group nothing happens: `setup_roles` makes it whole."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OWNERS = "Owners"
OWNER_PERMISSIONS = ["view_notification", "change_notification"]


def grant_owners(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    group = Group.objects.filter(name=OWNERS).first()
    if group is None:
        return
    # Permissions are normally created after `migrate` finishes; create them now.
    app_config = apps.get_app_config("signals_app")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="signals_app", codename__in=OWNER_PERMISSIONS
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("signals_app", "0010_notification"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(grant_owners, migrations.RunPython.noop),
    ]
