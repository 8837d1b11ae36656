from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
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
    review_queue_order,
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
        return queryset.score_band(self.value()) if self.value() else queryset


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
        return super().get_queryset(request).select_related("reviewer")


def _bullets(items):
    if not items:
        return "—"
    return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((i,) for i in items)))


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
        return _bullets(item.ai_outline)

    @admin.display(description="stack")
    def stack_list(self, item):
        return _bullets(item.stack)

    @admin.display(description="tools")
    def tools_list(self, item):
        return _bullets(item.tools)

    @admin.display(description="checklist")
    def checklist_list(self, item):
        return _bullets(item.checklist)

    @admin.display(description="notes")
    def notes_list(self, item):
        return _bullets(item.notes)

    @admin.display(description="missing meta fields")
    def missing_fields_list(self, item):
        return _bullets([name.replace("_", " ") for name in item.missing_fields])

    @admin.display(description="entities")
    def entities_list(self, item):
        return _bullets(
            format_html("{} <small>({})</small>", e.get("name", ""), e.get("type", ""))
            for e in item.entities
        )

    @admin.display(description="image sources")
    def image_sources_list(self, item):
        return _bullets(
            format_html(
                '{} — {} <a href="{}" rel="noopener noreferrer">{}</a>',
                image.get("caption", ""),
                image.get("source", ""),
                image.get("url", "") if _is_web_url(image.get("url", "")) else "#",
                image.get("url", ""),
            )
            for image in item.image_sources
        )

    @admin.display(description="payload")
    def payload_list(self, item):
        return _bullets(f"{key}: {value}" for key, value in item.payload.items())

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
            context = {
                **self.admin_site.each_context(request),
                "title": f"{Review.Decision(decision).label.capitalize()}: add a note",
                "opts": self.model._meta,
                "items": queryset.order_by("reference"),
                "decision": Review.Decision(decision),
                "action": request.POST.get("action"),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/signals_app/contentitem/review_selected.html", context
            )
        reviews = queryset.review(request.user, decision, request.POST.get("note", "").strip())
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
        item = get_object_or_404(ContentItem, pk=object_id)
        decision = request.POST.get("decision")
        if decision not in Review.Decision.values:
            self.message_user(request, "Choose reviewed or changes requested.", messages.ERROR)
        else:
            ContentItem.objects.filter(pk=item.pk).review(
                request.user, decision, request.POST.get("note", "").strip()
            )
            self.message_user(
                request, f"{item.reference} marked {Review.Decision(decision).label}."
            )
        return redirect("admin:signals_app_contentitem_change", item.pk)

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_review"] = self.has_review_permission(request)
        context["review_decisions"] = Review.Decision.choices
        return super().render_change_form(request, context, *args, **kwargs)


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
