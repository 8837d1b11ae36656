"""Notifications recorded by evaluation: one per incident event, in the pass's transaction."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from signals_app import evaluation
from signals_app.evaluation import run_evaluation
from signals_app.models import Incident, Notification, Owner
from tests.builders import make_readings, make_route, make_threshold

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
WEBHOOK = "http://127.0.0.1:9/hooks/dq"  # never called here: evaluation only records


def minutes(n):
    return NOW + timedelta(minutes=n)


def set_webhook(owner, url=WEBHOOK):
    Owner.objects.filter(pk=owner.pk).update(webhook_url=url)


@pytest.fixture
def route(blog):
    set_webhook(blog.owner)
    return make_route(blog, "/posts/{slug}")


def max_threshold(route, **fields):
    # max over 1 minute, so each minute's reading alone decides the level
    values = {"statistic": "max", "window_minutes": 1, "min_samples": 1, "warn": 300}
    return make_threshold(route, **{**values, "critical": 800, **fields})


@pytest.fixture
def threshold(route):
    return max_threshold(route)


def reading_then_evaluate(threshold, value, at):
    make_readings(threshold.route, [value], start=at)
    return run_evaluation(now=at)


def events():
    return list(Notification.objects.order_by("pk").values_list("event", flat=True))


@pytest.mark.django_db
def test_opening_escalating_and_resolving_record_one_notification_each(threshold, route):
    reading_then_evaluate(threshold, 500.0, NOW)
    reading_then_evaluate(threshold, 950.0, minutes(1))
    reading_then_evaluate(threshold, 100.0, minutes(2))
    assert events() == ["opened", "escalated", "resolved"]
    incident = Incident.objects.get()
    opened, escalated, resolved = Notification.objects.order_by("pk")
    assert {n.incident_id for n in (opened, escalated, resolved)} == {incident.pk}
    assert {n.owner_id for n in (opened, escalated, resolved)} == {route.owner_id}
    assert (opened.status, opened.attempts, opened.created_at) == ("pending", 0, NOW)
    assert opened.next_attempt_at == NOW
    assert opened.payload == {
        "incident": {
            "id": incident.pk,
            "level": "warn",
            "peak_value": 500.0,
            "opened_at": "2026-11-26T07:00:00+00:00",
            "escalated_at": None,
            "resolved_at": None,
        },
        "route": {"id": route.pk, "service": "blog", "method": "GET", "path": "/posts/{slug}"},
        "threshold": {
            "id": threshold.pk,
            "signal": "response_time_ms",
            "environment": "production",
            "statistic": "max",
            "cache_segment": "all",
            "window_minutes": 1,
            "warn": 300.0,
            "critical": 800.0,
        },
        "owner": "Blog team",
        "value": 500.0,
        "reason": None,
    }
    assert escalated.payload["incident"] == {
        **opened.payload["incident"],
        "level": "critical",
        "peak_value": 950.0,
        "escalated_at": "2026-11-26T07:01:00+00:00",
    }
    assert escalated.payload["value"] == 950.0
    assert resolved.payload["incident"] == {
        **escalated.payload["incident"],
        "resolved_at": "2026-11-26T07:02:00+00:00",
    }
    assert resolved.payload["value"] == 100.0


@pytest.mark.django_db
def test_running_a_pass_again_records_nothing_more(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    run_evaluation(now=NOW)
    reading_then_evaluate(threshold, 950.0, minutes(1))
    run_evaluation(now=minutes(1))
    reading_then_evaluate(threshold, 100.0, minutes(2))
    run_evaluation(now=minutes(2))
    assert events() == ["opened", "escalated", "resolved"]


@pytest.mark.django_db
def test_an_event_recorded_twice_is_stored_once(threshold):
    # The unique constraint backs the lock: recording the same events again adds nothing.
    reading_then_evaluate(threshold, 500.0, NOW)
    incident = Incident.objects.get()
    spec = evaluation.ThresholdSpec.all()[0]
    event = evaluation.IncidentEvent(
        "opened", incident.pk, "warn", 500.0, NOW, None, None, spec, 500.0
    )
    evaluation.record_incident_events([event, event], NOW)
    assert events() == ["opened"]


@pytest.mark.django_db
def test_an_owner_without_a_webhook_url_gets_no_notification(threshold, route):
    set_webhook(route.owner, "")
    reading_then_evaluate(threshold, 500.0, NOW)
    reading_then_evaluate(threshold, 950.0, minutes(1))
    reading_then_evaluate(threshold, 100.0, minutes(2))
    assert Incident.objects.get().resolved_at == minutes(2)
    assert events() == []


@pytest.mark.django_db
def test_only_routes_whose_owner_has_a_webhook_are_notified(threshold, search):
    quiet = max_threshold(make_route(search, "/search"))  # the Search team has no webhook
    make_readings(quiet.route, [500.0], start=NOW)
    reading_then_evaluate(threshold, 500.0, NOW)
    assert Incident.objects.count() == 2
    assert list(Notification.objects.values_list("incident__threshold", flat=True)) == [
        threshold.pk
    ]


@pytest.mark.django_db
def test_a_silenced_escalation_is_not_notified_but_opening_and_resolving_are(threshold, alice):
    reading_then_evaluate(threshold, 500.0, NOW)
    Incident.objects.get().silence(alice, until=minutes(30), reason="deploy")
    reading_then_evaluate(threshold, 950.0, minutes(1))
    assert Incident.objects.get().level == "critical"
    reading_then_evaluate(threshold, 100.0, minutes(2))
    assert events() == ["opened", "resolved"]


@pytest.mark.django_db
def test_an_escalation_after_the_silence_expired_is_notified(threshold, alice):
    reading_then_evaluate(threshold, 500.0, NOW)
    Incident.objects.get().silence(alice, until=minutes(1), reason="deploy")
    reading_then_evaluate(threshold, 950.0, minutes(1))  # silenced_until == now: expired
    assert events() == ["opened", "escalated"]


@pytest.mark.django_db
def test_when_a_concurrent_pass_won_only_the_incidents_this_pass_opened_are_notified(
    route, monkeypatch
):
    won, ours = max_threshold(route), max_threshold(make_route(route.service, "/tags/{tag}"))
    for threshold in (won, ours):
        make_readings(threshold.route, [500.0], start=NOW)
    real_open_incidents = evaluation._open_incidents

    def another_pass_opens_one_first(incidents):
        # As a pass that opened `won`'s incident between our read and our insert: the
        # bulk insert fails on incident_one_open_per_threshold and the rows go one by one.
        Incident.objects.create(
            threshold=won, route=won.route, level="warn", peak_value=500.0, opened_at=NOW
        )
        return real_open_incidents(incidents)

    monkeypatch.setattr(evaluation, "_open_incidents", another_pass_opens_one_first)
    run = run_evaluation(now=NOW)
    assert run.incidents_opened == 1
    assert Incident.objects.count() == 2
    notification = Notification.objects.get()
    assert notification.incident.threshold_id == ours.pk
    assert notification.payload["incident"]["id"] == notification.incident_id


@pytest.mark.django_db
@pytest.mark.parametrize("routes", [3, 12])
def test_opening_escalating_and_resolving_many_cost_the_same_queries(
    route, routes, django_assert_num_queries
):
    # a third already warn → escalate, a third warn → resolve, a third new → open
    thresholds = [max_threshold(make_route(route.service)) for _ in range(routes)]
    for index, threshold in enumerate(thresholds):
        if index % 3 != 2:
            make_readings(threshold.route, [500.0], start=NOW)
    run_evaluation(now=NOW)
    for index, threshold in enumerate(thresholds):
        make_readings(threshold.route, [(900.0, 100.0, 500.0)[index % 3]], start=minutes(1))
    # run row, thresholds, statistics, savepoint, (the evaluation lock on PostgreSQL,) last
    # pass, states, open incidents, escalations, resolutions, peaks, savepoint + incidents
    # insert + release, webhook URLs, notifications insert, states write, run update, release
    with django_assert_num_queries(18 + (connection.vendor == "postgresql")):
        run = run_evaluation(now=minutes(1))
    third = routes // 3
    assert (run.incidents_opened, run.incidents_escalated, run.incidents_resolved) == (
        third,
        third,
        third,
    )
    assert Notification.objects.filter(created_at=minutes(1)).count() == 3 * third


@pytest.mark.django_db
def test_a_pass_that_changes_no_incident_reads_no_webhook(threshold, django_assert_num_queries):
    reading_then_evaluate(threshold, 500.0, NOW)
    make_readings(threshold.route, [550.0], start=minutes(1))  # still warn, a new peak
    # run row, thresholds, statistics, savepoint, (the evaluation lock on PostgreSQL,) last
    # pass, states, open incidents, peaks, states write, run update, release
    with django_assert_num_queries(11 + (connection.vendor == "postgresql")):
        run_evaluation(now=minutes(1))
    assert events() == ["opened"]


@pytest.mark.django_db
def test_deleting_a_threshold_resolves_its_open_incident_for_the_receiver(threshold, route):
    # The incident goes with its threshold; the owner was paged about it, so the receiver
    # hears it resolved, and what was not sent yet still goes.
    reading_then_evaluate(threshold, 500.0, NOW)
    incident = Incident.objects.get()
    threshold.delete()
    assert not Incident.objects.exists()
    opened, resolved = Notification.objects.order_by("pk")
    assert (opened.event, opened.incident_id) == ("opened", incident.pk)
    assert (resolved.event, resolved.incident_id, resolved.status) == (
        "resolved",
        incident.pk,
        "pending",
    )
    assert resolved.payload["reason"] == "incident_deleted"
    assert resolved.payload["incident"]["resolved_at"] is not None
    assert resolved.payload["route"]["path"] == "/posts/{slug}"
    assert resolved.payload["value"] is None


@pytest.mark.django_db
def test_deleting_a_threshold_without_an_open_incident_records_nothing(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    reading_then_evaluate(threshold, 100.0, minutes(1))  # resolved by the pass
    threshold.delete()
    assert events() == ["opened", "resolved"]


@pytest.mark.django_db
def test_deleting_an_open_incident_by_itself_is_notified_as_resolved(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    incident = Incident.objects.get()
    incident_id = incident.pk
    incident.delete()
    assert events() == ["opened", "resolved"]
    resolved = Notification.objects.get(event="resolved")
    assert (resolved.incident_id, resolved.payload["reason"]) == (incident_id, "incident_deleted")
