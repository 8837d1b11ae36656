"""Evaluation endpoints: route status, baseline capture, comparisons (DESIGN.md §Evaluation).

The numbers come from `signals_app.evaluation`; these views validate the input, check who may
see or change what (§Roles), and render the result through serializers that also describe
it in the OpenAPI schema.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from signals_app import evaluation
from signals_app.models import (
    Baseline,
    CacheSegment,
    Change,
    Environment,
    Route,
    Signal,
    validate_plausible_time,
)

from .authentication import is_service
from .permissions import IsPersonOrServiceReading
from .problems import Problem, get_or_404
from .serializers import (
    BaselineSerializer,
    IdRelatedField,
    NameRelatedField,
    StrictBody,
    TimestampField,
)

MAX_MINUTES = 7 * 24 * 60


# ---- output shapes (rendered through these, so the schema is what clients get)


class ThresholdStatusSerializer(serializers.Serializer):
    threshold = serializers.IntegerField()
    signal = serializers.CharField()
    environment = serializers.CharField()
    statistic = serializers.CharField()
    cache_segment = serializers.CharField()
    window_minutes = serializers.IntegerField()
    value = serializers.FloatField(allow_null=True)
    samples = serializers.IntegerField()
    min_samples = serializers.IntegerField()
    warn = serializers.FloatField()
    critical = serializers.FloatField()
    status = serializers.ChoiceField(choices=evaluation.STATUS_ORDER)
    breach_started_at = serializers.DateTimeField(allow_null=True)
    baseline = serializers.FloatField(
        allow_null=True, help_text="The active baseline's value of this statistic."
    )
    change_pct = serializers.FloatField(
        allow_null=True,
        help_text="Relative change against the baseline, in percent; null when the baseline "
        "overlaps the threshold's window or has no value for this statistic.",
    )
    incident = serializers.DictField(allow_null=True, help_text="The open incident, if any.")


class RouteStatusSerializer(serializers.Serializer):
    route = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=evaluation.STATUS_ORDER, help_text="The worst status of the route's thresholds."
    )
    evaluated_at = serializers.DateTimeField()
    thresholds = ThresholdStatusSerializer(many=True)


class StatisticsSerializer(serializers.Serializer):
    samples = serializers.IntegerField()
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)


class TripleSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)


VERDICTS = ["improved", "regressed", "unchanged", "inconclusive"]
REASONS = ["too_few_samples", "cache_mix_moved", "confounded", "no_window"]


class SegmentComparisonSerializer(serializers.Serializer):
    segment = serializers.CharField(help_text="all, hit or miss")
    before = StatisticsSerializer()
    after = StatisticsSerializer()
    delta = TripleSerializer()
    delta_pct = TripleSerializer()
    verdict = serializers.ChoiceField(choices=VERDICTS)
    reason = serializers.ChoiceField(choices=REASONS, allow_null=True)
    detail = serializers.CharField()


class CacheHitRatioSerializer(serializers.Serializer):
    before = serializers.FloatField(allow_null=True)
    after = serializers.FloatField(allow_null=True)
    moved_points = serializers.FloatField(allow_null=True)


class ChangeSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    variable = serializers.CharField()
    applied_at = serializers.DateTimeField()
    release = serializers.CharField()


class SignalComparisonSerializer(serializers.Serializer):
    signal = serializers.CharField()
    unit = serializers.CharField()
    direction = serializers.CharField()
    environment = serializers.CharField()
    cache_hit_ratio = CacheHitRatioSerializer()
    verdict = serializers.ChoiceField(choices=VERDICTS)
    reason = serializers.ChoiceField(choices=REASONS, allow_null=True)
    detail = serializers.CharField()
    segments = SegmentComparisonSerializer(many=True)


class BaselineRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    cache_segment = serializers.CharField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    captured_at = serializers.DateTimeField()
    note = serializers.CharField()


class WindowSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class BaselineSignalComparisonSerializer(SignalComparisonSerializer):
    baselines = BaselineRefSerializer(many=True)
    window = WindowSerializer(help_text="The current window; it starts after the baseline.")
    confounded_by = ChangeSummarySerializer(many=True)


class _ComparisonSettings(serializers.Serializer):
    noise_band_pct = serializers.FloatField()
    min_samples = serializers.IntegerField()
    cache_mix_points = serializers.FloatField()
    verdict = serializers.ChoiceField(choices=VERDICTS)
    reason = serializers.ChoiceField(choices=REASONS, allow_null=True)
    detail = serializers.CharField()


class ChangeComparisonSerializer(_ComparisonSettings):
    kind = serializers.CharField()
    change = serializers.DictField()
    minutes = serializers.FloatField(help_text="Length of each window actually compared.")
    minutes_requested = serializers.IntegerField()
    before = WindowSerializer()
    after = WindowSerializer()
    confounded_by = ChangeSummarySerializer(many=True)
    signals = SignalComparisonSerializer(many=True)


class BaselineComparisonSerializer(_ComparisonSettings):
    kind = serializers.CharField()
    route = serializers.IntegerField()
    minutes_requested = serializers.IntegerField()
    now = serializers.DateTimeField()
    signals = BaselineSignalComparisonSerializer(many=True)


# ---- input


class ComparisonQuerySerializer(serializers.Serializer):
    minutes = serializers.IntegerField(
        min_value=1, max_value=MAX_MINUTES, default=60, help_text="Length of each window."
    )
    min_samples = serializers.IntegerField(
        min_value=1,
        max_value=1_000_000,
        default=evaluation.MIN_COMPARISON_SAMPLES,
        help_text="Readings needed on each side for a verdict.",
    )
    noise_band_pct = serializers.FloatField(
        min_value=0,
        max_value=100,
        default=evaluation.NOISE_BAND_PCT,
        help_text="A relative change within this band (percent) is unchanged.",
    )

    def to_internal_value(self, data):
        # Each parameter takes one value: a repeated one (?minutes=30&minutes=90) is refused,
        # not silently read as its last value.
        if hasattr(data, "getlist"):
            repeated = {
                name: ["given more than once; give it once"]
                for name in self.fields
                if len(data.getlist(name)) > 1
            }
            if repeated:
                raise serializers.ValidationError(repeated)
        return super().to_internal_value(data)

    def settings(self):
        return evaluation.ComparisonSettings(
            min_samples=self.validated_data["min_samples"],
            noise_band_pct=self.validated_data["noise_band_pct"],
        )


class RouteComparisonQuerySerializer(ComparisonQuerySerializer):
    environment = NameRelatedField(
        slug_field="slug",
        queryset=Environment.objects.all(),
        required=False,
        help_text="Only the baselines of this environment (default: all).",
    )

    def validate(self, attrs):
        # DRF reads `?environment=` as absent; an empty name is a mistake, not "all".
        if self.initial_data.get("environment") == "":
            raise serializers.ValidationError(
                {"environment": "name an environment, e.g. production, or leave it out"}
            )
        return attrs


class BaselineCaptureSerializer(StrictBody, serializers.Serializer):
    route = IdRelatedField(queryset=Route.objects.all())
    signal = NameRelatedField(
        slug_field="key",
        queryset=Signal.objects.all(),
        required=False,
        allow_null=True,
        help_text="Default: every signal with readings in the window.",
    )
    environment = NameRelatedField(
        slug_field="slug", queryset=Environment.objects.all(), required=False
    )
    cache_segment = serializers.ChoiceField(
        choices=CacheSegment.choices,
        required=False,
        allow_null=True,
        help_text="Default: all three segments (all, hit, miss), each its own baseline.",
    )
    # Year 1 overflowed `window_end - minutes`.
    window_start = TimestampField(required=False, validators=[validate_plausible_time])
    window_end = TimestampField(
        required=False, validators=[validate_plausible_time], help_text="Default: now."
    )
    minutes = serializers.IntegerField(
        min_value=1,
        max_value=MAX_MINUTES,
        required=False,
        help_text="Window length before window_end when window_start is not given (60).",
    )
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    exclude_incidents = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if "window_start" in attrs and "minutes" in attrs:
            raise serializers.ValidationError(
                {"minutes": "give either window_start or minutes, not both"}
            )
        try:
            attrs["window"] = evaluation.capture_window(
                start=attrs.get("window_start"),
                end=attrs.get("window_end"),
                minutes=attrs.get("minutes"),
            )
        except ValueError as exc:
            raise serializers.ValidationError({"window_end": str(exc)}) from exc
        if attrs.get("environment") is None:
            attrs["environment"] = Environment.objects.filter(slug="production").first()
            if attrs["environment"] is None:
                raise serializers.ValidationError({"environment": "this field is required"})
        return attrs


class CaptureResultSerializer(serializers.Serializer):
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    baselines = BaselineSerializer(many=True)
    skipped = serializers.ListField(
        child=serializers.DictField(), help_text="Keys without readings in the window."
    )


# ---- views


class EvaluationView(APIView):
    """People read everything; a service key only what `service_keys_may_read` allows."""

    permission_classes = [IsAuthenticated, IsPersonOrServiceReading]
    service_keys_may_read = False


class RouteStatusView(EvaluationView):
    # A service may check the status of its own routes (it may read them, DESIGN.md).
    service_keys_may_read = True

    @extend_schema(
        operation_id="routes_status",
        summary="The route's worst status and one entry per threshold, evaluated now",
        responses={200: RouteStatusSerializer},
    )
    def get(self, request, pk):
        routes = Route.objects.all()
        if is_service(request.user):
            routes = routes.filter(service=request.user.service)
        route = get_or_404(routes, pk=pk)
        return Response(RouteStatusSerializer(evaluation.route_status(route)).data)


class RouteComparisonView(EvaluationView):
    @extend_schema(
        operation_id="routes_comparison",
        summary="Active baselines vs the last N minutes, per signal and cache segment",
        parameters=[RouteComparisonQuerySerializer],
        responses={200: BaselineComparisonSerializer},
    )
    def get(self, request, pk):
        route = get_or_404(Route.objects.all(), pk=pk)
        query = RouteComparisonQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = evaluation.compare_to_baseline(
            route,
            query.validated_data["minutes"],
            environment=query.validated_data.get("environment"),
            settings=query.settings(),
        )
        return Response(BaselineComparisonSerializer(result).data)


class ChangeComparisonView(EvaluationView):
    @extend_schema(
        operation_id="changes_comparison",
        summary="Before vs after a change, per signal and cache segment, with verdicts",
        parameters=[ComparisonQuerySerializer],
        responses={200: ChangeComparisonSerializer},
    )
    def get(self, request, pk):
        change = get_or_404(Change.objects.select_related("environment"), pk=pk)
        query = ComparisonQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = evaluation.compare_change(
            change, query.validated_data["minutes"], settings=query.settings()
        )
        return Response(ChangeComparisonSerializer(result).data)


class BaselineCaptureView(EvaluationView):
    @extend_schema(
        operation_id="baselines_capture",
        summary="Capture baselines of a route from a window of its readings",
        description=(
            "Measures count, p50, p95, p99 and mean over (window_start, window_end] per "
            "signal and cache segment; each becomes the active baseline of its key and the "
            "previous one stays as history (active=false). Owners of the route and "
            "administrators only."
        ),
        request=BaselineCaptureSerializer,
        responses={201: CaptureResultSerializer},
    )
    def post(self, request):
        serializer = BaselineCaptureSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        route = data["route"]
        # OWASP API1: the route named in the body must be one the caller owns.
        if not Route.objects.owned_by(request.user).filter(pk=route.pk).exists():
            raise PermissionDenied(
                f"route {route.pk} is not owned by a team of yours; you may capture baselines "
                "only of routes your team owns"
            )
        start, end = data["window"]
        keys = evaluation.baseline_keys(
            [route],
            signals=[data["signal"]] if data.get("signal") else None,
            environments=[data["environment"]],
            segments=[data["cache_segment"]] if data.get("cache_segment") else evaluation.SEGMENTS,
        )
        result = evaluation.capture_baselines(
            keys,
            start=start,
            end=end,
            user=request.user,
            note=data["note"],
            exclude_incidents=data["exclude_incidents"],
        )
        if not result.baselines:
            raise Problem(
                400,
                f"no readings of route {route.pk} in {data['environment'].slug} between "
                f"{start.isoformat()} and {end.isoformat()}; nothing was captured",
                slug="no-readings",
            )
        captured = list(
            Baseline.objects.filter(pk__in=[b.pk for b in result.baselines])
            .select_related("signal", "environment", "captured_by")
            .order_by("signal__key", "cache_segment")
        )
        # Skipped keys worth reporting: those asked for by name, and the empty segments of
        # signals that were captured (not every signal the route never reports).
        named = bool(data.get("signal"))
        reported = {baseline.signal_id: baseline.signal.key for baseline in captured}
        body = {
            "window_start": start,
            "window_end": end,
            "baselines": captured,
            "skipped": [
                {
                    "signal": data["signal"].key if named else reported[key.signal_id],
                    "environment": data["environment"].slug,
                    "cache_segment": key.cache_segment,
                    "reason": "no readings in the window",
                }
                for key in result.skipped
                if named or key.signal_id in reported
            ],
        }
        return Response(CaptureResultSerializer(body).data, status=status.HTTP_201_CREATED)
