from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

# Model permissions of each role, as "<action>_<model>" of signals_app (or a custom
# codename). Which rows an owner may change is decided per route by the admin and
# the API (Route.objects.owned_by); these only open the doors.
ROLES = {
    "Owners": [
        "view_route",
        "change_route",
        *(
            f"{action}_{model}"
            for model in ("threshold", "baseline", "change", "rollbacknote")
            for action in ("view", "add", "change", "delete")
        ),
        "view_incident",
        "change_incident",
        "view_reading",
        "view_service",
        "view_owner",
        "view_signal",
        "view_environment",
        "view_evaluationrun",
    ],
    "Reviewers": [
        "review_contentitem",
        "view_contentitem",
        "change_contentitem",
        "view_review",
    ],
}


class Command(BaseCommand):
    help = (
        "Create or update the groups Owners and Reviewers with their model permissions. "
        "Safe to run again: each group ends with exactly the permissions listed."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        for name, codenames in ROLES.items():
            wanted = set(codenames)
            permissions = list(
                Permission.objects.filter(
                    content_type__app_label="signals_app", codename__in=wanted
                )
            )
            missing = wanted - {p.codename for p in permissions}
            if missing:
                raise CommandError(
                    f"permissions not found: {', '.join(sorted(missing))} "
                    "(expected after `manage.py migrate`)"
                )
            group, created = Group.objects.get_or_create(name=name)
            before = set(group.permissions.values_list("pk", flat=True))
            group.permissions.set(permissions)
            after = {p.pk for p in permissions}
            added, removed = len(after - before), len(before - after)
            verb = "created" if created else "updated" if added or removed else "unchanged"
            self.stdout.write(f"{name}: {verb} ({len(after)} permissions, +{added} -{removed})")
