"""The content API: `content`, `content/{reference}`, `content/{reference}/reviews`.

People read content; reviewers (group Reviewers or the permission
signals_app.review_contentitem) post review decisions. Service keys have no business
here: they post readings.
"""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, mixins, permissions, serializers, viewsets

from signals_app.content import FLAGS
from signals_app.models import ContentItem, Review

from .filters import StrictBooleanFilter, StrictFilterSet
from .pagination import IdCursorPagination
from .permissions import IsPersonOrServiceReading
from .problems import NamesMissingObject, get_or_404
from .serializers import ModelSerializer, StrictBody

SCORE_BANDS = [
    ("low", "a score below DQ_CONTENT_MIN_SCORE (default 70)"),
    ("medium", "every score at or above the minimum, one below 90"),
    ("high", "every score at or above 90"),
    ("unscored", "a score missing"),
]


class ContentItemSerializer(serializers.ModelSerializer):
    scores = serializers.SerializerMethodField()
    flags = serializers.SerializerMethodField()

    class Meta:
        model = ContentItem
        fields = [
            "reference",
            "title",
            "topic",
            "scores",
            "flags",
            "review_status",
            "revision_status",
            "version",
            "last_reviewed_at",
            "missing_fields",
            "imported_at",
            "updated_at",
        ]

    def get_scores(self, item) -> dict[str, int | None]:
        return {name: getattr(item, name) for name in ContentItem.SCORE_FIELDS}

    def get_flags(self, item) -> dict[str, bool]:
        return {name: getattr(item, name) for name in FLAGS}


class ContentItemDetailSerializer(ContentItemSerializer):
    class Meta(ContentItemSerializer.Meta):
        fields = [
            *ContentItemSerializer.Meta.fields,
            "source_id",
            "summary",
            "body",
            "ai_outline",
            "ai_brief",
            "stack",
            "tools",
            "code_language",
            "difficulty",
            "reading_time",
            "view_count",
            "content_hash",
            "checklist",
            "entities",
            "image_sources",
            "payload",
            "notes",
        ]


def _one_of(values, received="%(value)r"):
    """`expected a, b or c, received ...`: a choice's error message (Django forms fill
    %(value)r; DRF fields take received="'{input}'")."""
    values = list(values)
    return f"expected {', '.join(values[:-1])} or {values[-1]}, received {received}"


class ReviewSerializer(StrictBody, ModelSerializer):
    item = serializers.SlugRelatedField(slug_field="reference", read_only=True)
    decision = serializers.ChoiceField(
        choices=Review.Decision.choices,
        error_messages={"invalid_choice": _one_of(Review.Decision.values, received="'{input}'")},
    )
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)

    class Meta:
        model = Review
        fields = ["item", "decision", "note", "reviewer", "version", "created_at"]
        read_only_fields = ["version", "created_at"]


class ContentFilter(StrictFilterSet):
    review_status = filters.MultipleChoiceFilter(
        choices=ContentItem.ReviewStatus.choices,
        error_messages={"invalid_choice": _one_of(ContentItem.ReviewStatus.values)},
    )
    score_band = filters.ChoiceFilter(
        choices=SCORE_BANDS,
        method="filter_score_band",
        error_messages={"invalid_choice": _one_of(band for band, _ in SCORE_BANDS)},
    )
    ai_generated_style = StrictBooleanFilter()
    has_images = StrictBooleanFilter()
    image_heavy = StrictBooleanFilter()
    needs_human_review = StrictBooleanFilter()

    class Meta:
        model = ContentItem
        fields = ["review_status", "score_band", *FLAGS]

    def filter_score_band(self, queryset, name, value):
        return queryset.score_band(value)


class ByReference(IdCursorPagination):
    ordering = ("reference",)
    # Explicit, not api_settings.PAGE_SIZE: that is read once, when this module loads.
    page_size = 100


class NewestFirst(ByReference):
    ordering = ("-created_at", "-id")


class IsReviewerToWrite(permissions.BasePermission):
    message = "only reviewers (group Reviewers or permission review_contentitem) review content"

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return True
        return ContentItem.can_be_reviewed_by(request.user)


@extend_schema_view(
    list=extend_schema(summary="List content; filter by review status, flags and score band"),
    retrieve=extend_schema(summary="One content item with every field"),
)
class ContentItemViewSet(
    NamesMissingObject, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = ContentItem.objects.all()
    permission_classes = [permissions.IsAuthenticated, IsPersonOrServiceReading]
    pagination_class = ByReference
    filterset_class = ContentFilter
    lookup_field = "reference"
    lookup_value_regex = r"[\w.\-]+"

    def get_serializer_class(self):
        return ContentItemDetailSerializer if self.action == "retrieve" else ContentItemSerializer

    def get_queryset(self):
        if self.action == "list":
            # The list never shows the article: leave the largest column in the table.
            return self.queryset.defer("body", "summary", "ai_brief")
        return self.queryset


@extend_schema_view(
    get=extend_schema(summary="The review decisions on an item, newest first"),
    post=extend_schema(summary="Record a decision: reviewed or changes_requested (reviewers)"),
)
class ContentReviewsView(generics.ListCreateAPIView):
    serializer_class = ReviewSerializer
    permission_classes = [permissions.IsAuthenticated, IsPersonOrServiceReading, IsReviewerToWrite]
    pagination_class = NewestFirst

    def get_item(self):
        reference = self.kwargs["reference"]
        return get_or_404(ContentItem.objects.only("pk", "reference"), reference=reference)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema has no reference
            return Review.objects.none()
        return Review.objects.filter(item=self.get_item()).select_related("item", "reviewer")

    def perform_create(self, serializer):
        item = self.get_item()
        data = serializer.validated_data
        (review,) = ContentItem.objects.filter(pk=item.pk).review(
            self.request.user, data["decision"], data.get("note", "")
        )
        review.item = item
        serializer.instance = review
