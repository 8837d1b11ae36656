"""Prometheus exposition at /metrics, read from the database at each scrape.

Everything comes from the database (ThresholdState of the last evaluation, readings,
incidents, EvaluationRun), not from process memory, so every gunicorn worker answers the
same. Access: `Authorization: Bearer <DQ_METRICS_TOKEN>`. An empty DQ_METRICS_TOKEN (the
default) disables the endpoint (404): route names and statuses are not published unless an
operator chose a token.

Series:
- dq_threshold_status{service,route,signal,environment,statistic,segment,window}
  0 ok (or pending), 1 warn, 2 critical, -1 no data / never evaluated. `window` (e.g. "15m")
  keeps two thresholds that differ only in their window apart.
- dq_threshold_value{...same labels}: the statistic's value at the last evaluation.
- dq_readings_last_5m{service}: readings observed in the last 5 minutes (ingestion rate;
  counted on the observed_at index, so a scrape never scans the whole table).
- dq_open_incidents{service,level}
- dq_notifications{status}: notifications by status (pending, delivered, failed, skipped);
  a growing `pending` means deliveries are not getting through (or deliver_notifications
  is not running), a growing `failed` that a receiver refuses them.
- dq_last_evaluation_duration_seconds, dq_last_evaluation_timestamp_seconds,
  dq_last_evaluation_thresholds.
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from .evaluation import STATUS_METRIC_VALUE
from .models import EvaluationRun, Incident, Notification, Reading, Service, Status, Threshold

READINGS_WINDOW = timedelta(minutes=5)
THRESHOLD_LABELS = ["service", "route", "signal", "environment", "statistic", "segment", "window"]


class RegistryCollector:
    """Builds every series from six queries, whatever the number of thresholds."""

    def collect(self):
        yield from self._thresholds()
        yield self._readings()
        yield self._incidents()
        yield self._notifications()
        yield from self._last_evaluation()

    def _thresholds(self):
        status = GaugeMetricFamily(
            "dq_threshold_status",
            "Last evaluated status: 0 ok or pending, 1 warn, 2 critical, -1 no data.",
            labels=THRESHOLD_LABELS,
        )
        value = GaugeMetricFamily(
            "dq_threshold_value",
            "The threshold's statistic at the last evaluation.",
            labels=THRESHOLD_LABELS,
        )
        rows = Threshold.objects.order_by("pk").values_list(
            "route__service__slug",
            "route__method",
            "route__path",
            "signal__key",
            "environment__slug",
            "statistic",
            "cache_segment",
            "window_minutes",
            "state__status",
            "state__value",
        )
        for service, method, path, signal, env, statistic, segment, window, state, current in rows:
            labels = [service, f"{method} {path}", signal, env, statistic, segment, f"{window}m"]
            status.add_metric(labels, STATUS_METRIC_VALUE[state or Status.NO_DATA])
            if current is not None:
                value.add_metric(labels, current)
        yield status
        yield value

    def _readings(self):
        metric = GaugeMetricFamily(
            "dq_readings_last_5m",
            "Readings observed in the last 5 minutes, per service.",
            labels=["service"],
        )
        since = timezone.now() - READINGS_WINDOW
        counts = dict(
            Reading.objects.filter(observed_at__gt=since)
            .values_list("service__slug")
            .annotate(n=Count("id"))
            .order_by()
        )
        for slug in Service.objects.order_by("slug").values_list("slug", flat=True):
            metric.add_metric([slug], counts.get(slug, 0))
        return metric

    def _incidents(self):
        metric = GaugeMetricFamily(
            "dq_open_incidents",
            "Open incidents per service and level.",
            labels=["service", "level"],
        )
        rows = (
            Incident.objects.open()
            .values_list("route__service__slug", "level")
            .annotate(n=Count("id"))
            .order_by("route__service__slug", "level")
        )
        for service, level, count in rows:
            metric.add_metric([service, level], count)
        return metric

    def _notifications(self):
        metric = GaugeMetricFamily(
            "dq_notifications",
            "Incident notifications per delivery status.",
            labels=["status"],
        )
        counts = dict(Notification.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in Notification.Status.values:
            metric.add_metric([status], counts.get(status, 0))
        return metric

    def _last_evaluation(self):
        # The latest finished pass by start, as evaluation continuity reads it: an older pass
        # that finishes after a newer one stores nothing and does not count.
        run = (
            EvaluationRun.objects.finished()
            .only("finished_at", "duration_ms", "thresholds")
            .first()
        )
        if run is None:
            return
        yield GaugeMetricFamily(
            "dq_last_evaluation_duration_seconds",
            "How long the last evaluation pass took.",
            value=(run.duration_ms or 0) / 1000,
        )
        yield GaugeMetricFamily(
            "dq_last_evaluation_timestamp_seconds",
            "When the last evaluation pass finished (Unix time); alert if it stops moving.",
            value=run.finished_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "dq_last_evaluation_thresholds",
            "Thresholds evaluated by the last pass.",
            value=run.thresholds,
        )


def authorized(request, token):
    header = request.headers.get("Authorization", "")
    scheme, _, provided = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(
        provided.strip().encode(), token.encode()
    )


@never_cache
@require_GET
def metrics(request):
    token = settings.DQ_METRICS_TOKEN
    if not token:
        raise Http404("metrics are disabled: set DQ_METRICS_TOKEN to enable them")
    if not authorized(request, token):
        response = HttpResponse(
            "a bearer token is required: Authorization: Bearer <DQ_METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RegistryCollector())
    # The format the scraper asks for (Accept): OpenMetrics or the text format.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
