import logging
import signal as process_signals
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection

from signals_app.evaluation import run_evaluation, summary_line
from signals_app.management.arguments import bounded

MAX_LOOP_SECONDS = 24 * 60 * 60

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Evaluate every threshold once: store statuses, open/escalate/resolve incidents and "
        "print a one-line summary. With --loop SECONDS, repeat every SECONDS (Procfile clock); "
        "with --prune-every SECONDS, also run `prune` that often."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop",
            type=float,
            metavar="SECONDS",
            help="Run again every SECONDS until stopped (SIGTERM/SIGINT end it between runs).",
        )
        parser.add_argument(
            "--max-runs", type=int, help="With --loop, stop after this many runs (for tests)."
        )
        parser.add_argument(
            "--prune-every",
            type=float,
            metavar="SECONDS",
            help="With --loop, also run `prune` after the first run and then every SECONDS.",
        )

    def handle(self, *args, loop=None, max_runs=None, prune_every=None, **options):
        bounded("--loop", loop, low=0.01, high=MAX_LOOP_SECONDS, unit="seconds", example=60)
        bounded("--max-runs", max_runs, low=1, unit="runs", example=3)
        if prune_every is not None and loop is None:
            raise CommandError(
                "--prune-every expects --loop, e.g. --loop 60 --prune-every 3600; "
                "received no --loop"
            )
        bounded("--prune-every", prune_every, low=0.001, unit="seconds", example=3600)
        if loop is None:
            try:
                run = run_evaluation()
            except DatabaseError as exc:
                raise CommandError(f"evaluation failed: {exc}") from exc
            except Exception as exc:
                logger.exception("evaluation failed with an unexpected error")
                raise CommandError(
                    f"evaluation failed with an unexpected error: {type(exc).__name__}: {exc}"
                ) from exc
            self.stdout.write(summary_line(run))
            return

        stopping = []
        previous = {
            signum: process_signals.signal(signum, lambda *_: stopping.append(True))
            for signum in (process_signals.SIGTERM, process_signals.SIGINT)
        }
        try:
            self._loop(loop, max_runs, stopping, prune_every)
        finally:
            for signum, handler in previous.items():
                process_signals.signal(signum, handler)

    def _loop(self, seconds, max_runs, stopping, prune_every=None):
        runs = 0
        pruned_at = None
        while not stopping:
            started = time.monotonic()
            # A long-lived loop must not keep a connection the database has dropped (there
            # are no CONN_HEALTH_CHECKS by default; inside a test's transaction there is
            # nothing to renew).
            if not connection.in_atomic_block:
                close_old_connections()
                if connection.connection is not None and not connection.is_usable():
                    connection.close()
            try:
                self.stdout.write(summary_line(run_evaluation()))
            except DatabaseError as exc:
                # Safe to run again: the next pass starts from the stored states.
                self.stderr.write(f"evaluation failed, retrying in {seconds:g}s: {exc}")
            except Exception:
                # A bug (a value that overflowed a date) must not stop the clock: the pass
                # rolled back, and the next one may get past it once the data is fixed.
                logger.exception(
                    "evaluation failed with an unexpected error, retrying in %gs", seconds
                )
            if prune_every and (pruned_at is None or started - pruned_at >= prune_every):
                try:
                    call_command("prune", stdout=self.stdout)
                    pruned_at = started
                except CommandError as exc:  # the database; tried again on the next pass
                    self.stderr.write(str(exc))
            self.stdout.flush()
            runs += 1
            if max_runs is not None and runs >= max_runs:
                return
            deadline = started + seconds
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
