"""Every admin page costs a fixed number of queries, however many rows there are.

Counts are for an owner (alice, in the Owners group) unless marked `root` or `other team`
(dana, an owner of another team, reading alice's rows). Each request starts with: session,
user; an owner's first permission check adds user permissions and group permissions; pages
that check ownership add the ids of the routes the user owns.
"""

from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from signals_app.models import (
    Baseline,
    Change,
    Environment,
    EvaluationRun,
    Incident,
    Notification,
    Reading,
    RollbackNote,
    ServiceKey,
    Signal,
    ThresholdState,
)
from tests.builders import (
    give_role,
    make_owner,
    make_readings,
    make_route,
    make_threshold,
    make_user,
)

# (page, who, queries)
PAGES = [
    # session, user, perms ×2, content types of the app list
    ("index", "owner", 5),
    # session, user, routes, thresholds+states, open incidents, activity, owners
    ("board", "owner", 7),
    # session, user, perms ×2, page of rows (+ related), filter choices…
    ("owner changelist", "owner", 7),
    ("service changelist", "owner", 8),
    ("servicekey changelist", "root", 6),
    ("environment changelist", "owner", 7),
    ("signal changelist", "owner", 7),
    # …, routes (with last rehearsal), filters: services, owners
    ("route changelist", "owner", 9),
    # …, owned route ids subquery inside the rows query, filters: environments, signals
    ("threshold changelist", "owner", 9),
    ("baseline changelist", "owner", 9),
    ("change changelist", "owner", 8),
    ("rollbacknote changelist", "owner", 7),
    # …, filters: environments, signals; the estimated count (pg_class.reltuples and a
    # count capped at 201 rows, in one query), one page of rows
    ("reading changelist", "owner", 8),
    ("incident changelist", "owner", 7),
    ("evaluationrun changelist", "owner", 7),
    # …, the owned routes' notifications with owner, incident, route, service
    ("notification changelist", "owner", 7),
    # session, user, route, perms ×2, owned ids, select choices (signals, environments,
    # owners, changes), threshold and rollback note inlines, the page's thresholds, active
    # baselines and open incidents, evaluation.route_status on those (states, ONE
    # statistics query), ONE chart query, recent changes and their verdicts
    # (evaluation.compare_changes: overlapping changes, signals, ONE statistics query),
    # rollback notes, content type
    ("route change", "owner", 24),
    ("threshold change", "owner", 10),
    ("baseline change", "owner", 10),
    # …, evaluation.compare_change (overlapping changes, signals, ONE statistics query),
    # thresholds and signals of the charts, ONE chart query, form choices
    ("change change", "owner", 15),
    ("rollbacknote change", "owner", 10),
    ("incident change", "owner", 7),
    # session, user, perms ×2, the notification with its incident's names, content type
    ("notification change", "owner", 6),
    ("reading change", "owner", 11),
    # root (no permission queries): session, user, object, then its form's choices/inlines
    ("owner change", "root", 6),  # …, members (chosen, available), content type
    ("service change", "root", 6),  # …, owners, service keys (+ service), content type
    ("servicekey change", "root", 6),  # …, its service (read-only), content type, created_by
    ("environment change", "root", 4),
    ("signal change", "root", 4),
    ("evaluationrun change", "root", 4),
    ("route add", "root", 9),  # …, services, owners, signals, environments, changes
    ("threshold add", "owner", 7),
    ("baseline add", "owner", 7),
    ("change add", "owner", 6),
    ("rollbacknote add", "owner", 6),
    # session, user, object, perms ×2, count and page of history rows, owned ids, …
    ("threshold history", "owner", 9),
    ("baseline history", "owner", 9),
    ("change history", "owner", 9),
    ("rollbacknote history", "owner", 9),
    # dana, an owner on another team, reads alice's rows. Every team's rows: as her own
    # list, without the owned-ids subquery
    ("threshold changelist?mine=0", "other team", 9),
    ("baseline changelist?mine=0", "other team", 9),
    ("change changelist?mine=0", "other team", 8),
    ("rollbacknote changelist?mine=0", "other team", 7),
    # a row's view-only page: session, user, row (+ what its name needs), perms ×2, owned
    # ids, content type; no form, so no choices
    ("threshold change", "other team", 7),
    ("baseline change", "other team", 7),
    ("change change", "other team", 13),  # …, the comparison and charts, as alice's
    ("rollbacknote change", "other team", 10),  # …, its change, that change's route, service
    # and its history, as alice's
    ("threshold history", "other team", 9),
    ("baseline history", "other team", 9),
    ("change history", "other team", 9),
    ("rollbacknote history", "other team", 9),
]


def build_world(blog, size):
    """`size` routes; the first one with `size` of everything and `size` edits each."""
    now = timezone.now()
    routes = [make_route(blog) for _ in range(size)]
    route = routes[0]
    environments = list(Environment.objects.all())
    for index in range(size):
        threshold = make_threshold(route, window_minutes=10 + index)
        make_threshold(
            route,
            signal_key="error_rate",
            warn=0.01,
            critical=0.05,
            window_minutes=10 + index,
            environment=environments[index % len(environments)].slug,
        )
        ThresholdState.objects.create(
            threshold=threshold, status="warn", value=1, samples=3, changed_at=now
        )
        Baseline.objects.create(
            route=route,
            signal=threshold.signal,
            environment=threshold.environment,
            window_start=now - timedelta(days=2),
            window_end=now - timedelta(days=1),
            active=index == 0,
        )
        change = Change.objects.create(
            route=route,
            environment=threshold.environment,
            variable=f"change {index}",
            applied_at=now - timedelta(hours=index + 1),
        )
        RollbackNote.objects.create(route=route, steps="redeploy", change=change, owner=blog.owner)
        incident = Incident.objects.create(
            threshold=threshold, route=route, level="warn", peak_value=1, resolved_at=now
        )
        Notification.objects.create(
            incident=incident, owner=route.owner, event="resolved", payload={}, status="failed"
        )
        make_readings(route, [1.0] * 20 * size, step=timedelta(minutes=10))
        make_readings(routes[index], [1.0] * 20, cache_status="HIT", step=timedelta(minutes=7))
        EvaluationRun.objects.create()
        for model in (Baseline, Change, RollbackNote):
            first = model.objects.filter(route=route).order_by("pk").first()
            first.save()
        first = route.thresholds.order_by("pk").first()
        first.warn += 1
        first.save()
    Incident.objects.create(
        threshold=route.thresholds.order_by("pk").first(), route=route, level="warn", peak_value=2
    )
    for _ in range(size):
        ServiceKey.issue(blog, name="web")
    return route


def page_url(page, route):
    page, _, query = page.partition("?")
    return f"{object_url(page, route)}?{query}" if query else object_url(page, route)


def object_url(page, route):
    model, _, kind = page.partition(" ")
    if model in ("index", "board"):
        return reverse("admin:index") if model == "index" else "/board"
    if kind == "changelist":
        return reverse(f"admin:signals_app_{model}_changelist")
    if kind == "add":
        return reverse(f"admin:signals_app_{model}_add")
    obj = {
        "route": route,
        "threshold": route.thresholds.order_by("pk").first(),
        "baseline": route.baselines.order_by("pk").first(),
        "change": route.changes.order_by("pk").first(),
        "rollbacknote": route.rollback_notes.order_by("pk").first(),
        "incident": route.incidents.order_by("pk").first(),
        "notification": Notification.objects.order_by("pk").first(),
        "reading": Reading.objects.filter(route=route).first(),
        "owner": route.owner,
        "service": route.service,
        "servicekey": route.service.keys.first(),
        "environment": Environment.objects.first(),
        "signal": Signal.objects.first(),
        "evaluationrun": EvaluationRun.objects.first(),
    }[model]
    return reverse(f"admin:signals_app_{model}_{kind}", args=[obj.pk])


def count_queries(client, url):
    ContentType.objects.clear_cache()  # the same count whichever test ran before
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries.captured_queries)


@pytest.mark.django_db
@pytest.mark.parametrize("size", [1, 4])
def test_admin_page_query_counts_are_fixed(client, alice, blog, size):
    give_role(alice)
    route = build_world(blog, size)
    users = {
        "owner": alice,
        "other team": give_role(make_user("dana", is_staff=True)),
        "root": make_user("root", is_staff=True, is_superuser=True),
    }
    make_owner("Search team", members=[users["other team"]])
    expected, measured = {}, {}
    for page, who, count in PAGES:
        client.force_login(users[who])
        expected[page, who] = count
        measured[page, who] = count_queries(client, page_url(page, route))
    assert measured == expected
