import json
import math
from collections.abc import Mapping

from django.core.exceptions import FieldDoesNotExist
from django.db import IntegrityError, models, transaction
from rest_framework import serializers

from signals_app.api.filters import MAX_ID
from signals_app.api.ingest import parse_timestamp
from signals_app.api.problems import Described, Problem, item_error, shown
from signals_app.models import (
    MAX_MIN_SAMPLES,
    MAX_THRESHOLD_MINUTES,
    Baseline,
    CacheStatus,
    Change,
    Environment,
    Owner,
    RollbackNote,
    Route,
    Service,
    Signal,
    Threshold,
)


class TimestampField(serializers.DateTimeField):
    """A date-time with a UTC offset, as a reading's observed_at (ingest.parse_timestamp):
    DRF's own read 2026-11-26T18:00:00 in the server's zone, silently."""

    def to_internal_value(self, value):
        try:
            parsed = parse_timestamp(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return self.enforce_timezone(parsed)


class ModelSerializer(serializers.ModelSerializer):
    """DRF's, with every model date-time a TimestampField."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: TimestampField,
    }


# ---- readings: these describe the contract in the schema; the hot path validates with
# ingest.validate_items (see the measured figure there).

# At most this many unknown or read-only keys are reported (as readings report at most 100
# errors): each names every writable field, and 75,000 keys made a 16 MB answer.
MAX_BODY_ERRORS = 100


class ReadingInSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=Route.Method.choices, default="GET")
    route = serializers.CharField(max_length=500, help_text="Path template, e.g. /posts/{slug}")
    signal = serializers.CharField(help_text="A signal key, e.g. response_time_ms")
    value = serializers.FloatField(
        help_text="Finite; durations and counts 0 to 1e12, ratios [0, 1], scores [0, 100]"
    )
    environment = serializers.CharField(default="production")
    observed_at = TimestampField(
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


# ---- related fields that take only their own type: DRF's would read 1.5 as route 1 and
# look a list up as a slug (deeply nested, it recursed inside Django's lookup).


def _noun(field):
    return field.queryset.model._meta.verbose_name


class IdRelatedField(serializers.PrimaryKeyRelatedField):
    default_error_messages = {
        **serializers.PrimaryKeyRelatedField.default_error_messages,
        "incorrect_type": "Incorrect type. Expected an integer id, received {data_type}.",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # As the filters say it: `no route with id 5`.
        self.error_messages["does_not_exist"] = f"no {_noun(self)} with id {{pk_value}}"

    def to_internal_value(self, data):
        if isinstance(data, str) and data.isascii() and data.isdigit():
            data = int(data)  # "12", as a form sends it; int() would also read " 1 ", "1_0"
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if not 1 <= data <= MAX_ID:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


class NameRelatedField(serializers.SlugRelatedField):
    default_error_messages = {
        **serializers.SlugRelatedField.default_error_messages,
        "incorrect_type": "Incorrect type. Expected a {slug_name} string, received {data_type}.",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # As the filters say it: `no environment with slug 'nope'`.
        self.error_messages["does_not_exist"] = f"no {_noun(self)} with {{slug_name}} {{value!r}}"

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("incorrect_type", slug_name=self.slug_field, data_type=type(data).__name__)
        if "\x00" in data:  # PostgreSQL text cannot hold NUL: no row has it
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().to_internal_value(data)


# ---- every body a client writes (POST/PUT/PATCH), not query parameters


class StrictBody:
    """A serializer mixin: a body key that is not a writable field is a 400.

    DRF ignores unknown keys, so a typo ("window" for window_minutes) silently got the
    default. A read-only field (id, created_at, ...) is accepted with the value the
    resource has, so a client may PUT back what it GOT; another value, or any value on
    create, is refused ("read-only"). Errors a field cannot describe itself carry their
    expected/received in `described` (problems.Described)."""

    def to_internal_value(self, data):
        self.described = {}
        errors = self._strict_errors(data) if isinstance(data, Mapping) else {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors:
                raise
            raise serializers.ValidationError({**errors, **exc.detail}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def describe(self, name, expected, received):
        """Say what an error on `name` expected and received, when its field cannot (a
        rule over several fields)."""
        self.described[name] = Described(expected, shown(received))

    def _strict_errors(self, data):
        writable = [name for name, field in self.fields.items() if not field.read_only]
        errors = {}
        for name in data:
            if len(errors) >= MAX_BODY_ERRORS:  # a small body must not get a huge answer
                break
            field = self.fields.get(name)
            if field is None:
                self.described[name] = Described(writable, shown(name))
                errors[name] = "unknown field"
            elif field.read_only:
                expected = self._read_only_expected(field, name, data[name])
                if expected is not None:
                    self.described[name] = Described(expected, shown(data[name]))
                    errors[name] = "read-only"
        return errors

    def _read_only_expected(self, field, name, sent):
        """None when `sent` is what the resource has, else what was expected, in words."""
        if self.instance is None:
            return "leave it out: the registry sets it"
        if not hasattr(self, "_stored"):
            self._stored = self.to_representation(self.instance)
        stored = self._stored.get(name)
        if _same(field, sent, stored):
            return None
        return f"leave it out, or send the stored value {json.dumps(stored)}"

    def update(self, instance, validated_data):
        # A PATCH that changes nothing saves nothing: a save would add an empty row to
        # the object's history (django-simple-history records every save).
        if not any(_differs(instance, name, value) for name, value in validated_data.items()):
            return instance
        return super().update(instance, validated_data)


def _same(field, sent, shown_value):
    """Whether a read-only field's value sent back is the one the resource has (as GET
    showed it, or the same instant written another way)."""
    if sent == shown_value:
        return True
    if isinstance(field, serializers.DateTimeField) and isinstance(sent, str) and shown_value:
        try:
            return field.to_internal_value(sent) == field.to_internal_value(shown_value)
        except serializers.ValidationError:
            return False
    return False


def _differs(instance, name, value):
    try:
        field = instance._meta.get_field(name)
    except FieldDoesNotExist:
        return True
    if field.is_relation:  # compare ids: no query for the related row
        return getattr(instance, field.attname) != (value.pk if value is not None else None)
    return getattr(instance, name) != value


class UniqueSet:
    """A ModelSerializer mixin for a model whose one UniqueConstraint spans several fields
    (a threshold's route, signal, environment, statistic, cache_segment, window_minutes; a
    route's service, method, path): a save that would repeat another object's set is a 409
    naming that object and the set received.

    Checked when saving, so after the field errors and the view's permission checks: DRF's
    UniqueTogetherValidator ran before both and hid them behind "must make a unique set"
    (serializers using this set `Meta.validators = []`). The constraint stays the last word:
    a concurrent request that stores the same set first makes our INSERT fail, and that
    IntegrityError is the same 409."""

    def unique_fields(self):
        model = self.Meta.model
        (constraint,) = [
            c
            for c in model._meta.constraints
            if isinstance(c, models.UniqueConstraint) and c.condition is None
        ]
        return [model._meta.get_field(name) for name in constraint.fields]

    def save(self, **kwargs):
        fields = self.unique_fields()
        touched = {field.name for field in fields} & set(self.validated_data)
        if self.instance is not None and not touched:  # an edit of other fields
            return super().save(**kwargs)
        self._refuse_duplicate(fields)
        try:
            with transaction.atomic():  # a savepoint: the lookup below needs the connection
                return super().save(**kwargs)
        except IntegrityError:
            self._refuse_duplicate(fields)  # a concurrent request stored the set first
            raise  # another constraint: the exception handler's generic 409

    def _refuse_duplicate(self, fields):
        values = {field.name: self._unique_value(field) for field in fields}
        others = self.Meta.model.objects.filter(
            **{field.attname: _pk(values[field.name]) for field in fields}
        )
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        existing = others.values_list("pk", flat=True).first()
        if existing is None:
            return
        noun = self.Meta.model._meta.verbose_name
        names = ", ".join(values)
        received = {
            name: self.fields[name].to_representation(value) for name, value in values.items()
        }
        message = f"{noun} {existing} already has this {names}"
        raise Problem(
            409,
            f"{message}: change one of them, or edit {noun} {existing} instead",
            slug="duplicate",
            errors=[
                item_error(
                    None,
                    message,
                    expected=f"a {names} that no other {noun} has",
                    received=received,
                )
            ],
        )

    def _unique_value(self, field):
        """The value the save would store: from the body, else the stored one, else the
        model's default."""
        if field.name in self.validated_data:
            return self.validated_data[field.name]
        if self.instance is not None:
            return getattr(self.instance, field.name)
        return field.get_default()


def _pk(value):
    return value.pk if isinstance(value, models.Model) else value


# ---- the registry's resources (DESIGN.md field names). Only what a client may set is
# writable; who did it (captured_by, rehearsed_by, created_by) comes from the request.


def _finite(value):
    if not math.isfinite(value):
        raise serializers.ValidationError("must be a finite number")
    return value


class RouteSerializer(UniqueSet, StrictBody, ModelSerializer):
    service = NameRelatedField(slug_field="slug", queryset=Service.objects.all())
    owner = NameRelatedField(
        slug_field="name",
        queryset=Owner.objects.all(),
        required=False,
        help_text="defaults to the service's owner",
    )

    class Meta:
        model = Route
        fields = [
            "id",
            "service",
            "method",
            "path",
            "owner",
            "expected_input",
            "expected_result",
            "user_impact",
            "notes",
        ]
        validators = []  # UniqueSet: a duplicate is a 409 once every other check passed

    def validate_path(self, path):
        # Only a path this request sets: a route registered before the rule stays editable.
        if self.instance is None or path != self.instance.path:
            error = Route.path_error(path)
            if error:
                self.describe("path", Route.PATH_TEMPLATE, path)
                raise serializers.ValidationError(error)
        return path


class SignalSerializer(StrictBody, ModelSerializer):
    class Meta:
        model = Signal
        fields = ["key", "name", "unit", "kind", "direction"]


class EnvironmentSerializer(StrictBody, ModelSerializer):
    class Meta:
        model = Environment
        fields = ["slug", "name", "is_production"]


class _RouteScoped(StrictBody, ModelSerializer):
    route = IdRelatedField(queryset=Route.objects.all())
    environment = NameRelatedField(slug_field="slug", queryset=Environment.objects.all())


STATISTIC_DEFAULT = Threshold._meta.get_field("statistic").default


class ThresholdSerializer(UniqueSet, _RouteScoped):
    signal = NameRelatedField(slug_field="key", queryset=Signal.objects.all())
    window_minutes = serializers.IntegerField(
        min_value=1, max_value=MAX_THRESHOLD_MINUTES, default=15
    )
    min_samples = serializers.IntegerField(min_value=1, max_value=MAX_MIN_SAMPLES, default=20)
    sustain_minutes = serializers.IntegerField(
        min_value=0, max_value=MAX_THRESHOLD_MINUTES, default=0
    )
    warn = serializers.FloatField(validators=[_finite])
    critical = serializers.FloatField(validators=[_finite])

    class Meta:
        model = Threshold
        fields = [
            "id",
            "route",
            "signal",
            "environment",
            "statistic",
            "cache_segment",
            "window_minutes",
            "warn",
            "critical",
            "min_samples",
            "sustain_minutes",
        ]
        validators = []  # UniqueSet: a duplicate is a 409 once every other check passed

    def validate(self, attrs):
        attrs = super().validate(attrs)
        instance = self.instance
        signal = attrs.get("signal", instance and instance.signal)
        warn = attrs.get("warn", instance and instance.warn)
        critical = attrs.get("critical", instance and instance.critical)
        statistic = attrs.get("statistic", instance.statistic if instance else STATISTIC_DEFAULT)
        levels = {"warn": warn, "critical": critical}
        # Only levels this request sets or judges anew: a threshold saved before levels
        # were bounded (or whose signal's kind changed since) stays editable otherwise.
        touched = {"signal", "statistic", "warn", "critical"} & set(attrs)
        out_of_range = Threshold.range_errors(signal, statistic, levels) if touched else {}
        for name, (_why, expected) in out_of_range.items():
            self.describe(name, expected, levels[name])
        if out_of_range:
            raise serializers.ValidationError({k: why for k, (why, _) in out_of_range.items()})
        error = Threshold.ordering_error(signal, warn, critical)
        if error:
            # The critical in use, from the body or stored (a PATCH of the signal alone).
            lower = signal.direction == Signal.Direction.LOWER_IS_WORSE
            expected = f"a number at or {'below' if lower else 'above'} warn ({warn})"
            self.describe("critical", expected, critical)
            raise serializers.ValidationError({"critical": error})
        return attrs


class BaselineSerializer(_RouteScoped):
    signal = serializers.SlugRelatedField(slug_field="key", read_only=True)
    route = serializers.PrimaryKeyRelatedField(read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    captured_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Baseline
        fields = [
            "id",
            "route",
            "signal",
            "environment",
            "cache_segment",
            "window_start",
            "window_end",
            "count",
            "p50",
            "p95",
            "p99",
            "mean",
            "captured_by",
            "note",
            "active",
        ]
        # A baseline is a measurement (baselines/capture takes it); people annotate it
        # or retire it, they do not type its numbers.
        read_only_fields = [
            "cache_segment",
            "window_start",
            "window_end",
            "count",
            "p50",
            "p95",
            "p99",
            "mean",
        ]


class ChangeSerializer(_RouteScoped):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Change
        fields = [
            "id",
            "route",
            "environment",
            "variable",
            "summary",
            "applied_at",
            "release",
            "cache_cleared",
            "created_by",
        ]

    def validate(self, attrs):
        attrs = super().validate(attrs)
        route = attrs.get("route")
        if self.instance is not None and route is not None and route.pk != self.instance.route_id:
            error = self.instance.route_move_error(route.pk)
            if error:
                expected = f"route {self.instance.route_id} while rollback notes name this change"
                self.describe("route", expected, route.pk)
                raise serializers.ValidationError({"route": error})
        return attrs


class RollbackNoteSerializer(StrictBody, ModelSerializer):
    route = IdRelatedField(queryset=Route.objects.all())
    change = IdRelatedField(queryset=Change.objects.all(), required=False, allow_null=True)
    owner = NameRelatedField(
        slug_field="name",
        queryset=Owner.objects.all(),
        required=False,
        allow_null=True,
        help_text="defaults to the route's owner",
    )
    rehearsed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = RollbackNote
        fields = [
            "id",
            "route",
            "change",
            "steps",
            "command",
            "owner",
            "rehearsed_at",
            "rehearsed_by",
            "rehearsal_outcome",
        ]

    def validate(self, attrs):
        attrs = super().validate(attrs)
        instance = self.instance
        route = attrs.get("route", instance and instance.route)
        change = attrs.get("change", instance and instance.change)
        if change is not None and change.route_id != route.pk:
            # Blame what the body sent: a note moved to another route keeps its change.
            if "change" in attrs:
                self.describe("change", f"a change of route {route.pk}, or null", change.pk)
                raise serializers.ValidationError({"change": "the change is on another route"})
            expected = f"route {change.route_id} (the route of change {change.pk}), or change: null"
            self.describe("route", expected, route.pk)
            raise serializers.ValidationError(
                {"route": f"the note's change {change.pk} is on route {change.route_id}"}
            )
        rehearsed_at = attrs.get("rehearsed_at", instance and instance.rehearsed_at)
        outcome = attrs.get("rehearsal_outcome", instance and instance.rehearsal_outcome)
        if bool(rehearsed_at) != bool(outcome):
            raise serializers.ValidationError(
                {"rehearsal_outcome": "give rehearsed_at and rehearsal_outcome together"}
            )
        return attrs
