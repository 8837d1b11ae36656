"""Evaluation: statistics of readings in the database, threshold statuses and incidents.

DESIGN.md §Evaluation. The public API, for views, admin pages and commands:

- `window_stats(windows)` -> list of `Stats`: count, mean, min, max, p50/p95/p99 and rate of
  many (route, signal, environment, cache segment, time window) in ONE grouped query.
  Charts can ask for many time buckets at once the same way.
- `evaluate_thresholds(thresholds, now=None)` -> list of `ThresholdResult`: statuses on demand,
  read-only (sustain is judged from the stored `ThresholdState`; nothing is written).
- `route_status(route, now=None)` -> dict with the fields of `GET /api/v1/routes/{id}/status`.
- `run_evaluation(now=None)` -> `EvaluationRun`: one pass over every threshold that stores
  `ThresholdState`, opens/escalates/resolves incidents and records the run. Idempotent and
  safe to run concurrently.

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
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .models import (
    HIT_STATUSES,
    MISS_STATUSES,
    Baseline,
    CacheSegment,
    EvaluationRun,
    Incident,
    Reading,
    Signal,
    Statistic,
    Status,
    Threshold,
    ThresholdState,
)

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


@dataclass(frozen=True)
class Stats:
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


def _segment_sql(alias_window="s", alias_reading="r"):
    def quoted(statuses):
        return ", ".join(f"'{status.value}'" for status in statuses)

    return (
        f"({alias_window}.segment = '{CacheSegment.ALL.value}'"
        f" OR ({alias_window}.segment = '{CacheSegment.HIT.value}'"
        f" AND {alias_reading}.cache_status IN ({quoted(HIT_STATUSES)}))"
        f" OR ({alias_window}.segment = '{CacheSegment.MISS.value}'"
        f" AND {alias_reading}.cache_status IN ({quoted(MISS_STATUSES)})))"
    )


def _incident_sql():
    incident, threshold = Incident._meta.db_table, Threshold._meta.db_table
    return (
        " AND (NOT s.exclude_incidents OR NOT EXISTS ("
        f"SELECT 1 FROM {incident} i JOIN {threshold} t ON t.id = i.threshold_id"
        " WHERE i.route_id = r.route_id AND t.environment_id = r.environment_id"
        " AND r.observed_at >= i.opened_at"
        " AND (i.resolved_at IS NULL OR r.observed_at <= i.resolved_at)))"
    )


# PostgreSQL: the windows arrive as parallel arrays (one parameter per column however many
# windows), are joined to the readings and grouped; percentile_cont computes all three
# percentiles from one sort per group. The outer observed_at bounds let the planner range-scan
# the observed_at index instead of probing the composite index once per window when that is
# cheaper (15-minute windows: a few thousand rows in total).
_POSTGRES_SQL = """
SELECT s.key, count(*), avg(r.value), min(r.value), max(r.value),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY r.value)
FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::bigint[], %s::text[],
            %s::timestamptz[], %s::timestamptz[], %s::bool[])
     AS s(key, route_id, signal_id, environment_id, segment, since, until, exclude_incidents)
JOIN {reading} r
  ON r.route_id = s.route_id AND r.signal_id = s.signal_id
 AND r.environment_id = s.environment_id
 AND r.observed_at > s.since AND r.observed_at <= s.until
WHERE r.observed_at > %s AND r.observed_at <= %s AND {segment}{incidents}
GROUP BY s.key
"""

# SQLite has no percentile_cont: the same numbers come from window functions. Each reading of
# a window gets its 0-based rank i among n; the two ranks around p * (n - 1) are picked by
# conditional aggregation and interpolated with PostgreSQL's formula (lo + frac * (hi - lo)).
# It stays in SQL (SQLite sorts each partition) instead of pulling raw readings into Python;
# the price is a sort of all matching rows, fine at the SQLite scale (development, tests,
# small installations). The windows arrive as one JSON parameter (no 999-variable chunking).
_SQLITE_PERCENTILE = """
    max(CASE WHEN i = CAST({p} * (n - 1) AS INTEGER) THEN value END) AS p{name}_lo,
    max(CASE WHEN i = CAST({p} * (n - 1) AS INTEGER)
                      + ({p} * (n - 1) > CAST({p} * (n - 1) AS INTEGER)) THEN value END)
        AS p{name}_hi"""
_SQLITE_INTERPOLATE = (
    "p{name}_lo + ({p} * (n - 1) - CAST({p} * (n - 1) AS INTEGER)) * (p{name}_hi - p{name}_lo)"
)
_PERCENTILES = (("50", "0.5"), ("95", "0.95"), ("99", "0.99"))
_SQLITE_SQL = (
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
    WHERE r.observed_at > %s AND r.observed_at <= %s AND {segment}{incidents}
),
grouped AS (
    SELECT key, n, avg(value) AS mean, min(value) AS minimum, max(value) AS maximum,"""
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


def window_stats(windows):
    """Statistics of each `Window`, in order, from one grouped query.

    A window without readings gets `Stats(count=0)`. On PostgreSQL the query is
    percentile_cont WITHIN GROUP; on SQLite window functions give the same numbers.
    """
    windows = list(windows)
    if not windows:
        return []
    lower = min(window.start for window in windows)
    upper = max(window.end for window in windows)
    incidents = _incident_sql() if any(w.exclude_incidents for w in windows) else ""
    fmt = {"reading": Reading._meta.db_table, "segment": _segment_sql(), "incidents": incidents}
    rows = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            columns = list(zip(*(_window_row(i, w) for i, w in enumerate(windows)), strict=True))
            cursor.execute(_POSTGRES_SQL.format(**fmt), [*map(list, columns), lower, upper])
            for key, count, mean, minimum, maximum, percentiles in cursor.fetchall():
                rows[key] = (count, mean, minimum, maximum, *percentiles)
        else:
            adapt = connection.ops.adapt_datetimefield_value
            payload = [
                [i, w.route_id, w.signal_id, w.environment_id, w.segment]
                + [adapt(w.start), adapt(w.end), int(w.exclude_incidents)]
                for i, w in enumerate(windows)
            ]
            cursor.execute(
                _SQLITE_SQL.format(**fmt), [json.dumps(payload), adapt(lower), adapt(upper)]
            )
            for key, count, *values in cursor.fetchall():
                rows[key] = (count, *values)
    results = []
    for index, window in enumerate(windows):
        row = rows.get(index)
        if row is None:
            results.append(Stats(count=0, minutes=window.minutes))
            continue
        count, mean, minimum, maximum, p50, p95, p99 = row
        results.append(
            Stats(
                count=count,
                minutes=window.minutes,
                mean=mean,
                minimum=minimum,
                maximum=maximum,
                p50=p50,
                p95=p95,
                p99=p99,
            )
        )
    return results


def _window_row(index, window):
    return (
        index,
        window.route_id,
        window.signal_id,
        window.environment_id,
        window.segment,
        window.start,
        window.end,
        window.exclude_incidents,
    )


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
    evaluation is at most one window old; after a longer gap (the clock stopped) it restarts.
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
            and now - state.evaluated_at <= timedelta(minutes=threshold.window_minutes)
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


def evaluate_thresholds(thresholds, now=None, *, states=None):
    """Evaluate thresholds at `now` (default: the current time) without writing anything.

    One statistics query for all of them, plus one query for their stored states unless
    `states` ({threshold_id: ThresholdState}) is given. Returns one `ThresholdResult` per
    threshold, in order.
    """
    thresholds = list(thresholds)
    now = now or timezone.now()
    stats = window_stats(threshold_window(threshold, now) for threshold in thresholds)
    if states is None:
        states = {
            state.threshold_id: state
            for state in ThresholdState.objects.filter(threshold__in=[t.pk for t in thresholds])
        }
    return [
        decide(threshold, threshold_stats, states.get(threshold.pk), now)
        for threshold, threshold_stats in zip(thresholds, stats, strict=True)
    ]


def route_status(route, now=None):
    """The route's worst status and one entry per threshold (DESIGN.md `routes/{id}/status`).

    Evaluated on demand, read-only. `baseline` is the active baseline's value of the same
    statistic (p50/p95/p99/mean; None for max/count/rate), and `change_pct` the relative
    change of the current value against it, given only when the baseline window ends before
    the threshold's window starts (a baseline never overlaps the window it is compared with).
    """
    now = now or timezone.now()
    thresholds = list(
        route.thresholds.select_related("signal", "environment").order_by(
            "signal__key", "environment__slug", "statistic", "cache_segment", "window_minutes"
        )
    )
    results = evaluate_thresholds(thresholds, now)
    baselines = {
        (b.signal_id, b.environment_id, b.cache_segment): b
        for b in Baseline.objects.filter(route=route, active=True)
    }
    open_incidents = {i.threshold_id: i for i in Incident.objects.open().filter(route=route)}
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


def run_evaluation(now=None, thresholds=None):
    """One pass: evaluate every threshold (or the given ones), store states and incidents.

    Statistics are computed first, outside any lock (one query). Then, in one transaction, the
    thresholds' states are locked (SELECT ... FOR UPDATE, in threshold order so two runs never
    deadlock), re-read, and incidents are opened, escalated or resolved from the locked state:
    a second run that overlaps waits and then sees the first run's incident. The partial
    unique constraint incident_one_open_per_threshold backs this up. On SQLite the
    transaction is BEGIN IMMEDIATE (settings), which serialises writers the same way.

    Re-running without new readings changes nothing but `evaluated_at` (idempotent).
    """
    started = time.perf_counter()
    now = now or timezone.now()
    run = EvaluationRun.objects.create(started_at=now)
    everything = thresholds is None
    if everything:
        thresholds = Threshold.objects.all()
    thresholds = sorted(thresholds, key=lambda threshold: threshold.pk)
    ids = [threshold.pk for threshold in thresholds]
    stats = window_stats(threshold_window(threshold, now) for threshold in thresholds)

    escalated = resolved = 0
    with transaction.atomic():
        ThresholdState.objects.bulk_create(
            [ThresholdState(threshold_id=pk) for pk in ids], ignore_conflicts=True, batch_size=1000
        )
        locked = ThresholdState.objects.select_for_update().order_by("threshold_id")
        # A full pass locks every state without sending thousands of ids to the database.
        states = {
            state.threshold_id: state
            for state in (locked if everything else locked.filter(threshold_id__in=ids))
        }
        open_incidents = Incident.objects.open()
        if not everything:
            open_incidents = open_incidents.filter(threshold_id__in=ids)
        open_incidents = {incident.threshold_id: incident for incident in open_incidents}
        results = []
        for threshold, threshold_stats in zip(thresholds, stats, strict=True):
            state = states.get(threshold.pk)
            if state is not None and state.evaluated_at is not None and state.evaluated_at > now:
                continue  # a run that started later already stored a newer state
            results.append(decide(threshold, threshold_stats, state, now))
        new_incidents = []
        for result in results:
            incident = open_incidents.get(result.threshold.pk)
            if result.status in (Status.WARN, Status.CRITICAL):
                if incident is None:
                    new_incidents.append(
                        Incident(
                            threshold=result.threshold,
                            route_id=result.threshold.route_id,
                            level=result.status,
                            peak_value=result.value,
                            opened_at=now,
                        )
                    )
                elif _update_open_incident(incident, result, now):
                    escalated += 1
            elif result.level == Status.OK and incident is not None:
                incident.resolved_at = now
                incident.save(update_fields=["resolved_at"])
                resolved += 1
        opened = _open_incidents(new_incidents)
        ThresholdState.objects.bulk_create(
            [_state_of(result, now) for result in results],
            update_conflicts=True,
            unique_fields=["threshold"],
            update_fields=[
                "status",
                "value",
                "samples",
                "breach_level",
                "breach_started_at",
                "critical_started_at",
                "evaluated_at",
            ],
            batch_size=1000,
        )

    counts = Counter(result.status for result in results)
    run.finished_at = timezone.now()
    run.duration_ms = (time.perf_counter() - started) * 1000
    run.thresholds = len(results)
    run.statuses = {status.value: counts.get(status, 0) for status in STATUS_ORDER[::-1]}
    run.incidents_opened = opened
    run.incidents_escalated = escalated
    run.incidents_resolved = resolved
    run.save()
    return run


def _state_of(result, now):
    return ThresholdState(
        threshold_id=result.threshold.pk,
        status=result.status,
        value=result.value,
        samples=result.samples,
        breach_level=result.level if result.level in (Status.WARN, Status.CRITICAL) else "",
        breach_started_at=result.breach_started_at,
        critical_started_at=result.critical_started_at,
        evaluated_at=now,
    )


def _update_open_incident(incident, result, now):
    """Escalate in place and track the peak; True when it escalated warn -> critical."""
    changed, escalated = [], False
    if result.status == Status.CRITICAL and incident.level == Status.WARN:
        incident.level = Status.CRITICAL
        incident.escalated_at = now
        changed += ["level", "escalated_at"]
        escalated = True
    if result.value is not None and is_worse(result.threshold, result.value, incident.peak_value):
        incident.peak_value = result.value
        changed.append("peak_value")
    if changed:
        incident.save(update_fields=changed)
    return escalated


def _open_incidents(incidents):
    """Insert new incidents; if one already exists (a concurrent run won), keep that one."""
    if not incidents:
        return 0
    try:
        with transaction.atomic():
            Incident.objects.bulk_create(incidents)
        return len(incidents)
    except IntegrityError:
        pass
    opened = 0
    for incident in incidents:
        try:
            with transaction.atomic():
                incident.save(force_insert=True)
            opened += 1
        except IntegrityError:
            logger.info("incident for threshold %s already open", incident.threshold_id)
    return opened


def summary_line(run):
    """One line for logs and the `evaluate` command."""
    statuses = " ".join(f"{status}={count}" for status, count in run.statuses.items())
    return (
        f"evaluated {run.thresholds} thresholds in {run.duration_ms:.0f} ms: {statuses}; "
        f"incidents opened={run.incidents_opened} escalated={run.incidents_escalated} "
        f"resolved={run.incidents_resolved}"
    )
