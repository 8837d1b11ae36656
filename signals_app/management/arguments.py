"""Checks of management command options, done in `handle()` so that a bad value is one
line, `CommandError: <option> expects ..., received ...`, never a traceback, whether the
command runs from the shell or through call_command()."""

import math
from datetime import UTC, datetime

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from signals_app.models import MAX_ID


def bounded(option, value, *, low, high=None, unit, example):
    """`value` (a number argparse gave, or None when the option was not given) when it is
    finite and from `low` to `high`; else a CommandError naming the option."""
    if value is None:
        return None
    if not (math.isfinite(value) and low <= value and (high is None or value <= high)):
        expected = f"from {low:g} to {high:g}" if high is not None else f"of at least {low:g}"
        raise CommandError(
            f"{option} expects a number of {unit} {expected}, e.g. {option} {example}; "
            f"received {value!r}"
        )
    return value


def needs_loop(option, value, loop, *, example):
    """A --loop-only option given without --loop is refused rather than ignored."""
    if value is not None and loop is None:
        raise CommandError(f"{option} expects --loop, e.g. {example}; received no --loop")


def moment(option, value):
    """An aware datetime from an ISO 8601 text (naive means UTC), or None when not given."""
    if value is None or isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = parse_datetime(value)
        except ValueError:  # well-formed but impossible, e.g. month 13
            parsed = None
        if parsed is None:
            raise CommandError(
                f"{option} expects an ISO 8601 time like 2026-11-26T07:00:00Z; received {value!r}"
            )
    if parsed is None or timezone.is_aware(parsed):
        return parsed
    return timezone.make_aware(parsed, UTC)


def text(option, value, *, max_length):
    if len(value) > max_length:
        raise CommandError(
            f"{option} expects at most {max_length} characters; received {len(value)}"
        )
    return value


def ids(option, values):
    """Ids argparse gave as ints, each from 1 to MAX_ID (SQLite raised OverflowError on a
    larger one, PostgreSQL found nothing); else a CommandError naming the option."""
    wrong = [value for value in values if not 1 <= value <= MAX_ID]
    if wrong:
        raise CommandError(f"{option} expects an id from 1 to {MAX_ID}; received {wrong[0]}")
    return values
