"""Query-parameter filters of the list endpoints (django-filter).

Each filter's schema says exactly what it accepts (ids within bigint, strings without NUL,
strict booleans), so a value the schema allows is answered and any other is a 400.
"""

from datetime import UTC, datetime

from django import forms
from django_filters import fields
from django_filters import rest_framework as filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field

from signals_app.models import (
    MAX_ID,
    Baseline,
    Change,
    Environment,
    Owner,
    RollbackNote,
    Route,
    Service,
    Signal,
    Threshold,
)

from .authentication import is_service
from .ingest import parse_timestamp
from .problems import Problem, expected, item_error, shown, summary


class FilterBackend(DjangoFilterBackend):
    """Invalid query parameters are a 400 problem naming each one, what it expects and what
    it received (django-filter's own backend raises a bare ValidationError)."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            form, data = filterset.form, filterset.data
            errors = []
            for name, messages in form.errors.items():
                values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name)]
                received = shown(values[0]) if len(values) == 1 else [shown(v) for v in values]
                errors.extend(
                    item_error(
                        name,
                        str(message),
                        expected=expected(form.fields.get(name)),
                        received=received,
                    )
                    for message in messages
                )
            raise Problem(400, summary(errors), errors=errors)
        return filterset.qs


class _NotBlank:
    """A typed parameter given empty (`?route=`) is invalid, not "no filter"."""

    def clean(self, value):
        if value == "":
            raise forms.ValidationError("empty value; leave the parameter out instead")
        return super().clean(value)


class IdField(_NotBlank, forms.IntegerField):
    """An id that must exist: an unknown one is a 400 `no route with id 9` (as in a body),
    not an empty list that reads as "nothing there yet". One query (when given)."""

    def __init__(self, *args, model, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = model
        noun = model._meta.verbose_name
        self.expected = f"the id of an existing {noun}, an integer from 1 to {MAX_ID}"

    def clean(self, value):
        value = super().clean(value)
        if value is not None and not self.model.objects.filter(pk=value).exists():
            raise forms.ValidationError(f"no {self.model._meta.verbose_name} with id {value}")
        return value


class IsoDateTimeField(_NotBlank, fields.IsoDateTimeField):
    def to_python(self, value):
        # With a UTC offset, as a reading's observed_at (ingest.parse_timestamp): Django read
        # ?applied_after=2026-11-01T00:00:00 in the server's zone, silently.
        if value in self.empty_values:
            return None
        try:
            return parse_timestamp(value.strip())
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self, value):
        # In UTC: PostgreSQL refuses offsets past ±15:59, which RFC 3339 allows.
        value = super().clean(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first instant
            edge = datetime.min if value.year < 2 else datetime.max
            return edge.replace(tzinfo=UTC)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(filters.Filter):
    field_class = IdField

    def __init__(self, field_name, model, **kwargs):
        super().__init__(
            field_name=field_name, min_value=1, max_value=MAX_ID, model=model, **kwargs
        )


@extend_schema_field({"type": "string", "pattern": "^[^\\x00]*$"})
class TextFilter(filters.CharFilter):
    pass


class NameField(fields.ModelChoiceField):
    def to_python(self, value):
        if isinstance(value, str):
            name = value.strip()  # surrounding spaces are ignored, as the text filters did
            if value and not name:  # ?service=%20 names nothing: a 400, as empty is
                raise forms.ValidationError(
                    "empty value (only spaces); leave the parameter out instead"
                )
            value = name
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold NUL
            raise forms.ValidationError(
                self.error_messages["invalid_choice"],
                code="invalid_choice",
                params={"value": value},
            )
        return super().to_python(value)


def _all(model):
    return lambda request: model.objects.all()


def _services_visible(request):
    """A service key names only its own service; people any."""
    user = getattr(request, "user", None)
    if is_service(user):
        return Service.objects.filter(pk=user.key.service_id)
    return Service.objects.all()


def _owners_visible(request):
    """A service key names only the owners of its own routes; people any."""
    user = getattr(request, "user", None)
    if is_service(user):
        return Owner.objects.filter(routes__service_id=user.key.service_id).distinct()
    return Owner.objects.all()


@extend_schema_field({"type": "string", "minLength": 1, "pattern": "^[^\\x00]*$"})
class NameFilter(filters.ModelChoiceFilter):
    """A slug, key or name that must exist: an unknown one is a 400, not an empty list;
    so is an empty one (StrictFilterSet) or one of only spaces (NameField), while spaces
    around a name are stripped. `visible(request)` is what the caller may name: a service
    key is told nothing of other services or teams (another team's name is as unknown to
    it as a misspelt one, and the 400 lists only its own).

    One query looks it up (only when the parameter is given)."""

    field_class = NameField

    def __init__(self, field_name, model, to_field_name, visible=None, **kwargs):
        noun = model._meta.verbose_name
        super().__init__(
            field_name=field_name,
            queryset=visible or _all(model),
            to_field_name=to_field_name,
            error_messages={"invalid_choice": f"no {noun} with {to_field_name} %(value)r"},
            **kwargs,
        )


class StrictBooleanField(forms.Field):
    widget = forms.TextInput
    expected = "true or false"

    def to_python(self, value):
        if value is None:
            return None
        if value in ("true", "True", "1"):
            return True
        if value in ("false", "False", "0"):
            return False
        raise forms.ValidationError("expected true or false")


@extend_schema_field({"type": "boolean"})
class StrictBooleanFilter(filters.Filter):
    field_class = StrictBooleanField


class DateTimeFilter(filters.IsoDateTimeFilter):
    field_class = IsoDateTimeField


class StrictFilterSet(filters.FilterSet):
    """An empty typed parameter (`?kind=`) is a 400, as the schema says, not "all"; so is
    a single-valued one given twice (`?service=a&service=b`), not read as its last value."""

    def is_valid(self):
        valid = super().is_valid()
        getlist = getattr(self.data, "getlist", None)
        for name, declared in self.filters.items():
            if not isinstance(declared, TextFilter) and self.data.get(name) == "":
                if name not in self.form.errors:
                    self.form.add_error(name, "empty value; leave the parameter out instead")
                valid = False
            elif (
                getlist is not None
                and not isinstance(declared, filters.MultipleChoiceFilter)
                and len(getlist(name)) > 1
            ):
                self.form.errors.pop(name, None)
                self.form.add_error(name, "given more than once; give it once")
                valid = False
        return valid


class RouteFilter(StrictFilterSet):
    service = NameFilter(
        "service", Service, "slug", visible=_services_visible, help_text="service slug"
    )
    owner = NameFilter("owner", Owner, "name", visible=_owners_visible, help_text="owner name")
    path = TextFilter(help_text="exact path template")
    path_contains = TextFilter(field_name="path", lookup_expr="icontains")

    class Meta:
        model = Route
        fields = ["service", "method", "path", "owner"]


class SignalFilter(StrictFilterSet):
    class Meta:
        model = Signal
        fields = ["kind", "direction"]


class EnvironmentFilter(StrictFilterSet):
    is_production = StrictBooleanFilter()

    class Meta:
        model = Environment
        fields = ["is_production"]


class _RouteScopedFilter(StrictFilterSet):
    route = IdFilter("route_id", Route, help_text="route id")
    service = NameFilter(
        "route__service", Service, "slug", visible=_services_visible, help_text="service slug"
    )
    environment = NameFilter("environment", Environment, "slug", help_text="environment slug")


class ThresholdFilter(_RouteScopedFilter):
    signal = NameFilter("signal", Signal, "key", help_text="signal key")

    class Meta:
        model = Threshold
        fields = ["route", "service", "signal", "environment", "statistic", "cache_segment"]


class BaselineFilter(_RouteScopedFilter):
    signal = NameFilter("signal", Signal, "key", help_text="signal key")
    active = StrictBooleanFilter()

    class Meta:
        model = Baseline
        fields = ["route", "service", "signal", "environment", "cache_segment", "active"]


class ChangeFilter(_RouteScopedFilter):
    applied_after = DateTimeFilter(field_name="applied_at", lookup_expr="gte")
    applied_before = DateTimeFilter(field_name="applied_at", lookup_expr="lt")
    release = TextFilter()

    class Meta:
        model = Change
        fields = ["route", "service", "environment", "release"]


class RollbackNoteFilter(StrictFilterSet):
    route = IdFilter("route_id", Route, help_text="route id")
    change = IdFilter("change_id", Change, help_text="change id")
    service = NameFilter(
        "route__service", Service, "slug", visible=_services_visible, help_text="service slug"
    )

    class Meta:
        model = RollbackNote
        fields = ["route", "change", "service", "rehearsal_outcome"]
