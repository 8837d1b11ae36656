"""Pruning: `Idempotency-Key` records, evaluation runs, finished notifications and, when a
retention is set, readings.

Rows go in chunks, one short DELETE ... WHERE id IN (SELECT id ... LIMIT n) each, so
no statement holds its locks for long and ingestion keeps flowing (SQLite and
PostgreSQL alike). Running it again deletes nothing more.
"""

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from signals_app.models import EvaluationRun, IdempotentRequest, Notification, Reading

CHUNK_SIZE = 10_000


@dataclass(frozen=True)
class Cutoffs:
    idempotency: object  # records created before this go
    readings: object  # None: readings are kept forever
    evaluation_runs: object  # runs started before this go, except the latest finished one
    notifications: object  # delivered/skipped/failed notifications created before this go


def cutoffs(now=None):
    now = now or timezone.now()
    days = settings.DQ_READING_RETENTION_DAYS
    return Cutoffs(
        idempotency=now - timedelta(hours=settings.DQ_IDEMPOTENCY_HOURS),
        readings=now - timedelta(days=days) if days else None,
        evaluation_runs=now - timedelta(days=settings.DQ_EVALUATION_RUN_RETENTION_DAYS),
        notifications=now - timedelta(days=settings.DQ_NOTIFICATION_RETENTION_DAYS),
    )


def expired_idempotency_records(cut):
    return IdempotentRequest.objects.filter(created_at__lt=cut.idempotency)


def expired_readings(cut):
    """Readings older than the retention by observed_at *and* by received_at.

    observed_at is what retention means (every window, chart and baseline is by
    observed_at, and its index finds them). received_at keeps the contract that a
    reading's idempotency_key is remembered at least 7 days after it was stored: a
    backfill of readings observed months ago stays until it is that old itself.
    """
    if cut.readings is None:
        return Reading.objects.none()
    return Reading.objects.filter(observed_at__lt=cut.readings, received_at__lt=cut.readings)


def expired_evaluation_runs(cut):
    """Runs started before the retention, except the latest finished run, however old.

    A clock stopped for two months must still show when it last evaluated (/metrics). The
    latest finished run is a subquery of each DELETE, not read once beforehand, so every
    statement keeps whichever run is the latest finished one when it runs.
    """
    latest_finished = EvaluationRun.objects.finished().values("pk")[:1]
    return EvaluationRun.objects.filter(started_at__lt=cut.evaluation_runs).exclude(
        pk__in=latest_finished
    )


def expired_notifications(cut):
    """Finished notifications (delivered, skipped, failed) created before the retention.
    A pending one stays however old: it is still to be sent."""
    return Notification.objects.filter(created_at__lt=cut.notifications).exclude(
        status=Notification.Status.PENDING
    )


@dataclass
class PruneResult:
    idempotency_records: int = 0
    readings: int = 0
    evaluation_runs: int = 0
    notifications: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def summary(self):
        counts = (
            f"{self.idempotency_records:,} idempotency records, {self.readings:,} readings, "
            f"{self.evaluation_runs:,} evaluation runs, {self.notifications:,} notifications"
        )
        if self.dry_run:
            return f"prune (dry run): would delete {counts}"
        return f"prune: {counts} deleted in {self.seconds:.1f} s"


def prune(now=None, *, dry_run=False, chunk_size=CHUNK_SIZE, progress=None):
    """Delete what is past its retention; `progress(line)` hears about long runs."""
    started = time.monotonic()
    cut = cutoffs(now)
    result = PruneResult(dry_run=dry_run)
    if dry_run:
        result.idempotency_records = expired_idempotency_records(cut).count()
        result.readings = expired_readings(cut).count()
        result.evaluation_runs = expired_evaluation_runs(cut).count()
        result.notifications = expired_notifications(cut).count()
    else:
        result.idempotency_records = _delete_in_chunks(
            expired_idempotency_records(cut), chunk_size, "idempotency records", progress
        )
        result.readings = _delete_in_chunks(expired_readings(cut), chunk_size, "readings", progress)
        result.evaluation_runs = _delete_in_chunks(
            expired_evaluation_runs(cut), chunk_size, "evaluation runs", progress
        )
        result.notifications = _delete_in_chunks(
            expired_notifications(cut), chunk_size, "notifications", progress
        )
    result.seconds = time.monotonic() - started
    return result


def _delete_in_chunks(queryset, chunk_size, label, progress):
    model = queryset.model
    total = 0
    if queryset.query.is_empty():  # readings while the retention is off
        return 0
    while True:
        chunk = queryset.order_by().values("pk")[:chunk_size]
        deleted, _ = model.objects.filter(pk__in=chunk).delete()
        total += deleted
        if deleted < chunk_size:
            return total
        if progress:
            progress(f"prune: {total:,} {label} deleted so far")
