import signal as process_signals
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection

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
            "--limit",
            type=int,
            default=BATCH_SIZE,
            metavar="N",
            help=f"At most N notifications per batch (default {BATCH_SIZE}).",
        )

    def handle(self, *args, loop=None, max_runs=None, limit=BATCH_SIZE, **options):
        if limit < 1:
            raise CommandError(f"--limit expects a positive number, e.g. 100; received {limit}")
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
        if loop <= 0:
            raise CommandError(
                f"--loop expects a positive number of seconds, e.g. --loop 10; received {loop:g}"
            )

        stopping = []
        previous = {
            signum: process_signals.signal(signum, lambda *_: stopping.append(True))
            for signum in (process_signals.SIGTERM, process_signals.SIGINT)
        }
        try:
            self._loop(loop, max_runs, limit, stopping)
        finally:
            for signum, handler in previous.items():
                process_signals.signal(signum, handler)

    def _loop(self, seconds, max_runs, limit, stopping):
        runs = 0
        while not stopping:
            started = time.monotonic()
            # A long-lived loop must not keep a connection the database has dropped (inside
            # a test's transaction there is nothing to renew).
            if not connection.in_atomic_block:
                close_old_connections()
                if connection.connection is not None and not connection.is_usable():
                    connection.close()
            try:
                self.stdout.write(deliver_batch(limit).summary())
            except DatabaseError as exc:
                # Safe to run again: a claimed notification is due again when its lease ends.
                self.stderr.write(f"delivery failed, retrying in {seconds:g}s: {exc}")
            self.stdout.flush()
            runs += 1
            if max_runs is not None and runs >= max_runs:
                return
            deadline = started + seconds
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
