"""The admin is where owners live (issue 5).

Owners change thresholds, baselines, changes and rollback notes only of the routes
they own, `Route.objects.owned_by(user)` being the one definition (the API uses it
too); everyone with a login reads everything. The route page is the one place:
what the route promises, its statuses, charts, incidents, baselines, changes and
rollback notes.
"""

import dataclasses
import functools
import json
from datetime import timedelta
from functools import reduce
from operator import or_

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import ActionLocation, IncorrectLookupParameters
from django.contrib.admin.utils import NestedObjects, model_ngettext, quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import AdminIntegerFieldWidget
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, router, transaction
from django.db.models import Exists, OuterRef, Value
from django.db.models.constants import LOOKUP_SEP
from django.forms.utils import flatatt
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin
from simple_history.template_utils import HistoricalRecordContextHelper

from . import charts, evaluation, notifications
from .models import (
    Baseline,
    Change,
    ContentItem,
    Environment,
    EvaluationRun,
    IdempotentRequest,
    Incident,
    Notification,
    Owner,
    Reading,
    Review,
    RollbackNote,
    Route,
    Service,
    ServiceKey,
    Signal,
    Status,
    Threshold,
    review_queue_order,
)

admin.site.site_header = "dq-registry"
admin.site.site_title = "dq-registry"
admin.site.index_title = "Data quality signals"
admin.site.site_url = "/board"

SILENCE_HOURS = (1, 4, 24, 72)
RECENT_CHANGES = 5


# --- who owns what ------------------------------------------------------------


def owned_route_ids(request):
    """Ids of the routes the user owns (Route.objects.owned_by), one query per request."""
    if not hasattr(request, "_dq_owned_route_ids"):
        request._dq_owned_route_ids = frozenset(
            Route.objects.owned_by(request.user).values_list("pk", flat=True)
        )
    return request._dq_owned_route_ids


def owns_route(request, route_id):
    return request.user.is_superuser or route_id in owned_route_ids(request)


def member_owner_ids(request):
    """Ids of the Owners (teams) the user is a member of, one query per request."""
    if not hasattr(request, "_dq_member_owner_ids"):
        request._dq_member_owner_ids = frozenset(
            Owner.objects.filter(members=request.user).values_list("pk", flat=True)
        )
    return request._dq_member_owner_ids


def cached_choices(request, key, queryset):
    """Select choices built once per request: inline rows then cost no query each."""
    cache = request.__dict__.setdefault("_dq_choices", {})
    if key not in cache:
        cache[key] = [("", "---------"), *((obj.pk, str(obj)) for obj in queryset)]
    return cache[key]


def owned_rows(request, queryset):
    """The rows of `queryset` (thresholds, baselines, ...) on routes the user owns."""
    return queryset.filter(route__in=Route.objects.owned_by(request.user).values("pk"))


class OwnRoutesFilter(admin.SimpleListFilter):
    """Rows of the routes the user owns (the default, ?mine=1) or of every team's (?mine=0).

    Mine by default: an owner opens Thresholds to curate their own, the list they had
    before other teams' rows could be read, and "select all" then meets none they may not
    change. Superusers own every route, so they get no such filter."""

    title = "ownership"
    parameter_name = "mine"

    def lookups(self, request, model_admin):
        return [("1", "routes I own"), ("0", "every team's routes")]

    def value(self):
        return super().value() or "1"

    def choices(self, changelist):
        # No "All" entry: with no parameter the list is the user's own.
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "1":
            return owned_rows(request, queryset)
        if self.value() == "0":
            return queryset
        # The admin's answer to a lookup it does not know: the list, flagged ?e=1.
        raise IncorrectLookupParameters(f"?mine= is 1 or 0, not {self.value()!r}")


class OwnRoutesChangeList(ChangeList):
    """The changelist whose "N results (M total)", beside the search box, counts M over
    the ownership chosen (the user's routes by default), not over every team's rows: that
    link opens the default list, and the default page said "3 results (10 total)", a link
    to itself."""

    def get_results(self, request):
        everyone = self.root_queryset
        for spec in self.filter_specs:
            if isinstance(spec, OwnRoutesFilter):
                self.root_queryset = spec.queryset(request, everyone)
        try:
            super().get_results(request)
        finally:
            self.root_queryset = everyone


def own_rows_only(action):
    """An action of a RouteOwnedAdmin runs on the selected rows of the user's routes only
    and says how many others it left alone (none of the user's: it does not run)."""

    @functools.wraps(action)
    def run(model_admin, request, queryset):
        if request.user.is_superuser:
            return action(model_admin, request, queryset)
        mine = owned_rows(request, queryset)
        selected, owned = queryset.count(), mine.count()
        if owned < selected:
            refused = selected - owned
            model_admin.message_user(
                request,
                f"Left alone: {refused} selected {model_ngettext(model_admin.opts, refused)} "
                "on another team's routes; you change only your own routes' rows.",
                messages.WARNING,
            )
        return action(model_admin, request, mine) if owned else None

    return run


class RouteOwnedAdmin:
    """For models hanging off a route: everyone with a login reads every row (another
    team's open on Django's view-only page), owners change only their routes' rows."""

    def get_queryset(self, request):
        # Change and history pages name the object too: fetch what its __str__ needs.
        return super().get_queryset(request).select_related(*self.list_select_related)

    def get_list_filter(self, request):
        if request.user.is_superuser:
            return self.list_filter
        return [OwnRoutesFilter, *self.list_filter]

    def get_changelist(self, request, **kwargs):
        return OwnRoutesChangeList

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        # Every action here changes rows (delete, capture, rehearsal): the user's only.
        actions = super().get_actions(request, action_location=action_location)
        return {
            name: dataclasses.replace(action, func=own_rows_only(action.func))
            for name, action in actions.items()
        }

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if request.path.endswith("/autocomplete/"):
            # A picker (a rollback note's change) offers rows of the user's routes only.
            queryset = owned_rows(request, queryset)
        return queryset, may_have_duplicates

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.route_id))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.route_id))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "route":
            # An add form offers only the routes the user owns.
            kwargs["queryset"] = Route.objects.owned_by(request.user).select_related("service")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class RouteChildInline:
    """Inlines of the route page: editable only on a route the user owns (on another
    team's, each row's link opens its read-only page)."""

    def has_add_permission(self, request, obj=None):
        allowed = super().has_add_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.pk))

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.pk))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.pk))


class NotificationsGoWithIncidents:
    """For admins whose deletes reach incidents or owners: Django asks the Notification
    admin whether each notification may be deleted, which says no to everyone (its rows are
    written by evaluation and removed by `prune`), so a route, threshold, incident, service
    or owner with any notification could not be deleted at all. Notifications outlive their
    incident (an open one deleted is notified as resolved) and go with their owner."""

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(Notification._meta.verbose_name)
        return deleted, counts, perms_needed, protected


class AuditedAdmin(SimpleHistoryAdmin):
    """History (who, when, old → new) without the `updated_at` noise in every diff."""

    history_noise = ("updated_at",)
    object_history_list_template = "admin/signals_app/object_history_list.html"

    def set_history_delta_changes(self, request, historical_records, foreign_keys_are_objs=True):
        previous = None
        for current in historical_records:
            if previous is not None:
                delta = previous.diff_against(
                    current,
                    excluded_fields=self.history_noise,
                    foreign_keys_are_objs=foreign_keys_are_objs,
                )
                helper = self.get_historical_record_context_helper(request, previous)
                previous.history_delta_changes = helper.context_for_delta_changes(delta)
            previous = current

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        """A past version's page, whose "Revert" saves it: only for who may change the row
        now. simple_history asks for the view permission alone, so an owner could save
        another team's threshold there (moved to one of their own routes, new levels)."""
        current = self.get_object(request, unquote(object_id))
        if current is None:
            # A deleted row's past version reads (for who may read it); nothing to save.
            if request.method == "POST":
                raise PermissionDenied
        elif not self.has_change_permission(request, current):
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)


# --- the big table ------------------------------------------------------------


def estimated_count(queryset, *, exact_below=200, sqlite_cap=10_000):
    """How many rows, without COUNT(*) over the readings.

    PostgreSQL: pg_class.reltuples for the whole table, the planner's row estimate for
    a filtered one. An estimate can be stale (reltuples is -1 or 0 before the first
    ANALYZE) and the changelist loads ALL rows unpaginated when the count is at most
    one page, so a count capped at `exact_below` + 1 rows (it reads no more than
    that) checks it: below the cap it is exact. Unfiltered, both come in one query.
    Other databases (SQLite in development): a count capped at `sqlite_cap` rows.
    """
    if connection.vendor != "postgresql":
        return queryset.order_by()[:sqlite_cap].count()
    cap = exact_below + 1
    if not queryset.query.where:
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint,"
                f" (SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT %s) AS capped)"
                " FROM pg_class WHERE oid = %s::regclass",
                [cap, queryset.model._meta.db_table],
            )
            estimate, capped = cursor.fetchone()
        return capped if capped < cap else max(estimate, cap)
    plan = queryset.order_by().explain(format="json")
    if not plan:
        # Django found the query empty without asking the database (an id beyond the
        # column's range, ?route__id__exact=99999999999999999999999) and explains nothing.
        return 0
    plan = json.loads(plan) if isinstance(plan, str) else plan
    estimate = int(plan[0]["Plan"]["Plan Rows"])
    if estimate <= exact_below:
        return queryset.order_by()[:cap].count()
    return estimate


class EstimatedCountPaginator(Paginator):
    @cached_property
    def count(self):
        return estimated_count(self.object_list)


# --- route page pieces --------------------------------------------------------


def capture_baselines_action(model_admin, request, queryset, *, routes):
    """Admin action: capture baselines over the last 60 minutes, for selected routes (every
    signal, environment and cache segment with readings) or for the keys of selected
    baselines. Only routes the user owns are captured (superusers: all)."""
    owned = Route.objects.owned_by(request.user).values("pk")
    if routes:
        selected = list(queryset.filter(pk__in=owned))
        keys = evaluation.baseline_keys(selected, environments=list(Environment.objects.all()))
        refused = queryset.count() - len(selected)
    else:
        selected = list(queryset.filter(route__in=owned))
        keys = [
            evaluation.BaselineKey(b.route_id, b.signal_id, b.environment_id, b.cache_segment)
            for b in selected
        ]
        refused = queryset.count() - len(selected)
    start, end = evaluation.capture_window(minutes=evaluation.DEFAULT_BASELINE_MINUTES)
    result = evaluation.capture_baselines(
        keys, start=start, end=end, user=request.user, note="captured in the admin"
    )
    model_admin.message_user(
        request,
        f"Captured {len(result.baselines)} baselines over {start:%H:%M}–{end:%H:%M} UTC; "
        f"{len(result.skipped)} keys had no readings and kept their baseline."
        + (f" {refused} not yours, left alone." if refused else ""),
        messages.SUCCESS if result.baselines else messages.WARNING,
    )


def threshold_status_rows(route, thresholds, baselines, open_incidents):
    """Current status per threshold, evaluated on demand (evaluation.route_status) from the
    page's thresholds (in evaluation.ROUTE_STATUS_ORDER), active baselines and open
    incidents."""
    status = evaluation.route_status(
        route, thresholds=thresholds, baselines=baselines, open_incidents=open_incidents
    )
    by_id = {threshold.pk: threshold for threshold in thresholds}
    rows = []
    for entry in status["thresholds"]:
        threshold = by_id.get(entry["threshold"])
        if threshold is None:  # added between the two reads
            continue
        label = Status(entry["status"]).label
        change = signed_pct(entry["change_pct"])
        rows.append({**entry, "threshold": threshold, "status_label": label, "change": change})
    return status, rows


def change_verdict_rows(changes):
    """Recent changes with their before/after verdicts (evaluation.compare_changes: three
    queries however many changes)."""
    changes = list(changes)
    comparisons = evaluation.compare_changes(changes) if changes else []
    return [
        {
            "change": change,
            "verdict": comparison["verdict"],
            "reason": comparison["detail"],
        }
        for change, comparison in zip(changes, comparisons, strict=True)
    ]


def signed_pct(value, prefix=""):
    """'p95 +12.5 %', or '' when there is nothing to compare."""
    return "" if value is None else f"{prefix} {value:+.1f} %".strip()


def comparison_rows(comparison):
    """One row per signal and cache segment of evaluation.compare_change's result."""
    rows = []
    for entry in comparison["signals"]:
        ratio = entry["cache_hit_ratio"]
        for segment in entry["segments"]:
            deciding = "mean" if segment["delta_pct"].get("p95") is None else "p95"
            rows.append(
                {
                    "signal": entry["signal"],
                    "unit": entry["unit"],
                    "segment": segment["segment"],
                    "before": segment["before"],
                    "after": segment["after"],
                    "change": signed_pct(segment["delta_pct"][deciding], deciding),
                    "hit_ratio_before": ratio["before"],
                    "hit_ratio_after": ratio["after"],
                    "verdict": segment["verdict"],
                    "reason": segment["detail"],
                }
            )
    return rows


def status_badge(status):
    return format_html('<span class="dq-badge dq-{}">{}</span>', status, Status(status).label)


# --- forms --------------------------------------------------------------------


def bounded_integer_field(model, name):
    """The admin form field of an integer model field, with the bounds of its validators:
    a PositiveIntegerField's own says ">= 0" and nothing more, where the model refuses 0
    or more than a week."""
    field = model._meta.get_field(name)
    lows = [v.limit_value for v in field.validators if isinstance(v, MinValueValidator)]
    highs = [v.limit_value for v in field.validators if isinstance(v, MaxValueValidator)]
    return field.formfield(
        min_value=max(lows, default=None),
        max_value=min(highs, default=None),
        widget=AdminIntegerFieldWidget,
    )


class ThresholdForm(forms.ModelForm):
    window_minutes = bounded_integer_field(Threshold, "window_minutes")
    min_samples = bounded_integer_field(Threshold, "min_samples")
    sustain_minutes = bounded_integer_field(Threshold, "sustain_minutes")

    class Meta:
        model = Threshold
        fields = [
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

    def clean(self):
        cleaned = super().clean()
        signal, warn, critical = (cleaned.get(k) for k in ("signal", "warn", "critical"))
        if signal is not None:
            # The model copies the direction on save; the check constraint needs it now.
            self.instance.direction = signal.direction
        if signal is None:
            return cleaned
        statistic = cleaned.get("statistic")
        # Only when the levels or what they are judged by changed: a threshold saved before
        # levels were bounded must not block the route page's other rows.
        judged = {"signal", "statistic", "warn", "critical"} & set(self.changed_data)
        levels = {"warn": warn, "critical": critical}
        ranges = Threshold.range_errors(signal, statistic, levels) if judged else {}
        for name, (why, expected) in ranges.items():
            self.add_error(name, f"{why}: expected {expected}.")
        if warn is None or critical is None or ranges:
            return cleaned
        error = Threshold.ordering_error(signal, warn, critical)
        if error:
            self.add_error("critical", error)
        return cleaned


class RouteForm(forms.ModelForm):
    class Meta:
        model = Route
        fields = ["service", "method", "path", "owner"]

    def clean_path(self):
        path = self.cleaned_data["path"]
        # Only a path this form sets: a route registered before the rule stays editable.
        error = Route.path_error(path) if "path" in self.changed_data else None
        if error:
            raise forms.ValidationError(f"The path {error}: expected {Route.PATH_TEMPLATE}.")
        return path


class RollbackNoteForm(forms.ModelForm):
    class Meta:
        model = RollbackNote
        fields = ["route", "change", "steps", "command", "owner"]

    def clean(self):
        cleaned = super().clean()
        change, route = cleaned.get("change"), cleaned.get("route") or self.instance_route()
        if change is not None and route is not None and change.route_id != route.pk:
            self.add_error("change", f"This change belongs to another route ({change.route}).")
        return cleaned

    def instance_route(self):
        return self.instance.route if self.instance.route_id else None


# Rows a delete cascades to that its confirmation page counts instead of listing: a route
# may have millions of readings, and Django's page loaded every one into memory and wrote a
# line for each (a service's, signal's or environment's delete, all of theirs).
COUNTED_NOT_LISTED = (Reading, IdempotentRequest)


def _required_keys(model, depth=3):
    """The non-null foreign keys of `model` and of what they point to, `depth` deep (an
    incident names its threshold, which names its route, which names its service), as
    select_related paths (route, route__service, route__owner, signal, ...)."""
    paths = []
    for field in model._meta.concrete_fields:
        if field.many_to_one and not field.null:
            paths.append(field.name)
            if depth > 1:
                nested = _required_keys(field.related_model, depth - 1)
                paths += [f"{field.name}__{path}" for path in nested]
    return paths


class _CountingCollector(NestedObjects):
    """Django's admin collector, except that the COUNTED_NOT_LISTED rows stay in the
    database: their querysets are kept (as a plain delete's collector keeps them for one
    DELETE each) and counted once."""

    def can_fast_delete(self, objs, from_field=None):
        model = objs._meta.model if hasattr(objs, "_meta") else getattr(objs, "model", None)
        return model in COUNTED_NOT_LISTED or super().can_fast_delete(objs, from_field)

    def related_objects(self, related_model, related_fields, objs):
        # Each row's line needs what its __str__ names (a threshold's route, service, signal
        # and environment): Django's collector fetched those one query per row.
        queryset = super().related_objects(related_model, related_fields, objs)
        keys = _required_keys(related_model)
        return queryset.select_related(*keys) if keys else queryset

    def counted(self):
        """{model: number of rows} of the COUNTED_NOT_LISTED querysets, one COUNT each."""
        querysets = {}
        for queryset in self.fast_deletes:
            querysets.setdefault(queryset.model, []).append(queryset.order_by())
        # One row may come through two paths (a service's reading: by service and by route).
        return {model: reduce(or_, found).count() for model, found in querysets.items()}


class ReadingsCounted:
    """For admins whose deletes cascade to readings: the confirmation page (and the delete
    action's) names how many readings go, in one COUNT, instead of loading and listing each.

    The rest is Django's get_deleted_objects (django/contrib/admin/utils.py): the same
    nested list, counts, missing permissions and protected rows."""

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        if not objs:
            return [], {}, set(), []
        collector = _CountingCollector(using=router.db_for_write(objs[0]._meta.model), origin=objs)
        collector.collect(objs)
        perms_needed = set()

        def format_callback(obj):
            return self._deleted_object_line(request, obj, perms_needed)

        to_delete = collector.nested(format_callback)
        protected = [format_callback(obj) for obj in collector.protected]
        model_count = {
            model._meta.verbose_name_plural: len(rows)
            for model, rows in collector.model_objs.items()
        }
        for model, count in collector.counted().items():
            if not count:
                continue
            opts = model._meta
            model_admin = self.admin_site._registry.get(model)
            if model_admin is not None and not model_admin.has_delete_permission(request):
                perms_needed.add(opts.verbose_name)
            model_count[opts.verbose_name_plural] = count
            to_delete.append(f"{capfirst(opts.verbose_name_plural)}: {count:,} (not listed)")
        return to_delete, model_count, perms_needed, protected

    def _deleted_object_line(self, request, obj, perms_needed):
        """One object on the confirmation page, as Django writes it."""
        opts = obj._meta
        model_admin = self.admin_site._registry.get(type(obj))
        if model_admin is None:
            return f"{capfirst(opts.verbose_name)}: {obj}"
        if not model_admin.has_delete_permission(request, obj):
            perms_needed.add(opts.verbose_name)
        try:
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[quote(obj.pk)],
            )
        except NoReverseMatch:
            return f"{capfirst(opts.verbose_name)}: {obj}"
        return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, str(obj))


# --- reference data -----------------------------------------------------------


def shown_once(request, template, context):
    """A page holding a secret shown once: rendered straight into the response, never into
    messages (the message store may be a cookie), and never stored by a cache."""
    response = TemplateResponse(request, template, context)
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store"
    return response


class OwnerForm(forms.ModelForm):
    def clean_webhook_url(self):
        url = self.cleaned_data["webhook_url"]
        # A first answer, when it changes: deliveries check again when they are sent.
        if "webhook_url" in self.changed_data:
            refusal = notifications.url_refusal(url)
            if refusal is not None:
                raise forms.ValidationError(
                    f"{refusal[0].upper()}{refusal[1:]}. Enter a public http(s) URL.",
                    code="private_address",
                )
        return url


# An owner's fields that no one filters on in the admin (they are credentials).
SECRET_OWNER_FIELDS = {"signing_secret", "webhook_url"}


@admin.register(Owner)
class OwnerAdmin(NotificationsGoWithIncidents, admin.ModelAdmin):
    form = OwnerForm
    list_display = ["name", "contact_email", "webhook", "signed"]
    search_fields = ["name", "contact_email"]
    filter_horizontal = ["members"]
    # The signing secret is not a form field (editable=False): only the action makes one.
    fields = ["name", "contact_email", "webhook_url", "members", "signing"]
    readonly_fields = ["signing", "webhook"]
    actions = ["generate_signing_secret"]

    def get_queryset(self, request):
        # A webhook URL is a credential (Slack's and Teams' carry their token): whole for
        # superusers and the team's members, scheme and host for everyone else. Whether the
        # user may read it is asked in the page's own query, not one more.
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset.annotate(webhook_readable=Value(True))
        membership = Owner.members.through.objects.filter(owner=OuterRef("pk"), user=request.user)
        return queryset.annotate(webhook_readable=Exists(membership))

    def lookup_allowed(self, lookup, value, request=None):
        # Django lets a changelist filter on any field of its own table: a guess at
        # ?signing_secret__startswith= or ?webhook_url__contains= listed the team or not,
        # which read every team's secret and URL out a character at a time.
        if lookup.split(LOOKUP_SEP, 1)[0] in SECRET_OWNER_FIELDS:
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_fields(self, request, obj=None):
        if obj is not None and not getattr(obj, "webhook_readable", False):
            # Another team's page, read-only: where its webhook goes, not the URL.
            return ["webhook" if name == "webhook_url" else name for name in self.fields]
        return self.fields

    def has_change_permission(self, request, obj=None):
        # A member changes their own team (the fields below); another team is read-only.
        allowed = super().has_change_permission(request, obj)
        if obj is None or request.user.is_superuser:
            return allowed
        return allowed and obj.pk in member_owner_ids(request)

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return self.readonly_fields
        # A member sets where the team is reached, not who the team is or who is on it.
        return [*self.readonly_fields, "name", "members"]

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Only rotate_signing_secret() writes the secret: a page saved while the action ran
        # would otherwise put back the secret it loaded.
        obj.save(update_fields=["name", "contact_email", "webhook_url"])

    @admin.display(description="webhook url")
    def webhook(self, owner):
        if not owner.webhook_url:
            return None
        if getattr(owner, "webhook_readable", False):
            return owner.webhook_url
        return notifications.shown_url(owner.webhook_url)

    @admin.display(description="signed", boolean=True)
    def signed(self, owner):
        return bool(owner.signing_secret)

    @admin.display(description="signing secret")
    def signing(self, owner):
        if owner.signing_secret:
            return (
                "Set: deliveries carry X-DQ-Signature. It is never shown again; the action "
                "'Generate new signing secret' on the Owners list replaces it."
            )
        return (
            "None: deliveries are sent unsigned. The action 'Generate new signing secret' on "
            "the Owners list makes one."
        )

    @admin.action(description="Generate new signing secret (shown once)", permissions=["change"])
    def generate_signing_secret(self, request, queryset):
        owners = list(queryset)
        refused = [owner.name for owner in owners if not self.has_change_permission(request, owner)]
        if refused:
            self.message_user(
                request,
                f"No signing secret generated: you may not change {', '.join(refused)} "
                "(a team's members and administrators may). Select only your teams.",
                messages.ERROR,
            )
            return None
        with transaction.atomic():
            generated = [(owner, owner.rotate_signing_secret()) for owner in owners]
            for owner in owners:
                self.log_change(request, owner, "Generated a new signing secret.")
        return shown_once(
            request,
            "admin/signals_app/owner/signing_secrets.html",
            {**self.admin_site.each_context(request), "generated": generated, "opts": self.opts},
        )


class ServiceKeyInline(admin.TabularInline):
    model = ServiceKey
    extra = 0
    fields = ["name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        # A key saved here would have no secret: issue keys with the action (shown once).
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("service")  # for __str__


@admin.register(Service)
class ServiceAdmin(NotificationsGoWithIncidents, ReadingsCounted, admin.ModelAdmin):
    list_display = ["slug", "name", "owner", "base_url"]
    list_filter = ["owner"]
    list_select_related = ["owner"]
    search_fields = ["slug", "name"]
    inlines = [ServiceKeyInline]
    actions = ["issue_key"]

    @admin.action(description="Issue an API key (shown once)", permissions=["add_key"])
    def issue_key(self, request, queryset):
        issued = [
            (service, ServiceKey.issue(service, name="admin", created_by=request.user)[1])
            for service in queryset
        ]
        return shown_once(
            request,
            "admin/signals_app/service/issued_keys.html",
            {**self.admin_site.each_context(request), "issued": issued, "opts": self.model._meta},
        )

    def has_add_key_permission(self, request):
        return request.user.has_perm("signals_app.add_servicekey")


@admin.register(ServiceKey)
class ServiceKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "service", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["service"]
    list_select_related = ["service"]
    search_fields = ["prefix", "name", "service__slug"]
    # A key stays with the service it was issued for.
    readonly_fields = ["service", "prefix", "secret_hash", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A key is a secret shown once: the Services action "Issue an API key (shown once)"
        # or `create_service_key` make one; a form here would save a key without a secret.
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request, f"Revoked {revoked} key(s); they stop working within a few seconds."
        )


@admin.register(Environment)
class EnvironmentAdmin(ReadingsCounted, admin.ModelAdmin):
    list_display = ["slug", "name", "is_production"]
    list_filter = ["is_production"]
    search_fields = ["slug", "name"]


@admin.register(Signal)
class SignalAdmin(ReadingsCounted, admin.ModelAdmin):
    list_display = ["key", "name", "unit", "kind", "direction"]
    list_filter = ["kind", "direction"]
    search_fields = ["key", "name"]


# --- the route page -----------------------------------------------------------


class RehearsalFilter(admin.SimpleListFilter):
    title = "rollback rehearsal"
    parameter_name = "rehearsal"

    def lookups(self, request, model_admin):
        days = settings.DQ_REHEARSAL_MAX_AGE_DAYS
        return [
            ("due", f"missing or older than {days} days"),
            ("missing", "no rehearsed rollback note"),
            ("stale", f"older than {days} days"),
        ]

    def queryset(self, request, queryset):
        days = settings.DQ_REHEARSAL_MAX_AGE_DAYS
        if self.value() == "missing":
            return queryset.rehearsal_missing()
        if self.value() == "stale":
            return queryset.rehearsal_stale(days)
        if self.value() == "due":
            return queryset.rehearsal_due(days)
        return queryset


class MineFilter(admin.SimpleListFilter):
    title = "ownership"
    parameter_name = "mine"

    def lookups(self, request, model_admin):
        return [("1", "routes I own")]

    def queryset(self, request, queryset):
        if self.value() == "1":
            return queryset.filter(pk__in=Route.objects.owned_by(request.user).values("pk"))
        return queryset


class FastSelect(forms.Select):
    """forms.Select written out in Python. Django renders every <option> through a
    template include; the route page's inline rows draw about 130 of them per view.
    Options come straight from `choices` (Select.get_context builds a dict per option:
    ~0.4 ms a select, ~10 ms of a route page); the markup is the template's
    (tests/test_form_renderer.py)."""

    def render(self, name, value, attrs=None, renderer=None):
        if self.allow_multiple_selected or any(
            isinstance(label, (list, tuple)) for _value, label in self.choices
        ):
            return super().render(name, value, attrs, renderer)
        chosen = set(self.format_value(value))
        options, found = [], False
        for option_value, label in self.choices:
            option_value = "" if option_value is None else str(option_value)
            selected = not found and option_value in chosen
            found |= selected
            options.append(
                format_html(
                    '<option value="{}"{}>{}</option>',
                    option_value,
                    " selected" if selected else "",
                    label,
                )
            )
        return format_html(
            '<select name="{}"{}>{}</select>',
            name,
            flatatt(self.build_attrs(self.attrs, attrs)),
            mark_safe("".join(options)),  # each option went through format_html
        )


class PlainSelectsInline:
    """Inline rows without the add/change/view icons next to each select (every icon is
    a URL reversed per row) and with selects rendered in Python: rows are where the
    route page spends its time."""

    plain_selects = ()

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is None:
            return field
        if db_field.name in self.plain_selects and hasattr(field.widget, "widget"):
            field.widget = field.widget.widget
        if type(field.widget) is forms.Select:
            fast = FastSelect(attrs=field.widget.attrs, choices=field.widget.choices)
            fast.is_required = field.widget.is_required
            field.widget = fast
        return field


class ThresholdInline(PlainSelectsInline, RouteChildInline, admin.TabularInline):
    model = Threshold
    form = ThresholdForm
    extra = 0
    fields = [
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
    show_change_link = True
    plain_selects = ("signal", "environment")

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("route__service", "signal", "environment")
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name in ("signal", "environment"):
            field.choices = cached_choices(request, db_field.name, field.queryset)
        return field


class RollbackNoteInline(PlainSelectsInline, RouteChildInline, admin.StackedInline):
    model = RollbackNote
    form = RollbackNoteForm
    extra = 0
    fields = [
        "steps",
        "command",
        "owner",
        "change",
        ("rehearsed_at", "rehearsed_by", "rehearsal_outcome"),
    ]
    readonly_fields = ["rehearsed_at", "rehearsed_by", "rehearsal_outcome"]
    show_change_link = True
    plain_selects = ("owner", "change")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("route__service", "owner", "rehearsed_by", "change")
        )

    def get_formset(self, request, obj=None, **kwargs):
        request._dq_route = obj
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        route = getattr(request, "_dq_route", None)
        if db_field.name == "change":
            # Only this route's changes, as one cached list for every row.
            kwargs["queryset"] = Change.objects.filter(route=route).select_related("route__service")
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name in ("owner", "change"):
            field.choices = cached_choices(request, db_field.name, field.queryset)
        return field


@admin.register(Route)
class RouteAdmin(NotificationsGoWithIncidents, ReadingsCounted, admin.ModelAdmin):
    form = RouteForm
    list_display = [
        "__str__",
        "owner",
        "last_rehearsal",
        "page_link",
    ]
    list_filter = [MineFilter, RehearsalFilter, "service", "owner", "method"]
    list_select_related = ["service", "owner"]
    search_fields = ["path", "service__slug", "owner__name"]
    fieldsets = [
        (None, {"fields": ["service", "method", "path", "owner"]}),
        (
            "What the route promises",
            {"fields": ["expected_input", "expected_result", "user_impact", "notes"]},
        ),
    ]
    inlines = [ThresholdInline, RollbackNoteInline]
    actions = ["capture_baselines"]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """A POST saves the route and its thresholds (row locks) and may then delete some,
        which takes the evaluation lock (evaluation.wait_for_evaluation). Taking that lock
        first, as a pass does, means a pass and this save never wait on each other in a
        cycle (PostgreSQL would abort one of them as a deadlock)."""
        if request.method != "POST":
            return super().changeform_view(request, object_id, form_url, extra_context)
        with transaction.atomic():
            evaluation.take_evaluation_lock()
            return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_model(self, request, obj):
        # Once Django's checks passed (every object the delete cascades to), in its
        # transaction: the readings before the thresholds take the evaluation lock.
        obj.delete_with_readings()

    def delete_queryset(self, request, queryset):
        # The delete action, once Django's checks passed: each route in a transaction.
        for route in queryset:
            route.delete_with_readings()

    @admin.action(
        description="Capture baselines of the last 60 minutes (every signal and segment)",
        permissions=["capture"],
    )
    def capture_baselines(self, request, queryset):
        capture_baselines_action(self, request, queryset, routes=True)

    def has_capture_permission(self, request):
        return request.user.has_perm("signals_app.add_baseline")

    def get_queryset(self, request):
        # GROUP BY drops the model's default ordering; pickers and pages need one.
        return (
            super()
            .get_queryset(request)
            .select_related("service", "owner")
            .with_last_rehearsal()
            .order_by("service__slug", "path", "method")
        )

    @admin.display(description="last rehearsal", ordering="last_rehearsed_at")
    def last_rehearsal(self, route):
        if route.last_rehearsed_at is None:
            return "never"
        return f"{route.last_rehearsed_at:%Y-%m-%d}"

    @admin.display(description="")
    def page_link(self, route):
        return format_html(
            '<a href="{}">open</a>', reverse("admin:signals_app_route_change", args=[route.pk])
        )

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.pk))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.pk))

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not request.user.is_superuser:
            # An owner curates the route but cannot move it to another service or team.
            return ["service", "owner"]
        return []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            if db_field.name == "owner":
                kwargs["queryset"] = Owner.objects.filter(members=request.user)
            if db_field.name == "service":
                kwargs["queryset"] = Service.objects.filter(owner__members=request.user)
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name in ("service", "owner"):
            # A plain list: a ModelChoiceField iterates with a server-side cursor on
            # PostgreSQL, three round trips for a handful of rows.
            field.choices = cached_choices(request, f"route-{db_field.name}", field.queryset)
        return field

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if request.path.endswith("/autocomplete/"):
            # Route pickers (threshold, baseline, change, rollback note) offer own routes only.
            queryset = queryset.filter(pk__in=Route.objects.owned_by(request.user).values("pk"))
        return queryset, may_have_duplicates

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/incidents/<int:incident_id>/<str:action>/",
                view(self.incident_action),
                name="signals_app_route_incident",
            ),
            path(
                "<path:object_id>/rollback-notes/<int:note_id>/rehearsed/",
                view(self.rehearsal_action),
                name="signals_app_route_rehearsal",
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:
            context.update(self.route_page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def route_page_context(self, request, route):
        thresholds = list(
            route.thresholds.select_related("signal", "environment").order_by(
                *evaluation.ROUTE_STATUS_ORDER
            )
        )
        baselines = list(
            route.baselines.filter(active=True).select_related(
                "signal", "environment", "captured_by"
            )
        )
        open_incidents = list(
            route.incidents.open().select_related(
                "threshold__signal",
                "threshold__environment",
                "acknowledged_by",
                "silenced_by",
            )
        )
        status, rows = threshold_status_rows(route, thresholds, baselines, open_incidents)
        return {
            "route": route,
            "route_status": status["status"],
            "route_status_label": Status(status["status"]).label,
            "evaluated_at": status["evaluated_at"],
            "status_rows": rows,
            "charts": charts.route_charts(route, thresholds, baselines),
            "baselines": baselines,
            "open_incidents": open_incidents,
            "recent_changes": change_verdict_rows(
                route.changes.select_related("environment", "created_by")[:RECENT_CHANGES]
            ),
            "rollback_notes": list(route.rollback_notes.select_related("rehearsed_by")),
            "can_act": self.has_change_permission(request, route),
            "silence_hours": SILENCE_HOURS,
            "rehearsal_outcomes": RollbackNote.Outcome.choices,
            "readings_url": reverse("admin:signals_app_reading_changelist")
            + f"?route__id__exact={route.pk}",
        }

    def _acting_on(self, request, object_id):
        if request.method != "POST":
            return None, HttpResponseNotAllowed(["POST"])
        try:
            route = get_object_or_404(
                Route.objects.select_related("service"), pk=unquote(object_id)
            )
        except ValueError as exc:  # not an id at all
            raise Http404(f"no route with id {object_id!r}") from exc
        if not self.has_change_permission(request, route):
            raise PermissionDenied
        return route, None

    def _back(self, route):
        return HttpResponseRedirect(reverse("admin:signals_app_route_change", args=[route.pk]))

    def incident_action(self, request, object_id, incident_id, action):
        route, refused = self._acting_on(request, object_id)
        if refused:
            return refused
        incident = get_object_or_404(Incident, pk=incident_id, route=route)
        if action == "acknowledge":
            form = AcknowledgeForm(request.POST)
            if not form.is_valid():
                messages.error(request, f"Not acknowledged: {form.problem()}")
            else:
                incident.acknowledge(request.user, form.cleaned_data["note"])
                messages.success(request, f"Acknowledged: {incident}.")
        elif action == "silence":
            form = SilenceForm(request.POST)
            if not form.is_valid():
                messages.error(
                    request,
                    "Not silenced: choose how long "
                    f"({', '.join(str(h) for h in SILENCE_HOURS)} hours) and say why. "
                    f"{form.problem()}",
                )
            else:
                until = timezone.now() + timedelta(hours=form.cleaned_data["hours"])
                incident.silence(request.user, until, form.cleaned_data["reason"])
                messages.success(request, f"Silenced until {until:%Y-%m-%d %H:%M} UTC.")
        else:
            messages.error(request, f"Unknown incident action {action!r}.")
        return self._back(route)

    def rehearsal_action(self, request, object_id, note_id):
        route, refused = self._acting_on(request, object_id)
        if refused:
            return refused
        note = get_object_or_404(RollbackNote, pk=note_id, route=route)
        outcome = request.POST.get("outcome", "")
        if outcome not in RollbackNote.Outcome.values:
            messages.error(request, "Not recorded: the outcome must be passed or failed.")
        else:
            note.record_rehearsal(request.user, outcome)
            messages.success(request, f"Rehearsal recorded: {outcome}.")
        return self._back(route)


# --- curated by owners --------------------------------------------------------


@admin.register(Threshold)
class ThresholdAdmin(NotificationsGoWithIncidents, RouteOwnedAdmin, AuditedAdmin):
    form = ThresholdForm
    list_display = [
        "route",
        "signal",
        "environment",
        "statistic",
        "cache_segment",
        "window_minutes",
        "warn",
        "critical",
    ]
    list_filter = ["environment", "signal", "statistic", "cache_segment"]
    list_select_related = ["route__service", "signal", "environment", "state"]
    search_fields = ["route__path", "route__service__slug", "signal__key"]
    autocomplete_fields = ["route"]

    class Media:
        css = {"all": ["signals_app/dq.css"]}

    def get_list_display(self, request):
        return [*self.list_display, "last_status"]

    @admin.display(description="last status")
    def last_status(self, threshold):
        state = getattr(threshold, "state", None)
        return status_badge(state.status if state else Status.NO_DATA)


@admin.register(Baseline)
class BaselineAdmin(RouteOwnedAdmin, AuditedAdmin):
    list_display = [
        "route",
        "signal",
        "environment",
        "cache_segment",
        "count",
        "p50",
        "p95",
        "active",
        "captured_at",
    ]
    list_filter = ["active", "environment", "signal", "cache_segment"]
    list_select_related = ["route__service", "signal", "environment"]
    search_fields = ["route__path", "route__service__slug", "note"]
    autocomplete_fields = ["route"]
    readonly_fields = ["captured_by"]
    actions = ["recapture"]

    @admin.action(
        description="Capture again over the last 60 minutes (the selected stay as history)",
        permissions=["add"],
    )
    def recapture(self, request, queryset):
        capture_baselines_action(self, request, queryset, routes=False)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.captured_by = request.user
        super().save_model(request, obj, form, change)


# The windows a change page offers; ?minutes= is a whole number within them (README).
CHANGE_PAGE_MINUTES = (15, 30, 60, 120, 240)


@admin.register(Change)
class ChangeAdmin(RouteOwnedAdmin, AuditedAdmin):
    list_display = ["variable", "route", "environment", "applied_at", "release", "cache_cleared"]
    list_filter = ["environment"]
    list_select_related = ["route__service", "environment"]
    search_fields = ["variable", "summary", "release", "route__path"]
    autocomplete_fields = ["route"]
    readonly_fields = ["created_by"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def comparison_minutes(self, request):
        """?minutes= of the change page, 60 by default; outside 15–240 or not a whole
        number, the nearest allowed window (or 60) with a message that says so."""
        low, high = CHANGE_PAGE_MINUTES[0], CHANGE_PAGE_MINUTES[-1]
        raw = request.GET.get("minutes")
        if raw is None:
            return 60
        try:
            asked = int(raw)
        except ValueError:
            minutes = 60
        else:
            minutes = max(low, min(asked, high))
            if minutes == asked:
                return minutes
        messages.warning(
            request,
            f"?minutes={raw} is not a whole number from {low} to {high}: "
            f"showing {minutes} minutes each side.",
        )
        return minutes

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:
            context.update(self.change_page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_page_context(self, request, change):
        minutes = self.comparison_minutes(request)
        comparison = evaluation.compare_change(change, minutes)
        thresholds = Threshold.objects.filter(route_id=change.route_id).select_related("signal")
        charts_drawn = []
        if comparison["minutes"] > 0:
            charts_drawn = charts.change_charts(
                change,
                list(Signal.objects.all()),
                list(thresholds),
                minutes=comparison["minutes"],
            )
        return {
            "minutes": minutes,
            "minute_choices": CHANGE_PAGE_MINUTES,
            "comparison": comparison,
            "comparison_rows": comparison_rows(comparison),
            "charts": charts_drawn,
        }


@admin.register(RollbackNote)
class RollbackNoteAdmin(RouteOwnedAdmin, AuditedAdmin):
    form = RollbackNoteForm
    list_display = ["route", "owner", "rehearsed_at", "rehearsed_by", "rehearsal_outcome"]
    list_filter = ["rehearsal_outcome"]
    list_select_related = ["route__service", "owner", "rehearsed_by"]
    search_fields = ["route__path", "steps", "command"]
    autocomplete_fields = ["route", "change"]
    # Set only by the rehearsal action, so who and when can be trusted.
    readonly_fields = ["rehearsed_at", "rehearsed_by", "rehearsal_outcome"]
    actions = ["rehearsed_passed", "rehearsed_failed"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "owner" and not request.user.is_superuser:
            kwargs["queryset"] = Owner.objects.filter(members=request.user)
        if db_field.name == "change":
            kwargs["queryset"] = Change.objects.filter(
                route__in=Route.objects.owned_by(request.user).values("pk")
            ).select_related("route__service")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _record(self, request, queryset, outcome):
        notes = [
            n for n in queryset.select_related("route") if self.has_change_permission(request, n)
        ]
        for note in notes:
            note.record_rehearsal(request.user, outcome)
        self.message_user(
            request, f"Recorded a {outcome} rehearsal in staging on {len(notes)} rollback note(s)."
        )

    @admin.action(description="Rehearsed in staging: passed", permissions=["change"])
    def rehearsed_passed(self, request, queryset):
        self._record(request, queryset, RollbackNote.Outcome.PASSED)

    @admin.action(description="Rehearsed in staging: failed", permissions=["change"])
    def rehearsed_failed(self, request, queryset):
        self._record(request, queryset, RollbackNote.Outcome.FAILED)


# --- read-mostly --------------------------------------------------------------


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    list_display = [
        "observed_at",
        "route",
        "signal",
        "environment",
        "value",
        "cache_status",
        "release",
    ]
    list_filter = ["environment", "signal", "cache_status"]
    list_select_related = ["route__service", "signal", "environment"]
    search_fields = ["=idempotency_key", "=release"]
    raw_id_fields = ["service", "route"]
    # Readings are the big table: never COUNT(*) them for the changelist.
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request):
        return False  # readings arrive through the API

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "open"), ("resolved", "resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.open()
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Incident)
class IncidentAdmin(NotificationsGoWithIncidents, admin.ModelAdmin):
    list_display = [
        "threshold",
        "level",
        "peak_value",
        "opened_at",
        "acknowledged_by",
        "silenced_until",
        "resolved_at",
    ]
    list_filter = [OpenFilter, "level"]
    list_select_related = [
        "threshold__route__service",
        "threshold__signal",
        "threshold__environment",
        "acknowledged_by",
    ]
    search_fields = ["route__path", "route__service__slug"]
    raw_id_fields = ["threshold", "route"]
    fields = [
        "threshold",
        "route",
        "level",
        "peak_value",
        "opened_at",
        "resolved_at",
        ("acknowledged_at", "acknowledged_by"),
        "acknowledgement_note",
        ("silenced_until", "silenced_by"),
        "silence_reason",
    ]
    readonly_fields = [
        "threshold",
        "route",
        "level",
        "peak_value",
        "opened_at",
        "resolved_at",
        "acknowledged_at",
        "acknowledged_by",
        "silenced_by",
    ]
    actions = ["acknowledge"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related(*self.list_select_related, "route__service", "silenced_by")
        )

    def has_add_permission(self, request):
        return False  # incidents are opened by evaluation

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or owns_route(request, obj.route_id))

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def save_model(self, request, obj, form, change):
        # Who acknowledged or silenced is the person saving, never a typed-in name.
        if "acknowledgement_note" in form.changed_data and obj.acknowledged_at is None:
            obj.acknowledged_at, obj.acknowledged_by = timezone.now(), request.user
        if {"silenced_until", "silence_reason"} & set(form.changed_data):
            obj.silenced_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Acknowledge", permissions=["change"])
    def acknowledge(self, request, queryset):
        incidents = [i for i in queryset if self.has_change_permission(request, i)]
        for incident in incidents:
            incident.acknowledge(request.user, incident.acknowledgement_note)
        self.message_user(request, f"Acknowledged {len(incidents)} incident(s).")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Read-only: notifications are written by evaluation and `deliver_notifications`; the
    one thing to do here is to put failed or skipped ones back in the queue."""

    list_display = [
        "created_at",
        "event",
        "owner",
        "route",
        "status",
        "attempts",
        "next_attempt",
        "error",
    ]
    list_filter = ["status", "event"]
    list_select_related = ["owner", "incident__route__service"]
    fields = [
        "incident",
        "owner",
        "event",
        "created_at",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
        "body",
    ]
    readonly_fields = ["body"]
    actions = ["deliver_again"]

    def get_queryset(self, request):
        queryset = (
            super()
            .get_queryset(request)
            .select_related(
                *self.list_select_related,
                # the incident's name on the notification page
                "incident__threshold__route__service",
                "incident__threshold__signal",
                "incident__threshold__environment",
            )
        )
        if request.user.is_superuser:
            return queryset
        # The team the event was for (its webhook is where it goes), not the route's owner
        # now: a route moved to another team leaves its earlier notifications with the first.
        return queryset.filter(owner__members=request.user)

    def has_add_permission(self, request):
        return False  # evaluation records them

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # `prune` removes finished ones

    def has_redeliver_permission(self, request):
        return request.user.has_perm("signals_app.change_notification")

    @admin.display(description="route")
    def route(self, obj):
        if obj.incident is not None:
            return obj.incident.route
        route = obj.payload.get("route") or {}  # the incident went with its threshold
        return f"{route.get('service', '?')} {route.get('method', '')} {route.get('path', '')}"

    @admin.display(description="next attempt")
    def next_attempt(self, obj):
        return obj.next_attempt_at if obj.status == Notification.Status.PENDING else None

    @admin.display(description="last error")
    def error(self, obj):
        text = obj.last_error
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="body sent")
    def body(self, obj):
        return format_html(
            "<pre>{}</pre>", json.dumps(notifications.envelope(obj), indent=2, sort_keys=False)
        )

    @admin.action(description="Deliver again", permissions=["redeliver"])
    def deliver_again(self, request, queryset):
        chosen = queryset.count()
        again = queryset.deliver_again()
        left = chosen - again
        message = f"{again} notification(s) will be delivered again."
        if left:
            message += f" {left} left alone: only failed or skipped ones are delivered again."
        self.message_user(request, message)


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "duration_ms",
        "thresholds",
        "states_changed",
        "incidents_opened",
        "incidents_resolved",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Breach continuity reads the last finished run; `prune` removes old ones.
        return False


class ScoreBandFilter(admin.SimpleListFilter):
    title = "score band"
    parameter_name = "score_band"

    def lookups(self, request, model_admin):
        minimum, high = settings.DQ_CONTENT_MIN_SCORE, ContentItem.HIGH_SCORE
        return [
            ("low", f"a score below {minimum}"),
            ("medium", f"all {minimum} or more, one below {high}"),
            ("high", f"all {high} or more"),
            ("unscored", "a score missing"),
        ]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            return queryset.score_band(self.value())
        except ValueError as exc:
            # The admin's answer to a lookup it does not know: the list, flagged ?e=1.
            raise IncorrectLookupParameters(exc) from exc


class ReviewInline(admin.TabularInline):
    """The review history on the item page, newest first."""

    model = Review
    extra = 0
    can_delete = False
    fields = ["created_at", "reviewer", "decision", "version", "note"]
    readonly_fields = fields
    ordering = ["-created_at", "-pk"]
    verbose_name_plural = "review history"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # Each row is labelled with str(review), which names the item's reference: joined
        # here (that column only), or it costs a query per review.
        return (
            super()
            .get_queryset(request)
            .select_related("reviewer", "item")
            .only(*self.fields, "item__reference")
        )


def _bullets(items):
    items = list(items)
    if not items:
        return "—"
    return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((i,) for i in items)))


def _entity(entity):
    return format_html("{} <small>({})</small>", entity.get("name", ""), entity.get("type", ""))


def _image_source(image):
    url = image.get("url", "")
    return format_html(
        '{} — {} <a href="{}" rel="noopener noreferrer">{}</a>',
        image.get("caption", ""),
        image.get("source", ""),
        url if _is_web_url(url) else "#",
        url,
    )


# How each list field of a ContentItem is shown, item by item: on the item page and in
# its history alike, as a bulleted list, never as JSON.
CONTENT_LIST_ITEMS = {
    "ai_outline": str,
    "stack": str,
    "tools": str,
    "checklist": str,
    "notes": str,
    "missing_fields": lambda name: name.replace("_", " "),
    "entities": _entity,
    "image_sources": _image_source,
}


def content_list(name, value):
    """A ContentItem list field (or its payload) as a bulleted list."""
    if name == "payload":
        return _bullets(f"{key}: {item}" for key, item in (value or {}).items())
    return _bullets(map(CONTENT_LIST_ITEMS[name], value or []))


class ContentHistoryHelper(HistoricalRecordContextHelper):
    """The history's before/after of a list field as lists (simple_history prints the
    Python repr of a JSON value)."""

    def stringify_delta_change_values(self, change, old, new):
        if change.field in CONTENT_LIST_ITEMS or change.field == "payload":
            return content_list(change.field, old), content_list(change.field, new)
        return super().stringify_delta_change_values(change, old, new)


@admin.register(ContentItem)
class ContentItemAdmin(SimpleHistoryAdmin):
    """The review queue: needs_review first, oldest first; reviewers decide on one item
    (its page) or many (the actions), with an optional note."""

    list_display = [
        "reference",
        "title",
        "review_status",
        "quality",
        "freshness",
        "depth",
        "clarity",
        "needs_human_review",
        "imported_at",
    ]
    list_filter = [
        "review_status",
        ScoreBandFilter,
        "needs_human_review",
        "ai_generated_style",
        "has_images",
        "image_heavy",
    ]
    search_fields = ["reference", "title", "topic"]
    actions = ["mark_reviewed", "request_changes"]
    inlines = [ReviewInline]
    change_form_template = "admin/signals_app/contentitem/change_form.html"
    fieldsets = [
        (
            "Review",
            {
                "fields": [
                    "review_status",
                    "revision_status",
                    "version",
                    "last_reviewed_at",
                    "needs_human_review",
                    "missing_fields_list",
                ]
            },
        ),
        ("Scores", {"fields": [("quality", "freshness", "depth", "clarity")]}),
        ("Flags", {"fields": [("ai_generated_style", "has_images", "image_heavy")]}),
        (
            "Document",
            {
                "fields": [
                    "reference",
                    "source_id",
                    "title",
                    "topic",
                    "summary",
                    "ai_brief",
                    ("code_language", "difficulty", "reading_time", "view_count"),
                    "content_hash",
                    ("imported_at", "updated_at"),
                ]
            },
        ),
        (
            "Lists",
            {
                "fields": [
                    "outline_list",
                    "stack_list",
                    "tools_list",
                    "checklist_list",
                    "entities_list",
                    "image_sources_list",
                    "payload_list",
                    "notes_list",
                ]
            },
        ),
        ("Article", {"fields": ["body"], "classes": ["collapse"]}),
    ]

    # Content comes from import_content and changes by review decisions only.
    def has_add_permission(self, request):
        return False

    def revert_disabled(self, request, obj=None):
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        """A past version reads, and is never saved back: simple_history's Revert saved it
        whole (scores, review status and all) for anyone who may change items, however the
        button was hidden."""
        if request.method == "POST":
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_readonly_fields(self, request, obj=None):
        return [
            name
            for fieldset in self.fieldsets
            for entry in fieldset[1]["fields"]
            for name in (entry if isinstance(entry, tuple) else (entry,))
        ]

    def get_ordering(self, request):
        return review_queue_order()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match and match.url_name == "signals_app_contentitem_changelist":
            # The queue never shows the article: leave the largest column in the table.
            queryset = queryset.defer("body")
        return queryset

    def has_review_permission(self, request):
        return ContentItem.can_be_reviewed_by(request.user)

    # -- the list fields, as lists

    @admin.display(description="AI outline")
    def outline_list(self, item):
        return content_list("ai_outline", item.ai_outline)

    @admin.display(description="stack")
    def stack_list(self, item):
        return content_list("stack", item.stack)

    @admin.display(description="tools")
    def tools_list(self, item):
        return content_list("tools", item.tools)

    @admin.display(description="checklist")
    def checklist_list(self, item):
        return content_list("checklist", item.checklist)

    @admin.display(description="notes")
    def notes_list(self, item):
        return content_list("notes", item.notes)

    @admin.display(description="missing meta fields")
    def missing_fields_list(self, item):
        return content_list("missing_fields", item.missing_fields)

    @admin.display(description="entities")
    def entities_list(self, item):
        return content_list("entities", item.entities)

    @admin.display(description="image sources")
    def image_sources_list(self, item):
        return content_list("image_sources", item.image_sources)

    @admin.display(description="payload")
    def payload_list(self, item):
        return content_list("payload", item.payload)

    def get_historical_record_context_helper(self, request, historical_record):
        return ContentHistoryHelper(self.model, historical_record)

    # -- review decisions

    @admin.action(description="Mark selected content as reviewed", permissions=["review"])
    def mark_reviewed(self, request, queryset):
        return self._decide(request, queryset, Review.Decision.REVIEWED)

    @admin.action(description="Request changes to selected content", permissions=["review"])
    def request_changes(self, request, queryset):
        return self._decide(request, queryset, Review.Decision.CHANGES_REQUESTED)

    def _decide(self, request, queryset, decision):
        """First a page that asks for an optional note; its submit records the decision."""
        if "apply" not in request.POST:
            # "Select all N" comes back as select_across with the changelist's filters (the
            # form posts to the same URL), not as N ids: a form of more than
            # DATA_UPLOAD_MAX_NUMBER_FIELDS ids would be refused with a 400.
            select_across = request.POST.get("select_across") not in (None, "", "0", "False")
            selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            listed = list(
                queryset.order_by("reference").only("pk", "reference", "title", "version")[
                    :REVIEW_CONFIRM_LISTED
                ]
            )
            count = queryset.count() if len(listed) == REVIEW_CONFIRM_LISTED else len(listed)
            context = {
                **self.admin_site.each_context(request),
                "title": f"{Review.Decision(decision).label.capitalize()}: add a note",
                "opts": self.model._meta,
                "count": count,
                "items": listed,
                "more": count - len(listed),
                "select_across": select_across,
                "selected": selected[:1] if select_across else selected,
                "decision": Review.Decision(decision),
                "action": request.POST.get("action"),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/signals_app/contentitem/review_selected.html", context
            )
        form = ReviewDecisionForm({"decision": decision, "note": request.POST.get("note", "")})
        if not form.is_valid():
            self.message_user(request, form.problem(), messages.ERROR)
            return None
        reviews = queryset.review(request.user, decision, form.cleaned_data["note"])
        self.message_user(
            request,
            f"{len(reviews)} item(s) marked {Review.Decision(decision).label}.",
            messages.SUCCESS,
        )
        return None

    def get_urls(self):
        review = self.admin_site.admin_view(self.review_view)
        return [
            path("<path:object_id>/review/", review, name="signals_app_contentitem_review"),
            *super().get_urls(),
        ]

    def review_view(self, request, object_id):
        """The decision form on the item page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_review_permission(request):
            raise PermissionDenied
        item = self.get_object(request, unquote(object_id))
        if item is None:  # unknown, or not an id at all
            raise Http404(f"no content item with id {object_id!r}")
        form = ReviewDecisionForm(request.POST)
        if not form.is_valid():
            self.message_user(request, form.problem(), messages.ERROR)
        else:
            decision = form.cleaned_data["decision"]
            ContentItem.objects.filter(pk=item.pk).review(
                request.user, decision, form.cleaned_data["note"]
            )
            self.message_user(
                request, f"{item.reference} marked {Review.Decision(decision).label}."
            )
        return redirect("admin:signals_app_contentitem_change", item.pk)

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_review"] = self.has_review_permission(request)
        context["review_decisions"] = Review.Decision.choices
        return super().render_change_form(request, context, *args, **kwargs)


class ActionForm(forms.Form):
    def problem(self):
        """The first error as one line, e.g. `Note: Null characters are not allowed.`"""
        name, errors = next(iter(self.errors.items()))
        return f"{self.fields[name].label or name.capitalize()}: {errors[0]}"


# An incident's acknowledgement and silence, on the route page: the review note's limits
# (CharField refuses NUL, which PostgreSQL cannot store: the page answered 500).
class AcknowledgeForm(ActionForm):
    note = forms.CharField(required=False, max_length=5000)


class SilenceForm(ActionForm):
    hours = forms.TypedChoiceField(choices=[(h, h) for h in SILENCE_HOURS], coerce=int)
    reason = forms.CharField(max_length=5000)


# The note page lists this many of the items decided on, then says how many more.
REVIEW_CONFIRM_LISTED = 100


class ReviewDecisionForm(ActionForm):
    """What the item page and the actions post; the same limits as the API's reviews."""

    decision = forms.ChoiceField(choices=Review.Decision.choices)
    note = forms.CharField(required=False, max_length=5000)  # refuses NUL too


def _is_web_url(url):
    return url.startswith(("https://", "http://"))


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """Decisions are an audit trail: recorded by reviewers, never edited here."""

    list_display = ["item", "decision", "reviewer", "version", "note", "created_at"]
    list_filter = ["decision", "reviewer"]
    list_select_related = ["item", "reviewer"]
    search_fields = ["item__reference", "item__title", "note"]
    date_hierarchy = "created_at"
    readonly_fields = ["item", "decision", "reviewer", "version", "note", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
