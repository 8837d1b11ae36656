"""Query-parameter filters of the list endpoints (django-filter)."""

from django import forms
from django_filters import rest_framework as filters
from django_filters.filters import BooleanFilter as BaseBooleanFilter

from signals_app.models import Baseline, Change, Environment, RollbackNote, Route, Signal, Threshold


class _TrueOrFalse(forms.NullBooleanField):
    widget = forms.TextInput  # the raw value, not a select that maps unknowns to "unset"

    def to_python(self, value):
        text = "" if value is None else str(value).strip().lower()
        if text == "":
            return None
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError(f"expected true or false (or 1 or 0), received {value!r}")


class FlagFilter(BaseBooleanFilter):
    """true/false (1/0, any case). Anything else is a 400 naming the parameter: django-
    filter's BooleanFilter reads an unknown value as no filter and lists everything."""

    field_class = _TrueOrFalse


class RouteFilter(filters.FilterSet):
    service = filters.CharFilter(field_name="service__slug", help_text="service slug")
    owner = filters.CharFilter(field_name="owner__name", help_text="owner name")
    path = filters.CharFilter(help_text="exact path template")
    path_contains = filters.CharFilter(field_name="path", lookup_expr="icontains")

    class Meta:
        model = Route
        fields = ["service", "method", "path", "owner"]


class SignalFilter(filters.FilterSet):
    class Meta:
        model = Signal
        fields = ["kind", "direction"]


class EnvironmentFilter(filters.FilterSet):
    class Meta:
        model = Environment
        fields = ["is_production"]


class _RouteScopedFilter(filters.FilterSet):
    route = filters.NumberFilter(field_name="route_id", help_text="route id")
    service = filters.CharFilter(field_name="route__service__slug", help_text="service slug")
    environment = filters.CharFilter(field_name="environment__slug", help_text="environment slug")


class ThresholdFilter(_RouteScopedFilter):
    signal = filters.CharFilter(field_name="signal__key", help_text="signal key")

    class Meta:
        model = Threshold
        fields = ["route", "service", "signal", "environment", "statistic", "cache_segment"]


class BaselineFilter(_RouteScopedFilter):
    signal = filters.CharFilter(field_name="signal__key", help_text="signal key")

    class Meta:
        model = Baseline
        fields = ["route", "service", "signal", "environment", "cache_segment", "active"]


class ChangeFilter(_RouteScopedFilter):
    applied_after = filters.IsoDateTimeFilter(field_name="applied_at", lookup_expr="gte")
    applied_before = filters.IsoDateTimeFilter(field_name="applied_at", lookup_expr="lt")

    class Meta:
        model = Change
        fields = ["route", "service", "environment", "release"]


class RollbackNoteFilter(filters.FilterSet):
    route = filters.NumberFilter(field_name="route_id", help_text="route id")
    change = filters.NumberFilter(field_name="change_id", help_text="change id")
    service = filters.CharFilter(field_name="route__service__slug", help_text="service slug")

    class Meta:
        model = RollbackNote
        fields = ["route", "change", "service", "rehearsal_outcome"]
