from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from signals_app.management.loop import add_loop_arguments, check_loop_arguments, repeat
from signals_app.notifications import BATCH_SIZE, deliver_batch


class Command(BaseCommand):
    help = (
        "Send due incident notifications to their owners' webhooks, one batch, and print a "
        "one-line summary. With --loop SECONDS, repeat every SECONDS (Procfile notify)."
    )

    def add_arguments(self, parser):
        add_loop_arguments(parser, "batch")
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
        check_loop_arguments(loop, max_runs, max_failures, step="batch", seconds=10)
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
