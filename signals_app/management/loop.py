"""The loop of the long-running commands: `evaluate --loop` (the Procfile clock) and
`deliver_notifications --loop` (the Procfile notify process)."""

import logging
import signal as process_signals
import time

from django.core.management.base import CommandError
from django.db import DatabaseError, close_old_connections, connection

from signals_app.management.arguments import bounded, needs_loop

logger = logging.getLogger(__name__)

MAX_LOOP_SECONDS = 24 * 60 * 60  # --loop at most a day
# --max-failures: a deploy bug (an ImportError, a missing table) fails every run the same
# way; five in a row is a minute of the clock, under a minute of notify.
DEFAULT_MAX_FAILURES = 5


def add_loop_arguments(parser, step):
    """--loop, --max-runs and --max-failures of a command whose one run is a `step`
    ("pass", "batch")."""
    parser.add_argument(
        "--loop",
        type=float,
        metavar="SECONDS",
        help=f"Run again every SECONDS until stopped (SIGTERM/SIGINT end it between {step}es).",
    )
    parser.add_argument(
        "--max-runs", type=int, help=f"With --loop, stop after this many {step}es (for tests)."
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        metavar="N",
        help=(
            f"With --loop, exit with an error after N failed {step}es in a row (default "
            f"{DEFAULT_MAX_FAILURES}; 0: never); a successful one resets the count."
        ),
    )


def check_loop_arguments(loop, max_runs, max_failures, *, step, seconds):
    """The options of add_loop_arguments, each a CommandError naming it when out of range
    (nan ran runs back to back, inf slept for ever, 0 runs still ran) or, for --max-runs and
    --max-failures, given without --loop (one run happened and they were ignored, silently).
    `seconds` is the --loop of the examples."""
    bounded("--loop", loop, low=0.01, high=MAX_LOOP_SECONDS, unit="seconds", example=seconds)
    bounded("--max-runs", max_runs, low=1, unit="runs", example=3)
    needs_loop("--max-runs", max_runs, loop, example=f"--loop {seconds} --max-runs 3")
    needs_loop("--max-failures", max_failures, loop, example=f"--loop {seconds} --max-failures 5")
    bounded("--max-failures", max_failures, low=0, unit=f"failed {step}es", example=5)


def repeat(step, *, seconds, max_runs, what, stderr, max_failures=None):
    """Call `step(started)` every `seconds` (`started` is its time.monotonic()) until SIGTERM
    or SIGINT, which end it between runs, or `max_runs` runs.

    A failed run is retried: the next run starts from what is stored. A database error is
    one line on `stderr`; anything else (a bug, data that overflowed a date) is logged with
    its traceback. After `max_failures` failed runs in a row (None: DEFAULT_MAX_FAILURES;
    0: never) the loop gives up with a CommandError (exit status 1), so that a process that
    cannot work stops where its process manager shows it, rather than log the same
    traceback for ever; a run that succeeds resets the count."""
    stopping = []
    previous = {
        signum: process_signals.signal(signum, lambda *_: stopping.append(True))
        for signum in (process_signals.SIGTERM, process_signals.SIGINT)
    }
    if max_failures is None:
        max_failures = DEFAULT_MAX_FAILURES
    try:
        runs = failures = 0
        while not stopping:
            started = time.monotonic()
            _renew_connection()
            try:
                step(started)
            except Exception as exc:
                failures += 1
                giving_up = bool(max_failures) and failures >= max_failures
                _report_failure(exc, what, seconds, giving_up, stderr)
                if giving_up:
                    _give_up(what, failures, exc)
            else:
                failures = 0
            runs += 1
            if max_runs is not None and runs >= max_runs:
                return
            _sleep_until(started + seconds, stopping)
    finally:
        for signum, handler in previous.items():
            process_signals.signal(signum, handler)


def _report_failure(exc, what, seconds, giving_up, stderr):
    next_step = "not retrying" if giving_up else f"retrying in {seconds:g}s"
    if isinstance(exc, DatabaseError):
        stderr.write(f"{what} failed, {next_step}: {exc}")
    else:
        logger.error("%s failed with an unexpected error, %s", what, next_step, exc_info=exc)


def _give_up(what, failures, exc):
    message = (
        f"{what} failed {failures} times in a row (--max-failures {failures}), exiting: "
        f"the last error was {type(exc).__name__}: {exc}. Something retrying does not fix "
        "(a deploy or a database problem) is likely; fix it, then start the process again "
        "(its process manager may already be restarting it)."
    )
    logger.error(message)
    raise CommandError(message) from exc


def _renew_connection():
    # A long-lived loop must not keep a connection the database has dropped (there are no
    # CONN_HEALTH_CHECKS by default; inside a test's transaction there is nothing to renew).
    if not connection.in_atomic_block:
        close_old_connections()
        if connection.connection is not None and not connection.is_usable():
            connection.close()


def _sleep_until(deadline, stopping):
    while not stopping and time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
