"""signals_app.content: the exported text format and JSON documents, without a database."""

import datetime
import json

import pytest

from signals_app.content import (
    META_FIELDS,
    ContentFormatError,
    parse_file,
    parse_text,
)
from tests.builders import SAMPLE_CONTENT, content_text, write_content

SAMPLE_BODY_START = (
    "this is a field note for developers who want a calm, readable solution. the focus is "
    "tracking data quality signals in python services behind a cdn, with checks that can be "
    "reused later.\n\ntracking data quality signals with python services visual reference 1\n"
)
SAMPLE_BODY_END = (
    "final notes\n\nthe best result is not only a faster or cleaner python services "
    "implementation. it is a change that another developer can inspect, understand, and safely "
    "repeat. keep the final commands, metrics, and assumptions close to the article so future "
    "maintenance is easier."
)


def parse(text, name="doc.txt"):
    return parse_text(text, name)


def format_error(text, name="doc.txt"):
    with pytest.raises(ContentFormatError) as caught:
        parse_text(text, name)
    return caught.value


def test_the_sample_parses_to_exactly_its_values():
    (document,) = parse_file(SAMPLE_CONTENT)

    assert (
        document.title
        == "production checklist for tracking data quality signals in python services"
    )
    assert document.body.startswith(SAMPLE_BODY_START)
    assert document.body.endswith(SAMPLE_BODY_END)
    assert "alphanode post meta" not in document.body
    assert "  • run linting\n  • run unit tests\n" in document.body  # the article's own list
    assert "from fastapi import FastAPI\napp = FastAPI()\n" in document.body
    assert document.topic == "tracking data quality signals / python services"
    assert document.summary == (
        "this ai-style technical summary explains tracking data quality signals in python "
        "services, with emphasis on measurement, safe defaults, rollback planning, and "
        "maintainable documentation."
    )
    assert document.ai_outline == [
        "context: behind a cdn",
        "problem: tracking data quality signals",
        "stack: python services",
        "recommended action: measure first, change carefully, document the result",
    ]
    assert document.ai_brief == (
        "the article is written like a careful ai generated engineering draft: it explains the "
        "reason for the change, lists operational checks, and avoids pretending that one "
        "command fixes every production case."
    )
    assert document.stack == ["python services", "backend", "python"]
    assert document.tools == ["fastapi", "pytest", "uvicorn", "ruff", "git", "logs"]
    assert document.code_language == "python"
    assert document.difficulty == "intermediate"
    assert document.reading_time == 12
    assert document.view_count == 617056
    assert (document.quality, document.freshness, document.depth, document.clarity) == (
        80,
        90,
        96,
        77,
    )
    assert document.revision_status == "reviewed"
    assert document.version == "1.7.9"
    assert document.last_reviewed_at == datetime.date(2022, 4, 22)
    assert document.reference == "anp-ref-022359-4690"
    assert document.content_hash == "d1d09bf4540df2d21afa925c"
    assert document.ai_generated_style is True
    assert document.has_images is True
    assert document.image_heavy is False
    assert document.needs_human_review is False
    assert document.checklist == [
        "run linting",
        "run unit tests",
        "run one integration check",
        "verify staging config",
        "tag the release",
    ]
    assert document.entities == [
        {"name": "python services", "type": "stack"},
        {"name": "backend", "type": "area"},
        {"name": "tracking data quality signals", "type": "problem"},
    ]
    assert document.image_sources == [
        {
            "source": "unsplash",
            "url": "https://images.unsplash.com/photo-1555949963-aa79dcee981c"
            "?auto=format&fit=crop&w=1200&q=80",
            "caption": "tracking data quality signals with python services visual reference 1",
        },
        {
            "source": "unsplash",
            "url": "https://images.unsplash.com/photo-1555066931-4365d14bab8c"
            "?auto=format&fit=crop&w=1200&q=80",
            "caption": "tracking data quality signals with python services visual reference 2",
        },
    ]
    assert document.source_id == "alphanode-022359"
    assert document.payload == {
        "generator": "anp content synthesizer",
        "paragraphs": 9,
        "scenario": "behind a cdn",
        "seed": 22359,
    }
    assert document.notes == [
        "sanitized array meta is expected to render as a list in the frontend box",
        "view count is synthetic and only used for testing meta volume",
        "content is generated for import/load testing and should be reviewed before indexing",
    ]
    assert document.missing_fields == []


def test_the_page_footer_after_the_meta_block_is_not_part_of_the_document():
    document = parse(content_text())
    assert not any("similar" in note.lower() for note in document.notes)


def test_crlf_line_ends_give_the_same_document(tmp_path):
    lf = parse_file(write_content(tmp_path, "lf.txt", content_text()))[0]
    crlf = parse_file(write_content(tmp_path, "crlf.txt", content_text(), newline="\r\n"))[0]
    cr = parse_file(write_content(tmp_path, "cr.txt", content_text(), newline="\r"))[0]
    assert crlf.item_values() == lf.item_values() == cr.item_values()
    assert "\r" not in crlf.body


def test_a_byte_order_mark_is_not_part_of_the_title(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + content_text().encode())
    assert parse_file(path)[0].title.startswith("production checklist")


def test_unicode_titles_and_values_are_kept_as_written():
    document = parse(
        content_text(
            (
                "production checklist for tracking data quality signals in python services",
                "Qualité des données — 監視 ✓ 🚀",
            ),
            ("topictracking data", "topicSüßes Ödland / tracking data"),
            ("  • git\n", "  • café\n"),
        )
    )
    assert document.title == "Qualité des données — 監視 ✓ 🚀"
    assert document.topic.startswith("Süßes Ödland")
    assert "café" in document.tools


def test_a_line_separator_inside_the_article_does_not_split_the_line():
    document = parse(content_text(("why this matters", "why\u2028this matters")))
    assert "why\u2028this matters" in document.body


def test_a_document_without_the_meta_block_names_the_file_line_and_what_was_expected():
    text = content_text().split("alphanode post meta")[0]
    error = format_error(text, "no-meta.txt")
    assert error.path == "no-meta.txt"
    assert error.line == len(text.split("\n"))
    assert "'alphanode post meta'" in str(error)
    assert str(error).startswith(f"no-meta.txt:{error.line}: expected")


def test_an_empty_document_is_an_error():
    assert "a title" in str(format_error("\n\n"))


def test_a_document_without_a_reference_is_an_error():
    error = format_error(content_text(("referenceanp-ref-022359-4690\n", "")))
    assert "'reference'" in str(error)


def test_missing_optional_lists_are_empty_and_counted_as_missing():
    text = content_text(
        (
            "checklist\n  • run linting\n  • run unit tests\n  • run one integration check\n"
            "  • verify staging config\n  • tag the release\nentities",
            "entities",
        ),
        ("tools\n", "tools\n\n"),  # a label with no items
        ("  • fastapi\n  • pytest\n  • uvicorn\n  • ruff\n  • git\n  • logs\n", ""),
    )
    document = parse(text)
    assert document.checklist == []
    assert document.tools == []
    assert document.stack == ["python services", "backend", "python"]
    assert document.missing_fields == ["tools", "checklist"]


def test_missing_meta_fields_are_listed_in_the_order_of_the_model():
    text = content_text(
        ("difficultyintermediate\n", ""),
        ("  • clarity: 77\n", ""),
        ("  • image heavy: 0\n", ""),
    )
    document = parse(text)
    assert document.missing_fields == ["difficulty", "clarity", "image_heavy"]
    assert document.clarity is None
    assert document.image_heavy is False
    assert set(document.missing_fields) <= set(META_FIELDS)


def test_unknown_extra_labels_are_kept_in_notes_not_fatal():
    text = content_text(
        ("code languagepython\n", "code languagepython\nauthorjane doe\n"),
        ("flags\n", "translations\n  • de: ja\n  • fr: oui\nflags\n"),
        ("  • needs human review: 0\n", "  • needs human review: 0\n  • sponsored: 1\n"),
        ("  • seed: 22359\n", "  • seed: 22359\n  • model name: synth-2\n"),
    )
    document = parse(text)
    assert document.notes[-3:] == [
        "authorjane doe",
        "translations: de: ja; fr: oui",
        "flags sponsored: 1",
    ]
    assert document.payload["model_name"] == "synth-2"
    assert document.needs_human_review is False


def test_a_label_may_be_followed_by_a_colon_and_space():
    document = parse(content_text(("reading time12", "reading time: 12"), ("stack\n", "stack:\n")))
    assert document.reading_time == 12
    assert document.stack == ["python services", "backend", "python"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  • quality: 80", "  • quality: 180", "a whole number from 0 to 100 for score 'quality'"),
        (
            "  • quality: 80",
            "  • quality: high",
            "a whole number from 0 to 100 for score 'quality'",
        ),
        ("reading time12", "reading timetwelve", "a whole number after 'reading time'"),
        ("  • has images: 1", "  • has images: maybe", "1 or 0 for flag 'has images'"),
        ("  • last reviewed: 2022-04-22", "  • last reviewed: april", "a date like 2022-04-22"),
        ("  • seed: 22359", "  • seed: many", "a whole number for payload 'seed'"),
        ("    • type: area", "    • type area", "'name: value' items under 'entities'"),
        ("referenceanp-ref-022359-4690", "referenceanp ref/1", "a reference of letters"),
    ],
)
def test_a_bad_value_names_its_line_and_what_was_expected(old, new, expected):
    text = content_text((old, new))
    line = text.split("\n").index(new) + 1
    error = format_error(text, "bad.txt")
    assert error.line == line
    assert expected in str(error)
    assert str(error).startswith(f"bad.txt:{line}: expected ")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # one more than the column holds: PositiveIntegerField, PositiveBigIntegerField
        ("reading time12", "reading time2147483648", "at most 2,147,483,647"),
        ("view count617056", "view count9223372036854775808", "at most 9,223,372,036,854,775,807"),
        ("  • seed: 22359", "  • seed: 9223372036854775808", "at most 9,223,372,036,854,775,807"),
        # more digits than int() converts (4,300)
        ("  • quality: 80", "  • quality: " + "9" * 5000, "from 0 to 100 for score 'quality'"),
    ],
)
def test_a_number_too_large_for_its_field_names_its_line(old, new, expected):
    text = content_text((old, new))
    line = text.split("\n").index(new) + 1
    error = format_error(text, "big.txt")
    assert error.line == line
    assert expected in str(error)
    assert len(str(error)) < 300  # the 5,000 digits are not all repeated


def test_a_nul_character_names_its_line(tmp_path):
    # PostgreSQL cannot store NUL in text; SQLite could, so it is refused on both.
    path = write_content(tmp_path, "nul.txt", content_text(("why this matters", "why\x00 this")))
    with pytest.raises(ContentFormatError) as caught:
        parse_file(path)
    assert caught.value.line == 8  # "why this matters" is line 8 of the sample
    assert "expected text without NUL (0x00) characters" in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("title", "a\x00b", "text without NUL (0x00) characters"),
        ("tools", ["ok", "\ud800"], "text without lone surrogates"),
        ("payload", {"gen\x00": "x"}, "text without NUL (0x00) characters"),
    ],
)
def test_json_escapes_that_no_database_stores_name_the_field(tmp_path, field, value, expected):
    path = tmp_path / "escapes.json"
    # json.dumps writes them as the escapes \u0000 and \ud800
    path.write_text(json.dumps(sample_as_json(**{field: value})), encoding="ascii")
    with pytest.raises(ContentFormatError) as caught:
        parse_file(path)
    assert f"({field}): expected {expected}" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"reference": "x", "view count": ' + "9" * 5000 + "}", "valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "valid JSON (nested too deeply)"),
    ],
)
def test_json_the_parser_refuses_is_an_error_not_a_crash(tmp_path, raw, expected):
    path = tmp_path / "odd.json"
    path.write_text(raw, encoding="utf-8")
    with pytest.raises(ContentFormatError) as caught:
        parse_file(path)
    assert expected in str(caught.value)


def test_a_label_given_twice_is_an_error_naming_both_lines():
    text = content_text(("difficultyintermediate\n", "difficultyintermediate\ndifficultyhard\n"))
    lines = text.split("\n")
    error = format_error(text)
    assert error.line == lines.index("difficultyhard") + 1
    assert f"already given on line {lines.index('difficultyintermediate') + 1}" in str(error)


def test_a_list_item_without_a_label_is_an_error():
    error = format_error(content_text(("post meta\n\n", "post meta\n\n  • stray\n")))
    assert "a label before this list item" in str(error)


def test_a_glued_label_followed_by_a_list_is_an_error():
    error = format_error(content_text(("reading time12\n", "reading time\n  • 12\n")))
    assert "the value of 'reading time' on its own line, glued to the label" in str(error)


def test_an_over_long_value_is_refused_before_it_reaches_the_database():
    error = format_error(content_text(("code languagepython", "code language" + "x" * 51)))
    assert "at most 50 characters for 'code_language'" in str(error)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    latin1 = "pourquoi ça compte".encode("latin-1")
    path.write_bytes(content_text().encode().replace(b"why this matters", latin1))
    with pytest.raises(ContentFormatError) as caught:
        parse_file(path)
    assert caught.value.line == 8  # "why this matters" is line 8 of the sample
    assert "expected UTF-8 text, found 'byte 0xe7'" in str(caught.value)


def test_glued_unknown_labels_that_start_like_a_list_label_are_not_taken_for_it():
    document = parse(
        content_text(("code languagepython\n", "stackoverflow threads3\ncode languagepython\n"))
    )
    assert document.stack == ["python services", "backend", "python"]
    assert "stackoverflow threads3" in document.notes


# ---- JSON


def sample_as_json(**changes):
    document = parse_file(SAMPLE_CONTENT)[0]
    values = document.item_values()
    values["last_reviewed_at"] = values["last_reviewed_at"].isoformat()
    del values["missing_fields"]
    values.update(changes)
    return values


def test_a_json_document_with_the_model_field_names_gives_the_same_document(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(sample_as_json()), encoding="utf-8")
    (document,) = parse_file(path)
    assert document.item_values() == parse_file(SAMPLE_CONTENT)[0].item_values()


def test_a_json_document_with_the_text_labels_and_nested_groups_gives_the_same_document(tmp_path):
    text = parse_file(SAMPLE_CONTENT)[0]
    nested = {
        "title": text.title,
        "body": text.body,
        "topic": text.topic,
        "summary": text.summary,
        "ai outline": text.ai_outline,
        "ai brief": text.ai_brief,
        "stack": text.stack,
        "tools": text.tools,
        "code language": "python",
        "difficulty": "intermediate",
        "reading time": "12",
        "view count": 617056,
        "score": {"quality": 80, "freshness": "90", "depth": 96, "clarity": 77},
        "revision": {"status": "reviewed", "version": "1.7.9", "last reviewed": "2022-04-22"},
        "reference": "anp-ref-022359-4690",
        "hash": "d1d09bf4540df2d21afa925c",
        "flags": {
            "ai generated style": 1,
            "has images": True,
            "image heavy": "0",
            "needs human review": 0,
        },
        "checklist": text.checklist,
        "entities": text.entities,
        "image sources": text.image_sources,
        "payload": {
            "source id": "alphanode-022359",
            "generator": "anp content synthesizer",
            "paragraphs": 9,
            "scenario": "behind a cdn",
            "seed": 22359,
        },
        "notes": text.notes,
    }
    path = tmp_path / "nested.json"
    path.write_text(json.dumps({"documents": [nested]}, ensure_ascii=False), encoding="utf-8")
    (document,) = parse_file(path)
    assert document.item_values() == text.item_values()


def test_a_json_file_may_hold_a_list_of_documents(tmp_path):
    path = tmp_path / "many.json"
    path.write_text(
        json.dumps([sample_as_json(reference="a-1"), sample_as_json(reference="a-2")]),
        encoding="utf-8",
    )
    assert [document.reference for document in parse_file(path)] == ["a-1", "a-2"]


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "reference": "x",\n  "title": oops\n}', encoding="utf-8")
    with pytest.raises(ContentFormatError) as caught:
        parse_file(path)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: expected valid JSON")


def test_a_bad_json_field_names_the_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(sample_as_json(quality=101)), encoding="utf-8")
    with pytest.raises(ContentFormatError) as caught:
        parse_file(path)
    assert "(quality): expected a whole number from 0 to 100" in str(caught.value)


def test_unknown_json_fields_are_kept_in_notes(tmp_path):
    path = tmp_path / "extra.json"
    path.write_text(json.dumps(sample_as_json(author={"name": "jane"})), encoding="utf-8")
    assert parse_file(path)[0].notes[-1] == 'author: {"name": "jane"}'


def test_a_label_given_twice_fails_naming_the_first_line():
    twice = content_text(("hashd1d09bf4", "hashffff\nhashd1d09bf4"))
    assert "'hash' once" in str(format_error(twice))
