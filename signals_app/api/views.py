from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import idempotency, ingest
from .permissions import IsServiceKey
from .problems import Problem
from .serializers import IngestResultSerializer, ReadingsBatchSerializer
from .throttling import ServiceKeyRateThrottle


def _is_json(media_type):
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class ReadingsView(APIView):
    """`POST /api/v1/readings`: DESIGN.md §Ingestion contract."""

    permission_classes = [IsServiceKey]
    throttle_classes = [ServiceKeyRateThrottle]
    # The body is parsed by ingest.parse_body (NaN tokens kept to be refused by field);
    # JSONParser is listed for the schema only.
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="readings_create",
        summary="Post a batch of 1 to 1,000 readings",
        request=ReadingsBatchSerializer,
        responses={201: IngestResultSerializer},
        parameters=[
            OpenApiParameter(
                idempotency.HEADER,
                str,
                OpenApiParameter.HEADER,
                description="Replays the first response for a retry with the same body "
                "(Idempotent-Replayed: true); 422 with another body; 409 while running.",
            )
        ],
        examples=[
            OpenApiExample(
                "One reading",
                request_only=True,
                value={
                    "readings": [
                        {
                            "method": "GET",
                            "route": "/posts/{slug}",
                            "signal": "response_time_ms",
                            "value": 182.5,
                            "environment": "production",
                            "observed_at": "2026-11-26T07:00:00Z",
                            "cache_status": "MISS",
                            "release": "1.7.9",
                            "idempotency_key": "web-1:000123",
                        }
                    ]
                },
            ),
            OpenApiExample("Stored", response_only=True, value={"accepted": 1, "duplicates": 0}),
        ],
    )
    def post(self, request):
        if not _is_json(request._request.content_type or ""):
            raise Problem(
                415,
                "send the readings as JSON (Content-Type: application/json); "
                f"received {request.content_type or 'no Content-Type'}",
            )
        raw = request._request.body
        service = request.user.service
        now = ingest.utcnow()
        readings = ingest.parse_body(raw)
        key = idempotency.header_key(request)
        resolved = ingest.check(service, readings, now)
        if key is None:
            accepted = ingest.store(service, resolved, now)
            return Response(_result(accepted, len(resolved)), status=201)

        record, stored = idempotency.begin(service, key, idempotency.fingerprint(raw))
        if stored is not None:
            return Response(
                stored.response_body,
                status=stored.response_status,
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            with transaction.atomic():
                accepted = ingest.store(service, resolved, now)
                result = _result(accepted, len(resolved))
                idempotency.finish(record, 201, result)
        except BaseException:
            idempotency.abandon(record)
            raise
        return Response(result, status=201)


def _result(accepted, submitted):
    return {"accepted": accepted, "duplicates": submitted - accepted}
