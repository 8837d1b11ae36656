from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from signals_app.retention import CHUNK_SIZE, cutoffs, prune

# A DELETE of more rows at once holds its locks and its WAL longer than any gain is worth.
MAX_CHUNK_SIZE = 1_000_000


class Command(BaseCommand):
    help = (
        "Delete Idempotency-Key records older than DQ_IDEMPOTENCY_HOURS, evaluation runs "
        "older than DQ_EVALUATION_RUN_RETENTION_DAYS (keeping the latest finished one), "
        "delivered, skipped and failed notifications older than "
        "DQ_NOTIFICATION_RETENTION_DAYS and, "
        "when DQ_READING_RETENTION_DAYS is set, readings older than that, in chunks. "
        "Prints a one-line summary; safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=CHUNK_SIZE,
            metavar="ROWS",
            help=f"Rows per DELETE statement (default {CHUNK_SIZE:,}).",
        )

    def handle(self, *args, dry_run=False, chunk_size=CHUNK_SIZE, **options):
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            # SQLite refused a LIMIT beyond its integers with "datatype mismatch".
            raise CommandError(
                f"--chunk-size expects a number of rows from 1 to {MAX_CHUNK_SIZE:,}, "
                f"e.g. 10000; received {chunk_size}"
            )
        now = timezone.now()
        if dry_run:
            cut = cutoffs(now)
            readings = (
                f"readings observed and received before {cut.readings:%Y-%m-%d %H:%M:%S} UTC"
                if cut.readings
                else "no readings (DQ_READING_RETENTION_DAYS is 0: kept forever)"
            )
            self.stdout.write(
                f"prune (dry run): idempotency records created before "
                f"{cut.idempotency:%Y-%m-%d %H:%M:%S} UTC "
                f"({settings.DQ_IDEMPOTENCY_HOURS} hours), {readings}, evaluation runs "
                f"started before {cut.evaluation_runs:%Y-%m-%d %H:%M:%S} UTC "
                f"({settings.DQ_EVALUATION_RUN_RETENTION_DAYS} days) except the latest finished "
                "one, "
                f"notifications created before {cut.notifications:%Y-%m-%d %H:%M:%S} UTC "
                f"({settings.DQ_NOTIFICATION_RETENTION_DAYS} days) except pending ones"
            )
        try:
            result = prune(now, dry_run=dry_run, chunk_size=chunk_size, progress=self.progress)
        except DatabaseError as exc:
            raise CommandError(f"prune failed: {exc}") from exc
        self.stdout.write(result.summary())

    def progress(self, line):
        self.stdout.write(line)
        self.stdout.flush()
