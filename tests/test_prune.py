"""python manage.py prune: Idempotency-Key records, readings and evaluation runs past their
retention."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from signals_app.models import EvaluationRun, IdempotentRequest, Incident, Notification, Reading
from signals_app.retention import prune
from tests.builders import environment, make_route, make_threshold, signal
from tests.test_settings import refused

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def make_records(service, *created_at):
    return IdempotentRequest.objects.bulk_create(
        IdempotentRequest(service=service, key=f"k-{i}", fingerprint="f", created_at=at)
        for i, at in enumerate(created_at)
    )


def make_stored_readings(route, *times):
    """One reading per (observed_at, received_at) pair."""
    sig, env = signal(), environment()
    return Reading.objects.bulk_create(
        Reading(
            service=route.service,
            route=route,
            signal=sig,
            environment=env,
            value=1.0,
            observed_at=observed_at,
            received_at=received_at,
            idempotency_key=f"r-{i}",
        )
        for i, (observed_at, received_at) in enumerate(times)
    )


def make_runs(*started_at, finished=True):
    """One evaluation run per start time, finished a second later (or still running)."""
    return EvaluationRun.objects.bulk_create(
        EvaluationRun(started_at=at, finished_at=at + timedelta(seconds=1) if finished else None)
        for at in started_at
    )


def remaining_runs():
    return set(EvaluationRun.objects.values_list("pk", flat=True))


def run_prune(*args):
    out = StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


# ---- idempotency records


@pytest.mark.django_db
def test_it_deletes_idempotency_records_older_than_24_hours_and_keeps_the_boundary(blog):
    cutoff = NOW - timedelta(hours=24)
    old, at_cutoff, fresh = make_records(blog, cutoff - TICK, cutoff, NOW - timedelta(hours=1))
    result = prune(NOW)
    assert (result.idempotency_records, result.readings) == (1, 0)
    assert set(IdempotentRequest.objects.values_list("pk", flat=True)) == {at_cutoff.pk, fresh.pk}


@pytest.mark.django_db
@override_settings(DQ_IDEMPOTENCY_HOURS=48)
def test_idempotency_hours_moves_the_boundary(blog):
    make_records(blog, NOW - timedelta(hours=47), NOW - timedelta(hours=48) - TICK)
    assert prune(NOW).idempotency_records == 1
    assert IdempotentRequest.objects.get().created_at == NOW - timedelta(hours=47)


@pytest.mark.django_db
def test_the_command_prints_a_one_line_summary_and_a_second_run_deletes_nothing(blog):
    now = timezone.now()
    make_records(blog, now - timedelta(hours=25), now - timedelta(hours=30), now)
    output = run_prune()
    assert output.count("\n") == 1
    assert output.startswith(
        "prune: 2 idempotency records, 0 readings, 0 evaluation runs, 0 notifications deleted in "
    )
    assert output.rstrip().endswith(" s")
    assert IdempotentRequest.objects.count() == 1
    assert run_prune().startswith(
        "prune: 0 idempotency records, 0 readings, 0 evaluation runs, 0 notifications deleted in "
    )
    assert IdempotentRequest.objects.count() == 1


@pytest.mark.django_db
def test_dry_run_says_what_it_would_delete_and_deletes_nothing(blog, route):
    now = timezone.now()
    make_records(blog, now - timedelta(hours=25), now)
    make_stored_readings(route, (now - timedelta(days=9), now - timedelta(days=9)))
    make_runs(now - timedelta(days=32), now - timedelta(days=31), now - timedelta(minutes=1))
    with override_settings(DQ_READING_RETENTION_DAYS=8):
        output = run_prune("--dry-run")
    lines = output.splitlines()
    assert lines[0].startswith("prune (dry run): idempotency records created before ")
    assert "(24 hours), readings observed and received before " in lines[0]
    assert (
        " UTC (30 days) except the latest finished one, notifications created before " in (lines[0])
    )
    assert lines[0].endswith(" UTC (30 days) except pending ones")
    assert ", evaluation runs started before " in lines[0]
    assert lines[1] == (
        "prune (dry run): would delete 1 idempotency records, 1 readings, 2 evaluation runs, "
        "0 notifications"
    )
    assert IdempotentRequest.objects.count() == 2
    assert Reading.objects.count() == 1
    assert EvaluationRun.objects.count() == 3


@pytest.mark.django_db
def test_dry_run_says_readings_are_kept_without_a_retention(blog):
    output = run_prune("--dry-run")
    assert "no readings (DQ_READING_RETENTION_DAYS is 0: kept forever)" in output


@pytest.mark.django_db
def test_it_deletes_in_chunks_of_one_statement_each(blog, django_assert_num_queries):
    make_records(blog, *[NOW - timedelta(days=2, minutes=i) for i in range(7)])
    progress = []
    # three DELETE ... WHERE id IN (SELECT ... LIMIT 3): 3 + 3 + 1 rows; readings are off;
    # one DELETE of evaluation runs (none), one of notifications (none)
    with django_assert_num_queries(5):
        result = prune(NOW, chunk_size=3, progress=progress.append)
    assert result.idempotency_records == 7
    assert progress == [
        "prune: 3 idempotency records deleted so far",
        "prune: 6 idempotency records deleted so far",
    ]
    assert not IdempotentRequest.objects.exists()


@pytest.mark.django_db
def test_more_rows_than_one_default_chunk_are_all_deleted_with_progress(blog):
    old = timezone.now() - timedelta(days=3)
    make_records(blog, *[old] * 10_001)
    lines = run_prune().splitlines()
    assert len(lines) == 2
    assert lines[0] == "prune: 10,000 idempotency records deleted so far"
    assert lines[1].startswith("prune: 10,001 idempotency records, 0 readings")
    assert not IdempotentRequest.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("size", ["0", "1000001", "99999999999999999999"])
def test_chunk_size_must_be_in_range(size):
    # 99999999999999999999 failed as "prune failed: datatype mismatch" (SQLite's LIMIT).
    with pytest.raises(CommandError) as failure:
        run_prune("--chunk-size", size)
    assert str(failure.value) == (
        f"--chunk-size expects a number of rows from 1 to 1,000,000, e.g. 10000; received {size}"
    )


# ---- readings


@pytest.mark.django_db
def test_readings_are_kept_forever_by_default(route):
    long_ago = NOW - timedelta(days=3650)
    make_stored_readings(route, (long_ago, long_ago))
    assert prune(NOW).readings == 0
    assert Reading.objects.count() == 1


@pytest.mark.django_db
@override_settings(DQ_READING_RETENTION_DAYS=7)
def test_it_deletes_readings_older_than_the_retention_and_keeps_the_boundary(route):
    cutoff = NOW - timedelta(days=7)
    old, at_cutoff, fresh = make_stored_readings(
        route, (cutoff - TICK, cutoff - TICK), (cutoff, cutoff), (NOW, NOW)
    )
    assert prune(NOW).readings == 1
    assert set(Reading.objects.values_list("pk", flat=True)) == {at_cutoff.pk, fresh.pk}


@pytest.mark.django_db
@override_settings(DQ_READING_RETENTION_DAYS=7)
def test_a_backfilled_old_reading_stays_until_its_key_was_stored_7_days_ago(route):
    # Observed a month ago but posted yesterday: its idempotency_key must be remembered
    # 7 days from when it was stored, or a retry would store it a second time.
    month_ago = NOW - timedelta(days=30)
    make_stored_readings(route, (month_ago, NOW - timedelta(days=1)))
    assert prune(NOW).readings == 0
    assert prune(NOW + timedelta(days=6)).readings == 0
    assert prune(NOW + timedelta(days=6, microseconds=1)).readings == 1


@pytest.mark.django_db
@override_settings(DQ_READING_RETENTION_DAYS=30)
def test_readings_go_in_chunks_and_a_second_run_deletes_nothing(route):
    old = NOW - timedelta(days=31)
    make_stored_readings(route, *[(old, old)] * 5, (NOW, NOW))
    progress = []
    assert prune(NOW, chunk_size=2, progress=progress.append).readings == 5
    assert progress == [
        "prune: 2 readings deleted so far",
        "prune: 4 readings deleted so far",
    ]
    assert prune(NOW, chunk_size=2).readings == 0
    assert Reading.objects.count() == 1


# ---- evaluation runs


@pytest.mark.django_db
def test_it_deletes_runs_older_than_30_days_and_keeps_the_boundary():
    cutoff = NOW - timedelta(days=30)
    old, at_cutoff, fresh = make_runs(cutoff - TICK, cutoff, NOW - timedelta(minutes=1))
    assert prune(NOW).evaluation_runs == 1
    assert remaining_runs() == {at_cutoff.pk, fresh.pk}


@pytest.mark.django_db
@override_settings(DQ_EVALUATION_RUN_RETENTION_DAYS=1)
def test_run_retention_moves_the_boundary():
    kept, gone, latest = make_runs(
        NOW - timedelta(hours=23), NOW - timedelta(days=1) - TICK, NOW - timedelta(minutes=1)
    )
    assert prune(NOW).evaluation_runs == 1
    assert remaining_runs() == {kept.pk, latest.pk}


@pytest.mark.django_db
def test_the_latest_finished_run_stays_however_old():
    # The clock stopped two months ago; its last pass finished, the one after it never did.
    stopped = NOW - timedelta(days=60)
    make_runs(NOW - timedelta(days=90), stopped - timedelta(minutes=1))
    (last,) = make_runs(stopped)
    make_runs(stopped + timedelta(minutes=1), finished=False)
    assert prune(NOW).evaluation_runs == 3
    assert remaining_runs() == {last.pk}
    assert prune(NOW + timedelta(days=365)).evaluation_runs == 0
    assert remaining_runs() == {last.pk}


@pytest.mark.django_db
def test_one_of_two_latest_finished_runs_started_at_the_same_time_stays():
    make_runs(*[NOW - timedelta(days=40)] * 2)
    assert prune(NOW).evaluation_runs == 1
    assert EvaluationRun.objects.count() == 1


@pytest.mark.django_db
def test_a_run_still_going_stays_and_an_abandoned_one_goes():
    # A pass started 10 s ago has no finished_at yet; one killed 31 days ago never will.
    (latest_finished,) = make_runs(NOW - timedelta(minutes=1))
    running, abandoned = make_runs(
        NOW - timedelta(seconds=10), NOW - timedelta(days=31), finished=False
    )
    assert prune(NOW).evaluation_runs == 1
    assert remaining_runs() == {latest_finished.pk, running.pk}


@pytest.mark.django_db
def test_dry_run_counts_the_runs_it_would_delete_and_deletes_none():
    make_runs(*[NOW - timedelta(days=31, minutes=i) for i in range(4)])
    make_runs(NOW - timedelta(days=45), finished=False)
    # the newest of the four is the latest finished run: it stays
    result = prune(NOW, dry_run=True)
    assert result.evaluation_runs == 4
    assert result.summary() == (
        "prune (dry run): would delete 0 idempotency records, 0 readings, 4 evaluation runs, "
        "0 notifications"
    )
    assert EvaluationRun.objects.count() == 5
    assert prune(NOW).evaluation_runs == 4
    assert EvaluationRun.objects.count() == 1


@pytest.mark.django_db
def test_runs_go_in_chunks_of_one_statement_each_and_a_second_run_deletes_nothing(
    django_assert_num_queries,
):
    old = NOW - timedelta(days=31)
    runs = make_runs(*[old - timedelta(minutes=i) for i in range(6)])
    progress = []
    # one DELETE of idempotency records (none), readings are off; three DELETE ... WHERE id IN
    # (SELECT ... AND NOT id IN (the latest finished run) LIMIT 2): 2 + 2 + 1 rows; one
    # DELETE of notifications (none)
    with django_assert_num_queries(5):
        result = prune(NOW, chunk_size=2, progress=progress.append)
    assert result.evaluation_runs == 5
    assert progress == [
        "prune: 2 evaluation runs deleted so far",
        "prune: 4 evaluation runs deleted so far",
    ]
    assert remaining_runs() == {runs[0].pk}
    assert prune(NOW, chunk_size=2).evaluation_runs == 0
    assert remaining_runs() == {runs[0].pk}


@pytest.mark.django_db
def test_the_command_counts_runs_in_its_summary():
    now = timezone.now()
    make_runs(*[now - timedelta(days=31, minutes=i) for i in range(1_234)], now)
    assert run_prune().startswith(
        "prune: 0 idempotency records, 0 readings, 1,234 evaluation runs, 0 notifications "
        "deleted in "
    )
    assert EvaluationRun.objects.count() == 1


# ---- notifications


def make_notifications(route, *rows):
    """One notification per (status, created_at), each of its own incident."""
    made = []
    for index, (status, created_at) in enumerate(rows):
        incident = Incident.objects.create(
            threshold=make_threshold(route, window_minutes=index + 1),
            route=route,
            level="warn",
            peak_value=1.0,
        )
        made.append(
            Notification.objects.create(
                incident=incident,
                owner=route.owner,
                event="opened",
                payload={},
                status=status,
                created_at=created_at,
            )
        )
    return made


def remaining_notifications():
    return set(Notification.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_it_deletes_finished_notifications_older_than_30_days_and_keeps_pending_ones(route):
    cutoff = NOW - timedelta(days=30)
    old = cutoff - TICK
    delivered, skipped, failed, pending, at_cutoff, fresh = make_notifications(
        route,
        ("delivered", old),
        ("skipped", old),
        ("failed", old),
        ("pending", NOW - timedelta(days=365)),
        ("delivered", cutoff),
        ("failed", NOW),
    )
    assert prune(NOW).notifications == 3
    assert remaining_notifications() == {pending.pk, at_cutoff.pk, fresh.pk}
    assert prune(NOW).notifications == 0


@pytest.mark.django_db
@override_settings(DQ_NOTIFICATION_RETENTION_DAYS=2)
def test_notification_retention_moves_the_boundary_and_goes_in_chunks(route):
    old = NOW - timedelta(days=2) - TICK
    kept, *gone = make_notifications(
        route, ("delivered", NOW - timedelta(days=1)), *[("delivered", old)] * 3
    )
    progress = []
    assert prune(NOW, chunk_size=2, progress=progress.append).notifications == 3
    assert progress == ["prune: 2 notifications deleted so far"]
    assert remaining_notifications() == {kept.pk}


@pytest.mark.django_db
def test_dry_run_counts_the_notifications_it_would_delete(route):
    make_notifications(route, ("delivered", NOW - timedelta(days=31)), ("pending", NOW))
    assert prune(NOW, dry_run=True).notifications == 1
    assert Notification.objects.count() == 2


# ---- settings refused at start-up


@pytest.mark.parametrize("hours", ["23", "0", "-1"])
def test_idempotency_hours_below_24_is_refused(hours):
    stderr = refused("prune", "--dry-run", DQ_IDEMPOTENCY_HOURS=hours)
    assert "DQ_IDEMPOTENCY_HOURS" in stderr
    assert "at least 24" in stderr


@pytest.mark.parametrize("days", ["6", "1", "-7"])
def test_reading_retention_below_7_days_is_refused(days):
    stderr = refused("prune", "--dry-run", DQ_READING_RETENTION_DAYS=days)
    assert "DQ_READING_RETENTION_DAYS" in stderr
    assert "at least 7" in stderr


def test_malformed_retention_names_itself():
    assert "DQ_READING_RETENTION_DAYS is malformed" in refused(
        "check", DQ_READING_RETENTION_DAYS="a week"
    )


@pytest.mark.parametrize("days", ["0", "-1"])
def test_evaluation_run_retention_below_1_day_is_refused(days):
    stderr = refused("prune", "--dry-run", DQ_EVALUATION_RUN_RETENTION_DAYS=days)
    assert "DQ_EVALUATION_RUN_RETENTION_DAYS is too small" in stderr
    assert f"expected 1 or more, received {days}" in stderr


@pytest.mark.parametrize("days", ["0", "-1"])
def test_notification_retention_below_1_day_is_refused(days):
    stderr = refused("prune", "--dry-run", DQ_NOTIFICATION_RETENTION_DAYS=days)
    assert "DQ_NOTIFICATION_RETENTION_DAYS is too small" in stderr
    assert f"expected 1 or more, received {days}" in stderr


def test_malformed_notification_retention_names_itself():
    assert "DQ_NOTIFICATION_RETENTION_DAYS is malformed" in refused(
        "check", DQ_NOTIFICATION_RETENTION_DAYS="a month"
    )


def test_malformed_run_retention_names_itself():
    assert "DQ_EVALUATION_RUN_RETENTION_DAYS is malformed" in refused(
        "check", DQ_EVALUATION_RUN_RETENTION_DAYS="a month"
    )
