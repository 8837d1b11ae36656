from rest_framework import serializers

from signals_app.models import CacheStatus, Route

# ---- readings: these describe the contract in the schema; the hot path validates with
# ingest.validate_items (see the measured figure there).


class ReadingInSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=Route.Method.choices, default="GET")
    route = serializers.CharField(max_length=500, help_text="Path template, e.g. /posts/{slug}")
    signal = serializers.CharField(help_text="A signal key, e.g. response_time_ms")
    value = serializers.FloatField(
        help_text="Finite; durations and counts >= 0, ratios within [0, 1], scores [0, 100]"
    )
    environment = serializers.CharField(default="production")
    observed_at = serializers.DateTimeField(
        required=False, help_text="At most 5 minutes in the future; defaults to the time received"
    )
    cache_status = serializers.ChoiceField(
        choices=CacheStatus.choices, default="UNKNOWN", help_text="Any case"
    )
    release = serializers.CharField(max_length=100, required=False)
    idempotency_key = serializers.CharField(
        max_length=255, required=False, help_text="Per service; a key stored before is a duplicate"
    )


class ReadingsBatchSerializer(serializers.Serializer):
    readings = ReadingInSerializer(many=True, min_length=1, max_length=1000)


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Readings stored by this request")
    duplicates = serializers.IntegerField(help_text="Readings whose idempotency key was stored")


# ---- problem details (RFC 9457), for the schema


class ProblemItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(allow_null=True, help_text="Position in the batch")
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    expected = serializers.JSONField(allow_null=True)
    received = serializers.JSONField(allow_null=True)


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    retryable = serializers.BooleanField(help_text="Whether the same request may be retried")
    errors = ProblemItemSerializer(many=True)
