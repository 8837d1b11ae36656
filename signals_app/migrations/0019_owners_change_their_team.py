"""An existing Owners group (made by `setup_roles`) gets change_owner, so an upgrade needs no
`setup_roles` run: members set their own team's webhook URL and contact email and generate
its signing secret in the admin (OwnerAdmin allows no other field and no other team).
Without the group nothing happens: `setup_roles` makes it whole."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OWNERS = "Owners"
OWNER_PERMISSIONS = ["change_owner"]


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
        ("signals_app", "0018_owner_signing_secret"),
    ]

    operations = [
        migrations.RunPython(grant_owners, migrations.RunPython.noop),
    ]
