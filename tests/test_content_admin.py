"""The content admin: review queue, filters, lists shown as lists, history, decisions."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from signals_app.models import ContentItem, Review
from tests.builders import (
    SAMPLE_CONTENT,
    content_text,
    make_content_item,
    make_user,
    write_content,
)

CHANGELIST = "/admin/signals_app/contentitem/"
QUEUE_QUERIES = 7


def change_url(item):
    return f"{CHANGELIST}{item.pk}/change/"


@pytest.fixture
def as_carol(client, carol):
    client.force_login(carol)
    return client


@pytest.fixture
def viewer(db):
    """A staff member who may see content but is no reviewer."""
    user = make_user("victor", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_contentitem"))
    return user


@pytest.fixture
def sample_item(db):
    call_command("import_content", str(SAMPLE_CONTENT), stdout=StringIO())
    return ContentItem.objects.get()


def shown(response):
    return [item.reference for item in response.context["cl"].result_list]


@pytest.mark.django_db
def test_the_queue_shows_needs_review_first_then_the_oldest(as_carol):
    now = timezone.now()
    for reference, status, age in [
        ("reviewed-old", "reviewed", 9),
        ("waiting-new", "needs_review", 1),
        ("waiting-old", "needs_review", 4),
        ("draft", "draft", 2),
    ]:
        item = make_content_item(reference, review_status=status)
        ContentItem.objects.filter(pk=item.pk).update(imported_at=now - timedelta(days=age))

    response = as_carol.get(CHANGELIST)

    assert response.status_code == 200
    assert shown(response) == ["waiting-old", "waiting-new", "reviewed-old", "draft"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("score_band=low", ["weak"]),
        ("score_band=high", ["flagged"]),
        ("needs_human_review__exact=1", ["flagged"]),
        ("review_status__exact=draft", ["weak"]),
        ("has_images__exact=1", ["flagged"]),
    ],
)
def test_it_filters_by_flags_score_band_and_status(as_carol, query, expected):
    make_content_item("weak", clarity=50, review_status="draft")
    make_content_item(
        "flagged",
        quality=95,
        freshness=95,
        depth=95,
        clarity=95,
        needs_human_review=True,
        has_images=True,
    )
    response = as_carol.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    assert shown(response) == expected


@pytest.mark.django_db
def test_an_unknown_score_band_in_the_url_is_no_server_error(as_carol):
    make_content_item("weak", clarity=50)
    response = as_carol.get(f"{CHANGELIST}?score_band=great")
    # the admin's answer to any unknown lookup: the unfiltered list, flagged with ?e=1
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.django_db
def test_the_queue_costs_fixed_queries(as_carol, django_assert_num_queries):
    for number in range(20):
        make_content_item(f"ref-{number:02d}")
    # session, user, permissions (user, group), the filtered count, the total count,
    # the page: the same for 20 items as for 2
    with django_assert_num_queries(QUEUE_QUERIES):
        response = as_carol.get(CHANGELIST)
    assert len(response.context["cl"].result_list) == 20
    ContentItem.objects.exclude(reference__in=["ref-00", "ref-01"]).delete()
    with django_assert_num_queries(QUEUE_QUERIES):
        as_carol.get(CHANGELIST)


@pytest.mark.django_db
def test_the_item_page_shows_list_fields_as_lists_never_as_json(as_carol, sample_item):
    response = as_carol.get(change_url(sample_item))
    page = response.content.decode()

    assert response.status_code == 200
    assert "<li>fastapi</li>" in page
    assert "<li>run one integration check</li>" in page
    assert "<li>context: behind a cdn</li>" in page
    assert "python services <small>(stack)</small>" in page
    assert "visual reference 2 — unsplash" in page
    assert 'href="https://images.unsplash.com/photo-1555066931-4365d14bab8c' in page
    assert "<li>seed: 22359</li>" in page
    for raw in ('"fastapi"', "&quot;fastapi&quot;", "&#x27;fastapi&#x27;", "'fastapi'"):
        assert raw not in page  # a list serialised as JSON or as a Python repr


@pytest.mark.django_db
def test_the_item_page_shows_the_review_history(as_carol, carol, sample_item):
    items = ContentItem.objects.all()
    items.review(carol, "changes_requested", "summary is vague")
    items.review(carol, "reviewed", "fixed upstream")

    page = as_carol.get(change_url(sample_item)).content.decode()

    assert "review history" in page.lower()
    assert page.index("fixed upstream") < page.index("summary is vague")


@pytest.mark.django_db
def test_the_item_page_costs_fixed_queries_however_many_reviews(
    as_carol, carol, django_assert_num_queries
):
    item = make_content_item("a")
    decide = ContentItem.objects.filter(pk=item.pk).review
    decide(carol, "changes_requested")
    as_carol.get(change_url(item))  # caches the item's content type (history link)
    # session, user, the item, permissions (user, group), its reviews with their
    # reviewers and item references
    with django_assert_num_queries(6):
        assert as_carol.get(change_url(item)).status_code == 200
    for _ in range(7):
        decide(carol, "reviewed")
    with django_assert_num_queries(6):
        assert as_carol.get(change_url(item)).status_code == 200


@pytest.mark.django_db
def test_the_item_page_keeps_the_import_history(as_carol, sample_item):
    response = as_carol.get(f"{CHANGELIST}{sample_item.pk}/history/")
    assert response.status_code == 200
    assert "import_content" in response.content.decode()


@pytest.mark.django_db
def test_the_history_shows_changed_list_fields_as_lists(as_carol, sample_item, tmp_path):
    changed = write_content(
        tmp_path,
        "changed.txt",
        content_text(
            ("d1d09bf4540df2d21afa925c", "0123456789abcdef01234567"),
            ("  • ruff\n", "  • mypy\n"),
            ("    • type: area", "    • type: field"),
            ("  • seed: 22359", "  • seed: 7"),
        ),
    )
    call_command("import_content", str(changed), stdout=StringIO())

    response = as_carol.get(f"{CHANGELIST}{sample_item.pk}/history/")
    page = response.content.decode()

    assert response.status_code == 200
    assert "<li>mypy</li>" in page and "<li>ruff</li>" in page
    assert "backend <small>(field)</small>" in page
    assert "<li>seed: 7</li>" in page
    for raw in ("[fastapi", "&#x27;name&#x27;", "{&#x27;", "&quot;name&quot;", "{'"):
        assert raw not in page  # a list or record as Python repr or JSON


@pytest.mark.django_db
def test_content_is_not_added_by_hand(as_carol, admin_client):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


# ---- decisions


@pytest.mark.django_db
def test_a_reviewer_marks_selected_items_reviewed_with_a_note(as_carol, carol):
    first, second = make_content_item("a"), make_content_item("b")
    selected = {"action": "mark_reviewed", ACTION_CHECKBOX_NAME: [first.pk, second.pk]}

    asked = as_carol.post(CHANGELIST, selected)
    assert asked.status_code == 200
    assert 'name="note"' in asked.content.decode()
    assert not Review.objects.exists()

    done = as_carol.post(CHANGELIST, {**selected, "apply": "yes", "note": "both fine"})

    assert done.status_code == 302
    reviews = Review.objects.order_by("item__reference")
    assert [(r.item.reference, r.decision, r.note, r.reviewer) for r in reviews] == [
        ("a", "reviewed", "both fine", carol),
        ("b", "reviewed", "both fine", carol),
    ]
    assert set(ContentItem.objects.values_list("review_status", flat=True)) == {"reviewed"}


def hidden_inputs(page):
    """The hidden fields of the note form, as the browser would post them."""
    form = page[page.index('<form method="post">') :]
    data = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form):
        data.setdefault(name, []).append(value)
    return data


@pytest.mark.django_db
def test_all_matching_items_are_reviewed_even_more_than_a_request_may_list(
    as_carol, django_assert_num_queries
):
    high_scores = dict.fromkeys(ContentItem.SCORE_FIELDS, 95)
    # "Select all 1,200": the note form listed every id, and Django refuses a form of more
    # than DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) fields with a 400: nothing was reviewed.
    ContentItem.objects.bulk_create(
        ContentItem(reference=f"r-{n:04d}", title="t", **high_scores, review_status="needs_review")
        for n in range(1200)
    )
    make_content_item("weak", clarity=40, review_status="needs_review")
    url = f"{CHANGELIST}?score_band=high"
    first = ContentItem.objects.order_by("pk").first()
    selected = {"action": "mark_reviewed", "select_across": "1", "index": "0"}

    asked = as_carol.post(url, {**selected, ACTION_CHECKBOX_NAME: [first.pk]})
    page = asked.content.decode()
    assert asked.status_code == 200
    assert "1200 items" in page

    # session, user, permissions (user, group), the filtered and the total count, savepoint,
    # lock the items, insert the reviews, update the items, release: none per item
    with django_assert_num_queries(11):
        done = as_carol.post(url, {**hidden_inputs(page), "note": "all good"})

    assert done.status_code == 302
    assert Review.objects.filter(note="all good").count() == 1200
    assert ContentItem.objects.get(reference="weak").review_status == "needs_review"


@pytest.mark.django_db
def test_a_reviewer_requests_changes_without_a_note(as_carol):
    item = make_content_item("a")
    as_carol.post(
        CHANGELIST,
        {"action": "request_changes", ACTION_CHECKBOX_NAME: [item.pk], "apply": "yes"},
    )
    review = Review.objects.get()
    assert (review.decision, review.note) == ("changes_requested", "")


@pytest.mark.django_db
def test_the_actions_are_not_offered_to_someone_who_is_no_reviewer(client, viewer):
    item = make_content_item("a", review_status="needs_review")
    client.force_login(viewer)

    page = client.get(CHANGELIST).content.decode()
    assert "mark_reviewed" not in page

    client.post(
        CHANGELIST, {"action": "mark_reviewed", ACTION_CHECKBOX_NAME: [item.pk], "apply": "yes"}
    )
    assert not Review.objects.exists()
    assert ContentItem.objects.get().review_status == "needs_review"


@pytest.mark.django_db
def test_a_reviewer_decides_on_the_item_page(as_carol, carol, sample_item):
    page = as_carol.get(change_url(sample_item)).content.decode()
    assert 'id="review-decision"' in page

    response = as_carol.post(
        f"{CHANGELIST}{sample_item.pk}/review/",
        {"decision": "changes_requested", "note": "add a rollback example"},
    )

    assert response.status_code == 302
    assert response["Location"].endswith(change_url(sample_item))
    review = Review.objects.get()
    assert (review.decision, review.note, review.version) == (
        "changes_requested",
        "add a rollback example",
        "1.7.9",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("object_id", ["not-a-number", "999999"])
def test_a_decision_on_an_item_that_does_not_exist_is_a_404(as_carol, object_id):
    response = as_carol.post(f"{CHANGELIST}{object_id}/review/", {"decision": "reviewed"})
    assert response.status_code == 404
    assert not Review.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("note", ["nul \x00 inside", "x" * 5001])
def test_a_note_no_review_can_hold_is_refused_on_both_forms(as_carol, note):
    # A NUL made PostgreSQL refuse the insert (a 500); the API refuses both with a 400.
    item = make_content_item("a", review_status="needs_review")

    on_page = as_carol.post(
        f"{CHANGELIST}{item.pk}/review/", {"decision": "reviewed", "note": note}, follow=True
    )
    by_action = as_carol.post(
        CHANGELIST,
        {"action": "mark_reviewed", ACTION_CHECKBOX_NAME: [item.pk], "apply": "yes", "note": note},
        follow=True,
    )

    for response in (on_page, by_action):
        assert response.status_code == 200
        shown = [str(message) for message in response.context["messages"]]
        assert any(message.startswith("Note: ") for message in shown), shown
    assert not Review.objects.exists()
    assert ContentItem.objects.get().review_status == "needs_review"


@pytest.mark.django_db
def test_someone_who_is_no_reviewer_gets_403_on_the_item_page_decision(client, viewer):
    item = make_content_item("a", review_status="needs_review")
    client.force_login(viewer)

    assert 'id="review-decision"' not in client.get(change_url(item)).content.decode()
    response = client.post(f"{CHANGELIST}{item.pk}/review/", {"decision": "reviewed"})

    assert response.status_code == 403
    assert not Review.objects.exists()
    assert ContentItem.objects.get().review_status == "needs_review"


@pytest.mark.django_db
def test_reviews_are_not_edited_in_the_admin(admin_client, carol):
    make_content_item("a")
    (review,) = ContentItem.objects.all().review(carol, "reviewed")
    assert admin_client.get("/admin/signals_app/review/add/").status_code == 403
    response = admin_client.post(
        f"/admin/signals_app/review/{review.pk}/change/", {"decision": "changes_requested"}
    )
    assert response.status_code == 403
    assert Review.objects.get().decision == "reviewed"


@pytest.mark.django_db
def test_a_past_version_cannot_be_saved_back(as_carol, carol, sample_item):
    # Content changes by import and review decisions only: simple_history's Revert saved a
    # past version whole (scores, review status and all) for anyone who may change items.
    first = sample_item.history.earliest("history_id")
    ContentItem.objects.filter(pk=sample_item.pk).review(carol, "reviewed", "fine")
    url = f"{CHANGELIST}{sample_item.pk}/history/{first.history_id}/"

    page = as_carol.get(url)
    assert page.status_code == 200  # readable
    assert 'name="_save"' not in page.content.decode()
    assert as_carol.post(url, {"_save": "Revert"}).status_code == 403
    sample_item.refresh_from_db()
    assert sample_item.review_status == "reviewed"
