"""The loop of the long-running commands: `evaluate --loop` (the Procfile clock) and
`deliver_notifications --loop` (the Procfile notify process)."""

import logging
import signal as process_signals
import time

from django.db import DatabaseError, close_old_connections, connection

logger = logging.getLogger(__name__)

MAX_LOOP_SECONDS = 24 * 60 * 60  # --loop at most a day


def repeat(step, *, seconds, max_runs, what, stderr):
    """Call `step(started)` every `seconds` (`started` is its time.monotonic()) until SIGTERM
    or SIGINT, which end it between runs, or `max_runs` runs.

    A failed run never ends the loop: the next run starts from what is stored. A database
    error is one line on `stderr`; anything else (a bug, data that overflowed a date) is
    logged with its traceback."""
    stopping = []
    previous = {
        signum: process_signals.signal(signum, lambda *_: stopping.append(True))
        for signum in (process_signals.SIGTERM, process_signals.SIGINT)
    }
    try:
        runs = 0
        while not stopping:
            started = time.monotonic()
            _renew_connection()
            try:
                step(started)
            except DatabaseError as exc:
                stderr.write(f"{what} failed, retrying in {seconds:g}s: {exc}")
            except Exception:
                logger.exception(
                    "%s failed with an unexpected error, retrying in %gs", what, seconds
                )
            runs += 1
            if max_runs is not None and runs >= max_runs:
                return
            _sleep_until(started + seconds, stopping)
    finally:
        for signum, handler in previous.items():
            process_signals.signal(signum, handler)


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
