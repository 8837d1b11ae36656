"""ContentItem review behaviour: who reviews, what a decision records, queue and score bands."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from signals_app.models import REVIEWERS_GROUP, ContentItem, Review
from tests.builders import make_content_item, make_user


@pytest.mark.django_db
def test_the_reviewers_group_exists_with_the_review_permission():
    group = Group.objects.get(name=REVIEWERS_GROUP)
    assert set(group.permissions.values_list("codename", flat=True)) == {
        "review_contentitem",
        "view_contentitem",
        "view_review",
    }


@pytest.mark.django_db
def test_a_reviewer_marks_many_items_reviewed_with_one_review_each(carol):
    first = make_content_item(version="1.0.0", review_status="needs_review")
    second = make_content_item(version="2.1.0", review_status="changes_requested")

    reviews = ContentItem.objects.all().review(carol, "reviewed", "reads well")

    assert len(reviews) == 2
    # In creation order: generated references ("ref-99", "ref-100") do not sort as numbers.
    rows = Review.objects.order_by("item_id")
    assert [(r.item, r.reviewer, r.decision, r.note) for r in rows] == [
        (first, carol, "reviewed", "reads well"),
        (second, carol, "reviewed", "reads well"),
    ]
    assert {(r.item_id, r.version) for r in rows} == {(first.pk, "1.0.0"), (second.pk, "2.1.0")}
    first.refresh_from_db()
    assert first.review_status == "reviewed"
    assert first.last_reviewed_at == timezone.localdate()


@pytest.mark.django_db
def test_changes_requested_does_not_count_as_a_review_date(carol):
    item = make_content_item(last_reviewed_at=None)
    ContentItem.objects.filter(pk=item.pk).review(carol, "changes_requested")
    item.refresh_from_db()
    assert item.review_status == "changes_requested"
    assert item.last_reviewed_at is None


@pytest.mark.django_db
def test_the_permission_alone_makes_a_reviewer(db):
    dana = make_user("dana")
    dana.user_permissions.add(Permission.objects.get(codename="review_contentitem"))
    assert ContentItem.can_be_reviewed_by(dana)


@pytest.mark.django_db
def test_a_superuser_may_review(db):
    assert ContentItem.can_be_reviewed_by(make_user("root", is_superuser=True))


@pytest.mark.django_db
def test_an_outsider_cannot_review_and_nothing_changes(mallory):
    item = make_content_item(review_status="needs_review")
    with pytest.raises(PermissionDenied):
        ContentItem.objects.all().review(mallory, "reviewed")
    item.refresh_from_db()
    assert item.review_status == "needs_review"
    assert not Review.objects.exists()


@pytest.mark.django_db
def test_an_inactive_reviewer_cannot_review(carol):
    carol.is_active = False
    assert not ContentItem.can_be_reviewed_by(carol)


@pytest.mark.django_db
def test_an_unknown_decision_is_refused(carol):
    make_content_item()
    with pytest.raises(ValueError):
        ContentItem.objects.all().review(carol, "approved")
    assert not Review.objects.exists()


@pytest.mark.django_db
def test_the_review_queue_puts_needs_review_first_then_the_oldest():
    now = timezone.now()
    reviewed_old = make_content_item("r-old", review_status="reviewed")
    waiting_new = make_content_item("w-new", review_status="needs_review")
    waiting_old = make_content_item("w-old", review_status="needs_review")
    draft = make_content_item("d", review_status="draft")
    for item, age in [(reviewed_old, 10), (waiting_new, 1), (waiting_old, 5), (draft, 3)]:
        ContentItem.objects.filter(pk=item.pk).update(imported_at=now - timedelta(days=age))

    queue = list(ContentItem.objects.review_queue().values_list("reference", flat=True))

    assert queue == ["w-old", "w-new", "r-old", "d"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("band", "expected"),
    [("low", {"low"}), ("medium", {"medium"}), ("high", {"high"}), ("unscored", {"unscored"})],
)
def test_score_bands_go_by_the_lowest_score(settings, band, expected):
    settings.DQ_CONTENT_MIN_SCORE = 70
    make_content_item("low", quality=95, freshness=95, depth=95, clarity=69)
    make_content_item("medium", quality=95, freshness=70, depth=95, clarity=95)
    make_content_item("high", quality=90, freshness=99, depth=90, clarity=100)
    make_content_item("unscored", clarity=None)

    found = set(ContentItem.objects.score_band(band).values_list("reference", flat=True))

    assert found == expected


@pytest.mark.django_db
def test_an_unknown_score_band_is_an_error():
    with pytest.raises(ValueError, match="expected low, medium, high or unscored"):
        ContentItem.objects.score_band("great")
