"""The role groups Owners and Reviewers and their model permissions.

`setup_roles` and `load_demo` both call `setup_roles()`; which rows an owner may change
is decided per route by the admin and the API (Route.objects.owned_by): these groups
only open the doors.
"""

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from signals_app.models import REVIEWERS_GROUP

OWNERS_GROUP = "Owners"

# Model permissions of each role, as "<action>_<model>" of signals_app (or a custom codename).
ROLES = {
    OWNERS_GROUP: [
        "view_route",
        # Registering a route: the admin offers only the owner's teams and their services.
        "add_route",
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
        # their own team's webhook URL, contact email and signing secret (OwnerAdmin)
        "change_owner",
        "view_signal",
        "view_environment",
        "view_evaluationrun",
        # their routes' notifications; change_notification is "Deliver again"
        "view_notification",
        "change_notification",
    ],
    REVIEWERS_GROUP: [
        "review_contentitem",
        "view_contentitem",
        "change_contentitem",
        "view_review",
    ],
}


class MissingPermissions(Exception):
    pass


@transaction.atomic
def setup_roles():
    """Create or update each role group so it has exactly its listed permissions.

    Returns one line per group: `Owners: created (24 permissions, +24 -0)`, `unchanged`
    when nothing moved, so a second call changes nothing.
    """
    lines = []
    for name, codenames in ROLES.items():
        wanted = set(codenames)
        permissions = list(
            Permission.objects.filter(content_type__app_label="signals_app", codename__in=wanted)
        )
        missing = wanted - {p.codename for p in permissions}
        if missing:
            raise MissingPermissions(
                f"permissions not found: {', '.join(sorted(missing))} "
                "(expected after `manage.py migrate`)"
            )
        group, created = Group.objects.get_or_create(name=name)
        before = set(group.permissions.values_list("pk", flat=True))
        after = {p.pk for p in permissions}
        if before != after:
            group.permissions.set(permissions)
        added, removed = len(after - before), len(before - after)
        verb = "created" if created else "updated" if added or removed else "unchanged"
        lines.append(f"{name}: {verb} ({len(after)} permissions, +{added} -{removed})")
    return lines
