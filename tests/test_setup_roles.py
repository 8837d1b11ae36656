import importlib
import io

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command


def setup_roles():
    out = io.StringIO()
    call_command("setup_roles", stdout=out)
    return out.getvalue()


def codenames(group_name):
    group = Group.objects.get(name=group_name)
    return set(group.permissions.values_list("codename", flat=True))


@pytest.mark.django_db
def test_it_creates_owners_with_curation_permissions():
    output = setup_roles()
    assert "Owners: created" in output
    owners = codenames("Owners")
    for model in ("threshold", "baseline", "change", "rollbacknote"):
        assert {f"view_{model}", f"add_{model}", f"change_{model}", f"delete_{model}"} <= owners
    assert {"view_route", "add_route", "change_route", "view_reading", "change_incident"} <= owners
    # Readings arrive through the API; deleting a route (and its readings) is for admins.
    assert not {"add_reading", "change_reading", "delete_route"} & owners


@pytest.mark.django_db
def test_it_creates_reviewers_who_may_mark_content_reviewed():
    setup_roles()
    reviewers = codenames("Reviewers")
    assert {"review_contentitem", "view_contentitem", "change_contentitem"} <= reviewers
    assert "change_threshold" not in reviewers


@pytest.mark.django_db
def test_it_is_idempotent():
    setup_roles()
    before = {name: codenames(name) for name in ("Owners", "Reviewers")}
    output = setup_roles()
    assert "Owners: unchanged" in output
    assert "Reviewers: unchanged" in output
    assert Group.objects.filter(name__in=["Owners", "Reviewers"]).count() == 2
    assert {name: codenames(name) for name in ("Owners", "Reviewers")} == before


@pytest.mark.django_db
def test_it_restores_the_listed_permissions_of_an_edited_group():
    setup_roles()
    owners = Group.objects.get(name="Owners")
    owners.permissions.remove(Permission.objects.get(codename="change_threshold"))
    owners.permissions.add(Permission.objects.get(codename="delete_reading"))
    output = setup_roles()
    assert "Owners: updated" in output
    assert "change_threshold" in codenames("Owners")
    assert "delete_reading" not in codenames("Owners")


@pytest.mark.django_db
def test_the_upgrade_migration_lets_an_existing_owners_group_see_notifications():
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("signals_app.migrations.0011_owners_see_notifications")
    setup_roles()
    owners = Group.objects.get(name="Owners")
    owners.permissions.remove(*Permission.objects.filter(codename__endswith="_notification"))
    migration.grant_owners(apps, SimpleNamespace(connection=connection))
    assert {"view_notification", "change_notification"} <= codenames("Owners")
    assert "Owners: unchanged" in setup_roles()  # nothing left for it to add


@pytest.mark.django_db
def test_the_upgrade_migration_makes_no_owners_group():
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("signals_app.migrations.0011_owners_see_notifications")
    migration.grant_owners(apps, SimpleNamespace(connection=connection))
    assert not Group.objects.filter(name="Owners").exists()


@pytest.mark.django_db
def test_the_upgrade_migration_lets_an_existing_owners_group_register_routes():
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("signals_app.migrations.0012_owners_add_routes")
    setup_roles()
    owners = Group.objects.get(name="Owners")
    owners.permissions.remove(Permission.objects.get(codename="add_route"))
    migration.grant_owners(apps, SimpleNamespace(connection=connection))
    assert "add_route" in codenames("Owners")
    assert "Owners: unchanged" in setup_roles()


@pytest.mark.django_db
def test_the_upgrade_migration_lets_an_existing_owners_group_change_their_team():
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("signals_app.migrations.0019_owners_change_their_team")
    migration.grant_owners(apps, SimpleNamespace(connection=connection))
    assert not Group.objects.filter(name="Owners").exists()  # made by setup_roles only
    setup_roles()
    owners = Group.objects.get(name="Owners")
    owners.permissions.remove(Permission.objects.get(codename="change_owner"))
    migration.grant_owners(apps, SimpleNamespace(connection=connection))
    assert "change_owner" in codenames("Owners")
    assert "Owners: unchanged" in setup_roles()
