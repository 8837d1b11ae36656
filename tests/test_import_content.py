"""`manage.py import_content`: called as a command, asserted on the database and the output."""

import datetime
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict

from signals_app import content_import
from signals_app.content import parse_file
from signals_app.models import ContentItem, Reading, Review
from tests.builders import SAMPLE_CONTENT, content_text, write_content

REFERENCE = "anp-ref-022359-4690"


class Terminal(StringIO):
    def isatty(self):
        return True


def run(*paths, expect_failed=0, stderr=None, **options):
    """Run the command; returns (stdout, stderr). A failed document makes it raise."""
    out, err = StringIO(), stderr or StringIO()
    args = [str(path) for path in paths]
    if expect_failed:
        with pytest.raises(CommandError, match=f"{expect_failed} document"):
            call_command("import_content", *args, stdout=out, stderr=err, **options)
    else:
        call_command("import_content", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def summary(stdout):
    return stdout.strip().splitlines()[-1]


def snapshot():
    """Everything an import may write, to compare a database before and after a run."""
    return {
        "items": [model_to_dict(item) for item in ContentItem.objects.order_by("pk")],
        "stamps": list(ContentItem.objects.order_by("pk").values_list("imported_at", "updated_at")),
        "history": ContentItem.history.count(),
        "readings": Reading.objects.count(),
        "reviews": Review.objects.count(),
    }


def variant(directory, reference, *replacements, name=None):
    text = content_text((REFERENCE, reference), *replacements)
    return write_content(directory, name or f"{reference}.txt", text)


@pytest.mark.django_db
def test_it_imports_the_sample_with_exactly_its_values():
    stdout, stderr = run(SAMPLE_CONTENT)

    assert summary(stdout) == "created 1, updated 0, unchanged 0, failed 0"
    assert stderr == ""
    item = ContentItem.objects.get()
    assert item.reference == REFERENCE
    assert item.source_id == "alphanode-022359"
    assert item.title == (
        "production checklist for tracking data quality signals in python services"
    )
    assert item.body.startswith("this is a field note for developers")
    assert item.body.endswith("so future maintenance is easier.")
    assert item.topic == "tracking data quality signals / python services"
    assert item.summary.startswith("this ai-style technical summary explains")
    assert item.ai_outline[0] == "context: behind a cdn"
    assert len(item.ai_outline) == 4
    assert item.ai_brief.startswith("the article is written like a careful ai generated")
    assert item.stack == ["python services", "backend", "python"]
    assert item.tools == ["fastapi", "pytest", "uvicorn", "ruff", "git", "logs"]
    assert (item.code_language, item.difficulty) == ("python", "intermediate")
    assert (item.reading_time, item.view_count) == (12, 617056)
    assert (item.quality, item.freshness, item.depth, item.clarity) == (80, 90, 96, 77)
    assert (item.ai_generated_style, item.has_images) == (True, True)
    assert (item.image_heavy, item.needs_human_review) == (False, False)
    assert (item.revision_status, item.version) == ("reviewed", "1.7.9")
    assert item.last_reviewed_at == datetime.date(2022, 4, 22)
    assert item.content_hash == "d1d09bf4540df2d21afa925c"
    assert item.checklist[-1] == "tag the release"
    assert item.entities[2] == {"name": "tracking data quality signals", "type": "problem"}
    assert item.image_sources[1]["caption"].endswith("visual reference 2")
    assert item.image_sources[1]["url"].startswith("https://images.unsplash.com/photo-1555066931")
    assert item.payload == {
        "generator": "anp content synthesizer",
        "paragraphs": 9,
        "scenario": "behind a cdn",
        "seed": 22359,
    }
    assert len(item.notes) == 3
    assert item.missing_fields == []
    # Good scores, no human review asked, and the document says reviewed.
    assert item.review_status == "reviewed"
    assert item.imported_at is not None
    (first,) = item.history.all()
    assert (first.history_type, first.history_change_reason) == ("+", "import_content")
    assert first.quality == 80
    assert first.entities == item.entities


@pytest.mark.django_db
def test_importing_the_same_files_twice_leaves_the_database_as_the_first_run_left_it(tmp_path):
    for number in range(3):
        variant(tmp_path, f"ref-{number}")
    run(tmp_path)
    first = snapshot()

    stdout, _ = run(tmp_path)

    assert summary(stdout) == "created 0, updated 0, unchanged 3, failed 0"
    assert snapshot() == first


@pytest.mark.django_db
def test_an_unchanged_document_keeps_its_reviewer_decision(tmp_path, carol):
    run(SAMPLE_CONTENT)
    ContentItem.objects.all().review(carol, "changes_requested", "tighten the summary")

    run(SAMPLE_CONTENT)

    assert ContentItem.objects.get().review_status == "changes_requested"


@pytest.mark.django_db
def test_a_changed_document_is_updated_and_goes_back_to_needs_review(tmp_path, carol):
    run(SAMPLE_CONTENT)
    ContentItem.objects.all().review(carol, "reviewed")
    before = ContentItem.objects.get()
    changed = write_content(
        tmp_path,
        "changed.txt",
        content_text(
            ("d1d09bf4540df2d21afa925c", "ffff0000ffff0000ffff0000"),
            ("why this matters", "why this matters, revised"),
            ("  • quality: 80", "  • quality: 91"),
        ),
    )

    stdout, _ = run(changed)

    assert summary(stdout) == "created 0, updated 1, unchanged 0, failed 0"
    item = ContentItem.objects.get()
    assert item.pk == before.pk
    assert item.review_status == "needs_review"
    assert item.quality == 91
    assert item.content_hash == "ffff0000ffff0000ffff0000"
    assert "why this matters, revised" in item.body
    assert item.imported_at > before.imported_at
    assert [h.history_type for h in item.history.order_by("history_date")] == ["+", "~"]
    assert item.reviews.count() == 1  # the decision on the old version stays on record


@pytest.mark.django_db
@pytest.mark.parametrize("first", ["created", "updated"])
def test_every_field_is_stored_as_parsed(tmp_path, first):
    v2 = write_content(
        tmp_path,
        "v2.txt",
        content_text(
            ("d1d09bf4540df2d21afa925c", "0123456789abcdef01234567"),
            ("  • last reviewed: 2022-04-22", "  • last reviewed: 2024-02-29"),
            ("    • type: area", "    • type: área ✓"),
            ("  • seed: 22359", "  • seed: 7\n  • model name: synth-2"),
            ("difficultyintermediate\n", ""),
        ),
    )
    if first == "updated":
        run(SAMPLE_CONTENT)
    run(v2)

    (document,) = parse_file(v2)
    item = ContentItem.objects.get()
    assert {name: getattr(item, name) for name in document.item_values()} == (
        document.item_values()
    )
    assert item.history.first().payload == {**document.payload}


@pytest.mark.django_db
def test_a_body_change_under_the_same_hash_counts_as_changed(tmp_path):
    run(SAMPLE_CONTENT)
    path = write_content(tmp_path, "edited.txt", content_text(("final notes", "closing notes")))
    stdout, _ = run(path)
    assert summary(stdout) == "created 0, updated 1, unchanged 0, failed 0"


@pytest.mark.django_db
def test_dry_run_reports_without_writing(tmp_path):
    run(SAMPLE_CONTENT)
    variant(tmp_path, "new-one")
    write_content(tmp_path, "changed.txt", content_text(("final notes", "closing notes")))
    before = snapshot()

    stdout, _ = run(tmp_path, dry_run=True)

    assert stdout.splitlines() == [
        "dry run: nothing was written",
        "created 1, updated 1, unchanged 0, failed 0",
    ]
    assert snapshot() == before


@pytest.mark.django_db
def test_one_bad_file_is_reported_and_the_rest_are_imported(tmp_path):
    variant(tmp_path, "good-1")
    variant(tmp_path, "bad-1", ("  • quality: 80", "  • quality: lots"))
    variant(tmp_path, "good-2")

    stdout, stderr = run(tmp_path, expect_failed=1)

    assert summary(stdout) == "created 2, updated 0, unchanged 0, failed 1"
    bad = tmp_path / "bad-1.txt"
    line = bad.read_text().split("\n").index("  • quality: lots") + 1
    assert stderr.strip() == (
        f"failed: {bad}:{line}: expected a whole number from 0 to 100 for score 'quality', "
        "found 'lots'"
    )
    assert set(ContentItem.objects.values_list("reference", flat=True)) == {"good-1", "good-2"}


@pytest.mark.django_db
def test_values_no_database_column_holds_fail_their_document_not_the_import(tmp_path):
    # Before: an OverflowError (SQLite) or DataError (PostgreSQL) from the chunk's insert
    # ended the whole command with a traceback.
    variant(tmp_path, "good-1")
    variant(tmp_path, "huge-views", ("view count617056", "view count99999999999999999999999"))
    variant(tmp_path, "long-read", ("reading time12", "reading time99999999999"))
    variant(tmp_path, "nul-byte", ("why this matters", "why\x00 this matters"))

    stdout, stderr = run(tmp_path, expect_failed=3)

    assert summary(stdout) == "created 1, updated 0, unchanged 0, failed 3"
    assert f"failed: {tmp_path / 'huge-views.txt'}:" in stderr
    assert f"failed: {tmp_path / 'long-read.txt'}:" in stderr
    assert f"failed: {tmp_path / 'nul-byte.txt'}:8: expected text without NUL" in stderr
    assert list(ContentItem.objects.values_list("reference", flat=True)) == ["good-1"]


@pytest.mark.django_db
def test_one_bad_document_in_a_json_list_fails_alone(tmp_path):
    good = {"title": "fine", "body": "text", "hash": "h"}
    path = tmp_path / "many.json"
    path.write_text(
        json.dumps(
            [
                {**good, "reference": "json-1"},
                {**good, "reference": "json-2", "quality": "lots"},
                {**good, "reference": "json-3"},
            ]
        ),
        encoding="utf-8",
    )

    stdout, stderr = run(path, expect_failed=1)

    assert summary(stdout) == "created 2, updated 0, unchanged 0, failed 1"
    assert stderr.strip() == (
        f"failed: {path}[1] (quality): expected a whole number from 0 to 100 for score "
        "'quality', found 'lots'"
    )
    assert list(ContentItem.objects.values_list("reference", flat=True)) == ["json-1", "json-3"]


@pytest.mark.django_db
def test_json_failures_name_the_document_and_the_field_never_a_line(tmp_path):
    # The forms README documents: FILE[INDEX] (FIELD): ... and FILE[INDEX]: ...
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps([{"reference": "no-title", "title": ""}, {"title": "no reference"}]),
        encoding="utf-8",
    )
    stdout, stderr = run(path, expect_failed=2)
    assert stderr.strip().splitlines() == [
        f"failed: {path}[0] (title): expected a title, found ''",
        f"failed: {path}[1]: expected a 'reference' field",
    ]


@pytest.mark.django_db
def test_a_document_without_meta_block_fails_with_its_name(tmp_path):
    path = write_content(tmp_path, "article-only.txt", content_text().split("alphanode")[0])
    stdout, stderr = run(path, expect_failed=1)
    assert f"failed: {path}:" in stderr
    assert "expected a line 'alphanode post meta'" in stderr
    assert summary(stdout) == "created 0, updated 0, unchanged 0, failed 1"


@pytest.mark.django_db
def test_a_path_that_does_not_exist_is_a_failure(tmp_path):
    stdout, stderr = run(SAMPLE_CONTENT, tmp_path / "nowhere", expect_failed=1)
    assert summary(stdout) == "created 1, updated 0, unchanged 0, failed 1"
    assert "nowhere: expected a file or directory" in stderr


@pytest.mark.django_db
def test_the_same_reference_twice_in_one_run(tmp_path):
    write_content(tmp_path, "a.txt", content_text())
    write_content(tmp_path, "b-copy.txt", content_text())
    write_content(tmp_path, "c-other.txt", content_text(("final notes", "closing notes")))

    stdout, stderr = run(tmp_path, expect_failed=1)

    # The identical copy is unchanged; the conflicting one is refused, the first kept.
    assert summary(stdout) == "created 1, updated 0, unchanged 1, failed 1"
    assert f"{tmp_path / 'c-other.txt'}: expected each reference once per import" in stderr
    assert f"already imported from {tmp_path / 'a.txt'}" in stderr
    assert "final notes" in ContentItem.objects.get().body


@pytest.mark.django_db
def test_a_stored_reference_twice_in_one_run(tmp_path):
    run(SAMPLE_CONTENT)
    write_content(tmp_path, "a.txt", content_text())
    write_content(tmp_path, "b-other.txt", content_text(("final notes", "closing notes")))

    stdout, stderr = run(tmp_path, expect_failed=1)

    assert summary(stdout) == "created 0, updated 0, unchanged 1, failed 1"
    assert "already imported from" in stderr
    assert "final notes" in ContentItem.objects.get().body


@pytest.mark.django_db
def test_a_score_change_under_the_same_hash_and_body_is_an_update(tmp_path, carol):
    # Unchanged means every imported field is equal, not only the hash and body: a new
    # score is recorded, gets a history row and sends the item back to review.
    run(SAMPLE_CONTENT)
    ContentItem.objects.all().review(carol, "reviewed")
    readings = Reading.objects.count()
    path = write_content(
        tmp_path, "lower.txt", content_text(("  • quality: 80", "  • quality: 20"))
    )

    stdout, _ = run(path)

    assert summary(stdout) == "created 0, updated 1, unchanged 0, failed 0"
    item = ContentItem.objects.get()
    assert (item.quality, item.review_status) == (20, "needs_review")
    assert [h.history_type for h in item.history.order_by("history_date")] == ["+", "~"]
    assert Reading.objects.count() == readings + 5
    assert summary(run(path)[0]) == "created 0, updated 0, unchanged 1, failed 0"


@pytest.mark.django_db
def test_a_title_change_under_the_same_hash_and_body_is_an_update(tmp_path):
    run(SAMPLE_CONTENT)
    title = content_text().splitlines()[0]
    path = write_content(tmp_path, "retitled.txt", content_text((title, "a better title")))

    stdout, _ = run(path)

    assert summary(stdout) == "created 0, updated 1, unchanged 0, failed 0"
    assert ContentItem.objects.get().title == "a better title"


@pytest.mark.django_db
def test_a_stored_document_is_validated_again(tmp_path):
    run(SAMPLE_CONTENT)
    path = write_content(tmp_path, "same.txt", content_text(("reading time12", "reading timeabc")))

    stdout, stderr = run(path, expect_failed=1)

    assert summary(stdout) == "created 0, updated 0, unchanged 0, failed 1"
    assert "expected a whole number after 'reading time'" in stderr
    assert ContentItem.objects.get().reading_time == 12


@pytest.mark.django_db
def test_a_json_document_without_a_hash_is_compared_field_by_field(tmp_path):
    first = tmp_path / "first.json"
    first.write_text(
        json.dumps({"reference": "j3", "title": "first", "article": "c", "quality": 90}),
        encoding="utf-8",
    )
    run(first)
    second = tmp_path / "second.json"
    second.write_text(
        json.dumps({"reference": "j3", "title": "third", "article": "c", "quality": 5}),
        encoding="utf-8",
    )

    stdout, _ = run(second)

    assert summary(stdout) == "created 0, updated 1, unchanged 0, failed 0"
    item = ContentItem.objects.get()
    assert (item.title, item.quality, item.review_status) == ("third", 5, "needs_review")


@pytest.mark.django_db
def test_two_different_copies_in_one_json_file_fail(tmp_path):
    path = tmp_path / "twice.json"
    path.write_text(
        json.dumps(
            [
                {"reference": "j3", "title": "first", "quality": 90},
                {"reference": "j3", "title": "first", "quality": 5},
                {"reference": "j3", "title": "first", "quality": 90},
            ]
        ),
        encoding="utf-8",
    )

    stdout, stderr = run(path, expect_failed=1)

    assert summary(stdout) == "created 1, updated 0, unchanged 1, failed 1"
    # FILE[INDEX], as every failure of a document in a JSON list (README).
    assert stderr.strip() == (
        f"failed: {path}[1]: expected each reference once per import, but 'j3' was already "
        f"imported from {path}[0] in this run with other content; kept that one"
    )
    assert ContentItem.objects.get().quality == 90


@pytest.mark.django_db
@pytest.mark.parametrize(("documents", "found"), [("nope", "'nope'"), ({"a": 1}, "{'a': 1}")])
def test_documents_that_are_not_a_list_say_so(tmp_path, documents, found):
    # It said "expected a 'reference' field", as if the file were one document.
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"documents": documents}), encoding="utf-8")
    stdout, stderr = run(path, expect_failed=1)
    assert stderr.strip() == (
        f"failed: {path}: expected 'documents' to be a list of documents, found {found}"
    )
    assert summary(stdout) == "created 0, updated 0, unchanged 0, failed 1"


@pytest.mark.django_db
def test_directories_are_searched_for_txt_and_json_only(tmp_path):
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    variant(tmp_path / "nested" / "deeper", "deep-1")
    variant(tmp_path, "top-1")
    (tmp_path / "README.md").write_text("not a document")
    (tmp_path / "nested" / "doc.json").write_text(
        '{"reference": "json-1", "title": "from json", "body": "text", "hash": "h1"}'
    )

    stdout, _ = run(tmp_path)

    assert summary(stdout) == "created 3, updated 0, unchanged 0, failed 0"
    json_item = ContentItem.objects.get(reference="json-1")
    assert json_item.title == "from json"
    assert "topic" in json_item.missing_fields
    # No scores: nobody measured its quality, so it waits for a reviewer.
    assert json_item.review_status == "needs_review"


@pytest.mark.django_db
def test_crlf_and_unicode_documents_import(tmp_path):
    write_content(
        tmp_path,
        "windows.txt",
        content_text(
            (REFERENCE, "crlf-1"),
            ("production checklist for", "Qualité — 監視 checklist for"),
        ),
        newline="\r\n",
    )
    run(tmp_path)
    item = ContentItem.objects.get(reference="crlf-1")
    assert item.title.startswith("Qualité — 監視")
    assert "\r" not in item.body
    assert item.tools[-1] == "logs"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("replacements", "status"),
    [
        ((), "reviewed"),
        ((("  • needs human review: 0", "  • needs human review: 1"),), "needs_review"),
        ((("  • clarity: 77", "  • clarity: 69"),), "needs_review"),
        ((("  • clarity: 77", ""),), "needs_review"),
        ((("  • status: reviewed", "  • status: draft"),), "draft"),
        ((("  • status: reviewed", "  • status: changes requested"),), "changes_requested"),
        ((("  • status: reviewed", "  • status: pending legal"),), "needs_review"),
    ],
)
def test_the_review_status_an_imported_item_starts_in(tmp_path, replacements, status):
    run(write_content(tmp_path, "doc.txt", content_text(*replacements)))
    assert ContentItem.objects.get().review_status == status


@pytest.mark.django_db
def test_the_minimum_score_comes_from_settings(settings):
    settings.DQ_CONTENT_MIN_SCORE = 78  # the sample's clarity is 77
    run(SAMPLE_CONTENT)
    assert ContentItem.objects.get().review_status == "needs_review"


@pytest.mark.django_db
def test_each_touched_item_is_recorded_as_readings_of_the_content_route(tmp_path):
    run(SAMPLE_CONTENT)

    readings = Reading.objects.select_related("route__service", "signal", "environment")
    values = {reading.signal.key: reading.value for reading in readings}
    assert values == {
        "content_quality": 80,
        "content_freshness": 90,
        "content_depth": 96,
        "content_clarity": 77,
        "content_missing_meta": 0,
    }
    reading = readings.first()
    assert (reading.route.service.slug, reading.route.method) == ("content", "GET")
    assert reading.route.path == "/content/{reference}"
    assert reading.environment.slug == "production"
    assert (reading.cache_status, reading.release) == ("UNKNOWN", "1.7.9")
    assert reading.observed_at == ContentItem.objects.get().imported_at

    run(SAMPLE_CONTENT)  # unchanged: no new samples
    assert Reading.objects.count() == 5

    v2 = content_text(("difficultyintermediate\n", ""), ("hashd1d09bf4", "hashe2e0"))
    run(write_content(tmp_path, "v2.txt", v2))
    latest = Reading.objects.filter(signal__key="content_missing_meta").order_by("-id").first()
    assert latest.value == 1
    assert Reading.objects.count() == 10


@pytest.mark.django_db
def test_a_missing_score_is_not_recorded_as_a_reading(tmp_path):
    run(write_content(tmp_path, "doc.txt", content_text(("  • depth: 96\n", ""))))
    keys = set(Reading.objects.values_list("signal__key", flat=True))
    assert "content_depth" not in keys
    assert Reading.objects.get(signal__key="content_missing_meta").value == 1


@pytest.mark.django_db
def test_queries_are_per_chunk_not_per_document(tmp_path, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(content_import, "CHUNK_SIZE", 10)
    for number in range(20):
        variant(tmp_path, f"ref-{number:02d}")
    run(variant(tmp_path / "..", "warm-up", name="warm-up.txt"))  # creates the content route

    # Once: the content route's owner, service, route, environment and signals. Per chunk
    # of 10 new documents: savepoint, existing items, insert items,
    # their ids, insert history, insert readings, release.
    with django_assert_num_queries(5 + 2 * 7):
        stdout, _ = run(tmp_path)
    assert summary(stdout) == "created 20, updated 0, unchanged 0, failed 0"

    # Unchanged: per chunk, savepoint, the stored items' imported fields, release.
    with django_assert_num_queries(2 * 3):
        stdout, _ = run(tmp_path)
    assert summary(stdout) == "created 0, updated 0, unchanged 20, failed 0"


@pytest.mark.django_db
def test_the_progress_bar_is_drawn_only_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(content_import, "CHUNK_SIZE", 2)
    for number in range(3):
        variant(tmp_path, f"ref-{number}")

    _, quiet = run(tmp_path)
    assert quiet == ""

    _, drawn = run(tmp_path, stderr=Terminal())
    assert "\rimporting [" in drawn
    assert drawn.endswith("] 3/3 files\n")
