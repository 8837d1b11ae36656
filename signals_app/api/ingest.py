"""The hot path of `POST /api/v1/readings`: a plain validator, one query, one INSERT.

This steps outside ModelSerializer on purpose. Measured with `make bench-ingest` on the
shared 2-core dev machine (gunicorn, PostgreSQL 15, 500-reading batches from 8 clients):
this path 16,000-34,000 readings/s (44-71% of a binary COPY of the same rows); the
textbook endpoint (ModelSerializer(many=True), related fields and the idempotency key
checked per item, bulk_create) 240-580 readings/s, over 50 times fewer.

Per batch: one query resolves the routes, signals and environments it names, and one
`INSERT ... ON CONFLICT DO NOTHING RETURNING` stores it (PostgreSQL, SQLite >= 3.35).
The database's partial unique index on (service, idempotency_key) decides what is a
duplicate, so concurrent submissions of the same keys store one row each;
duplicates = submitted - inserted, including a key repeated inside one batch.
"""

import math
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

from signals_app.models import (
    EARLIEST_TIME,
    MAX_READING_MAGNITUDE,
    CacheStatus,
    Environment,
    Reading,
    Route,
    Signal,
)
from signals_app.sql import float_array, int_array, text_array, timestamp_array

from . import parsers
from .problems import TIMESTAMP, Problem, item_error, shown

MAX_READINGS = 1000
MAX_ERRORS = 100
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_IDEMPOTENCY_KEY = 255
MAX_RELEASE = Reading._meta.get_field("release").max_length
MAX_PATH = Route._meta.get_field("path").max_length

FIELDS = frozenset(
    {
        "method",
        "route",
        "signal",
        "value",
        "environment",
        "observed_at",
        "cache_status",
        "release",
        "idempotency_key",
    }
)
METHODS = frozenset(Route.Method.values)
CACHE_STATUSES = frozenset(CacheStatus.values)
DEFAULT_ENVIRONMENT = "production"

# What a value must be, per signal kind: (lowest, highest, words for `expected`).
KIND_RANGES = Signal.VALUE_RANGES
ANY_KIND = (-MAX_READING_MAGNITUDE, MAX_READING_MAGNITUDE, "a finite number within [-1e12, 1e12]")


class NonFinite:
    """What JSON's NaN / Infinity / -Infinity tokens parse to: kept to be refused by field."""

    __slots__ = ("token",)

    def __init__(self, token):
        self.token = token


def _integer(text):
    """JSON's parse_int: an integer too long for Python (4,300 digits) is no finite float
    either; kept to be refused by field, as NaN is."""
    try:
        return int(text)
    except ValueError:
        return NonFinite(f"{text[:20]}… ({len(text)} digits)")


def parse_body(raw):
    """The `readings` list of a JSON body, or a 400/413 Problem."""
    try:
        document = parsers.loads(raw, parse_constant=NonFinite, parse_int=_integer)
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, a 5,000-digit integer
        raise parsers.invalid_json(str(exc), expected='{"readings": [...]}') from None
    if not isinstance(document, dict) or "readings" not in document:
        raise Problem(
            400,
            'the body must be a JSON object {"readings": [...]}',
            errors=[item_error("readings", "missing", expected="a list of 1 to 1000 readings")],
        )
    unknown = sorted(set(document) - {"readings"})
    if unknown:
        raise Problem(
            400,
            f"unknown top-level field(s): {', '.join(unknown)}",
            errors=[
                item_error(name, "unknown field", expected=["readings"], received=name)
                for name in unknown
            ],
        )
    readings = document["readings"]
    if not isinstance(readings, list):
        raise Problem(
            400,
            "readings must be a list",
            errors=[
                item_error(
                    "readings",
                    "not a list",
                    expected="a list of 1 to 1000 readings",
                    received=_shown(readings),
                )
            ],
        )
    if not readings:
        raise Problem(
            400,
            "readings is empty: send 1 to 1000 readings",
            errors=[item_error("readings", "empty", expected="1 to 1000 readings", received=0)],
        )
    if len(readings) > MAX_READINGS:
        raise Problem(
            413,
            f"{len(readings)} readings in one request; send at most {MAX_READINGS}",
            errors=[
                item_error(
                    "readings",
                    "too many readings",
                    expected=f"at most {MAX_READINGS}",
                    received=len(readings),
                )
            ],
        )
    return readings


def _shown(value):
    """A JSON-safe, short rendering of what the client sent, for `received`."""
    if isinstance(value, NonFinite):
        return value.token
    return shown(value)


class Errors(list):
    def add(self, index, field, message, expected, received):
        self.append(item_error(field, message, index=index, expected=expected, received=received))


def _text_fault(value, limit, *, allow_empty=False):
    """Why `value` is not text the database can store, or None."""
    if not isinstance(value, str):
        return "must be a string"
    if not value and not allow_empty:
        return "must not be empty"
    if limit and len(value) > limit:
        return f"longer than {limit} characters"
    if "\x00" in value:  # PostgreSQL text cannot hold it
        return "contains NUL (\\u0000)"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode)"
    return None


def _text(item, name, index, errors, *, default=None, limit=None, expected="a string"):
    value = item.get(name)
    if value is None:
        if default is None:
            errors.add(index, name, "required", expected, None)
        return default
    fault = _text_fault(value, limit)
    if fault:
        errors.add(index, name, fault, expected, _shown(value))
        return None
    return value


def _number(value):
    """The float of a JSON number, or None for anything else (bool, str, NaN, 1e400)."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def parse_timestamp(value):
    """The aware datetime of an ISO 8601 string with a UTC offset, else ValueError saying
    what is wrong. A reading's observed_at, and every date-time the API takes (bodies:
    serializers.TimestampField; filters: filters.IsoDateTimeField): without an offset a
    time is a guess at the sender's zone, so it is refused rather than read as UTC."""
    if not isinstance(value, str):
        raise ValueError("must be a date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise ValueError("not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset: add one, e.g. Z or +00:00")
    return parsed


def _timestamp(value, index, errors, now):
    if value is None:
        return now
    try:
        parsed = parse_timestamp(value)
    except ValueError as exc:
        errors.add(index, "observed_at", str(exc), TIMESTAMP, _shown(value))
        return None
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        errors.add(index, "observed_at", "out of range", TIMESTAMP, _shown(value))
        return None
    if parsed < EARLIEST_TIME:
        # 1970-01-01 is a client whose clock was never set (epoch 0); backfill of months-old
        # readings stays welcome.
        errors.add(
            index,
            "observed_at",
            "before 2000-01-01: a clock that was not set?",
            f"at or after {EARLIEST_TIME.isoformat()}",
            value,
        )
        return None
    if parsed > now + FUTURE_TOLERANCE:
        errors.add(
            index,
            "observed_at",
            "more than 5 minutes in the future",
            f"at most {(now + FUTURE_TOLERANCE).isoformat()}",
            value,
        )
        return None
    return parsed


def validate_items(readings, now):
    """Check each reading's shape; return (cleaned rows, Errors).

    A cleaned row is [method, path, signal, environment, value, observed_at,
    cache_status, release, idempotency_key, index]; ids are resolved afterwards.
    """
    errors = Errors()
    rows = []
    for index, item in enumerate(readings):
        if not isinstance(item, dict):
            errors.add(index, None, "each reading must be a JSON object", "an object", _shown(item))
            continue
        if not FIELDS.issuperset(item):
            for name in sorted(set(item) - FIELDS):
                errors.add(index, name, "unknown field", sorted(FIELDS), _shown(name))
        before = len(errors)

        method = item.get("method")
        if method is None:
            method = "GET"
        elif isinstance(method, str) and method.upper() in METHODS:
            method = method.upper()
        else:
            errors.add(index, "method", "unknown HTTP method", sorted(METHODS), _shown(method))

        path = _text(item, "route", index, errors, limit=MAX_PATH, expected="a path template")
        signal = _text(item, "signal", index, errors, expected="a signal key")
        environment = _text(
            item, "environment", index, errors, default=DEFAULT_ENVIRONMENT, expected="a slug"
        )

        raw_value = item.get("value")
        value = _number(raw_value)
        if value is None:
            errors.add(
                index,
                "value",
                "required" if raw_value is None else "must be a finite number",
                "a finite JSON number",
                _shown(raw_value),
            )

        observed_at = _timestamp(item.get("observed_at"), index, errors, now)

        cache_status = item.get("cache_status")
        if cache_status is None:
            cache_status = CacheStatus.UNKNOWN.value
        elif isinstance(cache_status, str) and cache_status.upper() in CACHE_STATUSES:
            cache_status = cache_status.upper()
        else:
            errors.add(
                index,
                "cache_status",
                "unknown cache status",
                sorted(CACHE_STATUSES),
                _shown(cache_status),
            )

        release = item.get("release")
        if release is None:
            release = ""
        elif fault := _text_fault(release, MAX_RELEASE, allow_empty=True):
            expected = f"a string of at most {MAX_RELEASE} characters, valid Unicode, no NUL"
            errors.add(index, "release", fault, expected, _shown(release))

        key = item.get("idempotency_key")
        if key is not None and (fault := _text_fault(key, MAX_IDEMPOTENCY_KEY)):
            expected = f"a string of 1 to {MAX_IDEMPOTENCY_KEY} characters, valid Unicode, no NUL"
            errors.add(index, "idempotency_key", fault, expected, _shown(key))

        if len(errors) == before:
            rows.append(
                [
                    method,
                    path,
                    signal,
                    environment,
                    value,
                    observed_at,
                    cache_status,
                    release,
                    key,
                    index,
                ]
            )
    return rows, errors


def _resolve_sql(paths, signals, environments):
    route, sig, env = Route._meta.db_table, Signal._meta.db_table, Environment._meta.db_table

    def marks(values):
        return ", ".join(["%s"] * len(values))

    # The three lookups in one round trip: routes of any service (to tell "not yours"
    # from "unknown"), and the signals and environments the batch names.
    return (
        f"SELECT 'r', id, service_id, method, path, NULL FROM {route} "
        f"WHERE path IN ({marks(paths)}) "
        f"UNION ALL SELECT 's', id, NULL, key, NULL, kind FROM {sig} "
        f"WHERE key IN ({marks(signals)}) "
        f"UNION ALL SELECT 'e', id, NULL, slug, NULL, NULL FROM {env} "
        f"WHERE slug IN ({marks(environments)})"
    )


class NameCache:
    """Ids of the routes, signals and environments this process resolved lately.

    Only names that exist are kept, so a route registered a moment ago is found by the
    query at once; a name renamed or removed is forgotten within `seconds`
    (settings.DQ_INGEST_CACHE_SECONDS, 0 turns it off). A batch whose names are all
    known skips the resolution query.
    """

    def __init__(self):
        self.clear()

    def clear(self):
        self.expires = 0.0
        self.routes, self.signals, self.environments = {}, {}, {}

    def fresh(self):
        return time.monotonic() < self.expires

    def remember(self, service_id, own_routes, signals, environments):
        seconds = settings.DQ_INGEST_CACHE_SECONDS
        if seconds <= 0:
            return
        if not self.fresh():
            self.clear()
            self.expires = time.monotonic() + seconds
        self.routes.setdefault(service_id, {}).update(own_routes)
        self.signals.update(signals)
        self.environments.update(environments)


names = NameCache()


def _query_names(service, rows):
    paths = sorted({row[1] for row in rows})
    signal_keys = sorted({row[2] for row in rows})
    env_slugs = sorted({row[3] for row in rows})
    with connection.cursor() as cursor:
        cursor.execute(
            _resolve_sql(paths, signal_keys, env_slugs), [*paths, *signal_keys, *env_slugs]
        )
        found = cursor.fetchall()
    own_routes, other_routes, signals, environments = {}, set(), {}, {}
    for kind, pk, service_id, name, path, signal_kind in found:
        if kind == "r":
            if service_id == service.pk:
                own_routes[(name, path)] = pk
            else:
                other_routes.add((name, path))
        elif kind == "s":
            signals[name] = (pk, signal_kind)
        else:
            environments[name] = pk
    names.remember(service.pk, own_routes, signals, environments)
    return own_routes, other_routes, signals, environments


def resolve(service, rows, *, cached=True):
    """Ids for the batch's names in at most one query.

    Returns (resolved rows, 403 errors for routes of other services, 400 errors).
    """
    if not rows:
        return [], Errors(), Errors()
    if cached and names.fresh():
        known = (names.routes.get(service.pk, {}), set(), names.signals, names.environments)
        resolved, forbidden, errors = _match(service, rows, *known)
        if not forbidden and not errors:
            return resolved, forbidden, errors
    return _match(service, rows, *_query_names(service, rows))


def _match(service, rows, own_routes, other_routes, signals, environments):
    forbidden, errors = Errors(), Errors()
    resolved = []
    for row in rows:
        method, path, signal_key, env_slug, value = row[:5]
        index = row[9]
        route_id = own_routes.get((method, path))
        if route_id is None:
            if (method, path) in other_routes:
                forbidden.add(
                    index,
                    "route",
                    f"route {method} {path} belongs to another service; "
                    f"this key posts only for service {service.slug}",
                    f"a route of service {service.slug}",
                    path,
                )
            else:
                errors.add(
                    index,
                    "route",
                    f"no route {method} {path} in service {service.slug}; routes are "
                    "registered by their owner in the registry (admin or API) first",
                    f"a registered route of service {service.slug}",
                    path,
                )
        signal = signals.get(signal_key)
        if signal is None:
            errors.add(index, "signal", "unknown signal", "a registered signal key", signal_key)
        else:
            low, high, expected = KIND_RANGES.get(signal[1], ANY_KIND)
            if not low <= value <= high:
                errors.add(index, "value", f"out of range for {signal_key}", expected, value)
        environment_id = environments.get(env_slug)
        if environment_id is None:
            errors.add(index, "environment", "unknown environment", "a registered slug", env_slug)
        if route_id and signal and environment_id:
            resolved.append((route_id, signal[0], environment_id, row))
    return resolved, forbidden, errors


def check(service, readings, now, *, cached=True):
    """Validate a parsed batch and resolve its names; raises the 400/403 Problem."""
    rows, errors = validate_items(readings, now)
    resolved, forbidden, unresolved = resolve(service, rows, cached=cached)
    if forbidden:
        raise invalid(forbidden, status=403, detail="the batch names routes of another service")
    if errors or unresolved:
        raise invalid(sorted([*errors, *unresolved], key=lambda error: error["index"]))
    return resolved


def invalid(errors, *, status=400, detail=None):
    shown = errors[:MAX_ERRORS]
    more = f" (first {MAX_ERRORS} of {len(errors)} shown)" if len(errors) > MAX_ERRORS else ""
    first = shown[0]
    summary = detail or (
        f"{len(errors)} invalid field(s) in the batch; nothing was stored. "
        f"First: readings[{first['index']}]{'.' + first['field'] if first['field'] else ''}: "
        f"{first['message']}"
    )
    return Problem(
        status,
        summary + more,
        slug="invalid-readings" if status == 400 else "route-of-another-service",
        errors=shown,
    )


_COLUMNS = (
    "service_id, route_id, signal_id, environment_id, value, observed_at, received_at, "
    "cache_status, release, idempotency_key"
)


def _insert_sql(count):
    # No conflict target: the only unique index besides the key is the partial
    # (service, idempotency_key) one, and a key repeated inside the batch is skipped
    # the same way.
    table = Reading._meta.db_table
    if connection.vendor == "postgresql":
        # One array per column: ten parameters whatever the batch size. A VALUES list of
        # 5,000 parameters is longer than psycopg caches, so it re-parses the query text
        # on every batch (measured: 40 ms of a 500-reading batch's ~60 ms).
        return (
            f"INSERT INTO {table} ({_COLUMNS}) "
            "SELECT %s, r, s, e, v, o, %s, c, rl, k FROM unnest("
            "%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[], %s::timestamptz[], "
            "%s::text[], %s::text[], %s::text[]) AS u(r, s, e, v, o, c, rl, k) "
            "ON CONFLICT DO NOTHING RETURNING id"
        )
    row = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    return (
        f"INSERT INTO {table} ({_COLUMNS}) VALUES {', '.join([row] * count)} "
        "ON CONFLICT DO NOTHING RETURNING id"
    )


def _params(service, resolved, now):
    if connection.vendor == "postgresql":
        # One array literal per column (signals_app.sql): psycopg would render these lists
        # element by element in Python (12 ms of a 500-reading batch).
        routes, signals, environments, rows = zip(*resolved, strict=True)
        return [
            service.pk,
            now,
            int_array(routes),
            int_array(signals),
            int_array(environments),
            float_array(row[4] for row in rows),
            timestamp_array(row[5] for row in rows),
            text_array(row[6] for row in rows),
            text_array(row[7] for row in rows),
            text_array(row[8] for row in rows),
        ]
    adapt = connection.ops.adapt_datetimefield_value
    received_at = adapt(now)
    params = []
    extend = params.extend
    for route_id, signal_id, environment_id, row in resolved:
        extend(
            (
                service.pk,
                route_id,
                signal_id,
                environment_id,
                row[4],
                adapt(row[5]),
                received_at,
                row[6],
                row[7],
                row[8],
            )
        )
    return params


def store(service, resolved, now):
    """One INSERT for the batch; returns how many rows it stored."""
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(len(resolved)), _params(service, resolved, now))
        return len(cursor.fetchall())


def utcnow():
    return datetime.now(UTC)
