"""GET /api/v1/content, GET /api/v1/content/{reference}, GET/POST .../reviews."""

import pytest

from signals_app.models import ContentItem, Review
from tests.builders import make_content_item, make_key

URL = "/api/v1/content"


@pytest.fixture
def as_carol(client, carol):
    client.force_login(carol)
    return client


@pytest.fixture
def as_mallory(client, mallory):
    client.force_login(mallory)
    return client


def problem(response, status, field=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    if field:
        assert field in {error["field"] for error in body["errors"]}, body
    return body


def references(response):
    assert response.status_code == 200, response.content
    return [entry["reference"] for entry in response.json()["results"]]


def review_url(reference):
    return f"{URL}/{reference}/reviews"


# ---- list


@pytest.mark.django_db
def test_it_lists_items_with_scores_and_flags_but_not_the_article(as_carol):
    make_content_item("anp-1", title="one", quality=81, needs_human_review=True, version="1.7.9")

    (entry,) = as_carol.get(URL).json()["results"]

    assert entry["reference"] == "anp-1"
    assert entry["title"] == "one"
    assert entry["scores"] == {"quality": 81, "freshness": 80, "depth": 80, "clarity": 80}
    assert entry["flags"] == {
        "ai_generated_style": False,
        "has_images": False,
        "image_heavy": False,
        "needs_human_review": True,
    }
    assert entry["review_status"] == "needs_review"
    assert entry["version"] == "1.7.9"
    assert "last_reviewed_at" in entry
    assert "body" not in entry


@pytest.mark.django_db
def test_it_filters_by_review_status(as_carol):
    make_content_item("a", review_status="reviewed")
    make_content_item("b", review_status="needs_review")
    make_content_item("c", review_status="draft")

    assert references(as_carol.get(URL, {"review_status": "needs_review"})) == ["b"]
    both = as_carol.get(f"{URL}?review_status=reviewed&review_status=draft")
    assert references(both) == ["a", "c"]


@pytest.mark.django_db
def test_it_filters_by_flags(as_carol):
    make_content_item("flagged", needs_human_review=True, has_images=True)
    make_content_item("plain")

    assert references(as_carol.get(URL, {"needs_human_review": "true"})) == ["flagged"]
    assert references(as_carol.get(URL, {"has_images": "false"})) == ["plain"]


@pytest.mark.django_db
def test_it_filters_by_score_band(as_carol):
    make_content_item("weak", depth=40)
    make_content_item("strong", quality=95, freshness=95, depth=95, clarity=95)
    assert references(as_carol.get(URL, {"score_band": "low"})) == ["weak"]
    assert references(as_carol.get(URL, {"score_band": "high"})) == ["strong"]


def messages(body):
    return [error["message"] for error in body["errors"]]


@pytest.mark.django_db
def test_an_unknown_filter_value_is_a_400_saying_what_is_expected(as_carol):
    band = problem(as_carol.get(URL, {"score_band": "great"}), 400, field="score_band")
    assert messages(band) == ["expected low, medium, high or unscored, received 'great'"]
    status = problem(as_carol.get(URL, {"review_status": "approved"}), 400, "review_status")
    assert messages(status) == [
        "expected draft, needs_review, reviewed or changes_requested, received 'approved'"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("flag", ["needs_human_review", "ai_generated_style", "has_images"])
def test_a_flag_filter_that_is_not_true_or_false_is_a_400_not_ignored(as_carol, flag):
    # Ignored, `?needs_human_review=yes` listed every item as if it had filtered them.
    make_content_item("flagged", **{flag: True})
    make_content_item("plain")
    body = problem(as_carol.get(URL, {flag: "yes"}), 400, field=flag)
    assert "true" in body["errors"][0]["message"]
    assert references(as_carol.get(URL, {flag: "1"})) == ["flagged"]
    assert references(as_carol.get(URL, {flag: "False"})) == ["plain"]
    problem(as_carol.get(URL, {flag: ""}), 400, field=flag)  # as every list of the API


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["score_band=low&score_band=high", "needs_human_review=true&needs_human_review=false"],
)
def test_a_single_valued_filter_given_twice_is_a_400(as_carol, query):
    # It was read as its last value: the answer to a question nobody asked.
    make_content_item("a", needs_human_review=True)
    field = query.split("=")[0]
    body = problem(as_carol.get(f"{URL}?{query}"), 400, field=field)
    assert body["errors"][0]["message"] == "given more than once; give it once"
    # review_status is the one that may repeat
    both = as_carol.get(f"{URL}?review_status=reviewed&review_status=needs_review")
    assert references(both) == ["a"]


@pytest.mark.django_db
def test_it_pages_with_a_cursor(as_carol):
    for reference in ["a", "b", "c"]:
        make_content_item(reference)

    first = as_carol.get(URL, {"page_size": 2}).json()
    second = as_carol.get(first["next"]).json()

    assert [e["reference"] for e in first["results"]] == ["a", "b"]
    assert [e["reference"] for e in second["results"]] == ["c"]
    assert second["next"] is None and second["previous"]


@pytest.mark.django_db
def test_the_list_costs_the_same_queries_for_many_items(as_carol, django_assert_num_queries):
    for number in range(30):
        make_content_item(f"ref-{number:02d}")
    # session, user, one page of items
    with django_assert_num_queries(3):
        assert len(references(as_carol.get(URL))) == 30


@pytest.mark.django_db
def test_anonymous_requests_are_401(client):
    problem(client.get(URL), 401)


@pytest.mark.django_db
def test_a_service_key_may_not_read_content(client, blog):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {make_key(blog)}")
    problem(response, 403)


# ---- detail


@pytest.mark.django_db
def test_the_detail_has_every_field(as_carol):
    make_content_item(
        "anp-ref-022359-4690",
        body="the article",
        entities=[{"name": "backend", "type": "area"}],
        payload={"seed": 1},
    )

    response = as_carol.get(f"{URL}/anp-ref-022359-4690")

    assert response.status_code == 200
    entry = response.json()
    assert entry["body"] == "the article"
    assert entry["entities"] == [{"name": "backend", "type": "area"}]
    assert entry["payload"] == {"seed": 1}
    assert {
        "source_id",
        "summary",
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
        "image_sources",
        "notes",
        "missing_fields",
    } <= set(entry)


@pytest.mark.django_db
def test_an_unknown_reference_is_a_404_problem(as_carol):
    problem(as_carol.get(f"{URL}/nope"), 404)


# ---- reviews


@pytest.mark.django_db
def test_a_reviewer_posts_a_decision(as_carol, carol):
    item = make_content_item("anp-1", version="1.7.9", review_status="needs_review")

    response = as_carol.post(
        review_url("anp-1"), {"decision": "reviewed", "note": "ok"}, content_type="application/json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["item"] == "anp-1"
    assert (body["decision"], body["note"], body["reviewer"]) == ("reviewed", "ok", "carol")
    assert body["version"] == "1.7.9"
    review = Review.objects.get()
    assert (review.item, review.reviewer, review.version) == (item, carol, "1.7.9")
    item.refresh_from_db()
    assert item.review_status == "reviewed"


@pytest.mark.django_db
def test_the_note_is_optional_and_a_trailing_slash_works(as_carol):
    make_content_item("anp-1")
    response = as_carol.post(
        review_url("anp-1") + "/",
        {"decision": "changes_requested"},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert response.json()["note"] == ""
    assert ContentItem.objects.get().review_status == "changes_requested"


@pytest.mark.django_db
def test_an_outsider_gets_403_and_nothing_changes(as_mallory):
    make_content_item("anp-1", review_status="needs_review")
    response = as_mallory.post(
        review_url("anp-1"), {"decision": "reviewed"}, content_type="application/json"
    )
    problem(response, 403)
    assert not Review.objects.exists()
    assert ContentItem.objects.get().review_status == "needs_review"


@pytest.mark.django_db
def test_an_unknown_decision_is_a_400_naming_the_field(as_carol):
    make_content_item("anp-1")
    response = as_carol.post(
        review_url("anp-1"), {"decision": "approved"}, content_type="application/json"
    )
    body = problem(response, 400, field="decision")
    assert messages(body) == ["expected reviewed or changes_requested, received 'approved'"]
    assert not Review.objects.exists()


@pytest.mark.django_db
def test_reviewing_an_unknown_reference_is_a_404(as_carol):
    response = as_carol.post(
        review_url("nope"), {"decision": "reviewed"}, content_type="application/json"
    )
    problem(response, 404)


@pytest.mark.django_db
def test_anyone_signed_in_reads_the_review_history_newest_first(as_carol, carol, mallory, client):
    make_content_item("anp-1")
    items = ContentItem.objects.all()
    items.review(carol, "changes_requested", "first pass")
    items.review(carol, "reviewed", "second pass")
    client.force_login(mallory)

    response = client.get(review_url("anp-1"))

    assert response.status_code == 200
    assert [r["note"] for r in response.json()["results"]] == ["second pass", "first pass"]


@pytest.mark.django_db
def test_review_endpoints_cost_fixed_queries(as_carol, carol, django_assert_num_queries):
    make_content_item("anp-1")
    for _ in range(5):
        ContentItem.objects.all().review(carol, "reviewed")

    # session, user, the item, its reviews with reviewers
    with django_assert_num_queries(4):
        assert len(as_carol.get(review_url("anp-1")).json()["results"]) == 5

    # session, user, reviewer check (user and group permissions), the item, savepoint,
    # lock the item, insert the review, update the item, release
    with django_assert_num_queries(10):
        response = as_carol.post(
            review_url("anp-1"), {"decision": "reviewed"}, content_type="application/json"
        )
    assert response.status_code == 201
