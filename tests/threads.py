"""Other connections in other threads, for the PostgreSQL lock tests: a pass or a
notification batch running alongside the test, or the evaluation lock held as a writing
pass holds it."""

import threading
from contextlib import contextmanager

from django.db import connection, transaction

from signals_app import evaluation, notifications


def evaluate_in_thread(now, runs, errors):
    """Start run_evaluation(now) in a thread of its own (its own connection); the run or
    the exception it raised is appended to `runs` or `errors`. Returns the thread."""

    def evaluate():
        try:
            runs.append(evaluation.run_evaluation(now=now))
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=evaluate)
    thread.start()
    return thread


def deliver_in_thread(results, errors, **kwargs):
    """Start notifications.deliver_batch(**kwargs) in a thread of its own (its own
    connection); the BatchResult or the exception is appended to `results` or `errors`."""

    def deliver():
        try:
            results.append(notifications.deliver_batch(**kwargs))
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=deliver)
    thread.start()
    return thread


@contextmanager
def evaluation_lock_held_elsewhere():
    """Another connection holds the evaluation lock, as a pass that is writing, until the
    block ends."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                evaluation.take_evaluation_lock()
                holding.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(timeout=10)
        yield
    finally:
        release.set()
        thread.join(timeout=30)
