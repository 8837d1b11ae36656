"""Evaluation: statistics of readings in the database, threshold statuses and incidents.

DESIGN.md §Evaluation. The public API, for views, admin pages and commands:

- `window_stats(windows)` -> list of `Stats`: count, mean, min, max, p50/p95/p99 and rate of
  many (route, signal, environment, cache segment, time window) in ONE grouped query.
  Charts can ask for many time buckets at once the same way.
- `evaluate_thresholds(thresholds, now=None)` -> list of `ThresholdResult`: statuses on demand,
  read-only (sustain is judged from the stored `ThresholdState` and the last finished pass's
  `started_at`; nothing is written).
- `route_status(route, now=None, ...)` -> dict with the fields of `GET /api/v1/routes/{id}/status`.
- `run_evaluation(now=None)` -> `EvaluationRun`: one pass that evaluates every threshold,
  writes the `ThresholdState`s that changed, opens/escalates/resolves incidents and records
  the run. Idempotent and safe to run concurrently.

Definitions used everywhere:

- A window is half-open, (start, end]: a reading observed exactly at `start` belongs to the
  window before. A threshold's window is (now - window_minutes, now].
- Percentiles interpolate linearly between closest ranks exactly as PostgreSQL's
  `percentile_cont`: with n sorted values v[0..n-1], pos = p * (n - 1),
  lo = floor(pos), value = v[lo] + (pos - lo) * (v[lo + 1] - v[lo]).
- `rate` is readings per minute: count / window length in minutes (a 15-minute window with
  30 readings has rate 2.0). `count` is the number of readings.
- Cache segments: `hit` = HIT/STALE/REVALIDATED, `miss` = MISS/EXPIRED/BYPASS/DYNAMIC;
  UNKNOWN counts only in `all`.
"""

import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Subquery
from django.utils import timezone

from .models import (
    EARLIEST_TIME,
    HIT_STATUSES,
    MAX_READING_MAGNITUDE,
    MISS_STATUSES,
    Baseline,
    CacheSegment,
    Change,
    Environment,
    EvaluationRun,
    Incident,
    Notification,
    Reading,
    Signal,
    Statistic,
    Status,
    Threshold,
    ThresholdState,
)
from .notifications import IncidentEvent, record_incident_events
from .sql import float_array, int_array, text_array, timestamp_array

logger = logging.getLogger(__name__)

# Worst first: a route's status is the worst of its thresholds' statuses.
STATUS_ORDER = [Status.CRITICAL, Status.WARN, Status.PENDING, Status.NO_DATA, Status.OK]
STATUS_RANK = {status: rank for rank, status in enumerate(STATUS_ORDER)}
# dq_threshold_status in /metrics.
STATUS_METRIC_VALUE = {
    Status.OK: 0,
    Status.PENDING: 0,
    Status.WARN: 1,
    Status.CRITICAL: 2,
    Status.NO_DATA: -1,
}


def worst_status(statuses):
    """The worst of some statuses (critical > warn > pending > no_data > ok); no_data if none."""
    statuses = list(statuses)
    if not statuses:
        return Status.NO_DATA
    return min(statuses, key=STATUS_RANK.__getitem__)


# ---------------------------------------------------------------------------------------------
# Statistics in the database
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Readings of one route+signal+environment and cache segment with start < observed_at <= end.

    `exclude_incidents` leaves out readings observed while an incident of the same route and
    environment was open (for baselines).
    """

    route_id: int
    signal_id: int
    environment_id: int
    segment: str
    start: datetime
    end: datetime
    exclude_incidents: bool = False

    @property
    def minutes(self):
        return (self.end - self.start).total_seconds() / 60


class Stats(NamedTuple):
    """Statistics of one window. A named tuple: thousands are built per evaluation pass."""

    count: int
    minutes: float
    mean: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @property
    def rate(self):
        """Readings per minute over the window."""
        return self.count / self.minutes if self.minutes > 0 else None

    def value(self, statistic):
        """The value of one `Statistic` (None for percentiles/mean/max of no readings)."""
        if statistic == Statistic.COUNT:
            return float(self.count)
        if statistic == Statistic.RATE:
            return self.rate
        if statistic == Statistic.MAX:
            return self.maximum
        return getattr(self, statistic)


def _sql_list(statuses):
    """Cache statuses as an SQL IN list ('HIT', 'STALE', ...): constants of ours, no input."""
    return ", ".join(f"'{status.value}'" for status in statuses)


def _segment_sql(alias_window="s", alias_reading="r"):
    return (
        f"({alias_window}.segment = '{CacheSegment.ALL.value}'"
        f" OR ({alias_window}.segment = '{CacheSegment.HIT.value}'"
        f" AND {alias_reading}.cache_status IN ({_sql_list(HIT_STATUSES)}))"
        f" OR ({alias_window}.segment = '{CacheSegment.MISS.value}'"
        f" AND {alias_reading}.cache_status IN ({_sql_list(MISS_STATUSES)})))"
    )


def _incident_sql(always=False):
    """Leave out readings observed while an incident of their route and environment was open:
    for windows that ask (`s.exclude_incidents`), or for all (`always`)."""
    incident, threshold = Incident._meta.db_table, Threshold._meta.db_table
    return (
        (" AND (NOT EXISTS (" if always else " AND (NOT s.exclude_incidents OR NOT EXISTS (")
        + f"SELECT 1 FROM {incident} i JOIN {threshold} t ON t.id = i.threshold_id"
        " WHERE i.route_id = r.route_id AND t.environment_id = r.environment_id"
        " AND r.observed_at >= i.opened_at"
        " AND (i.resolved_at IS NULL OR r.observed_at <= i.resolved_at)))"
    )


# A mean counts a value beyond ±MAX_READING_MAGNITUDE (1e12) at that bound ({bounded} in the
# queries below). No reading beyond it is accepted any more; one stored before overflowed
# PostgreSQL's float8 sum (and sum of squares) in avg(): three of 1.7e308 failed every
# threshold's pass with "value out of range".
def _bounded(column):
    if connection.vendor == "postgresql":
        return f"LEAST(GREATEST({column}, {-MAX_READING_MAGNITUDE!r}), {MAX_READING_MAGNITUDE!r})"
    return f"min(max({column}, {-MAX_READING_MAGNITUDE!r}), {MAX_READING_MAGNITUDE!r})"


# The windows travel as ONE JSON parameter, [[key, route, signal, environment, segment,
# start, end, exclude_incidents], ...], on both databases. Measured on 4,000 windows: Django's
# psycopg cursor binds on the client, so parallel arrays of 8,000 timestamps cost ~50 ms to
# render into the SQL text; the JSON costs ~3 ms (bench/bench_evaluate.py).
#
# PostgreSQL: percentile_cont computes the three percentiles from one sort per group; they come
# back as three columns (parsing a float8[] per row costs more in Python than the query).
_POSTGRES_WINDOWS = """
SELECT key, n, mean, minimum, maximum, pc[1], pc[2], pc[3] FROM (
    SELECT s.key, count(*) AS n, avg({bounded}) AS mean,
           min(r.value) AS minimum, max(r.value) AS maximum,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY r.value) AS pc
    FROM (
        SELECT (e->>0)::int AS key, (e->>1)::bigint AS route_id, (e->>2)::bigint AS signal_id,
               (e->>3)::bigint AS environment_id, e->>4 AS segment,
               (e->>5)::timestamptz AS since, (e->>6)::timestamptz AS until,
               (e->>7)::int = 1 AS exclude_incidents
        FROM json_array_elements(%s::json) AS e
    ) AS s
    JOIN {reading} r
      ON r.route_id = s.route_id AND r.signal_id = s.signal_id
     AND r.environment_id = s.environment_id
     AND r.observed_at > s.since AND r.observed_at <= s.until
    WHERE {segment}{incidents}{bounds}
    GROUP BY s.key
) AS g
"""
# Many windows: bounds on observed_at over all of them let the planner range-scan the
# observed_at index and hash-join instead of probing the composite index once per window.
# On PostgreSQL this form only serves more than _MANY_WINDOWS spans (fewer take
# _POSTGRES_SPANS below), so it always has the bounds; SQLite leaves them out for few.
_MANY_WINDOWS = 100

# PostgreSQL, up to _MANY_WINDOWS spans (a route page's change verdicts, a comparison with a
# baseline): every (route, signal, environment, start, end) is read ONCE and grouped by cache
# segment with GROUPING SETS, so "all" (the whole span), "hit" and "miss" come from one pass
# instead of three. The LATERAL subquery with OFFSET 0 keeps a probe of the composite index
# per span and its bounds out of the per-reading filter: in the join form above the planner
# evaluated the JSON fields of every reading it filtered, and on the busiest bench route's
# page (3 changes: 162 windows, 54 spans) that query took ~115 ms against ~18 ms this way.
_POSTGRES_SPANS = """
SELECT key, whole, segment, n, mean, minimum, maximum, pc[1], pc[2], pc[3] FROM (
    SELECT s.key, GROUPING(r.segment) = 1 AS whole, r.segment, count(*) AS n,
           avg({bounded}) AS mean, min(r.value) AS minimum,
           max(r.value) AS maximum,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY r.value) AS pc
    FROM (
        SELECT (e->>0)::int AS key, (e->>1)::bigint AS route_id, (e->>2)::bigint AS signal_id,
               (e->>3)::bigint AS environment_id, (e->>4)::timestamptz AS since,
               (e->>5)::timestamptz AS until, (e->>6)::int = 1 AS exclude_incidents
        FROM json_array_elements(%s::json) AS e
    ) AS s
    CROSS JOIN LATERAL (
        SELECT r.value,
               CASE WHEN r.cache_status IN ({hit}) THEN 1
                    WHEN r.cache_status IN ({miss}) THEN 2 ELSE 0 END AS segment
        FROM {reading} r
        WHERE r.route_id = s.route_id AND r.signal_id = s.signal_id
          AND r.environment_id = s.environment_id
          AND r.observed_at > s.since AND r.observed_at <= s.until{incidents}
        OFFSET 0
    ) AS r
    GROUP BY GROUPING SETS ((s.key, r.segment), (s.key))
) AS g
"""
_SPAN_SEGMENT_CODES = {1: CacheSegment.HIT.value, 2: CacheSegment.MISS.value}

# PostgreSQL, many windows sharing one span and segment (a capture of many baselines, a
# comparison of many routes): the span and segment are constants and the keys arrive as
# integer arrays, whose length the planner knows, so it range-scans the span once and
# hash-joins the keys (measured on 4,000 keys over an hour: ~35 ms, against ~100 ms when it
# probes the composite index once per key as it does for the general form).
_POSTGRES_ONE_SPAN = """
SELECT key, n, mean, minimum, maximum, pc[1], pc[2], pc[3] FROM (
    SELECT k.key, count(*) AS n, avg({bounded}) AS mean,
           min(r.value) AS minimum, max(r.value) AS maximum,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY r.value) AS pc
    FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::bigint[])
         AS k(key, route_id, signal_id, environment_id)
    JOIN {reading} r
      ON r.route_id = k.route_id AND r.signal_id = k.signal_id
     AND r.environment_id = k.environment_id
    WHERE r.observed_at > %s AND r.observed_at <= %s{segment}{incidents}
    GROUP BY k.key
) AS g
"""

# PostgreSQL, thresholds: the threshold table itself is joined to the readings with each
# threshold's window, so the planner sees real row counts and nothing is sent but `now`.
_POSTGRES_THRESHOLDS = """
SELECT key, n, mean, minimum, maximum, pc[1], pc[2], pc[3] FROM (
    SELECT s.id AS key, count(*) AS n, avg({bounded}) AS mean,
           min(r.value) AS minimum, max(r.value) AS maximum,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY r.value) AS pc
    FROM {threshold} s
    JOIN {reading} r
      ON r.route_id = s.route_id AND r.signal_id = s.signal_id
     AND r.environment_id = s.environment_id
     AND r.observed_at > %(now)s - s.window_minutes * interval '1 minute'
     AND r.observed_at <= %(now)s
    WHERE r.observed_at > %(lower)s AND r.observed_at <= %(now)s AND {segment}{only}
    GROUP BY s.id
) AS g
"""

# SQLite has no percentile_cont: the same numbers come from window functions. Each reading of
# a window gets its 0-based rank i among n; the two ranks around p * (n - 1) are picked by
# conditional aggregation and interpolated with PostgreSQL's formula (lo + frac * (hi - lo)).
# It stays in SQL (SQLite sorts each partition) instead of pulling raw readings into Python;
# the price is a sort of all matching rows, fine at the SQLite scale (development, tests,
# small installations).
_SQLITE_PERCENTILE = """
    max(CASE WHEN i = CAST({p} * (n - 1) AS INTEGER) THEN value END) AS p{name}_lo,
    max(CASE WHEN i = CAST({p} * (n - 1) AS INTEGER)
                      + ({p} * (n - 1) > CAST({p} * (n - 1) AS INTEGER)) THEN value END)
        AS p{name}_hi"""
_SQLITE_INTERPOLATE = (
    "p{name}_lo + ({p} * (n - 1) - CAST({p} * (n - 1) AS INTEGER)) * (p{name}_hi - p{name}_lo)"
)
_PERCENTILES = (("50", "0.5"), ("95", "0.95"), ("99", "0.99"))
_SQLITE_WINDOWS = (
    """
WITH s AS (
    SELECT json_extract(j.value, '$[0]') AS key,
           json_extract(j.value, '$[1]') AS route_id,
           json_extract(j.value, '$[2]') AS signal_id,
           json_extract(j.value, '$[3]') AS environment_id,
           json_extract(j.value, '$[4]') AS segment,
           json_extract(j.value, '$[5]') AS since,
           json_extract(j.value, '$[6]') AS until,
           json_extract(j.value, '$[7]') AS exclude_incidents
    FROM json_each(%s) AS j
),
ranked AS (
    SELECT s.key AS key, r.value AS value,
           ROW_NUMBER() OVER (PARTITION BY s.key ORDER BY r.value) - 1 AS i,
           COUNT(*) OVER (PARTITION BY s.key) AS n
    FROM s
    JOIN {reading} r
      ON r.route_id = s.route_id AND r.signal_id = s.signal_id
     AND r.environment_id = s.environment_id
     AND r.observed_at > s.since AND r.observed_at <= s.until
    WHERE {segment}{incidents}{bounds}
),
grouped AS (
    SELECT key, n, avg({bounded}) AS mean, min(value) AS minimum,
           max(value) AS maximum,"""
    + ",".join(_SQLITE_PERCENTILE.format(name=name, p=p) for name, p in _PERCENTILES)
    + """
    FROM ranked GROUP BY key, n
)
SELECT key, n, mean, minimum, maximum, """
    + ", ".join(_SQLITE_INTERPOLATE.format(name=name, p=p) for name, p in _PERCENTILES)
    + """
FROM grouped
"""
)


def _db_time(moment):
    """A datetime as the database compares it inside the JSON payload."""
    if connection.vendor == "postgresql":
        return moment.isoformat()
    return connection.ops.adapt_datetimefield_value(moment)  # Django's SQLite text form


def _stats_from_rows(rows, minutes):
    """{key: Stats} from (key, n, mean, min, max, p50, p95, p99) rows; `minutes` maps a key
    to its window length."""
    return {key: Stats(count, minutes[key], *values) for key, count, *values in rows}


def window_stats(windows):
    """Statistics of each `Window`, in order, from one grouped query.

    A window without readings gets `Stats(count=0)`. On PostgreSQL the query is
    percentile_cont WITHIN GROUP; on SQLite window functions give the same numbers.
    """
    windows = list(windows)
    if not windows:
        return []
    shapes = {(w.segment, w.start, w.end, w.exclude_incidents) for w in windows}
    if connection.vendor == "postgresql" and len(windows) > _MANY_WINDOWS and len(shapes) == 1:
        return _one_span_stats(windows)
    if connection.vendor == "postgresql":
        spans = {}
        for w in windows:
            spans.setdefault(_span_of(w), len(spans))
        if len(spans) <= _MANY_WINDOWS:
            return _span_stats(windows, spans)
    bounds, params = "", []
    if len(windows) > _MANY_WINDOWS:
        bounds = " AND r.observed_at > %s AND r.observed_at <= %s"
        params = [min(w.start for w in windows), max(w.end for w in windows)]
    payload = json.dumps(
        [
            [i, w.route_id, w.signal_id, w.environment_id, w.segment]
            + [_db_time(w.start), _db_time(w.end), int(w.exclude_incidents)]
            for i, w in enumerate(windows)
        ],
        separators=(",", ":"),
    )
    sql = _POSTGRES_WINDOWS if connection.vendor == "postgresql" else _SQLITE_WINDOWS
    sql = sql.format(
        reading=Reading._meta.db_table,
        bounded=_bounded("r.value" if connection.vendor == "postgresql" else "value"),
        segment=_segment_sql(),
        incidents=_incident_sql() if any(w.exclude_incidents for w in windows) else "",
        bounds=bounds,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [payload, *params])
        found = _stats_from_rows(cursor.fetchall(), [w.minutes for w in windows])
    return [found.get(i) or Stats(count=0, minutes=w.minutes) for i, w in enumerate(windows)]


def _span_of(window):
    return (
        window.route_id,
        window.signal_id,
        window.environment_id,
        window.start,
        window.end,
        window.exclude_incidents,
    )


def _span_stats(windows, spans):
    """window_stats on PostgreSQL for few spans: each span read once, all segments at once."""
    payload = json.dumps(
        [
            [key, route_id, signal_id, environment_id, _db_time(start), _db_time(end)]
            + [int(exclude_incidents)]
            for (route_id, signal_id, environment_id, start, end, exclude_incidents), key in (
                spans.items()
            )
        ],
        separators=(",", ":"),
    )
    sql = _POSTGRES_SPANS.format(
        reading=Reading._meta.db_table,
        bounded=_bounded("r.value"),
        hit=_sql_list(HIT_STATUSES),
        miss=_sql_list(MISS_STATUSES),
        incidents=_incident_sql() if any(w.exclude_incidents for w in windows) else "",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [payload])
        rows = cursor.fetchall()
    found = {}
    for key, whole, segment, *values in rows:
        segment = CacheSegment.ALL.value if whole else _SPAN_SEGMENT_CODES.get(segment)
        if segment is not None:  # UNKNOWN counts only in "all"
            found[(key, segment)] = values
    results = []
    for w in windows:
        values = found.get((spans[_span_of(w)], str(w.segment)))
        results.append(Stats(values[0], w.minutes, *values[1:]) if values else Stats(0, w.minutes))
    return results


def _one_span_stats(windows):
    first = windows[0]
    statuses = {CacheSegment.HIT: HIT_STATUSES, CacheSegment.MISS: MISS_STATUSES}.get(first.segment)
    segment = ""
    if statuses:
        segment = f" AND r.cache_status IN ({_sql_list(statuses)})"
    sql = _POSTGRES_ONE_SPAN.format(
        reading=Reading._meta.db_table,
        bounded=_bounded("r.value"),
        segment=segment,
        incidents=_incident_sql(always=True) if first.exclude_incidents else "",
    )
    columns = [
        range(len(windows)),
        [w.route_id for w in windows],
        [w.signal_id for w in windows],
        [w.environment_id for w in windows],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*map(int_array, columns), first.start, first.end])
        found = _stats_from_rows(cursor.fetchall(), [first.minutes] * len(windows))
    return [found.get(i) or Stats(count=0, minutes=first.minutes) for i in range(len(windows))]


def threshold_stats(thresholds, now, *, every_threshold=False):
    """Statistics of each threshold over its window ending at `now`, in order, one query.

    On PostgreSQL the threshold table is joined to the readings (each threshold's window,
    segment and key as stored); `every_threshold` says the list is the whole table, so no id
    filter is sent. On SQLite it is `window_stats` of the thresholds' windows.
    """
    thresholds = list(thresholds)
    if not thresholds:
        return []
    if connection.vendor != "postgresql":
        return window_stats(threshold_window(threshold, now) for threshold in thresholds)
    params = {
        "now": now,
        "lower": now - timedelta(minutes=max(t.window_minutes for t in thresholds)),
    }
    only = ""
    if not every_threshold:
        only = " AND s.id = ANY(%(ids)s::bigint[])"
        params["ids"] = int_array(threshold.pk for threshold in thresholds)
    sql = _POSTGRES_THRESHOLDS.format(
        threshold=Threshold._meta.db_table,
        reading=Reading._meta.db_table,
        bounded=_bounded("r.value"),
        segment=_segment_sql().replace("s.segment", "s.cache_segment"),
        only=only,
    )
    minutes = {threshold.pk: float(threshold.window_minutes) for threshold in thresholds}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = _stats_from_rows(cursor.fetchall(), minutes)
    return [found.get(t.pk) or Stats(count=0, minutes=float(t.window_minutes)) for t in thresholds]


def threshold_window(threshold, now):
    return Window(
        route_id=threshold.route_id,
        signal_id=threshold.signal_id,
        environment_id=threshold.environment_id,
        segment=threshold.cache_segment,
        start=now - timedelta(minutes=threshold.window_minutes),
        end=now,
    )


# ---------------------------------------------------------------------------------------------
# Statuses
# ---------------------------------------------------------------------------------------------


# A breach stays continuous across a gap between passes of up to its window plus this: the
# clock starts a pass every 60 s, so with a 1-minute window the gap is 60 s and a few
# milliseconds, and an hourly prune can hold the next pass back a little more. Without it a
# 1-minute window's breach restarted on most passes and never lasted sustain_minutes.
CLOCK_GRACE = timedelta(minutes=1)


@dataclass
class ThresholdResult:
    """One threshold evaluated at `evaluated_at`.

    `level` is what the value alone says (ok/warn/critical/no_data); `status` adds
    `sustain_minutes`: a breach that has not lasted long enough is `pending`.
    """

    threshold: Threshold
    stats: Stats
    value: float | None
    samples: int
    level: str
    status: str
    breach_started_at: datetime | None
    critical_started_at: datetime | None
    evaluated_at: datetime
    extra: dict = field(default_factory=dict)


def decide(threshold, stats, state, now):
    """The status of a threshold from its statistics and its previous state (may be None).

    A breach (warn or critical) counts once it has lasted `sustain_minutes`; until then the
    status is `pending`. Critical must last `sustain_minutes` on its own: a warn breach that
    turns critical stays `warn` until then. A breach is continuous only while the previous
    evaluation is at most one window old (plus CLOCK_GRACE); after a longer gap (the clock
    stopped) it restarts.
    Fewer readings than `min_samples` is `no_data`, which ends a breach (but not an incident).
    """
    value = stats.value(threshold.statistic)
    samples = stats.count
    if samples < threshold.min_samples or value is None:
        level = Status.NO_DATA
    else:
        level = threshold.level_for(value)

    breach_started = critical_started = None
    if level in (Status.WARN, Status.CRITICAL):
        continuous = (
            state is not None
            and state.evaluated_at is not None
            and now - state.evaluated_at
            <= timedelta(minutes=threshold.window_minutes) + CLOCK_GRACE
        )
        breach_started = (state.breach_started_at if continuous else None) or now
        if level == Status.CRITICAL:
            critical_started = (state.critical_started_at if continuous else None) or now
        sustain = timedelta(minutes=threshold.sustain_minutes)
        if critical_started is not None and now - critical_started >= sustain:
            status = Status.CRITICAL
        elif now - breach_started >= sustain:
            status = Status.WARN
        else:
            status = Status.PENDING
    else:
        status = level
    return ThresholdResult(
        threshold=threshold,
        stats=stats,
        value=value,
        samples=samples,
        level=level,
        status=status,
        breach_started_at=breach_started,
        critical_started_at=critical_started,
        evaluated_at=now,
    )


class PriorState(NamedTuple):
    """What `decide` needs of a threshold's stored state: when it was last evaluated (the
    start of the last finished pass: every pass evaluates every threshold) and its breach."""

    evaluated_at: datetime | None
    breach_started_at: datetime | None
    critical_started_at: datetime | None


def last_pass():
    """The latest finished evaluation pass's `started_at`, as a subquery."""
    return EvaluationRun.objects.finished().values("started_at")[:1]


# Above this many thresholds, reading every state is cheaper than an IN list of their ids.
_ALL_STATES_ABOVE = 500


def _prior_states(ids=None):
    """{threshold_id: PriorState} in one query (the last pass's time rides along)."""
    states = ThresholdState.objects.all()
    if ids is not None:
        states = states.filter(threshold_id__in=ids)
    rows = states.annotate(last_pass=Subquery(last_pass())).values_list(
        "threshold_id", "last_pass", "breach_started_at", "critical_started_at"
    )
    return {threshold_id: PriorState(*fields) for threshold_id, *fields in rows}


def evaluate_thresholds(thresholds, now=None):
    """Evaluate thresholds at `now` (default: the current time) without writing anything.

    One statistics query for all of them and one for their stored states (with the last
    pass's time). Returns one `ThresholdResult` per threshold, in order.
    """
    thresholds = list(thresholds)
    now = now or timezone.now()
    stats = threshold_stats(thresholds, now)
    ids = [t.pk for t in thresholds] if len(thresholds) <= _ALL_STATES_ABOVE else None
    states = _prior_states(ids) if thresholds else {}
    return [
        decide(threshold, threshold_stats_, states.get(threshold.pk), now)
        for threshold, threshold_stats_ in zip(thresholds, stats, strict=True)
    ]


# The order of a route status's entries (and of the route page's thresholds).
ROUTE_STATUS_ORDER = (
    "signal__key",
    "environment__slug",
    "statistic",
    "cache_segment",
    "window_minutes",
)


def route_status(route, now=None, *, thresholds=None, baselines=None, open_incidents=None):
    """The route's worst status and one entry per threshold (DESIGN.md `routes/{id}/status`).

    Evaluated on demand, read-only. `baseline` is the active baseline's value of the same
    statistic (p50/p95/p99/mean; None for max/count/rate), and `change_pct` the relative
    change of the current value against it, given only when the baseline window ends before
    the threshold's window starts (a baseline never overlaps the window it is compared with).

    A page that has read them already passes the route's thresholds (with signal and
    environment, in ROUTE_STATUS_ORDER), its active baselines or its open incidents, and
    saves their queries.
    """
    now = now or timezone.now()
    if thresholds is None:
        thresholds = route.thresholds.select_related("signal", "environment").order_by(
            *ROUTE_STATUS_ORDER
        )
    thresholds = list(thresholds)
    results = evaluate_thresholds(thresholds, now)
    if baselines is None:
        baselines = Baseline.objects.filter(route=route, active=True)
    # One active baseline per key and one open incident per threshold (unique constraints).
    baselines = {(b.signal_id, b.environment_id, b.cache_segment): b for b in baselines}
    if open_incidents is None:
        open_incidents = Incident.objects.open().filter(route=route)
    open_incidents = {i.threshold_id: i for i in open_incidents}
    entries = []
    for result in results:
        threshold = result.threshold
        baseline = baselines.get(
            (threshold.signal_id, threshold.environment_id, threshold.cache_segment)
        )
        baseline_value = change_pct = None
        if baseline is not None and threshold.statistic in ("p50", "p95", "p99", "mean"):
            baseline_value = getattr(baseline, threshold.statistic)
            window_start = now - timedelta(minutes=threshold.window_minutes)
            if baseline.window_end <= window_start:
                change_pct = percent_change(baseline_value, result.value)
        incident = open_incidents.get(threshold.pk)
        entries.append(
            {
                "threshold": threshold.pk,
                "signal": threshold.signal.key,
                "environment": threshold.environment.slug,
                "statistic": threshold.statistic,
                "cache_segment": threshold.cache_segment,
                "window_minutes": threshold.window_minutes,
                "value": result.value,
                "samples": result.samples,
                "min_samples": threshold.min_samples,
                "warn": threshold.warn,
                "critical": threshold.critical,
                "status": result.status,
                "breach_started_at": result.breach_started_at,
                "baseline": baseline_value,
                "change_pct": change_pct,
                "incident": _incident_summary(incident, now) if incident else None,
            }
        )
    return {
        "route": route.pk,
        "status": worst_status(entry["status"] for entry in entries),
        "evaluated_at": now,
        "thresholds": entries,
    }


def _incident_summary(incident, now):
    return {
        "id": incident.pk,
        "level": incident.level,
        "peak_value": incident.peak_value,
        "opened_at": incident.opened_at,
        "acknowledged_at": incident.acknowledged_at,
        "silenced_until": incident.silenced_until
        if incident.silenced_until and incident.silenced_until > now
        else None,
    }


def percent_change(before, after):
    """(after - before) / |before| * 100, or None when it is undefined."""
    if before is None or after is None or before == 0:
        return None
    return (after - before) / abs(before) * 100


def is_worse(threshold_or_signal, value, than):
    """Whether `value` is worse than `than` in the signal's direction."""
    if threshold_or_signal.direction == Signal.Direction.LOWER_IS_WORSE:
        return value < than
    return value > than


# ---------------------------------------------------------------------------------------------
# Evaluation runs and incidents
# ---------------------------------------------------------------------------------------------


class ThresholdSpec(NamedTuple):
    """The fields of a Threshold that evaluation needs, without a model instance per row
    (4,000 Threshold models with their history hooks cost ~70 ms to load)."""

    pk: int
    route_id: int
    signal_id: int
    environment_id: int
    statistic: str
    cache_segment: str
    window_minutes: int
    warn: float
    critical: float
    min_samples: int
    sustain_minutes: int
    direction: str

    level_for = Threshold.level_for

    @classmethod
    def all(cls):
        rows = Threshold.objects.order_by("pk").values_list(*cls._fields)
        return [cls._make(row) for row in rows]


def run_evaluation(now=None):
    """One pass: evaluate every threshold, store the states that changed and incidents.

    Statistics are computed first, outside any lock (one query). Then, in one transaction that
    holds the evaluation lock, the stored states are read and incidents are opened, escalated
    or resolved from them: a second pass that overlaps waits and then sees the first pass's
    incident. The partial unique constraint incident_one_open_per_threshold backs this up.
    On PostgreSQL the lock is one transaction-level advisory lock (EVALUATION_LOCK) rather
    than a row lock per state: locking 4,000 rows writes 4,000 tuple headers. On SQLite the
    transaction is BEGIN IMMEDIATE (settings), which serialises writers the same way.

    Only the states that changed are written (`states_changed` on the run): a state holds
    the status, value and breach, not the time of the pass, which is the run's `started_at`
    (breach continuity reads the last finished run). The run row is finished in the same
    transaction, so the next pass sees states and run together. A pass that finds a later
    pass already finished stores nothing (its results are older). Re-running at the same
    `now` without new readings writes no state at all (idempotent).
    """
    started = time.perf_counter()
    now = now or timezone.now()
    run = EvaluationRun.objects.create(started_at=now)
    thresholds = ThresholdSpec.all()
    stats = threshold_stats(thresholds, now, every_threshold=True)
    pairs = list(zip(thresholds, stats, strict=True))

    with transaction.atomic():
        take_evaluation_lock()
        previous = EvaluationRun.objects.finished().values_list("started_at", flat=True).first()
        if previous is not None and previous > now:
            # A pass that started later has stored newer states. Every pass stores nothing
            # until `now` passes it: say so (a host clock that stepped back, a pass run by
            # hand with a `now` in the future).
            logger.warning(
                "evaluation at %s stores nothing: a pass started at %s has finished",
                now.isoformat(),
                previous.isoformat(),
            )
            pairs = []
            run.superseded_by = previous  # for summary_line; not stored
        stored = _stored_states() if pairs else {}
        results = [
            decide(threshold, threshold_stats_, _prior(stored.get(threshold.pk), previous), now)
            for threshold, threshold_stats_ in _not_deleted(pairs, stored)
        ]
        opened, escalated, resolved = _apply_incidents(results, now)
        changed = [
            result for result in results if _as_stored(result) != stored.get(result.threshold.pk)
        ]
        _store_states(changed, now, stored)

        counts = Counter(result.status for result in results)
        run.finished_at = timezone.now()
        run.duration_ms = (time.perf_counter() - started) * 1000
        run.thresholds = len(results)
        run.states_changed = len(changed)
        run.statuses = {status.value: counts.get(status, 0) for status in STATUS_ORDER[::-1]}
        run.incidents_opened = opened
        run.incidents_escalated = escalated
        run.incidents_resolved = resolved
        run.save()
    return run


class StoredState(NamedTuple):
    """A ThresholdState as a pass compares it: a result that equals it is not written."""

    status: str
    value: float | None
    samples: int
    breach_level: str
    breach_started_at: datetime | None
    critical_started_at: datetime | None


def _stored_states():
    rows = ThresholdState.objects.values_list("threshold_id", *StoredState._fields)
    return {threshold_id: StoredState(*fields) for threshold_id, *fields in rows}


def _not_deleted(pairs, stored):
    """The (threshold, statistics) pairs without the thresholds deleted since the pass read
    them (a state or incident pointing at nothing would fail the commit). Read under the
    lock: a threshold with a stored state still exists, since a delete waits for the lock
    (`wait_for_evaluation`); only new thresholds are looked up."""
    new = [threshold.pk for threshold, _ in pairs if threshold.pk not in stored]
    if not new:
        return pairs
    present = set(Threshold.objects.filter(pk__in=new).values_list("pk", flat=True))
    return [pair for pair in pairs if pair[0].pk in stored or pair[0].pk in present]


def _prior(stored, previous):
    if stored is None:  # first evaluation of this threshold
        return None
    return PriorState(previous, stored.breach_started_at, stored.critical_started_at)


def _as_stored(result):
    return StoredState(
        result.status,
        result.value,
        result.samples,
        _breach_level(result),
        result.breach_started_at,
        result.critical_started_at,
    )


class OpenIncident(NamedTuple):
    pk: int
    level: str
    peak_value: float | None
    opened_at: datetime
    escalated_at: datetime | None
    silenced_until: datetime | None


def _apply_incidents(results, now):
    """Open, escalate and resolve incidents from the results; (opened, escalated, resolved).

    A bounded number of queries however many incidents change: one read, one UPDATE each
    for escalations, resolutions and new peaks, the inserts (`_open_incidents`), and, when
    something changed, the notifications of the changes (`record_incident_events`: one
    read of the owners' webhook URLs, one insert), in this same transaction (an outbox).
    An escalation of an incident silenced at `now` is not notified; openings and
    resolutions always are.
    """
    open_incidents = {
        threshold_id: OpenIncident(*fields)
        for threshold_id, *fields in Incident.objects.open().values_list(
            "threshold_id", *OpenIncident._fields
        )
    }
    new, escalate, resolve, peaks, events = [], [], [], [], []
    for result in results:
        incident = open_incidents.get(result.threshold.pk)
        if result.status in (Status.WARN, Status.CRITICAL):
            if incident is None:
                new.append(
                    Incident(
                        threshold_id=result.threshold.pk,
                        route_id=result.threshold.route_id,
                        level=result.status,
                        peak_value=result.value,
                        opened_at=now,
                    )
                )
                continue
            peak = incident.peak_value
            if result.value is not None and is_worse(result.threshold, result.value, peak):
                peak = result.value
                peaks.append(Incident(pk=incident.pk, peak_value=result.value))
            if result.status == Status.CRITICAL and incident.level == Status.WARN:
                escalate.append(incident.pk)  # in place: the same incident, now critical
                if not (incident.silenced_until and incident.silenced_until > now):
                    events.append(
                        _incident_event(
                            Notification.Event.ESCALATED,
                            incident,
                            result,
                            level=Status.CRITICAL,
                            peak_value=peak,
                            escalated_at=now,
                        )
                    )
        elif result.level == Status.OK and incident is not None:
            resolve.append(incident.pk)
            events.append(
                _incident_event(Notification.Event.RESOLVED, incident, result, resolved_at=now)
            )
    if escalate:
        Incident.objects.filter(pk__in=escalate).update(level=Status.CRITICAL, escalated_at=now)
    if resolve:
        Incident.objects.filter(pk__in=resolve).update(resolved_at=now)
    Incident.objects.bulk_update(peaks, ["peak_value"], batch_size=1000)
    results_by_threshold = {result.threshold.pk: result for result in results}
    opened = _open_incidents(new)
    events += [
        IncidentEvent(
            event=Notification.Event.OPENED,
            incident_id=incident.pk,
            level=incident.level,
            peak_value=incident.peak_value,
            opened_at=incident.opened_at,
            escalated_at=None,
            resolved_at=None,
            threshold=results_by_threshold[incident.threshold_id].threshold,
            value=incident.peak_value,
        )
        for incident in opened
    ]
    record_incident_events(events, now)
    return len(opened), len(escalate), len(resolve)


def _incident_event(event, incident, result, **changed):
    """An event of an open incident: the incident as read, with what this pass `changed`."""
    fields = {
        "incident_id": incident.pk,
        "level": incident.level,
        "peak_value": incident.peak_value,
        "opened_at": incident.opened_at,
        "escalated_at": incident.escalated_at,
        "resolved_at": None,
    }
    return IncidentEvent(
        event=event, threshold=result.threshold, value=result.value, **{**fields, **changed}
    )


# Any constant both runs agree on: "dqeval" in ASCII.
EVALUATION_LOCK = 0x6471_6576_616C


def take_evaluation_lock():
    """Serialise the write phase of evaluation runs (held until the transaction ends)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [EVALUATION_LOCK])


def wait_for_evaluation(sender, **kwargs):
    """pre_delete of Threshold (connected in apps.py): a delete takes the evaluation lock, so
    it waits for a pass that is writing, and a pass that writes after it sees it. Without
    it, a threshold deleted mid-pass rolled the whole pass back at commit (its new incident
    or state pointed at nothing)."""
    take_evaluation_lock()


_STATE_COLUMNS = (*StoredState._fields, "changed_at")
# PostgreSQL: one UPDATE from one array per column, each sent as one text parameter
# (signals_app.sql). Measured on 4,000 states: Django's bulk_update/upsert renders 4,000 × 8
# parameters into the SQL text on the client (~100 ms); one JSON parameter ~120 ms under load,
# mostly casting JSON fields on the server; arrays ~80 ms, ~50 ms with the table's fillfactor
# at 50 (migration 0006), which lets PostgreSQL update the rows in place (HOT). A pass sends
# only the states that changed.
_POSTGRES_STATE_UPDATE = """
UPDATE {table} AS st
SET status = v.status, value = v.value, samples = v.samples, breach_level = v.breach_level,
    breach_started_at = v.breach_started_at, critical_started_at = v.critical_started_at,
    {changed_at} = %s
FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::int[], %s::text[],
            %s::timestamptz[], %s::timestamptz[])
     AS v(threshold_id, status, value, samples, breach_level, breach_started_at,
          critical_started_at)
WHERE st.threshold_id = v.threshold_id
"""


def _store_states(results, now, stored):
    """Write the states of `results`: a row for a threshold `stored` has not seen yet, an
    update for the others (the caller holds the evaluation lock)."""
    ThresholdState.objects.bulk_create(
        [_state_row(result, now) for result in results if result.threshold.pk not in stored],
        batch_size=1000,
    )
    updated = [result for result in results if result.threshold.pk in stored]
    if not updated:
        return
    if connection.vendor != "postgresql":
        ThresholdState.objects.bulk_create(
            [_state_row(result, now) for result in updated],
            update_conflicts=True,
            unique_fields=["threshold"],
            update_fields=list(_STATE_COLUMNS),
            batch_size=500,
        )
        return
    params = [
        now,
        int_array(result.threshold.pk for result in updated),
        text_array(result.status for result in updated),
        float_array(result.value for result in updated),
        int_array(result.samples for result in updated),
        text_array(_breach_level(result) for result in updated),
        timestamp_array(result.breach_started_at for result in updated),
        timestamp_array(result.critical_started_at for result in updated),
    ]
    with connection.cursor() as cursor:
        sql = _POSTGRES_STATE_UPDATE.format(
            table=ThresholdState._meta.db_table,
            changed_at=ThresholdState._meta.get_field("changed_at").column,
        )
        cursor.execute(sql, params)


def _state_row(result, now):
    return ThresholdState(
        threshold_id=result.threshold.pk, changed_at=now, **_as_stored(result)._asdict()
    )


def _breach_level(result):
    return result.level if result.level in (Status.WARN, Status.CRITICAL) else ""


def _open_incidents(incidents):
    """Insert new incidents; if one already exists (a concurrent run won), keep that one.
    Returns the incidents this pass opened, with their ids (bulk_create returns them on
    PostgreSQL and on SQLite >= 3.35; Django 6 needs 3.37)."""
    if not incidents:
        return []
    try:
        with transaction.atomic():
            Incident.objects.bulk_create(incidents)
        return incidents
    except IntegrityError:
        pass
    opened = []
    for incident in incidents:
        try:
            with transaction.atomic():
                incident.save(force_insert=True)
            opened.append(incident)
        except IntegrityError:
            logger.info("incident for threshold %s already open", incident.threshold_id)
    return opened


def summary_line(run):
    """One line for logs and the `evaluate` command."""
    superseded_by = getattr(run, "superseded_by", None)
    if superseded_by is not None:
        return (
            f"evaluation at {run.started_at.isoformat()} skipped, stored nothing: a pass "
            f"started later, at {superseded_by.isoformat()}, has finished"
        )
    statuses = " ".join(f"{status}={count}" for status, count in run.statuses.items())
    return (
        f"evaluated {run.thresholds} thresholds in {run.duration_ms:.0f} ms "
        f"({run.states_changed} states changed): {statuses}; "
        f"incidents opened={run.incidents_opened} escalated={run.incidents_escalated} "
        f"resolved={run.incidents_resolved}"
    )


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------

SEGMENTS = (CacheSegment.ALL, CacheSegment.HIT, CacheSegment.MISS)
DEFAULT_BASELINE_MINUTES = 60
# Serialises captures on PostgreSQL: deactivate-then-insert must not interleave with another
# capture of the same key (the partial unique index baseline_one_active_per_key would refuse
# the second insert). Captures are rare, one lock for all keys is enough.
_CAPTURE_LOCK_ID = 0x44510001


@dataclass(frozen=True)
class BaselineKey:
    route_id: int
    signal_id: int
    environment_id: int
    cache_segment: str


@dataclass
class CaptureResult:
    baselines: list
    skipped: list  # BaselineKeys without readings in the window
    start: datetime
    end: datetime


def capture_window(*, start=None, end=None, minutes=None, now=None):
    """(start, end) of a capture: explicit, or `minutes` (default 60) ending at `end` or now.

    Raises ValueError when the window is empty, reaches into the future, or starts before
    2000-01-01 (year 1 overflowed `end - minutes`).
    """
    now = now or timezone.now()
    end = end or now
    if start is None:
        try:
            start = end - timedelta(minutes=minutes or DEFAULT_BASELINE_MINUTES)
        except OverflowError:
            start = EARLIEST_TIME - timedelta(microseconds=1)  # refused just below
    if start < EARLIEST_TIME:
        raise ValueError(f"the window must start on or after {EARLIEST_TIME.isoformat()}")
    if start >= end:
        raise ValueError("the window must end after it starts")
    if end > now:
        raise ValueError("the window must not end in the future")
    return start, end


def capture_baselines(keys, *, start, end, user=None, note="", exclude_incidents=False, now=None):
    """Capture one baseline per key over the window (start, end], in one statistics query.

    Each new baseline becomes the active one for its key; the previous active baseline is kept
    as history with active=False. Keys without readings in the window are skipped (an empty
    baseline must not replace a measured one). With `exclude_incidents`, readings observed
    while an incident of the same route and environment was open are left out.
    Returns a `CaptureResult`.
    """
    keys = list(dict.fromkeys(keys))
    stats = window_stats(
        Window(
            route_id=key.route_id,
            signal_id=key.signal_id,
            environment_id=key.environment_id,
            segment=key.cache_segment,
            start=start,
            end=end,
            exclude_incidents=exclude_incidents,
        )
        for key in keys
    )
    captured_at = now or timezone.now()
    new, skipped = [], []
    for key, key_stats in zip(keys, stats, strict=True):
        if key_stats.count == 0:
            skipped.append(key)
            continue
        new.append(
            Baseline(
                route_id=key.route_id,
                signal_id=key.signal_id,
                environment_id=key.environment_id,
                cache_segment=key.cache_segment,
                window_start=start,
                window_end=end,
                count=key_stats.count,
                p50=key_stats.p50,
                p95=key_stats.p95,
                p99=key_stats.p99,
                mean=key_stats.mean,
                excludes_incidents=exclude_incidents,
                captured_at=captured_at,
                captured_by=user if getattr(user, "pk", None) else None,
                note=note,
                active=True,
            )
        )
    if new:
        _store_baselines(new, user, note)
    return CaptureResult(baselines=new, skipped=skipped, start=start, end=end)


# PostgreSQL: the new baselines are inserted from one JSON parameter. Django's bulk_create
# renders 4,000 × 16 parameters into the SQL text on the client, and simple_history's bulk
# helpers build a model per row: 2.3 s for 4,000 baselines, against ~0.2 s this way.
_POSTGRES_BASELINE_INSERT = """
INSERT INTO {table} (route_id, signal_id, environment_id, cache_segment, window_start,
                     window_end, count, p50, p95, p99, mean, excludes_incidents, captured_at,
                     captured_by_id, note, active)
SELECT (e->>0)::bigint, (e->>1)::bigint, (e->>2)::bigint, e->>3, %(start)s, %(end)s,
       (e->>4)::int, (e->>5)::float8, (e->>6)::float8, (e->>7)::float8, (e->>8)::float8,
       %(excludes)s, %(captured_at)s, %(user)s, %(note)s, true
FROM json_array_elements(%(rows)s::json) AS e
RETURNING id, route_id, signal_id, environment_id, cache_segment
"""


def _store_baselines(new, user, note):
    """Deactivate the active baselines of the captured keys, insert the new ones, and record
    both in the audit history (simple_history's table), in one transaction."""
    captured = {(b.route_id, b.signal_id, b.environment_id, b.cache_segment) for b in new}
    history_user_id = user.pk if getattr(user, "pk", None) else None
    first = new[0]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CAPTURE_LOCK_ID])
        active = Baseline.objects.filter(active=True, route_id__in={b.route_id for b in new})
        previous = [
            pk
            for pk, *key in active.select_for_update().values_list(
                "pk", "route_id", "signal_id", "environment_id", "cache_segment"
            )
            if tuple(key) in captured
        ]
        if previous:
            ids_sql, ids_params = _ids_in("id", previous)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {Baseline._meta.db_table} SET active = %s WHERE {ids_sql}",
                    [False, *ids_params],
                )
            _record_history(previous, "~", history_user_id, "replaced by a new capture")
        if connection.vendor == "postgresql":
            rows = [
                [b.route_id, b.signal_id, b.environment_id, b.cache_segment, b.count]
                + [b.p50, b.p95, b.p99, b.mean]
                for b in new
            ]
            with connection.cursor() as cursor:
                cursor.execute(
                    _POSTGRES_BASELINE_INSERT.format(table=Baseline._meta.db_table),
                    {
                        "rows": json.dumps(rows, separators=(",", ":")),
                        "start": first.window_start,
                        "end": first.window_end,
                        "excludes": first.excludes_incidents,
                        "captured_at": first.captured_at,
                        "user": history_user_id,
                        "note": note,
                    },
                )
                ids = {tuple(key): pk for pk, *key in cursor.fetchall()}
            for baseline in new:
                key = (baseline.route_id, baseline.signal_id, baseline.environment_id)
                baseline.pk = ids[(*key, baseline.cache_segment)]
        else:
            Baseline.objects.bulk_create(new, batch_size=500)
        _record_history([b.pk for b in new], "+", history_user_id, note, date=first.captured_at)


def _record_history(ids, history_type, user_id, reason, date=None):
    """Copy rows of Baseline into its simple_history table (what `save()` would have done)."""
    history = Baseline.history.model
    own = {field.column for field in Baseline._meta.concrete_fields}
    columns = [f.column for f in history._meta.concrete_fields if f.column in own]
    quote = connection.ops.quote_name
    copied = ", ".join(quote(column) for column in columns)
    ids_sql, ids_params = _ids_in("id", ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(history._meta.db_table)} ({copied}, history_date, "
            f"history_change_reason, history_type, history_user_id) "
            f"SELECT {copied}, %s, %s, %s, %s FROM {quote(Baseline._meta.db_table)} "
            f"WHERE {ids_sql}",
            [date or timezone.now(), reason, history_type, user_id, *ids_params],
        )


def _ids_in(column, ids):
    """`column` among `ids` as one parameter: an array on PostgreSQL, JSON on SQLite (an IN
    list of 4,000 placeholders costs ~40 ms to render on the client)."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", [int_array(ids)]
    return f"{column} IN (SELECT value FROM json_each(%s))", [json.dumps(list(ids))]


def baseline_keys(routes, *, signals=None, environments=None, segments=SEGMENTS):
    """Every key of some routes × signals × environments × segments (defaults: all signals,
    production)."""
    signal_ids = (
        [s.pk for s in signals] if signals else list(Signal.objects.values_list("pk", flat=True))
    )
    environment_ids = (
        [e.pk for e in environments]
        if environments
        else list(Environment.objects.filter(slug="production").values_list("pk", flat=True))
    )
    return [
        BaselineKey(route.pk, signal_id, environment_id, segment)
        for route in routes
        for signal_id in signal_ids
        for environment_id in environment_ids
        for segment in segments
    ]


# ---------------------------------------------------------------------------------------------
# Comparisons: before vs after a change, active baseline vs now
# ---------------------------------------------------------------------------------------------

NOISE_BAND_PCT = 5.0
MIN_COMPARISON_SAMPLES = 20
CACHE_MIX_POINTS = 10.0
# The signal that measures the cache itself: its mix moving is the result, not a confounder.
CACHE_SIGNAL_KEY = "cache_hit"


class Verdict:
    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"


class Reason:
    TOO_FEW_SAMPLES = "too_few_samples"
    CACHE_MIX_MOVED = "cache_mix_moved"
    CONFOUNDED = "confounded"
    NO_WINDOW = "no_window"


@dataclass(frozen=True)
class ComparisonSettings:
    noise_band_pct: float = NOISE_BAND_PCT
    min_samples: int = MIN_COMPARISON_SAMPLES
    cache_mix_points: float = CACHE_MIX_POINTS

    def as_dict(self):
        return {
            "noise_band_pct": self.noise_band_pct,
            "min_samples": self.min_samples,
            "cache_mix_points": self.cache_mix_points,
        }


def verdict_statistics(signal):
    """What decides a verdict: median and tail for durations/counts/scores, the mean for
    ratios (a ratio reading is often 0 or 1, so its percentiles say little)."""
    if signal.kind == Signal.Kind.RATIO:
        return ("mean",)
    return ("p50", "p95")


def _summary(stats):
    """samples, p50, p95, mean of a Stats or a Baseline."""
    return {
        "samples": stats.count,
        "p50": stats.p50,
        "p95": stats.p95,
        "mean": stats.mean,
    }


def _hit_ratio(hit, miss):
    known = hit.count + miss.count
    return hit.count / known if known else None


def _direction_of(signal, before, after, noise_band_pct, samples=None):
    """better / worse / same for one statistic.

    Within the noise band (relative change) it is the same. For ratios a move must also be
    larger than chance: two standard errors of the difference of two proportions with the
    pooled rate (a two-proportion z-test at ~95%), so 0 errors in 180 requests before and 1
    after is not a regression. For ratio readings that are not 0/1 this overestimates the
    variance, which only makes the verdict more careful."""
    if before is None or after is None:
        return None
    if before == 0:
        if after == 0:
            return "same"
    elif abs(after - before) / abs(before) * 100 <= noise_band_pct:
        return "same"
    if signal.kind == Signal.Kind.RATIO and samples and 0 <= before <= 1 and 0 <= after <= 1:
        n_before, n_after = samples
        pooled = (before * n_before + after * n_after) / (n_before + n_after)
        error = math.sqrt(pooled * (1 - pooled) * (1 / n_before + 1 / n_after))
        if abs(after - before) <= 1.96 * error:
            return "same"
    return "worse" if is_worse(signal, after, before) else "better"


def _segment_entry(signal, segment, before, after, *, confounded, mix_moved, settings):
    before_summary, after_summary = _summary(before), _summary(after)
    entry = {
        "segment": segment,
        "before": before_summary,
        "after": after_summary,
        "delta": {},
        "delta_pct": {},
    }
    for name in ("p50", "p95", "mean"):
        b, a = before_summary[name], after_summary[name]
        entry["delta"][name] = a - b if a is not None and b is not None else None
        entry["delta_pct"][name] = percent_change(b, a)

    if confounded:
        verdict, reason = Verdict.INCONCLUSIVE, Reason.CONFOUNDED
        detail = "another change on this route and environment overlaps the windows"
    elif before.count < settings.min_samples or after.count < settings.min_samples:
        verdict, reason = Verdict.INCONCLUSIVE, Reason.TOO_FEW_SAMPLES
        detail = (
            f"{before.count} readings before and {after.count} after; "
            f"at least {settings.min_samples} each are needed"
        )
    elif segment == CacheSegment.ALL and mix_moved is not None:
        verdict, reason = Verdict.INCONCLUSIVE, Reason.CACHE_MIX_MOVED
        detail = (
            f"the cache hit ratio moved {mix_moved:+.1f} points "
            f"(more than {settings.cache_mix_points:g}); compare the hit and miss segments"
        )
    else:
        moves = {
            name: _direction_of(
                signal,
                before_summary[name],
                after_summary[name],
                settings.noise_band_pct,
                samples=(before.count, after.count),
            )
            for name in verdict_statistics(signal)
        }
        reason = None
        if "worse" in moves.values():
            verdict = Verdict.REGRESSED
        elif "better" in moves.values():
            verdict = Verdict.IMPROVED
        else:
            verdict = Verdict.UNCHANGED
        detail = ", ".join(
            f"{name} {entry['delta_pct'][name]:+.1f}%"
            if entry["delta_pct"][name] is not None
            else f"{name} {entry['delta'][name]:+g}"
            for name in moves
        )
    entry.update(verdict=verdict, reason=reason, detail=detail)
    return entry


def _signal_entry(signal, environment, before, after, *, mix, confounded, settings, extra=None):
    """One signal. `before`/`after` map segment -> Stats (a Baseline on the before side of a
    baseline comparison; only the segments of `before` are compared); `mix` is
    ((hit, miss) before, (hit, miss) after) Stats giving the cache hit ratios."""
    (hit_before, miss_before), (hit_after, miss_after) = mix
    ratio_before = _hit_ratio(hit_before, miss_before)
    ratio_after = _hit_ratio(hit_after, miss_after)
    moved = None
    if ratio_before is not None and ratio_after is not None:
        moved_points = (ratio_after - ratio_before) * 100
        if abs(moved_points) > settings.cache_mix_points and signal.key != CACHE_SIGNAL_KEY:
            moved = moved_points
    segments = [
        _segment_entry(
            signal,
            segment,
            before[segment],
            after[segment],
            confounded=confounded,
            mix_moved=moved,
            settings=settings,
        )
        for segment in SEGMENTS
        if segment in before
    ]
    headline = next((s for s in segments if s["segment"] == CacheSegment.ALL), None)
    if headline is not None:
        verdict, reason, detail = headline["verdict"], headline["reason"], headline["detail"]
    else:
        verdict, reason = combine_verdicts(segments)
        detail = "; ".join(f"{s['segment']}: {s['verdict']}" for s in segments)
    entry = {
        "signal": signal.key,
        "unit": signal.unit,
        "direction": signal.direction,
        "environment": environment.slug,
        **(extra or {}),
        "cache_hit_ratio": {
            "before": ratio_before,
            "after": ratio_after,
            "moved_points": (ratio_after - ratio_before) * 100
            if ratio_before is not None and ratio_after is not None
            else None,
        },
        "verdict": verdict,
        "reason": reason,
        "detail": detail,
        "segments": segments,
    }
    return entry


def combine_verdicts(entries):
    """One verdict of several: regressed if any regressed, else inconclusive if any is,
    else improved if any improved, else unchanged. Never hides a regression or a doubt."""
    verdicts = [entry["verdict"] for entry in entries]
    if not verdicts:
        return Verdict.INCONCLUSIVE, Reason.TOO_FEW_SAMPLES
    if Verdict.REGRESSED in verdicts:
        return Verdict.REGRESSED, None
    for entry in entries:
        if entry["verdict"] == Verdict.INCONCLUSIVE:
            return Verdict.INCONCLUSIVE, entry["reason"]
    if Verdict.IMPROVED in verdicts:
        return Verdict.IMPROVED, None
    return Verdict.UNCHANGED, None


def _change_summary(change):
    return {
        "id": change.pk,
        "variable": change.variable,
        "applied_at": change.applied_at,
        "release": change.release,
    }


def compare_change(change, minutes=60, now=None, *, settings=None):
    """Before vs after a change: windows of equal length on both sides of `applied_at`.

    A reading observed exactly at `applied_at` counts as before, so a change at time t
    splits readings into <= t and > t, and a window (start, end] is mixed by a change only
    when start < t < end: that is when another change confounds a comparison.

    before = (applied_at - L, applied_at], after = (applied_at, applied_at + L] with
    L = `minutes`, shortened to the time elapsed since applied_at while the after window is
    still filling (both sides keep the same length). Per signal with readings and per cache
    segment: samples, p50, p95, mean, delta, delta %, cache hit ratio and a verdict; another
    change on the same route and environment inside the windows confounds it.
    """
    (result,) = compare_changes([change], minutes, now, settings=settings)
    return result


def compare_changes(changes, minutes=60, now=None, *, settings=None):
    """`compare_change` for many changes (a route page's recent changes) in three queries:
    overlapping changes, signals, and one statistics query for every window."""
    settings = settings or ComparisonSettings()
    now = now or timezone.now()
    changes = list(changes)
    plans = []
    for change in changes:
        elapsed = (now - change.applied_at).total_seconds() / 60
        length = max(0.0, min(float(minutes), elapsed))
        try:
            start = change.applied_at - timedelta(minutes=length)
        except OverflowError:  # a date of year 1, stored before applied_at was bounded
            length, start = 0.0, change.applied_at
        plans.append((change, length, start, change.applied_at + timedelta(minutes=length)))
    live = [plan for plan in plans if plan[1] > 0]
    nearby, signals = [], []
    if live:
        nearby = list(
            Change.objects.filter(
                route_id__in={c.route_id for c, *_ in live},
                applied_at__gt=min(start for *_, start, _ in live),
                applied_at__lt=max(end for *_, end in live),
            ).order_by("applied_at")
        )
        signals = list(Signal.objects.all())
    windows = [
        Window(change.route_id, sig.pk, change.environment_id, segment, *bounds)
        for change, _, start, end in live
        for sig in signals
        for bounds in ((start, change.applied_at), (change.applied_at, end))
        for segment in SEGMENTS
    ]
    stats = iter(window_stats(windows))

    results = []
    for change, length, start, end in plans:
        result = {
            "kind": "change",
            "change": {
                **_change_summary(change),
                "route": change.route_id,
                "environment": change.environment.slug,
            },
            "minutes": length,
            "minutes_requested": minutes,
            "before": {"start": start, "end": change.applied_at},
            "after": {"start": change.applied_at, "end": end},
            **settings.as_dict(),
        }
        results.append(result)
        if length == 0:
            result.update(
                confounded_by=[],
                signals=[],
                verdict=Verdict.INCONCLUSIVE,
                reason=Reason.NO_WINDOW,
                detail=(
                    "the change is not applied yet; there is no after window"
                    if change.applied_at >= now
                    else f"applied_at {change.applied_at.date()} is too early for a window"
                ),
            )
            continue
        others = [
            other
            for other in nearby
            if other.pk != change.pk
            and other.route_id == change.route_id
            and other.environment_id == change.environment_id
            and start < other.applied_at < end
        ]
        entries = []
        for sig in signals:
            before = {segment: next(stats) for segment in SEGMENTS}
            after = {segment: next(stats) for segment in SEGMENTS}
            if before[CacheSegment.ALL].count == 0 and after[CacheSegment.ALL].count == 0:
                continue  # this route does not report this signal
            mix = tuple(
                (side[CacheSegment.HIT], side[CacheSegment.MISS]) for side in (before, after)
            )
            entries.append(
                _signal_entry(
                    sig,
                    change.environment,
                    before,
                    after,
                    mix=mix,
                    confounded=bool(others),
                    settings=settings,
                )
            )
        verdict, reason = combine_verdicts(entries)
        result.update(
            confounded_by=[_change_summary(other) for other in others],
            signals=entries,
            verdict=verdict,
            reason=reason,
            detail=_headline_detail(entries, others),
        )
    return results


def _headline_detail(entries, others):
    if others:
        names = ", ".join(
            f"#{o.pk} {o.variable!r} at {o.applied_at:%Y-%m-%d %H:%M}" for o in others
        )
        return f"confounded by {names}"
    return "; ".join(f"{e['signal']}: {e['verdict']}" for e in entries) or "no readings"


def compare_to_baseline(route, minutes=60, now=None, *, environment=None, settings=None):
    """The route's active baselines vs the last `minutes`, per signal, environment, segment.

    The current window is (now - minutes, now], moved to start at the baseline's end when they
    would overlap: a baseline never includes the window it is compared with. A change on the
    route and environment applied inside either window confounds the comparison (a change
    between the two windows is what is being judged). Three queries: baselines, statistics
    (current window per segment plus the baseline window's cache mix), changes.
    """
    settings = settings or ComparisonSettings()
    now = now or timezone.now()
    baselines = Baseline.objects.filter(route=route, active=True).select_related(
        "signal", "environment"
    )
    if environment is not None:
        baselines = baselines.filter(environment=environment)
    groups = {}
    for baseline in baselines.order_by("signal__key", "environment__slug", "cache_segment"):
        key = (baseline.signal, baseline.environment)
        groups.setdefault(key, {})[baseline.cache_segment] = baseline

    windows = []
    for (sig, env), by_segment in groups.items():
        reference = max(by_segment.values(), key=lambda b: b.window_end)
        start = min(now, max(now - timedelta(minutes=minutes), reference.window_end))
        # current all/hit/miss, then the baseline window's hit/miss for its cache mix
        windows += [Window(route.pk, sig.pk, env.pk, seg, start, now) for seg in SEGMENTS]
        windows += [
            Window(
                route.pk,
                sig.pk,
                env.pk,
                seg,
                reference.window_start,
                reference.window_end,
                exclude_incidents=reference.excludes_incidents,
            )
            for seg in (CacheSegment.HIT, CacheSegment.MISS)
        ]
    stats = iter(window_stats(windows))
    changes = list(Change.objects.filter(route=route).order_by("applied_at")) if groups else []

    entries = []
    for (sig, env), by_segment in groups.items():
        current = {segment: next(stats) for segment in SEGMENTS}
        base_hit, base_miss = next(stats), next(stats)
        reference = max(by_segment.values(), key=lambda b: b.window_end)
        start = min(now, max(now - timedelta(minutes=minutes), reference.window_end))
        windows_of_comparison = [(b.window_start, b.window_end) for b in by_segment.values()]
        windows_of_comparison.append((start, now))
        overlapping = [
            change
            for change in changes
            if change.environment_id == env.pk
            and any(lo < change.applied_at < hi for lo, hi in windows_of_comparison)
        ]
        entry = _signal_entry(
            sig,
            env,
            by_segment,
            current,
            mix=((base_hit, base_miss), (current[CacheSegment.HIT], current[CacheSegment.MISS])),
            confounded=bool(overlapping),
            settings=settings,
            extra={
                "baselines": [
                    {
                        "id": b.pk,
                        "cache_segment": b.cache_segment,
                        "window_start": b.window_start,
                        "window_end": b.window_end,
                        "captured_at": b.captured_at,
                        "note": b.note,
                    }
                    for b in by_segment.values()
                ],
                "window": {
                    "start": start,
                    "end": now,
                    "minutes": (now - start).total_seconds() / 60,
                },
                "confounded_by": [_change_summary(change) for change in overlapping],
            },
        )
        if start >= now:
            entry.update(
                verdict=Verdict.INCONCLUSIVE,
                reason=Reason.NO_WINDOW,
                detail="the baseline ends now; there is no window after it yet",
            )
        entries.append(entry)
    verdict, reason = combine_verdicts(entries)
    if entries:
        detail = "; ".join(f"{e['signal']} ({e['environment']}): {e['verdict']}" for e in entries)
    else:
        reason, detail = Reason.NO_WINDOW, "the route has no active baseline; capture one first"
    return {
        "kind": "baseline",
        "route": route.pk,
        "minutes_requested": minutes,
        "now": now,
        **settings.as_dict(),
        "signals": entries,
        "verdict": verdict,
        "reason": reason,
        "detail": detail,
    }
