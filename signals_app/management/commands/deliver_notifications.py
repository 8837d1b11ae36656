from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from signals_app.management.arguments import bounded, needs_loop
from signals_app.management.loop import DEFAULT_MAX_FAILURES, MAX_LOOP_SECONDS, repeat
from signals_app.notifications import BATCH_SIZE, deliver_batch


class Command(BaseCommand):
    help = (
        "Send due incident notifications to their owners' webhooks, one batch, and print a "
        "one-line summary. With --loop SECONDS, repeat every SECONDS (Procfile notify)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop",
            type=float,
            metavar="SECONDS",
            help="Run again every SECONDS until stopped (SIGTERM/SIGINT end it between batches).",
        )
        parser.add_argument(
            "--max-runs", type=int, help="With --loop, stop after this many batches (for tests)."
        )
        parser.add_argument(
            "--max-failures",
            type=int,
            metavar="N",
            help=(
                "With --loop, exit with an error after N failed batches in a row (default "
                f"{DEFAULT_MAX_FAILURES}; 0: never); a successful one resets the count."
            ),
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=BATCH_SIZE,
            metavar="N",
            help=f"At most N notifications per batch (default {BATCH_SIZE}).",
        )

    def handle(
        self, *args, loop=None, max_runs=None, max_failures=None, limit=BATCH_SIZE, **options
    ):
        if limit < 1:
            raise CommandError(f"--limit expects a positive number, e.g. 100; received {limit}")
        # As evaluate's: nan ran batches back to back, inf slept for ever, 0 runs still ran.
        bounded("--loop", loop, low=0.01, high=MAX_LOOP_SECONDS, unit="seconds", example=10)
        bounded("--max-runs", max_runs, low=1, unit="runs", example=3)
        needs_loop(
            "--max-runs", max_runs, loop, example="--loop 10 --max-runs 3"
        )  # one run was silent
        needs_loop("--max-failures", max_failures, loop, example="--loop 10 --max-failures 5")
        bounded("--max-failures", max_failures, low=0, unit="failed batches", example=5)
        if loop is None:
            try:
                result = deliver_batch(limit)
            except DatabaseError as exc:
                raise CommandError(
                    f"delivery failed: {exc} (safe to run again: undelivered notifications "
                    "stay pending)"
                ) from exc
            self.stdout.write(result.summary())
            return

        def one_batch(started):
            try:
                self.stdout.write(deliver_batch(limit).summary())
            finally:
                self.stdout.flush()

        # A failed batch is safe to run again: a claimed notification is due again when its
        # lease ends.
        repeat(
            one_batch,
            seconds=loop,
            max_runs=max_runs,
            max_failures=max_failures,
            what="delivery",
            stderr=self.stderr,
        )
