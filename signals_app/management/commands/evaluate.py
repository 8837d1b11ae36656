import logging

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from signals_app.evaluation import run_evaluation, summary_line
from signals_app.management.arguments import bounded, needs_loop
from signals_app.management.loop import add_loop_arguments, check_loop_arguments, repeat

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Evaluate every threshold once: store statuses, open/escalate/resolve incidents and "
        "print a one-line summary. With --loop SECONDS, repeat every SECONDS (Procfile clock); "
        "with --prune-every SECONDS, also run `prune` that often."
    )

    def add_arguments(self, parser):
        add_loop_arguments(parser, "pass")
        parser.add_argument(
            "--prune-every",
            type=float,
            metavar="SECONDS",
            help="With --loop, also run `prune` after the first run and then every SECONDS.",
        )

    def handle(
        self, *args, loop=None, max_runs=None, max_failures=None, prune_every=None, **options
    ):
        check_loop_arguments(loop, max_runs, max_failures, step="pass", seconds=60)
        needs_loop("--prune-every", prune_every, loop, example="--loop 60 --prune-every 3600")
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

        pruned_at = None

        def one_pass(started):
            nonlocal pruned_at
            try:
                self.stdout.write(summary_line(run_evaluation()))
            finally:
                if prune_every and (pruned_at is None or started - pruned_at >= prune_every):
                    try:
                        call_command("prune", stdout=self.stdout)
                        pruned_at = started
                    except CommandError as exc:  # the database; tried again on the next pass
                        self.stderr.write(str(exc))
                self.stdout.flush()

        repeat(
            one_pass,
            seconds=loop,
            max_runs=max_runs,
            max_failures=max_failures,
            what="evaluation",
            stderr=self.stderr,
        )
