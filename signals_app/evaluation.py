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
    Change,
    Environment,
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

    Raises ValueError when the window is empty or reaches into the future.
    """
    now = now or timezone.now()
    end = end or now
    if start is None:
        start = end - timedelta(minutes=minutes or DEFAULT_BASELINE_MINUTES)
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


def _store_baselines(new, user, note):
    from simple_history.utils import bulk_create_with_history, bulk_update_with_history

    captured = {(b.route_id, b.signal_id, b.environment_id, b.cache_segment) for b in new}
    history_user = user if getattr(user, "pk", None) else None
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CAPTURE_LOCK_ID])
        previous = [
            baseline
            for baseline in Baseline.objects.filter(
                active=True, route_id__in={b.route_id for b in new}
            ).select_for_update()
            if (
                baseline.route_id,
                baseline.signal_id,
                baseline.environment_id,
                baseline.cache_segment,
            )
            in captured
        ]
        for baseline in previous:
            baseline.active = False
        if previous:
            bulk_update_with_history(
                previous,
                Baseline,
                ["active"],
                batch_size=1000,
                default_user=history_user,
                default_change_reason="replaced by a new capture",
            )
        created = bulk_create_with_history(
            new, Baseline, batch_size=1000, default_user=history_user, default_change_reason=note
        )
        for baseline, stored in zip(new, created, strict=True):
            baseline.pk = stored.pk


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


def _direction_of(signal, before, after, noise_band_pct):
    """better / worse / same for one statistic."""
    if before is None or after is None:
        return None
    if before == 0:
        if after == 0:
            return "same"
    elif abs(after - before) / abs(before) * 100 <= noise_band_pct:
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
                signal, before_summary[name], after_summary[name], settings.noise_band_pct
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
        plans.append(
            (
                change,
                length,
                change.applied_at - timedelta(minutes=length),
                change.applied_at + timedelta(minutes=length),
            )
        )
    live = [plan for plan in plans if plan[1] > 0]
    nearby, signals = [], []
    if live:
        nearby = list(
            Change.objects.filter(
                route_id__in={c.route_id for c, *_ in live},
                applied_at__gt=min(start for *_, start, _ in live),
                applied_at__lte=max(end for *_, end in live),
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
                detail="the change is not applied yet; there is no after window",
            )
            continue
        others = [
            other
            for other in nearby
            if other.pk != change.pk
            and other.route_id == change.route_id
            and other.environment_id == change.environment_id
            and start < other.applied_at <= end
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
            and any(lo < change.applied_at <= hi for lo, hi in windows_of_comparison)
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
