"""Incidents: opened by a counted breach, escalated in place, acknowledged, silenced, resolved."""

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection, transaction

from signals_app import evaluation
from signals_app.evaluation import run_evaluation
from signals_app.models import (
    EvaluationRun,
    Incident,
    Notification,
    Owner,
    Threshold,
    ThresholdState,
)
from tests.builders import make_readings, make_route, make_threshold
from tests.threads import evaluate_in_thread, evaluation_lock_held_elsewhere

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
WEBHOOK = "http://127.0.0.1:9/hooks/dq"  # never called here: evaluation only records


def minutes(n):
    return NOW + timedelta(minutes=n)


@pytest.fixture
def threshold(blog):
    # max over 1 minute, so each minute's reading alone decides the level
    return make_threshold(
        make_route(blog), statistic="max", window_minutes=1, min_samples=1, warn=300, critical=800
    )


def reading_then_evaluate(threshold, value, at):
    make_readings(threshold.route, [value], start=at)
    return run_evaluation(now=at)


@pytest.mark.django_db
def test_a_counted_breach_opens_one_incident(threshold):
    run = reading_then_evaluate(threshold, 500.0, NOW)
    incident = Incident.objects.get()
    assert (incident.level, incident.peak_value, incident.opened_at) == ("warn", 500.0, NOW)
    assert incident.route == threshold.route
    assert incident.resolved_at is None
    assert (run.incidents_opened, run.incidents_resolved) == (1, 0)


@pytest.mark.django_db
def test_a_pending_breach_opens_nothing(threshold):
    threshold.sustain_minutes = 5
    threshold.save()
    reading_then_evaluate(threshold, 900.0, NOW)
    assert not Incident.objects.exists()


@pytest.mark.django_db
def test_it_escalates_in_place_and_keeps_the_peak(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    run = reading_then_evaluate(threshold, 950.0, minutes(1))
    reading_then_evaluate(threshold, 850.0, minutes(2))
    incident = Incident.objects.get()
    assert (incident.level, incident.peak_value) == ("critical", 950.0)
    assert (incident.opened_at, incident.escalated_at) == (NOW, minutes(1))
    assert run.incidents_escalated == 1
    # Back to warn: still the same incident, still critical at its worst.
    reading_then_evaluate(threshold, 400.0, minutes(3))
    assert Incident.objects.get().level == "critical"


@pytest.mark.django_db
def test_it_resolves_by_itself_when_the_signal_recovers(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    run = reading_then_evaluate(threshold, 100.0, minutes(1))
    incident = Incident.objects.get()
    assert incident.resolved_at == minutes(1)
    assert run.incidents_resolved == 1
    # A new breach is a new incident; the history keeps both.
    reading_then_evaluate(threshold, 900.0, minutes(2))
    assert Incident.objects.count() == 2
    assert Incident.objects.open().get().level == "critical"


@pytest.mark.django_db
def test_no_data_is_not_a_recovery(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    run_evaluation(now=minutes(5))  # no readings in the last minute
    assert ThresholdState.objects.get().status == "no_data"
    assert Incident.objects.open().count() == 1


@pytest.mark.django_db
def test_re_evaluation_without_new_readings_changes_nothing(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    before = list(Incident.objects.values())
    state = ThresholdState.objects.values().get()
    run = run_evaluation(now=NOW)
    assert list(Incident.objects.values()) == before
    assert ThresholdState.objects.values().get() == state  # changed_at included
    assert (run.incidents_opened, run.incidents_escalated, run.incidents_resolved) == (0, 0, 0)
    assert (run.thresholds, run.states_changed) == (1, 0)


@pytest.mark.django_db
def test_a_pass_writes_only_the_states_that_changed(blog):
    quiet, busy = (make_threshold(make_route(blog), statistic="max", min_samples=1) for _ in "ab")
    make_readings(quiet.route, [100.0], start=NOW)
    first = run_evaluation(now=NOW)
    assert (first.thresholds, first.states_changed) == (2, 2)  # the first pass writes both
    make_readings(busy.route, [200.0], start=minutes(1))
    second = run_evaluation(now=minutes(1))
    assert (second.thresholds, second.states_changed) == (2, 1)
    states = {s.threshold_id: s for s in ThresholdState.objects.all()}
    assert (states[quiet.pk].value, states[quiet.pk].changed_at) == (100.0, NOW)
    assert (states[busy.pk].value, states[busy.pk].changed_at) == (200.0, minutes(1))


@pytest.mark.django_db
def test_a_pass_older_than_a_finished_pass_stores_nothing(threshold, caplog):
    reading_then_evaluate(threshold, 500.0, NOW)
    state = ThresholdState.objects.values().get()
    make_readings(threshold.route, [900.0], start=minutes(-1))
    late = run_evaluation(now=minutes(-1))  # started before the pass above, finished after
    assert (late.thresholds, late.states_changed, late.incidents_opened) == (0, 0, 0)
    assert ThresholdState.objects.values().get() == state
    assert Incident.objects.get().level == "warn"
    assert "stores nothing: a pass started at 2026-11-26T07:00:00+00:00 has finished" in (
        caplog.text
    )


@pytest.mark.django_db
def test_acknowledgement_is_recorded_and_stops_paging_until_escalation(threshold, alice):
    reading_then_evaluate(threshold, 500.0, NOW)
    incident = Incident.objects.get()
    assert list(Incident.objects.paging(minutes(0))) == [incident]
    incident.acknowledge(alice, "looking at the slow query", now=NOW)
    incident.refresh_from_db()
    assert (incident.acknowledged_by, incident.acknowledgement_note) == (
        alice,
        "looking at the slow query",
    )
    assert not Incident.objects.paging(minutes(0)).exists()
    reading_then_evaluate(threshold, 900.0, minutes(1))
    assert list(Incident.objects.paging(minutes(1))) == [incident]


@pytest.mark.django_db
def test_a_silence_expires_by_itself(threshold, alice):
    reading_then_evaluate(threshold, 500.0, NOW)
    incident = Incident.objects.get()
    incident.silence(alice, until=minutes(30), reason="deploy in progress")
    assert not Incident.objects.paging(minutes(29)).exists()
    assert list(Incident.objects.paging(minutes(30))) == [incident]
    incident.refresh_from_db()
    assert (incident.silenced_by, incident.silence_reason) == (alice, "deploy in progress")
    # evaluation goes on underneath a silence
    reading_then_evaluate(threshold, 100.0, minutes(1))
    incident.refresh_from_db()
    assert incident.resolved_at == minutes(1)


@pytest.mark.django_db
def test_each_run_is_recorded(threshold):
    reading_then_evaluate(threshold, 500.0, NOW)
    run = EvaluationRun.objects.get()
    assert run.thresholds == 1
    assert run.statuses == {"ok": 0, "no_data": 0, "pending": 0, "warn": 1, "critical": 0}
    assert run.finished_at is not None and run.duration_ms > 0


@pytest.mark.django_db
def test_evaluating_many_thresholds_costs_the_same_queries(blog, django_assert_num_queries):
    Owner.objects.filter(pk=blog.owner_id).update(webhook_url=WEBHOOK)  # notified too
    routes = [make_route(blog) for _ in range(10)]
    for route in routes:
        make_threshold(route, statistic="max", min_samples=1)
    run_evaluation(now=NOW - timedelta(hours=1))  # states exist, as in steady operation
    for route in routes:
        make_readings(route, [500.0], start=NOW)
    # run row, thresholds, statistics, savepoint, (the evaluation lock on PostgreSQL,) last
    # pass, states, open incidents, savepoint + incidents insert + release, webhook URLs +
    # notifications insert, states write, run update, release
    with django_assert_num_queries(15 + (connection.vendor == "postgresql")):
        run = run_evaluation(now=NOW)
    assert run.incidents_opened == 10
    assert Notification.objects.filter(event="opened").count() == 10


@pytest.mark.django_db
@pytest.mark.parametrize("routes", [3, 12])
def test_escalations_resolutions_and_peaks_cost_the_same_queries(
    blog, routes, django_assert_num_queries
):
    Owner.objects.filter(pk=blog.owner_id).update(webhook_url=WEBHOOK)  # notified too
    thresholds = [
        make_threshold(
            make_route(blog),
            statistic="max",
            window_minutes=1,
            min_samples=1,
            warn=300,
            critical=800,
        )
        for _ in range(routes)
    ]
    for threshold in thresholds:
        reading_then_evaluate(threshold, 500.0, NOW)  # one warn incident each
    for index, threshold in enumerate(thresholds):
        make_readings(threshold.route, [(100.0, 900.0, 600.0)[index % 3]], start=minutes(1))
    # run row, thresholds, statistics, savepoint, (the evaluation lock on PostgreSQL,) last
    # pass, states, open incidents, escalations, resolutions, peaks, webhook URLs +
    # notifications insert, states write, run update, release
    with django_assert_num_queries(15 + (connection.vendor == "postgresql")):
        run = run_evaluation(now=minutes(1))
    third = routes // 3
    assert (run.incidents_escalated, run.incidents_resolved) == (third, third)
    incidents = Incident.objects.order_by("threshold_id")
    assert [(i.level, i.peak_value, i.resolved_at) for i in incidents] == [
        [("warn", 500.0, minutes(1)), ("critical", 900.0, None), ("warn", 600.0, None)][index % 3]
        for index in range(routes)
    ]
    assert all(i.escalated_at == minutes(1) for i in incidents if i.level == "critical")
    assert Notification.objects.exclude(event="opened").count() == 2 * third


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL locks")
# serialized_rollback: like every transactional test here, so the flush keeps the defaults
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_concurrent_evaluations_open_one_incident(blog, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="signals_app.evaluation")
    threshold = make_threshold(make_route(blog), statistic="max", min_samples=1)
    run_evaluation(now=NOW - timedelta(minutes=1))  # the state exists, as in steady operation
    make_readings(threshold.route, [900.0], start=NOW)
    # Both runs finish their statistics before either writes, so both see "no incident yet"
    # unless the lock makes the second wait for the first.
    barrier = threading.Barrier(2, timeout=10)
    real_threshold_stats = evaluation.threshold_stats

    def threshold_stats_then_wait(*args, **kwargs):
        result = real_threshold_stats(*args, **kwargs)
        barrier.wait()
        return result

    monkeypatch.setattr(evaluation, "threshold_stats", threshold_stats_then_wait)
    runs, errors = [], []
    for thread in [evaluate_in_thread(NOW, runs, errors) for _ in range(2)]:
        thread.join(timeout=30)
    assert errors == []
    assert Incident.objects.count() == 1
    assert sorted(run.incidents_opened for run in runs) == [0, 1]
    # The lock did it: the second run saw the incident, it never hit the constraint.
    assert "already open" not in caplog.text


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL locks")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_threshold_deleted_during_a_pass_is_left_out_of_it(blog, monkeypatch):
    kept, gone = (make_threshold(make_route(blog), statistic="max", min_samples=1) for _ in "ab")
    run_evaluation(now=NOW - timedelta(minutes=1))  # states exist, as in steady operation
    for threshold in (kept, gone):
        make_readings(threshold.route, [900.0], start=NOW)
    computed, resume = threading.Event(), threading.Event()
    real_threshold_stats = evaluation.threshold_stats

    def threshold_stats_then_wait(*args, **kwargs):
        result = real_threshold_stats(*args, **kwargs)
        computed.set()
        resume.wait(timeout=10)
        return result

    monkeypatch.setattr(evaluation, "threshold_stats", threshold_stats_then_wait)
    runs, errors = [], []
    thread = evaluate_in_thread(NOW, runs, errors)
    assert computed.wait(timeout=10)
    gone.delete()  # after the pass read the thresholds, before it writes
    resume.set()
    thread.join(timeout=30)
    assert errors == []
    assert (runs[0].thresholds, runs[0].incidents_opened) == (1, 1)
    assert list(Incident.objects.values_list("threshold_id", flat=True)) == [kept.pk]
    assert list(ThresholdState.objects.values_list("threshold_id", flat=True)) == [kept.pk]


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL locks")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_deleting_a_threshold_waits_for_a_pass_that_is_writing(threshold):
    with (
        evaluation_lock_held_elsewhere(),
        pytest.raises(OperationalError, match="lock timeout"),
        transaction.atomic(),
    ):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '200ms'")
        threshold.delete()
    threshold.delete()  # the pass is done: the delete goes through
    assert not Threshold.objects.exists()
