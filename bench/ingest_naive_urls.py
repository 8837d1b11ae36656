"""The naive peer of POST /api/v1/readings, kept inside the benchmark only.

The same batch endpoint written the textbook way: a DRF ModelSerializer(many=True) with
related fields resolved per item, a per-item unique check of the idempotency key, and
bulk_create. Same body, same authentication and same answer as ours.
"""

from django.urls import path
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from dqregistry.urls import urlpatterns as project_urlpatterns
from signals_app.api.permissions import IsServiceKey
from signals_app.models import Environment, Reading, Route, Signal


class NaiveReadingSerializer(serializers.ModelSerializer):
    method = serializers.CharField(default="GET", write_only=True)
    route = serializers.CharField(write_only=True)
    signal = serializers.SlugRelatedField(slug_field="key", queryset=Signal.objects.all())
    environment = serializers.SlugRelatedField(
        slug_field="slug", queryset=Environment.objects.all(), default=None
    )
    observed_at = serializers.DateTimeField(default=timezone.now)

    class Meta:
        model = Reading
        fields = [
            "method",
            "route",
            "signal",
            "value",
            "environment",
            "observed_at",
            "cache_status",
            "release",
            "idempotency_key",
        ]

    def validate_idempotency_key(self, value):
        # the per-item unique validator
        service = self.context["request"].user.service
        if value and Reading.objects.filter(service=service, idempotency_key=value).exists():
            raise serializers.ValidationError("already stored")
        return value

    def validate(self, attrs):
        service = self.context["request"].user.service
        try:
            attrs["route"] = Route.objects.get(
                service=service, method=attrs.pop("method"), path=attrs["route"]
            )
        except Route.DoesNotExist:
            raise serializers.ValidationError({"route": "unknown route"}) from None
        attrs["environment"] = attrs["environment"] or Environment.objects.get(slug="production")
        attrs["service"] = service
        return attrs


class NaiveBatchSerializer(serializers.Serializer):
    readings = NaiveReadingSerializer(many=True, min_length=1, max_length=1000)


class NaiveReadingsView(APIView):
    permission_classes = [IsServiceKey]

    def post(self, request):
        serializer = NaiveBatchSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        rows = [Reading(**item) for item in serializer.validated_data["readings"]]
        stored = Reading.objects.bulk_create(rows, ignore_conflicts=True)
        return Response(
            {"accepted": len(stored), "duplicates": len(rows) - len(stored)},
            status=status.HTTP_201_CREATED,
        )


urlpatterns = [
    path("bench/naive-readings", NaiveReadingsView.as_view()),
    *project_urlpatterns,
]
