"""python manage.py deliver_notifications: incident events POSTed to a real local receiver."""

import shlex
import socket
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from signals_app import notifications
from signals_app.evaluation import run_evaluation
from signals_app.models import Incident, Notification, Owner
from signals_app.notifications import deliver_batch
from tests.builders import make_readings, make_route, make_threshold
from tests.threads import deliver_in_thread

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def minutes(n):
    return NOW + timedelta(minutes=n)


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


def set_webhook(owner, url):
    Owner.objects.filter(pk=owner.pk).update(webhook_url=url)


def make_notification(route, event="opened", *, created_at=NOW, **fields):
    """A pending notification of a new incident on `route` for its owner."""
    incident = Incident.objects.create(
        threshold=make_threshold(route, window_minutes=Notification.objects.count() + 1),
        route=route,
        level="warn",
        peak_value=500.0,
        opened_at=created_at,
    )
    values = {
        "incident": incident,
        "owner": route.owner,
        "event": event,
        "payload": {"incident": {"id": incident.pk}, "owner": route.owner.name, "value": 500.0},
        "created_at": created_at,
        "next_attempt_at": created_at,
    }
    return Notification.objects.create(**{**values, **fields})


def stored(notification):
    notification.refresh_from_db()
    return notification


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_a_2xx_delivers_it_with_the_headers_and_the_payload(receiver, route):
    set_webhook(route.owner, receiver.url("/hooks/dq"))
    notification = make_notification(route, "escalated")
    result = deliver_batch(now=NOW)
    assert (result.delivered, result.retried, result.failed, result.skipped) == (1, 0, 0, 0)
    (request,) = receiver.received
    assert request.path == "/hooks/dq"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == notifications.USER_AGENT
    assert notifications.USER_AGENT.startswith("dq-registry/")
    assert request.headers["X-DQ-Event"] == "incident.escalated"
    assert request.headers["X-DQ-Delivery"] == str(notification.pk)
    assert request.body == {
        "event": "incident.escalated",
        "delivery": notification.pk,
        **notification.payload,
    }
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("delivered", 1)
    assert (notification.delivered_at, notification.last_error) == (NOW, "")
    assert deliver_batch(now=minutes(10)).delivered == 0  # delivered once
    assert len(receiver.received) == 1


@pytest.mark.django_db
def test_a_500_is_retried_after_a_minute_then_delivered(public_receiver, route):
    receiver = public_receiver
    set_webhook(route.owner, receiver.url("/status/500"))
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("pending", 1)
    assert notification.next_attempt_at == minutes(1)
    assert notification.last_error == (
        "HTTP 500 (expected 2xx): receiver says 500; attempt 1 of 8, "
        "retrying at 2026-11-26 07:01:00 UTC"
    )
    assert deliver_batch(now=minutes(1) - timedelta(seconds=1)).retried == 0  # not due yet
    assert len(receiver.received) == 1
    # The owner fixes the receiver: the URL is read at delivery.
    set_webhook(route.owner, receiver.url("/ok"))
    assert deliver_batch(now=minutes(1)).delivered == 1
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("delivered", 2)
    assert [r.path for r in receiver.received] == ["/status/500", "/ok"]


@pytest.mark.django_db
def test_backoff_doubles_up_to_an_hour_and_it_gives_up_after_8_attempts(receiver, route):
    set_webhook(route.owner, receiver.url("/status/503"))
    notification = make_notification(route)
    now, waits = NOW, []
    for _ in range(7):
        assert deliver_batch(now=now).retried == 1
        notification = stored(notification)
        waits.append((notification.next_attempt_at - now) / timedelta(minutes=1))
        now = notification.next_attempt_at
    assert waits == [1, 2, 4, 8, 16, 32, 60]
    assert deliver_batch(now=now).failed == 1
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("failed", 8)
    # A receiver on a private address (allowed here): what it says is not shown to the owner,
    # as internal services answer there.
    assert notification.last_error == (
        "HTTP 503 (expected 2xx): (body not shown: private address); gave up after 8 attempts"
    )
    assert deliver_batch(now=now + timedelta(days=1)).failed == 0
    assert len(receiver.received) == 8


@pytest.mark.django_db
@pytest.mark.parametrize("status", [410, 400, 404, 301])
def test_another_status_fails_at_once(public_receiver, route, status):
    set_webhook(route.owner, public_receiver.url(f"/status/{status}"))
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("failed", 1)
    assert notification.last_error == (
        f"HTTP {status} (expected 2xx): receiver says {status}; "
        "not retried: the same request would get the same answer"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("status", [408, 429, 502])
def test_408_429_and_5xx_are_retried(receiver, route, status):
    set_webhook(route.owner, receiver.url(f"/status/{status}"))
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    assert stored(notification).status == "pending"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "wait"),
    [
        ("/status/429?retry_after=600", timedelta(minutes=10)),
        ("/status/503?retry_after=90", timedelta(seconds=90)),
        ("/status/503?retry_after=5", timedelta(minutes=1)),  # never sooner than the backoff
        ("/status/500?retry_after=600", timedelta(minutes=1)),  # only on 429 and 503
        ("/status/429?retry_after=999999", timedelta(hours=24)),  # at most a day
        # beyond what a timedelta holds: still capped, not an OverflowError that ends the batch
        ("/status/429?retry_after=" + "9" * 30, timedelta(hours=24)),
        ("/status/429?retry_after=soon", timedelta(minutes=1)),  # not seconds: the backoff
    ],
)
def test_retry_after_in_seconds_is_honoured_on_429_and_503(receiver, route, path, wait):
    set_webhook(route.owner, receiver.url(path))
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    assert stored(notification).next_attempt_at == NOW + wait


@pytest.mark.django_db
def test_a_timeout_is_retried(receiver, route):
    set_webhook(route.owner, receiver.url("/sleep/2"))
    notification = make_notification(route)
    assert deliver_batch(now=NOW, timeout=0.3).retried == 1
    notification = stored(notification)
    assert (notification.status, notification.next_attempt_at) == ("pending", minutes(1))
    assert notification.last_error.startswith("no answer within 0.3 s (ReadTimeout); attempt 1")


@pytest.mark.django_db
def test_a_receiver_trickling_its_answer_is_abandoned_at_the_deadline(receiver, route):
    # A byte every 0.1 s never trips the 0.5 s per-read timeout; the whole request's
    # deadline (1 s) ends it, so one slow receiver cannot hold every owner's notifications.
    set_webhook(route.owner, receiver.url("/trickle/4"))
    notification = make_notification(route)
    result = deliver_batch(now=NOW, timeout=0.5, deadline=timedelta(seconds=1))
    assert result.retried == 1
    notification = stored(notification)
    assert (notification.status, notification.next_attempt_at) == ("pending", minutes(1))
    assert notification.last_error.startswith("no complete answer within 1 s; attempt 1")


@pytest.mark.django_db
def test_a_host_name_idna_refuses_fails_at_once(route):
    set_webhook(route.owner, "http://xn--a.com/hooks")  # a valid URLField value
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    assert stored(notification).last_error.startswith(
        "the webhook URL 'http://xn--a.com/…' cannot be requested over HTTP(S): "
    )


@pytest.mark.django_db
def test_an_incidents_events_arrive_in_order_when_an_earlier_one_is_retried(receiver, route):
    set_webhook(route.owner, receiver.url("/status/503"))
    opened = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1  # opened: again in a minute
    resolved = Notification.objects.create(
        incident=opened.incident,
        owner=route.owner,
        event="resolved",
        payload={},
        created_at=NOW + timedelta(seconds=30),
        next_attempt_at=NOW + timedelta(seconds=30),
    )
    set_webhook(route.owner, receiver.url("/ok"))
    assert deliver_batch(now=NOW + timedelta(seconds=30)).delivered == 0  # waits for opened
    assert deliver_batch(now=minutes(1)).delivered == 1
    assert deliver_batch(now=minutes(1)).delivered == 1
    assert [r.headers["X-DQ-Event"] for r in receiver.received[1:]] == [
        "incident.opened",
        "incident.resolved",
    ]
    assert (stored(opened).status, stored(resolved).status) == ("delivered", "delivered")


@pytest.mark.django_db
def test_a_refused_connection_is_retried(route, settings):
    settings.DQ_WEBHOOK_ALLOW_PRIVATE = True
    set_webhook(route.owner, f"http://127.0.0.1:{closed_port()}/hooks")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    notification = stored(notification)
    assert notification.status == "pending"
    assert notification.last_error.startswith("connection failed: ConnectError: ")


@pytest.mark.django_db
def test_a_url_that_is_not_http_fails_at_once(route):
    set_webhook(route.owner, "ftp://user:s3cret@files.example.com/hooks?token=s3cret")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    last_error = stored(notification).last_error
    assert last_error.startswith(
        "the webhook URL 'ftp://files.example.com/…' cannot be requested over HTTP(S): "
    )
    assert "s3cret" not in last_error  # owners read it; a webhook URL often holds a secret


@pytest.mark.django_db
def test_a_blank_url_at_delivery_skips_it(receiver, route):
    set_webhook(route.owner, receiver.url("/ok"))
    notification = make_notification(route)
    set_webhook(route.owner, "")  # removed after the event, before delivery
    assert deliver_batch(now=NOW).skipped == 1
    notification = stored(notification)
    assert notification.status == "skipped"
    assert notification.last_error == (
        "not sent: the owner 'Blog team' has no webhook URL; set one, then 'Deliver again'"
    )
    assert receiver.received == []


@pytest.mark.django_db
def test_one_failure_does_not_stop_the_batch(receiver, route, search):
    other = make_route(search, "/search")
    set_webhook(route.owner, receiver.url("/ok"))
    set_webhook(other.owner, receiver.url("/status/410"))
    first = make_notification(route)
    gone = make_notification(other)
    last = make_notification(route)
    result = deliver_batch(now=NOW)
    assert (result.delivered, result.failed) == (2, 1)
    assert [stored(n).status for n in (first, gone, last)] == ["delivered", "failed", "delivered"]


@pytest.mark.django_db
def test_a_batch_takes_at_most_limit_oldest_due_first(receiver, route):
    set_webhook(route.owner, receiver.url("/ok"))
    later = make_notification(route, next_attempt_at=minutes(2))
    older = make_notification(route, next_attempt_at=minutes(1))
    not_due = make_notification(route, next_attempt_at=minutes(10))
    assert deliver_batch(limit=1, now=minutes(5)).delivered == 1
    assert [stored(n).status for n in (older, later, not_due)] == [
        "delivered",
        "pending",
        "pending",
    ]
    assert deliver_batch(limit=5, now=minutes(5)).delivered == 1
    assert stored(not_due).status == "pending"


@pytest.mark.django_db
def test_a_claimed_notification_is_leased_to_one_batch(route):
    notification = make_notification(route)
    (claimed,) = notifications.claim(10, NOW)
    assert claimed.pk == notification.pk
    notification = stored(notification)
    assert (notification.attempts, notification.next_attempt_at) == (1, NOW + notifications.LEASE)
    assert notifications.claim(10, NOW + notifications.LEASE - timedelta(seconds=1)) == []
    # A process that died holding it: due again when the lease ends.
    assert [n.pk for n in notifications.claim(10, NOW + notifications.LEASE)] == [notification.pk]


@pytest.mark.django_db
def test_a_batch_gives_back_what_its_lease_cannot_cover(receiver, route, monkeypatch):
    set_webhook(route.owner, receiver.url("/ok"))
    notification = make_notification(route)
    monkeypatch.setattr(notifications, "LEASE", notifications.SEND_BUDGET)  # no time to send
    result = deliver_batch(now=NOW)
    assert (result.delivered, result.released) == (0, 1)
    assert result.summary().endswith("; 1 given back for the next batch (lease running out)")
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("pending", 0)
    assert notification.next_attempt_at == NOW
    assert receiver.received == []


@pytest.mark.django_db
def test_an_outcome_is_not_recorded_over_a_row_that_changed_while_it_was_sent(receiver, route):
    set_webhook(route.owner, receiver.url("/status/410"))
    notification = make_notification(route)
    (claimed,) = notifications.claim(10, NOW)
    # Its lease ran out and another batch claimed it (one more attempt) meanwhile.
    Notification.objects.filter(pk=notification.pk).update(attempts=2)
    notifications.record(claimed, notifications.Outcome("failed", "failed", "HTTP 410"))
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("pending", 2)


@pytest.mark.django_db
def test_a_late_outcome_is_not_recorded_over_a_claim_after_deliver_again(receiver, route):
    # Batch A's lease ran out while it waited on the receiver; another batch gave up on the
    # row, someone chose "Deliver again" (attempts back to 0) and batch C claimed it: the row
    # has A's attempt count again, but it is C's claim.
    notification = make_notification(route)
    (claimed_by_a,) = notifications.claim(10, NOW)
    Notification.objects.filter(pk=notification.pk).update(status="failed")
    Notification.objects.filter(pk=notification.pk).deliver_again(now=minutes(10))
    (claimed_by_c,) = notifications.claim(10, minutes(10))
    assert claimed_by_c.attempts == claimed_by_a.attempts
    notifications.record(claimed_by_a, notifications.Outcome("failed", "failed", "HTTP 410"))
    notification = stored(notification)
    assert (notification.status, notification.next_attempt_at) == (
        "pending",
        minutes(10) + notifications.LEASE,
    )


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_concurrent_batches_deliver_each_notification_once(receiver, route, monkeypatch):
    set_webhook(route.owner, receiver.url("/ok?delay=0.02"))
    created = [make_notification(route) for _ in range(20)]
    # Both batches hold their claim transaction open until the other has claimed too: each
    # must skip the rows the other locked (never wait for them, never take them).
    barrier = threading.Barrier(2, timeout=10)
    real_lock_due = notifications._lock_due

    def lock_due_then_wait(limit, now):
        due = real_lock_due(limit, now)
        barrier.wait()
        return due

    monkeypatch.setattr(notifications, "_lock_due", lock_due_then_wait)
    results, errors = [], []
    for thread in [deliver_in_thread(results, errors, limit=10, now=NOW) for _ in range(2)]:
        thread.join(timeout=30)
    assert errors == []
    assert [r.delivered for r in results] == [10, 10]
    deliveries = sorted(int(r.headers["X-DQ-Delivery"]) for r in receiver.received)
    assert deliveries == sorted(n.pk for n in created)
    assert set(Notification.objects.values_list("status", "attempts")) == {("delivered", 1)}


@pytest.mark.django_db
def test_a_batch_claims_in_two_queries_and_records_each_outcome_in_one(
    receiver, route, django_assert_num_queries
):
    set_webhook(route.owner, receiver.url("/ok"))
    for _ in range(5):
        make_notification(route)
    # savepoint (the test's transaction), due notifications with their owners, lease +
    # attempts, savepoint release; then one UPDATE per outcome
    with django_assert_num_queries(4 + 5):
        assert deliver_batch(now=NOW).delivered == 5


@pytest.mark.django_db
def test_an_incident_opened_by_a_pass_reaches_the_owners_webhook(receiver, route):
    set_webhook(route.owner, receiver.url("/hooks/dq"))
    threshold = make_threshold(
        route, statistic="max", window_minutes=1, min_samples=1, warn=300, critical=800
    )
    make_readings(route, [500.0], start=NOW)
    run_evaluation(now=NOW)
    assert deliver_batch().delivered == 1
    (request,) = receiver.received
    incident = Incident.objects.get()
    assert request.headers["X-DQ-Event"] == "incident.opened"
    assert request.body["event"] == "incident.opened"
    assert request.body["delivery"] == Notification.objects.get().pk
    assert request.body["incident"]["id"] == incident.pk
    assert request.body["threshold"]["id"] == threshold.pk
    assert request.body["route"]["path"] == "/posts/{slug}"
    assert (request.body["owner"], request.body["value"]) == ("Blog team", 500.0)


# ---- the command


@pytest.mark.django_db
def test_the_procfile_notify_line_runs(receiver, route):
    procfile = (Path(__file__).resolve().parent.parent / "Procfile").read_text()
    (line,) = [line for line in procfile.splitlines() if line.startswith("notify:")]
    command = shlex.split(line.removeprefix("notify:"))
    assert command[:3] == ["python", "manage.py", "deliver_notifications"]
    set_webhook(route.owner, receiver.url("/ok"))
    make_notification(route)
    assert deliver(*command[3:], "--max-runs", "1").startswith("deliver_notifications: 1 delivered")


def deliver(*args):
    out = StringIO()
    call_command("deliver_notifications", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_prints_one_summary_line_per_batch(receiver, route):
    set_webhook(route.owner, receiver.url("/ok"))
    make_notification(route)
    make_notification(route)
    output = deliver("--limit", "1")
    assert output.startswith(
        "deliver_notifications: 1 delivered, 0 retried, 0 failed, 0 skipped in "
    )
    assert output.endswith(" s\n") and output.count("\n") == 1
    output = deliver("--loop", "0.01", "--max-runs", "2")
    lines = output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("deliver_notifications: 1 delivered, 0 retried")
    assert lines[1].startswith("deliver_notifications: 0 delivered, 0 retried")
    assert Notification.objects.filter(status="delivered").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--limit", "0"), "--limit expects a positive number"),
        (("--loop", "0"), "--loop expects a number of seconds from 0.01 to 86400"),
        (("--loop", "nan"), "--loop expects a number of seconds from 0.01 to 86400"),
        (("--loop", "inf"), "--loop expects a number of seconds from 0.01 to 86400"),
        (("--loop", "1", "--max-runs", "0"), "--max-runs expects a number of runs of at least 1"),
        (("--max-failures", "3"), "--max-failures expects --loop, e.g. --loop 10 --max-failures"),
        (("--max-runs", "3"), "--max-runs expects --loop, e.g. --loop 10 --max-runs 3"),
        (
            ("--loop", "1", "--max-failures", "-1"),
            "--max-failures expects a number of failed batches of at least 0",
        ),
    ],
)
def test_the_command_refuses_bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        deliver(*args)


@pytest.mark.django_db
def test_a_deleted_thresholds_notifications_are_still_sent_in_order(receiver, route):
    set_webhook(route.owner, receiver.url("/ok"))
    threshold = make_threshold(route, statistic="max", window_minutes=1, min_samples=1)
    make_readings(route, [900.0], start=NOW)
    run_evaluation(now=NOW)  # opens an incident: "opened" pending
    threshold.delete()  # "resolved", reason incident_deleted, due now (the real clock)
    assert deliver_batch().delivered == 1
    assert deliver_batch().delivered == 1
    assert [(r.headers["X-DQ-Event"], r.body["reason"]) for r in receiver.received] == [
        ("incident.opened", None),
        ("incident.resolved", "incident_deleted"),
    ]


@pytest.mark.django_db
def test_a_nul_in_the_receivers_answer_is_recorded_and_retried(public_receiver, route):
    # PostgreSQL text cannot hold a NUL: the record failed, the batch stopped, and the row
    # went round again every lease without ever failing for good.
    set_webhook(route.owner, public_receiver.url("/status/500?nul=1"))
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    notification = stored(notification)
    assert (notification.status, notification.next_attempt_at) == ("pending", minutes(1))
    assert notification.last_error.startswith(
        "HTTP 500 (expected 2xx): receiver says 500\ufffd and more; attempt 1 of 8"
    )


@pytest.mark.django_db
def test_the_webhook_url_is_not_logged(receiver, route, caplog):
    caplog.set_level("INFO")
    set_webhook(route.owner, receiver.url("/ok?token=s3cret"))
    make_notification(route)
    assert deliver_batch(now=NOW).delivered == 1
    assert "s3cret" not in caplog.text  # httpx logs each request's whole URL at INFO


@pytest.fixture
def notification_table_missing():
    """The deploy bug of a release whose migration did not run: the notifications table is
    not there (renamed away inside the test's transaction, which puts it back)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE signals_app_notification RENAME TO signals_app_gone")
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE signals_app_gone RENAME TO signals_app_notification")


@pytest.mark.django_db
def test_the_loop_exits_when_every_batch_fails(notification_table_missing, caplog):
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "deliver_notifications",
            "--loop",
            "0.01",
            "--max-runs",
            "10",
            "--max-failures",
            "3",
            stdout=out,
            stderr=err,
        )
    assert str(raised.value).startswith(
        "delivery failed 3 times in a row (--max-failures 3), exiting: the last error was "
    )
    # (PostgreSQL's message goes on over more lines: LINE 1: ... and a caret)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("delivery")]
    assert len(lines) == 3
    assert lines[0].startswith("delivery failed, retrying in 0.01s: ")
    assert lines[2].startswith("delivery failed, not retrying: ")
    assert "signals_app_notification" in lines[2]  # the database's words: no such table
    assert out.getvalue() == ""
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == str(raised.value)


def test_manage_py_exits_non_zero_when_the_tables_are_missing(tmp_path):
    """The whole process, as the Procfile runs it, against a database never migrated."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    done = subprocess.run(
        [sys.executable, "manage.py", "deliver_notifications", "--loop", "0.01"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.count("delivery failed, retrying in 0.01s: no such table") == 4
    assert "delivery failed, not retrying: no such table: signals_app_notification" in (done.stderr)
    assert "CommandError: delivery failed 5 times in a row (--max-failures 5), exiting" in (
        done.stderr
    )
