from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from simple_history.admin import SimpleHistoryAdmin

from .models import (
    Baseline,
    Change,
    ContentItem,
    Environment,
    EvaluationRun,
    Incident,
    Owner,
    Reading,
    Review,
    RollbackNote,
    Route,
    Service,
    ServiceKey,
    Signal,
    Threshold,
)

admin.site.site_header = "dq-registry"
admin.site.site_title = "dq-registry"
admin.site.index_title = "Data quality signals"


@admin.register(Owner)
class OwnerAdmin(admin.ModelAdmin):
    list_display = ["name", "contact_email", "webhook_url"]
    search_fields = ["name", "contact_email"]
    filter_horizontal = ["members"]


class ServiceKeyInline(admin.TabularInline):
    model = ServiceKey
    extra = 0
    fields = ["name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    can_delete = False


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "owner", "base_url"]
    list_filter = ["owner"]
    list_select_related = ["owner"]
    search_fields = ["slug", "name"]
    inlines = [ServiceKeyInline]
    actions = ["issue_key"]

    @admin.action(description="Issue an API key (shown once)", permissions=["add_key"])
    def issue_key(self, request, queryset):
        # Rendered straight into the response, never into messages: the message store
        # may be a cookie, and the secret must exist only on this page.
        issued = [
            (service, ServiceKey.issue(service, name="admin", created_by=request.user)[1])
            for service in queryset
        ]
        response = TemplateResponse(
            request,
            "admin/signals_app/service/issued_keys.html",
            {**self.admin_site.each_context(request), "issued": issued, "opts": self.model._meta},
        )
        add_never_cache_headers(response)
        response["Cache-Control"] = "no-store"
        return response

    def has_add_key_permission(self, request):
        return request.user.has_perm("signals_app.add_servicekey")


@admin.register(ServiceKey)
class ServiceKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "service", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["service"]
    list_select_related = ["service"]
    search_fields = ["prefix", "name", "service__slug"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at"]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_production"]
    list_filter = ["is_production"]
    search_fields = ["slug", "name"]


@admin.register(Signal)
class SignalAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "unit", "kind", "direction"]
    list_filter = ["kind", "direction"]
    search_fields = ["key", "name"]


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ["__str__", "service", "method", "path", "owner"]
    list_filter = ["service", "owner", "method"]
    list_select_related = ["service", "owner"]
    search_fields = ["path", "service__slug", "owner__name"]


@admin.register(Threshold)
class ThresholdAdmin(SimpleHistoryAdmin):
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
    list_select_related = ["route__service", "signal", "environment"]
    search_fields = ["route__path", "route__service__slug", "signal__key"]
    raw_id_fields = ["route"]


@admin.register(Baseline)
class BaselineAdmin(SimpleHistoryAdmin):
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
    raw_id_fields = ["route"]


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
    search_fields = ["idempotency_key", "release"]
    raw_id_fields = ["service", "route"]
    # Readings are the big table: never COUNT(*) all of them for the changelist.
    show_full_result_count = False
    date_hierarchy = None


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ["threshold", "level", "peak_value", "opened_at", "resolved_at"]
    list_filter = ["level"]
    list_select_related = ["threshold__route__service", "threshold__signal"]
    search_fields = ["route__path", "route__service__slug"]
    raw_id_fields = ["threshold", "route"]


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "duration_ms",
        "thresholds",
        "incidents_opened",
        "incidents_resolved",
    ]
    search_fields = ["started_at"]


@admin.register(Change)
class ChangeAdmin(SimpleHistoryAdmin):
    list_display = ["variable", "route", "environment", "applied_at", "release", "cache_cleared"]
    list_filter = ["environment"]
    list_select_related = ["route__service", "environment"]
    search_fields = ["variable", "summary", "release", "route__path"]
    raw_id_fields = ["route"]


@admin.register(RollbackNote)
class RollbackNoteAdmin(SimpleHistoryAdmin):
    list_display = ["route", "owner", "rehearsed_at", "rehearsed_by", "rehearsal_outcome"]
    list_filter = ["rehearsal_outcome"]
    list_select_related = ["route__service", "owner", "rehearsed_by"]
    search_fields = ["route__path", "steps", "command"]
    raw_id_fields = ["route", "change"]


@admin.register(ContentItem)
class ContentItemAdmin(SimpleHistoryAdmin):
    list_display = ["reference", "title", "review_status", "quality", "imported_at"]
    list_filter = ["review_status", "needs_human_review", "ai_generated_style"]
    search_fields = ["reference", "title", "topic"]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["item", "decision", "reviewer", "version", "created_at"]
    list_filter = ["decision"]
    list_select_related = ["item", "reviewer"]
    search_fields = ["item__reference", "note"]
    raw_id_fields = ["item"]
