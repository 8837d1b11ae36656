from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from signals_app.models import Baseline, Change, Environment, RollbackNote, Route, Signal, Threshold

from . import idempotency, ingest
from .authentication import is_service
from .filters import (
    BaselineFilter,
    ChangeFilter,
    EnvironmentFilter,
    RollbackNoteFilter,
    RouteFilter,
    SignalFilter,
    ThresholdFilter,
)
from .negotiation import JsonOnly
from .pagination import IdCursorPagination
from .permissions import (
    IsPersonOrServiceReading,
    IsServiceKey,
    IsSuperuserOrReadOnly,
    OwnsRoute,
    RoutePermission,
)
from .problems import NamesMissingObject, Problem
from .serializers import (
    BaselineSerializer,
    ChangeSerializer,
    EnvironmentSerializer,
    IngestResultSerializer,
    ReadingsBatchSerializer,
    RollbackNoteSerializer,
    RouteSerializer,
    SignalSerializer,
    ThresholdSerializer,
)
from .throttling import ServiceKeyRateThrottle


def _is_json(media_type):
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class ReadingsView(APIView):
    """Post 1 to 1,000 readings (at most 1 MiB) with a service key; the batch is stored
    whole or not at all.

    Answers 201 `{"accepted": N, "duplicates": M}`: a reading whose `idempotency_key` the
    service sent before counts as a duplicate and is not stored again. An `Idempotency-Key`
    header replays the first response to a retry of the same body (422 for another body,
    409 while the first is still running). Errors are problem+json naming the reading,
    field, what was expected and what was received. The contract: DESIGN.md §Ingestion.
    """

    permission_classes = [IsServiceKey]
    throttle_classes = [ServiceKeyRateThrottle]
    renderer_classes = [JSONRenderer]  # machines post here: no browsable page, no 406
    content_negotiation_class = JsonOnly
    idempotency_header = True
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
                {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_LENGTH},
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
        try:
            return self._ingest(service, raw, readings, key, now, cached=True)
        except IntegrityError:
            # A remembered id went stale (a route removed meanwhile): resolve afresh once.
            ingest.names.clear()
            return self._ingest(service, raw, readings, key, now, cached=False)

    def _ingest(self, service, raw, readings, key, now, *, cached):
        if key is None:
            resolved = ingest.check(service, readings, now, cached=cached)
            accepted = ingest.store(service, resolved, now)
            return Response(_result(accepted, len(resolved)), status=201)

        # The key decides first: a retry replays even if the names changed since.
        record, stored = idempotency.begin(service, key, idempotency.fingerprint(raw))
        if stored is not None:
            return Response(
                stored.response_body,
                status=stored.response_status,
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            resolved = ingest.check(service, readings, now, cached=cached)
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


# ---- the registry's resources


class RegistryViewSet(NamesMissingObject, viewsets.GenericViewSet):
    """People read everything; service keys only what a view allows (`service_keys_may_read`)."""

    permission_classes = [IsAuthenticated, IsPersonOrServiceReading]
    pagination_class = IdCursorPagination
    service_keys_may_read = False


class OwnedByRouteViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    RegistryViewSet,
):
    """Objects of a route: owners of the route write them, superusers all (§Roles).

    Subclasses list CreateModelMixin after this class, so perform_create here wins.
    """

    permission_classes = [*RegistryViewSet.permission_classes, OwnsRoute]
    lookup_value_regex = r"[0-9]+"
    # Who did it, from the request: {model field: attribute of the user or None}.
    recorded_user_field = None

    def check_route(self, route):
        # OWASP API1: authorize every object the client names, not only the one in the URL.
        if not Route.objects.owned_by(self.request.user).filter(pk=route.pk).exists():
            raise PermissionDenied(
                f"route {route.pk} is not owned by a team of yours; you may change only "
                "objects of routes your team owns"
            )

    def perform_create(self, serializer):
        self.check_route(serializer.validated_data["route"])
        extra = {self.recorded_user_field: self.request.user} if self.recorded_user_field else {}
        serializer.save(**extra)

    def perform_update(self, serializer):
        if "route" in serializer.validated_data:
            self.check_route(serializer.validated_data["route"])
        serializer.save()


class RouteViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    RegistryViewSet,
):
    serializer_class = RouteSerializer
    filterset_class = RouteFilter
    permission_classes = [*RegistryViewSet.permission_classes, RoutePermission]
    lookup_value_regex = r"[0-9]+"
    service_keys_may_read = True

    def get_queryset(self):
        routes = Route.objects.select_related("service", "owner")
        if is_service(self.request.user):
            return routes.filter(service=self.request.user.service)
        return routes

    def _check_named(self, data):
        user = self.request.user
        if user.is_superuser:
            return
        service = data.get("service")
        if service is not None and not service.owner.members.filter(pk=user.pk).exists():
            raise PermissionDenied(
                f"service {service.slug} is not owned by a team of yours; routes are "
                "registered by the service's owner"
            )
        owner = data.get("owner")
        if owner is not None and not owner.members.filter(pk=user.pk).exists():
            raise PermissionDenied(f"you are not a member of {owner.name}")

    def perform_create(self, serializer):
        self._check_named(serializer.validated_data)
        data = serializer.validated_data
        serializer.save(owner=data.get("owner") or data["service"].owner)

    def perform_update(self, serializer):
        self._check_named(serializer.validated_data)
        serializer.save()

    def perform_destroy(self, instance):
        # After RoutePermission (superusers only): the readings go first, chunk by chunk,
        # not while the route's thresholds hold the evaluation lock.
        instance.delete_with_readings()


class SignalViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    RegistryViewSet,
):
    queryset = Signal.objects.all()
    serializer_class = SignalSerializer
    filterset_class = SignalFilter
    permission_classes = [*RegistryViewSet.permission_classes, IsSuperuserOrReadOnly]
    lookup_field = "key"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    service_keys_may_read = True


class EnvironmentViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    RegistryViewSet,
):
    queryset = Environment.objects.all()
    serializer_class = EnvironmentSerializer
    filterset_class = EnvironmentFilter
    permission_classes = [*RegistryViewSet.permission_classes, IsSuperuserOrReadOnly]
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    service_keys_may_read = True


class ThresholdViewSet(OwnedByRouteViewSet, mixins.CreateModelMixin):
    queryset = Threshold.objects.select_related("signal", "environment")
    serializer_class = ThresholdSerializer
    filterset_class = ThresholdFilter


class BaselineViewSet(OwnedByRouteViewSet):
    """Baselines are captured (baselines/capture); here they are read, annotated, retired."""

    queryset = Baseline.objects.select_related("signal", "environment", "captured_by")
    serializer_class = BaselineSerializer
    filterset_class = BaselineFilter


class ChangeViewSet(OwnedByRouteViewSet, mixins.CreateModelMixin):
    queryset = Change.objects.select_related("environment", "created_by")
    serializer_class = ChangeSerializer
    filterset_class = ChangeFilter
    recorded_user_field = "created_by"


def _rehearsal_changed(note, data):
    """Whether the body records a rehearsal other than the stored one: a note sent back as
    it was read keeps who rehearsed it (and saves nothing)."""
    fields = [name for name in ("rehearsed_at", "rehearsal_outcome") if name in data]
    if note is None:
        return bool(fields)
    return any(getattr(note, name) != data[name] for name in fields)


class RollbackNoteViewSet(OwnedByRouteViewSet, mixins.CreateModelMixin):
    queryset = RollbackNote.objects.select_related("owner", "rehearsed_by")
    serializer_class = RollbackNoteSerializer
    filterset_class = RollbackNoteFilter

    def _save(self, serializer, **extra):
        data = serializer.validated_data
        user = self.request.user
        owner = data.get("owner")
        if owner is not None and not user.is_superuser:
            route = data.get("route") or serializer.instance.route
            if owner.pk != route.owner_id and not owner.members.filter(pk=user.pk).exists():
                raise PermissionDenied(f"{owner.name} is neither the route's owner nor yours")
        if _rehearsal_changed(serializer.instance, data):
            extra["rehearsed_by"] = user if data.get("rehearsed_at") else None
        serializer.save(**extra)

    def perform_create(self, serializer):
        route = serializer.validated_data["route"]
        self.check_route(route)
        self._save(
            serializer, **({} if "owner" in serializer.validated_data else {"owner": route.owner})
        )

    def perform_update(self, serializer):
        if "route" in serializer.validated_data:
            self.check_route(serializer.validated_data["route"])
        self._save(serializer)
