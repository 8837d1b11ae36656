"""Plain builder functions for tests: each makes one object with sensible defaults."""

import itertools
from datetime import timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.utils import timezone

from signals_app.models import (
    Environment,
    Owner,
    Reading,
    Route,
    Service,
    Signal,
    Threshold,
)

_counter = itertools.count(1)


def make_user(username, *, password="pw-for-tests-only", **extra):
    return get_user_model().objects.create_user(username=username, password=password, **extra)


def make_owner(name=None, *, members=()):
    owner = Owner.objects.create(
        name=name or f"owner-{next(_counter)}", contact_email="team@example.com"
    )
    owner.members.add(*members)
    return owner


def make_service(slug=None, *, owner=None):
    return Service.objects.create(slug=slug or f"svc-{next(_counter)}", owner=owner or make_owner())


def make_route(service=None, path=None, *, method="GET", owner=None):
    service = service or make_service()
    return Route.objects.create(
        service=service,
        method=method,
        path=path or f"/things-{next(_counter)}/{{id}}",
        owner=owner or service.owner,
        expected_result="200 with the thing",
    )


def signal(key="response_time_ms"):
    return Signal.objects.get(key=key)


def environment(slug="production"):
    return Environment.objects.get(slug=slug)


def make_threshold(route=None, *, signal_key="response_time_ms", **fields):
    values = {
        "route": route or make_route(),
        "signal": signal(signal_key),
        "environment": environment(fields.pop("environment", "production")),
        "statistic": "p95",
        "warn": 300.0,
        "critical": 800.0,
        "min_samples": 5,
    }
    values.update(fields)
    return Threshold.objects.create(**values)


def make_readings(
    route,
    values,
    *,
    signal_key="response_time_ms",
    env="production",
    cache_status="MISS",
    start=None,
    step=timedelta(seconds=10),
):
    """Store one reading per value, `step` apart, ending at `start` or now."""
    now = start or timezone.now()
    sig, environment_obj = signal(signal_key), environment(env)
    readings = [
        Reading(
            service=route.service,
            route=route,
            signal=sig,
            environment=environment_obj,
            value=value,
            observed_at=now - step * index,
            cache_status=cache_status,
        )
        for index, value in enumerate(values)
    ]
    return Reading.objects.bulk_create(readings)


def give_role(user, role="Owners"):
    """Put a user in a role group made by `setup_roles` (Owners or Reviewers)."""
    import io

    from django.contrib.auth.models import Group
    from django.core.management import call_command

    if not Group.objects.filter(name="Owners").exists():  # made only by setup_roles
        call_command("setup_roles", stdout=io.StringIO())
    user.groups.add(Group.objects.get(name=role))
    return user


def make_key(service, **fields):
    """Issue a service key and return the full `dq_<prefix>.<secret>` string."""
    from signals_app.models import ServiceKey

    _key, raw = ServiceKey.issue(service, **fields)
    return raw


def make_change(route, applied_at, *, variable=None, env="production", **fields):
    from signals_app.models import Change

    return Change.objects.create(
        route=route,
        environment=environment(env),
        variable=variable or f"variable-{next(_counter)}",
        applied_at=applied_at,
        **fields,
    )


# ---- content

SAMPLE_CONTENT = (
    Path(__file__).resolve().parent.parent
    / "signals_app"
    / "demo"
    / "content"
    / "anp-ref-022359-4690.txt"
)


def content_text(*replacements):
    """The sample document's text with each (old, new) replacement applied everywhere."""
    text = SAMPLE_CONTENT.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) >= 1, f"{old!r} is not in the sample"
        text = text.replace(old, new)
    return text


def write_content(directory, name, text, *, encoding="utf-8", newline="\n"):
    path = Path(directory) / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def make_content_item(reference=None, **fields):
    from signals_app.models import ContentItem

    values = {
        "reference": reference or f"ref-{next(_counter)}",
        "title": "a content item",
        "body": "the article",
        "quality": 80,
        "freshness": 80,
        "depth": 80,
        "clarity": 80,
        "version": "1.0.0",
        "content_hash": "abc",
    }
    values.update(fields)
    return ContentItem.objects.create(**values)


def make_reviewer(user):
    from django.contrib.auth.models import Group

    from signals_app.models import REVIEWERS_GROUP

    user.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
    return user


def threshold_form(threshold, **changes):
    """The fields of a threshold's admin form, as stored, with `changes`."""
    data = {
        "route": threshold.route_id,
        "signal": threshold.signal_id,
        "environment": threshold.environment_id,
        "statistic": threshold.statistic,
        "cache_segment": threshold.cache_segment,
        "window_minutes": threshold.window_minutes,
        "warn": threshold.warn,
        "critical": threshold.critical,
        "min_samples": threshold.min_samples,
        "sustain_minutes": threshold.sustain_minutes,
    }
    return {**data, **changes}


def owner_page(owner):
    return f"/admin/signals_app/owner/{owner.pk}/change/"


def owner_form(owner, **changes):
    """The fields of an owner's admin form, as stored, with `changes`."""
    data = {
        "name": owner.name,
        "contact_email": owner.contact_email,
        "webhook_url": owner.webhook_url,
        "members": list(owner.members.values_list("pk", flat=True)),
    }
    return {**data, **changes}
