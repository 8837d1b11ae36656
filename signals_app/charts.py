"""Server-rendered SVG charts of readings against thresholds (no JavaScript, no CDN).

One chart is a signal in one environment: the threshold's statistic per time bucket,
HIT and MISS as separate lines (a lucky cache hit never hides a slow origin), warn and
critical as horizontal lines and the active baseline as a band. All the charts of one
page come from ONE aggregated query (`bucket_series`) grouped by
(signal, environment, cache segment, bucket).
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Case,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Value,
    When,
)
from django.db.models.functions import Greatest, Least
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from .models import (
    HIT_STATUSES,
    MAX_READING_MAGNITUDE,
    MISS_STATUSES,
    CacheSegment,
    Reading,
    Signal,
    Statistic,
)

PERCENTILES = {Statistic.P50: 0.5, Statistic.P95: 0.95, Statistic.P99: 0.99}
SEGMENTS = (CacheSegment.HIT, CacheSegment.MISS)


class PercentileCont(Aggregate):
    """PostgreSQL's linear-interpolation percentile (an ordered-set aggregate)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction, **extra):
        # `fraction` comes from PERCENTILES, never from user input.
        super().__init__(expression, fraction=float(fraction), **extra)


class EpochBucket(Func):
    """The whole `seconds`-long step since the Unix epoch that a datetime falls in."""

    output_field = IntegerField()

    def __init__(self, expression, seconds, **extra):
        super().__init__(expression, seconds=int(seconds), **extra)

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler,
            connection,
            # date_part is double precision; EXTRACT is numeric since PostgreSQL 14 and
            # a third slower over a day of readings (measured: 78 ms against 52 ms).
            template="FLOOR(date_part('epoch', %(expressions)s) / %(seconds)s)::bigint",
            **extra,
        )

    def as_sqlite(self, compiler, connection, **extra):
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff'; strftime would round the fraction to
        # milliseconds (59.9999 s becomes the next second), so cut it off: whole seconds,
        # floored, then integer division floors exactly like the PostgreSQL version.
        return self.as_sql(
            compiler,
            connection,
            template=(
                "(CAST(strftime('%%%%s', substr(%(expressions)s, 1, 19)) AS INTEGER) / %(seconds)s)"
            ),
            **extra,
        )


# The segment as a small integer: the query sorts on it, and integers sort faster than
# text (a day of the busiest bench route: ~41 ms against ~50 ms).
SEGMENT_CODES = {1: CacheSegment.HIT, 2: CacheSegment.MISS}


class EpochSeconds(Func):
    """Seconds since the Unix epoch of a datetime, as a float."""

    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="date_part('epoch', %(expressions)s)", **extra
        )

    def as_sqlite(self, compiler, connection, **extra):
        # julianday keeps the fraction of a second (to about a millisecond).
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)",
            **extra,
        )


# A mean counts a value beyond ±1e12 (stored before readings were bounded) at that bound:
# PostgreSQL's avg() refuses to overflow, which failed the board and the route page.
BOUNDED_VALUE = Least(
    Greatest("value", Value(-MAX_READING_MAGNITUDE)), Value(MAX_READING_MAGNITUDE)
)


def segment_case():
    return Case(
        When(cache_status__in=HIT_STATUSES, then=Value(1)),
        When(cache_status__in=MISS_STATUSES, then=Value(2)),
        default=Value(0),
        output_field=IntegerField(),
    )


def percentile_cont(ordered, fraction):
    """Linear interpolation between ranks, as PostgreSQL's percentile_cont."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _statistic_of(values, statistic, bucket_minutes):
    """The statistic of one bucket's values, sorted ascending (the SQLite path)."""
    if statistic in PERCENTILES:
        return percentile_cont(values, PERCENTILES[statistic])
    if statistic == Statistic.MEAN:
        return sum(values) / len(values)
    if statistic == Statistic.MAX:
        return values[-1]
    if statistic == Statistic.COUNT:
        return float(len(values))
    return len(values) / bucket_minutes  # rate: readings per minute


def bucket_series(readings, *, pairs, statistics, start, end, bucket_seconds):
    """{(signal_id, environment_id, segment, statistic): {bucket: (value, samples)}}.

    One aggregated query over `readings` (a Reading queryset already limited to a
    route or a change) between `start` and `end`, for the (signal_id, environment_id)
    `pairs`, HIT and MISS segments only; `statistics` are the ones the charts draw.
    """
    series = defaultdict(dict)
    if not pairs or not statistics:
        return series
    pairs = set(pairs)
    # signal IN (...) AND environment IN (...) lets PostgreSQL walk the composite index
    # (route, signal, environment, observed_at) with =ANY; the few combinations that are
    # not charted are dropped below.
    scoped = (
        readings.filter(
            signal_id__in={signal_id for signal_id, _ in pairs},
            environment_id__in={environment_id for _, environment_id in pairs},
            observed_at__gte=start,
            observed_at__lt=end,
            cache_status__in=[*HIT_STATUSES, *MISS_STATUSES],
        )
        .annotate(bucket=EpochBucket("observed_at", bucket_seconds), segment=segment_case())
        .order_by()
    )
    bucket_minutes = bucket_seconds / 60
    if connection.vendor == "postgresql":
        aggregates = {"samples": Count("id")}
        for statistic in statistics:
            if statistic in PERCENTILES:
                aggregates[statistic] = PercentileCont("value", PERCENTILES[statistic])
            elif statistic == Statistic.MEAN:
                aggregates[statistic] = Avg(BOUNDED_VALUE)
            elif statistic == Statistic.MAX:
                aggregates[statistic] = Max("value")
        # GROUP BY follows the order of these annotations (Django puts plain columns before
        # annotations): the bucket leads, so the sort before the aggregate settles most
        # comparisons on its first key (a day of the busiest bench route: 23 -> 14 ms).
        rows = (
            scoped.annotate(pair_signal=F("signal_id"), pair_environment=F("environment_id"))
            .values("bucket", "pair_signal", "pair_environment", "segment")
            .annotate(**aggregates)
        )
        for row in rows:
            if (row["pair_signal"], row["pair_environment"]) not in pairs:
                continue
            key = (row["pair_signal"], row["pair_environment"], SEGMENT_CODES[row["segment"]])
            for statistic in statistics:
                if statistic == Statistic.COUNT:
                    value = float(row["samples"])
                elif statistic == Statistic.RATE:
                    value = row["samples"] / bucket_minutes
                else:
                    value = row[statistic]
                series[(*key, statistic)][row["bucket"]] = (value, row["samples"])
        return series
    # SQLite has no percentile_cont: one ordered query, then the same interpolation.
    groups = defaultdict(list)
    ordered = scoped.order_by("signal_id", "environment_id", "segment", "bucket", "value")
    for signal_id, environment_id, segment, bucket, value in ordered.values_list(
        "signal_id", "environment_id", "segment", "bucket", "value"
    ):
        if (signal_id, environment_id) in pairs:
            groups[(signal_id, environment_id, SEGMENT_CODES[segment], bucket)].append(value)
    for (signal_id, environment_id, segment, bucket), values in groups.items():
        for statistic in statistics:
            value = _statistic_of(values, statistic, bucket_minutes)
            series[(signal_id, environment_id, segment, statistic)][bucket] = (value, len(values))
    return series


# --- drawing ---------------------------------------------------------------

WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 62, 96, 14, 40


def nice_step(span, target_ticks=4):
    """A 1/2/2.5/5 × 10^k step that cuts `span` into about `target_ticks` parts; 1.0 for a
    span that is not a positive finite number or too small to cut (a statistic of readings
    stored before values were bounded may be inf)."""
    raw = span / target_ticks
    if not (math.isfinite(raw) and raw > 0):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    if magnitude == 0.0:  # below the smallest float
        return 1.0
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def format_number(value):
    if value is None:
        return "–"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.1f}"
    return f"{value:.3g}"


@dataclass
class Line:
    label: str
    css: str
    color: str
    path: str
    points: list = field(default_factory=list)  # (x, y, title)


@dataclass
class Level:
    label: str
    color: str
    dash: str
    y: float
    value: float
    text: str = ""


@dataclass
class Chart:
    """Everything the SVG template draws, in pixels already (the template only places)."""

    title: str
    unit: str
    statistic: str
    lines: list
    levels: list
    band: dict | None
    x_ticks: list
    y_ticks: list
    marker: dict | None = None
    shaded: dict | None = None
    samples: int = 0
    y_axis_label: str = ""
    x_axis_label: str = "time (UTC)"
    caption: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    top: int = TOP
    bottom_edge: int = HEIGHT - BOTTOM

    @property
    def empty(self):
        return self.samples == 0

    @property
    def plot_width(self):
        return self.right_edge - self.left

    @property
    def plot_height(self):
        return self.bottom_edge - self.top

    @property
    def mid_x(self):
        return (self.left + self.right_edge) / 2

    @property
    def mid_y(self):
        return (self.top + self.bottom_edge) / 2

    @property
    def y_tick_x(self):
        return self.left - 6

    @property
    def x_tick_end(self):
        return self.bottom_edge + 4

    @property
    def x_label_y(self):
        return self.bottom_edge + 16

    @property
    def x_axis_y(self):
        return self.height - 4

    @property
    def level_label_x(self):
        return self.right_edge + 4

    def render(self):
        """The figure: title, inline SVG, legend and caption.

        Written out in Python rather than a template: a chart is a few hundred elements
        of numbers, and template variable lookups and number localisation cost ~10 ms per
        chart where this costs well under 1 ms (measured on the busiest route page).
        """
        return mark_safe(_figure(self))  # every text part went through escape()


def _figure(chart):
    e = escape
    out = [
        f'<figure class="dq-chart" style="margin:0 0 1.2em 0;max-width:{chart.width}px">',
        f'<div style="font-weight:bold;margin-bottom:2px">{e(chart.title)}</div>',
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {chart.width} {chart.height}"'
        f' width="100%" role="img" aria-label="{e(chart.title)}: {e(chart.caption)}"'
        ' style="font:11px sans-serif;background:#fff">',
        f"<title>{e(chart.title)}: {e(chart.caption)}</title>",
    ]
    left, right, top, bottom = chart.left, chart.right_edge, chart.top, chart.bottom_edge
    if chart.shaded:
        out.append(
            f'<rect class="after" x="{chart.shaded["x"]}" y="{top}"'
            f' width="{chart.shaded["width"]}" height="{chart.plot_height}" fill="#eef3f8">'
            "<title>after the change</title></rect>"
        )
    if chart.band:
        out.append(
            f'<rect class="baseline" x="{left}" y="{chart.band["y"]}" width="{chart.plot_width}"'
            f' height="{chart.band["height"]}" fill="#8a8a8a" fill-opacity="0.22">'
            f"<title>{e(chart.band['label'])}</title></rect>"
        )
    for tick in chart.y_ticks:
        out.append(
            f'<line x1="{left}" x2="{right}" y1="{tick["y"]}" y2="{tick["y"]}" stroke="#e6e6e6"/>'
            f'<text x="{chart.y_tick_x}" y="{tick["y"]}" dy="4" text-anchor="end" fill="#555">'
            f"{e(tick['label'])}</text>"
        )
    for tick in chart.x_ticks:
        out.append(
            f'<line x1="{tick["x"]}" x2="{tick["x"]}" y1="{bottom}" y2="{chart.x_tick_end}"'
            f' stroke="#555"/><text x="{tick["x"]}" y="{chart.x_label_y}"'
            f' text-anchor="middle" fill="#555">{e(tick["label"])}</text>'
        )
    out.append(
        f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#555"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#555"/>'
        f'<text class="y-axis-label" transform="translate(12 {chart.mid_y}) rotate(-90)"'
        f' text-anchor="middle" fill="#333">{e(chart.y_axis_label)}</text>'
        f'<text class="x-axis-label" x="{chart.mid_x}" y="{chart.x_axis_y}"'
        f' text-anchor="middle" fill="#333">{e(chart.x_axis_label)}</text>'
    )
    for level in chart.levels:
        out.append(
            f'<line class="level {e(level.label)}" x1="{left}" x2="{right}" y1="{level.y}"'
            f' y2="{level.y}" stroke="{level.color}" stroke-width="1.5"'
            f' stroke-dasharray="{level.dash}"><title>{e(level.label)} {e(level.text)}</title>'
            f'</line><text x="{chart.level_label_x}" y="{level.y}" dy="4" fill="{level.color}">'
            f"{e(level.label)} {e(level.text)}</text>"
        )
    if chart.marker:
        x = chart.marker["x"]
        out.append(
            f'<line class="marker" x1="{x}" x2="{x}" y1="{top}" y2="{bottom}" stroke="#333"'
            f' stroke-dasharray="3 3"/><text x="{x}" y="{top}" dy="10" dx="4" fill="#333">'
            f"{e(chart.marker['label'])}</text>"
        )
    for line in chart.lines:
        if not line.path:
            continue
        out.append(
            f'<path class="series {line.css}" d="{line.path}" fill="none" stroke="{line.color}"'
            ' stroke-width="2" stroke-linejoin="round"/>'
        )
        out.extend(
            f'<circle cx="{x}" cy="{y}" r="2.2" fill="{line.color}"><title>{e(title)}</title>'
            "</circle>"
            for x, y, title in line.points
        )
    if chart.empty:
        out.append(
            f'<text x="{chart.mid_x}" y="{chart.mid_y}" text-anchor="middle" fill="#777">'
            "no HIT or MISS readings in this window</text>"
        )
    out.append('</svg><figcaption style="font-size:11px;color:#444">')
    swatch = '<span style="white-space:nowrap;margin-right:1em"><span style="{}"></span> {}</span>'
    for line in chart.lines:
        label = line.label + ("" if line.path else " (no readings)")
        style = f"display:inline-block;width:14px;border-top:2px solid {line.color};"
        out.append(swatch.format(style + "vertical-align:middle", e(label)))
    for level in chart.levels:
        style = f"display:inline-block;width:14px;border-top:2px dashed {level.color};"
        out.append(swatch.format(style + "vertical-align:middle", e(f"{level.label} {level.text}")))
    if chart.band:
        style = "display:inline-block;width:14px;height:8px;background:rgba(138,138,138,.3);"
        out.append(swatch.format(style + "vertical-align:middle", e(chart.band["label"])))
    out.append(f"<br>{e(chart.caption)}</figcaption></figure>")
    return "".join(out)


SEGMENT_STYLE = {
    CacheSegment.HIT: ("HIT", "#0072b2"),  # blue
    CacheSegment.MISS: ("MISS", "#d55e00"),  # vermilion; colour-blind safe pair
}


def build_chart(
    *,
    title,
    signal,
    statistic,
    series,
    start,
    end,
    bucket_seconds,
    warn=None,
    critical=None,
    baseline=None,
    marker_at=None,
    marker_label="",
    shade_from=None,
):
    """Lay out one chart. `series` maps segment -> {bucket: (value, samples)}."""
    unit = signal.unit or ""
    first_bucket = int(start.timestamp()) // bucket_seconds
    last_bucket = math.ceil(end.timestamp() / bucket_seconds) - 1
    bucket_count = max(last_bucket - first_bucket + 1, 1)
    plot_left, plot_right = LEFT, WIDTH - RIGHT
    plot_top, plot_bottom = TOP, HEIGHT - BOTTOM

    # A point that is not finite is drawn as a gap: no axis can reach it.
    values = [
        value
        for points in series.values()
        for value, _ in points.values()
        if value is not None and math.isfinite(value)
    ]
    levels_raw = [v for v in (warn, critical) if v is not None]
    band_raw = []
    if baseline is not None:
        band_raw = [v for v in (baseline.p50, baseline.p95) if v is not None and math.isfinite(v)]
    top_value = max([*values, *levels_raw, *band_raw, 0.0])
    if signal.kind == Signal.Kind.RATIO:
        top_value = max(top_value, 1.0) if top_value > 0.5 else top_value
    scale = top_value * 1.08 if top_value > 0 else 1.0
    scale = scale if math.isfinite(scale) else top_value  # 8% headroom past float's largest
    step = nice_step(scale)
    y_max = step * math.ceil(scale / step)
    y_max = y_max if math.isfinite(y_max) else scale

    def y_of(value):
        return round(plot_bottom - (value / y_max) * (plot_bottom - plot_top), 1)

    def x_of_bucket(bucket):
        return round(
            plot_left + (bucket - first_bucket + 0.5) * (plot_right - plot_left) / bucket_count, 1
        )

    def x_of_time(moment):
        fraction = (moment - start).total_seconds() / (end - start).total_seconds()
        return round(plot_left + fraction * (plot_right - plot_left), 1)

    lines = []
    samples = 0
    for segment in SEGMENTS:
        points = series.get(segment, {})
        label, color = SEGMENT_STYLE[segment]
        path, drawn, previous = [], [], None
        for bucket in range(first_bucket, last_bucket + 1):
            if bucket not in points or points[bucket][0] is None:
                previous = None
                continue
            value, count = points[bucket]
            if not math.isfinite(value):
                previous = None
                continue
            samples += count
            x, y = x_of_bucket(bucket), y_of(value)
            path.append(f"{'L' if previous is not None else 'M'}{x} {y}")
            moment = datetime.fromtimestamp(bucket * bucket_seconds, tz=UTC)
            drawn.append(
                (
                    x,
                    y,
                    f"{label} {moment:%H:%M} {statistic} {format_number(value)} {unit} (n={count})",
                )
            )
            previous = bucket
        lines.append(Line(label=label, css=segment, color=color, path=" ".join(path), points=drawn))

    levels = []
    for label, value, color, dash in (
        ("warn", warn, "#e69f00", "6 4"),
        ("critical", critical, "#b00020", "2 3"),
    ):
        if value is not None:
            levels.append(
                Level(
                    label=label,
                    color=color,
                    dash=dash,
                    y=y_of(value),
                    value=value,
                    text=f"{format_number(value)} {unit}".strip(),
                )
            )

    band = None
    if band_raw and len(band_raw) == 2:
        low, high = sorted(band_raw)
        band = {
            "y": y_of(high),
            "height": max(round(y_of(low) - y_of(high), 1), 1.0),
            "label": f"baseline p50–p95 {format_number(low)}–{format_number(high)} {unit}",
        }

    y_ticks = []
    tick = 0.0
    while tick <= y_max + step / 1000:
        y_ticks.append({"y": y_of(tick), "label": format_number(tick)})
        tick += step

    span = end - start
    x_step = _time_step(span)
    x_ticks = []
    moment = datetime.fromtimestamp(
        math.ceil(start.timestamp() / x_step.total_seconds()) * x_step.total_seconds(), tz=UTC
    )
    while moment <= end:
        x_ticks.append({"x": x_of_time(moment), "label": f"{moment:%H:%M}"})
        moment += x_step

    marker = None
    if marker_at is not None and start <= marker_at <= end:
        marker = {"x": x_of_time(marker_at), "label": marker_label}
    shaded = None
    if shade_from is not None and start <= shade_from <= end:
        shaded = {"x": x_of_time(shade_from), "width": round(plot_right - x_of_time(shade_from), 1)}

    return Chart(
        title=title,
        unit=unit,
        statistic=statistic,
        lines=lines,
        levels=levels,
        band=band,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        marker=marker,
        shaded=shaded,
        samples=samples,
        y_axis_label=f"{statistic} {unit}".strip(),
        caption=(
            f"{statistic} per {bucket_seconds // 60}-minute bucket, "
            f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
        ),
    )


def _time_step(span):
    hours = span.total_seconds() / 3600
    if hours > 12:
        return timedelta(hours=6)
    if hours > 4:
        return timedelta(hours=1)
    if hours > 1:
        return timedelta(minutes=30)
    return timedelta(minutes=15)


# --- the charts of a page --------------------------------------------------


def chart_threshold_per_pair(thresholds):
    """The threshold drawn for each (signal, environment): the first in model order."""
    chosen = {}
    for threshold in thresholds:
        chosen.setdefault((threshold.signal_id, threshold.environment_id), threshold)
    return chosen


def pick_baseline(baselines, threshold):
    """The active baseline of the threshold's segment, else of `all`, else any."""
    candidates = [
        b
        for b in baselines
        if b.signal_id == threshold.signal_id and b.environment_id == threshold.environment_id
    ]
    for segment in (threshold.cache_segment, CacheSegment.ALL):
        for baseline in candidates:
            if baseline.cache_segment == segment:
                return baseline
    return candidates[0] if candidates else None


def route_charts(route, thresholds, baselines, *, now=None, hours=24, buckets=48):
    """The route page's charts: one per signal+environment of its thresholds, one query."""
    end = now or timezone.now()
    start = end - timedelta(hours=hours)
    bucket_seconds = int(hours * 3600 / buckets)
    chosen = chart_threshold_per_pair(thresholds)
    data = bucket_series(
        Reading.objects.filter(route=route),
        pairs=list(chosen),
        statistics={t.statistic for t in chosen.values()},
        start=start,
        end=end,
        bucket_seconds=bucket_seconds,
    )
    charts = []
    for (signal_id, environment_id), threshold in chosen.items():
        by_segment = {
            segment: data.get((signal_id, environment_id, segment, threshold.statistic), {})
            for segment in SEGMENTS
        }
        charts.append(
            build_chart(
                title=(
                    f"{threshold.signal.name or threshold.signal.key} · "
                    f"{threshold.environment.slug}"
                ),
                signal=threshold.signal,
                statistic=threshold.statistic,
                series=by_segment,
                start=start,
                end=end,
                bucket_seconds=bucket_seconds,
                warn=threshold.warn,
                critical=threshold.critical,
                baseline=pick_baseline(baselines, threshold),
            )
        )
    return charts


def change_charts(change, signals, thresholds, *, minutes=60, buckets=24):
    """Before vs after a change, per signal in the change's environment: one query."""
    start = change.applied_at - timedelta(minutes=minutes)
    end = change.applied_at + timedelta(minutes=minutes)
    bucket_seconds = max(int(2 * minutes * 60 / buckets), 60)
    statistic_of = {
        t.signal_id: t.statistic
        for t in reversed(list(thresholds))
        if t.environment_id == change.environment_id
    }
    statistics = {statistic_of.get(s.pk, Statistic.P95) for s in signals}
    data = bucket_series(
        Reading.objects.filter(route_id=change.route_id),
        pairs=[(s.pk, change.environment_id) for s in signals],
        statistics=statistics,
        start=start,
        end=end,
        bucket_seconds=bucket_seconds,
    )
    levels = {
        t.signal_id: t
        for t in reversed(list(thresholds))
        if t.environment_id == change.environment_id
    }
    charts = []
    for signal in signals:
        statistic = statistic_of.get(signal.pk, Statistic.P95)
        by_segment = {
            segment: data.get((signal.pk, change.environment_id, segment, statistic), {})
            for segment in SEGMENTS
        }
        threshold = levels.get(signal.pk)
        chart = build_chart(
            title=f"{signal.name or signal.key} · before vs after",
            signal=signal,
            statistic=statistic,
            series=by_segment,
            start=start,
            end=end,
            bucket_seconds=bucket_seconds,
            warn=threshold.warn if threshold else None,
            critical=threshold.critical if threshold else None,
            marker_at=change.applied_at,
            marker_label="change applied",
            shade_from=change.applied_at,
        )
        if not chart.empty:
            charts.append(chart)
    return charts


# --- sparklines of the status board -----------------------------------------


def route_activity(route_ids, *, end, hours=24, buckets=24):
    """One query for the whole board: per route, the bucket means of every
    (signal, environment) it reported in the window, and its last reading time.

    Returns {route_id: {"last": datetime, "series": {(signal_id, env_id): {bucket: mean}},
    "samples": {(signal_id, env_id): count}}}. `route_ids=None` means every route.
    """
    start = end - timedelta(hours=hours)
    bucket_seconds = int(hours * 3600 / buckets)
    readings = Reading.objects.filter(observed_at__gte=start, observed_at__lt=end)
    if route_ids is not None:
        readings = readings.filter(route_id__in=route_ids)
    # values_list and the last reading as epoch seconds: the board reads a row per route,
    # signal, environment and hour (~11,000 at the bench's 60 routes), and building dicts
    # and timezone-aware datetimes for each cost more than the query (measured ~40 ms).
    rows = (
        readings.annotate(bucket=EpochBucket("observed_at", bucket_seconds))
        .order_by()
        .values("route_id", "signal_id", "environment_id", "bucket")
        .annotate(
            mean=Avg(BOUNDED_VALUE), samples=Count("id"), last=Max(EpochSeconds("observed_at"))
        )
        .values_list("route_id", "signal_id", "environment_id", "bucket", "mean", "samples", "last")
    )
    activity = {}
    for route_id, signal_id, environment_id, bucket, mean, samples, last in rows:
        entry = activity.get(route_id)
        if entry is None:
            entry = activity[route_id] = {
                "last": last,
                "series": defaultdict(dict),
                "samples": defaultdict(int),
            }
        pair = (signal_id, environment_id)
        entry["series"][pair][bucket] = mean
        entry["samples"][pair] += samples
        if last > entry["last"]:
            entry["last"] = last
    for entry in activity.values():
        entry["last"] = datetime.fromtimestamp(entry["last"], tz=UTC)
    return activity, start, bucket_seconds


def sparkline(points, *, start, end, bucket_seconds, width=240, height=32, title=""):
    """A tiny inline SVG line of {bucket: value}; gaps stay gaps."""
    first = int(start.timestamp()) // bucket_seconds
    last = math.ceil(end.timestamp() / bucket_seconds) - 1
    count = max(last - first + 1, 1)
    points = {bucket: v for bucket, v in points.items() if v is not None and math.isfinite(v)}
    values = list(points.values())
    head = (
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' preserveAspectRatio="none" role="img" aria-label="{escape(title)}">'
    )
    if not values:
        return mark_safe(
            f"{head}<title>{escape(title or 'no readings')}</title>"
            f'<line x1="0" x2="{width}" y1="{height - 4}" y2="{height - 4}" stroke="#ccc"'
            ' stroke-dasharray="3 3"/></svg>'
        )
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    segments, previous, dot = [], None, None
    for bucket in range(first, last + 1):
        value = points.get(bucket)
        if value is None:
            previous = None
            continue
        x = round(2 + (bucket - first + 0.5) * (width - 4) / count, 1)
        y = round(height - 3 - (value - low) / span * (height - 6), 1)
        segments.append(f"{'L' if previous is not None else 'M'}{x} {y}")
        previous, dot = bucket, (x, y)
    summary = f"{title} (low {format_number(low)}, high {format_number(high)})"
    return mark_safe(
        f"{head}<title>{escape(summary)}</title>"
        f'<path d="{" ".join(segments)}" fill="none" stroke="#264b5d" stroke-width="1.6"'
        ' vector-effect="non-scaling-stroke"/>'
        f'<circle cx="{dot[0]}" cy="{dot[1]}" r="2.2" fill="#264b5d"/></svg>'
    )
