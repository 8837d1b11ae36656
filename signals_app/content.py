"""Parse content documents: the sample's text export and JSON with the same fields.

A text document (see signals_app/demo/content/) is the article, then a line
`alphanode post meta`, then labelled fields. A scalar label is glued to its value
(`reading time12`, `topictracking ...`); a list label stands alone on its line and
its items follow as bullets (`  • python`), some as `key: value` pairs; entities and
image sources are records spread over consecutive bullets (`    • name: ...`,
`    • type: ...`). The page footer (`Similar Posts...`) ends the meta block.

This module never touches the database: `parse_file()` returns `ContentDocument`s
or raises `ContentFormatError` naming the file, the line and what was expected.
"""

import datetime
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

META_MARKER = "alphanode post meta"
# The page footer after the meta block; nothing after it is part of the document.
FOOTER_LABELS = ("similar posts",)

SCORES = ("quality", "freshness", "depth", "clarity")
FLAGS = ("ai_generated_style", "has_images", "image_heavy", "needs_human_review")

# label -> field for labels glued to their value.
SCALAR_LABELS = {
    "topic": "topic",
    "summary": "summary",
    "ai brief": "ai_brief",
    "code language": "code_language",
    "difficulty": "difficulty",
    "reading time": "reading_time",
    "view count": "view_count",
    "reference": "reference",
    "hash": "content_hash",
}
# Labels on a line of their own, followed by bullets.
LIST_LABELS = {
    "ai outline": "ai_outline",
    "stack": "stack",
    "tools": "tools",
    "checklist": "checklist",
    "notes": "notes",
}
# Labels followed by `key: value` bullets that fill several fields.
PAIR_LABELS = ("score", "revision", "flags", "payload")
# Labels followed by records of `key: value` bullets.
RECORD_LABELS = {
    "entities": ("entities", ("name", "type")),
    "image sources": ("image_sources", ("source", "url", "caption")),
}
PAIR_KEYS = {
    "score": {name: name for name in SCORES},
    "revision": {
        "status": "revision_status",
        "version": "version",
        "last reviewed": "last_reviewed_at",
    },
    "flags": {name.replace("_", " "): name for name in FLAGS},
    "payload": {"source id": "source_id"},  # other payload keys go into `payload`
}
# The largest value each integer field's column holds (PositiveIntegerField,
# PositiveBigIntegerField; payload numbers as a bigint): a larger one would make the
# database refuse the whole import chunk, so it fails its own document here.
BIGINT_MAX = 2**63 - 1
INTEGER_FIELDS = {"reading_time": 2**31 - 1, "view_count": BIGINT_MAX}
PAYLOAD_INTEGERS = {"paragraphs", "seed"}

# The meta fields a document is expected to give; the ones it does not give are
# counted as missing (the `content_missing_meta` signal).
META_FIELDS = (
    "topic",
    "summary",
    "ai_outline",
    "ai_brief",
    "stack",
    "tools",
    "code_language",
    "difficulty",
    "reading_time",
    "view_count",
    *SCORES,
    *FLAGS,
    "revision_status",
    "version",
    "last_reviewed_at",
    "content_hash",
    "checklist",
    "entities",
    "image_sources",
    "source_id",
    "payload",
    "notes",
)

# Longest label first, so a label never matches as the prefix of a longer one.
_SCALAR = re.compile(
    "|".join(re.escape(label) for label in sorted(SCALAR_LABELS, key=len)[::-1]), re.I
)
_VALUE_START = re.compile(r"\s*:?\s*")
# The prefix of a list item: indentation, a bullet, a space. Matching only the prefix
# (not the whole line) keeps the parser fast: it runs on every meta line.
_BULLET = re.compile(r"\s*[•\-*]\s+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Lengths of the model's CharFields, checked here so that PostgreSQL never rejects a
# whole import chunk over one long value (SQLite would not even notice).
MAX_LENGTHS = {
    "reference": 100,
    "source_id": 100,
    "title": 500,
    "topic": 500,
    "code_language": 50,
    "difficulty": 50,
    "revision_status": 50,
    "version": 50,
    "content_hash": 128,
}
_REFERENCE = re.compile(r"^[\w.\-]+$")
FOUND_MAX_CHARS = 120
NO_NUL = "text without NUL (0x00) characters"


class ContentFormatError(ValueError):
    """A document that cannot be imported: which file, which line, what was expected."""

    def __init__(self, path, line, expected, found=None):
        self.path, self.line, self.expected, self.found = str(path), line, expected, found
        where = f"{self.path}:{line}" if line else self.path
        message = f"{where}: expected {expected}"
        if found is not None:
            shown = repr(found)
            if len(shown) > FOUND_MAX_CHARS:  # a 5 KB article or 5,000 digits help no one
                shown = f"{shown[: FOUND_MAX_CHARS - 20]}... ({len(shown)} characters)"
            message += f", found {shown}"
        super().__init__(message)


@dataclass
class ContentDocument:
    """One parsed document: the ContentItem fields it gives, and which meta fields it lacks."""

    path: str
    title: str
    body: str
    reference: str
    source_id: str = ""
    topic: str = ""
    summary: str = ""
    ai_outline: list = field(default_factory=list)
    ai_brief: str = ""
    stack: list = field(default_factory=list)
    tools: list = field(default_factory=list)
    code_language: str = ""
    difficulty: str = ""
    reading_time: int | None = None
    view_count: int | None = None
    quality: int | None = None
    freshness: int | None = None
    depth: int | None = None
    clarity: int | None = None
    ai_generated_style: bool = False
    has_images: bool = False
    image_heavy: bool = False
    needs_human_review: bool = False
    revision_status: str = ""
    version: str = ""
    last_reviewed_at: datetime.date | None = None
    content_hash: str = ""
    checklist: list = field(default_factory=list)
    entities: list = field(default_factory=list)
    image_sources: list = field(default_factory=list)
    payload: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    missing_fields: list = field(default_factory=list)

    # Fields copied onto a ContentItem (everything but `path`).
    ITEM_FIELDS = (
        "reference",
        "title",
        "body",
        "source_id",
        *(name for name in META_FIELDS if name != "source_id"),
        "missing_fields",
    )

    def item_values(self):
        return {name: getattr(self, name) for name in self.ITEM_FIELDS}

    @property
    def scores(self):
        return {name: getattr(self, name) for name in SCORES}


# ---------------------------------------------------------------------------
# Reading files


def parse_file(path, *, keep_going=False):
    """Parse one `.json` or text file into a list of documents (a JSON file may hold many).

    A bad document raises ContentFormatError. With `keep_going`, each bad document of a
    JSON file takes its place in the list as its ContentFormatError, so that the others
    are still imported.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContentFormatError(path, None, "a readable file", exc.strerror) from exc
    text = decode(raw, path)
    if path.suffix.lower() == ".json":
        return parse_json(text, path, keep_going=keep_going)
    return [parse_text(text, path)]


def decode(raw, path):
    """UTF-8 (with or without a BOM); an undecodable byte is reported with its line."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContentFormatError(path, line, "UTF-8 text", f"byte 0x{raw[exc.start]:02x}") from exc
    nul = text.find("\x00")
    if nul >= 0:
        # PostgreSQL cannot store NUL in text (SQLite could): refused on both alike.
        line = normalize(text[:nul]).count("\n") + 1
        raise ContentFormatError(path, line, NO_NUL, "a NUL character")
    return text


def normalize(text):
    # LF only. Not str.splitlines() later: that also splits on U+2028, form feeds and
    # other characters that may legitimately appear inside an article.
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------------------
# The text format

# Found by regular expressions over the whole text rather than by a loop over its lines:
# this runs for every document of every import.
_TITLE = re.compile(r"^.*\S.*$", re.M)
_MARKER = re.compile(r"^[^\S\n]*" + META_MARKER + r"[^\S\n]*$", re.M | re.I)


def _article(text, path):
    """(title, body, index of the marker line, offset where the meta block starts) of a
    normalized text: the title is its first non-blank line, the body what lies between
    the title and the last `alphanode post meta` line."""
    title = _TITLE.search(text)
    if title is None:
        raise ContentFormatError(path, 1, "a title on the first line", "an empty document")
    markers = list(_MARKER.finditer(text, title.end()))
    if not markers:
        raise ContentFormatError(
            path,
            text.count("\n") + 1,
            f"a line {META_MARKER!r} between the article and its meta fields",
            "the end of the document without one",
        )
    marker = markers[-1]  # the article may quote the marker; the meta block comes last
    start, end = title.end() + 1, marker.start() - 1
    body = text[start:end].strip("\n") if end > start else ""
    return title.group(0).strip(), body, text.count("\n", 0, marker.start()), marker.end()


def parse_text(text, path="<text>"):
    """Parse one document in the sample's text format."""
    text = normalize(text)
    title, body, marker, _meta_start = _article(text, path)
    values, notes_extra, seen = _parse_meta(text.split("\n"), marker + 1, path)
    values["title"] = title
    values["body"] = body
    if notes_extra:
        values["notes"] = [*values.get("notes", []), *notes_extra]
    if not values.get("reference"):
        raise ContentFormatError(
            path, marker + 1, "a 'reference' line in the meta block, e.g. 'referenceanp-ref-1'"
        )
    return _document(values, seen, path, lambda name: seen.get(name))


def _parse_meta(lines, start, path):
    """Walk the meta block; return (field values, notes for unknown labels, field -> line)."""
    values, extra, seen = {}, [], {}
    index, end = start, len(lines)
    while index < end:
        line = lines[index]
        lineno = index + 1
        stripped = line.strip()
        if not stripped:
            index += 1
            continue
        if _BULLET.match(line):
            raise ContentFormatError(
                path, lineno, "a label before this list item (e.g. 'tools' on its own line)", line
            )
        label = stripped.rstrip(":").strip().lower()
        if label.startswith(FOOTER_LABELS):
            break
        items, index = _bullets(lines, index + 1)
        if label in LIST_LABELS:
            name = LIST_LABELS[label]
            _mark(seen, name, lineno, path, label)
            values[name] = [text for _, text in items]
        elif label in PAIR_LABELS:
            _mark(seen, label, lineno, path, label)
            _parse_pairs(label, items, values, seen, extra, path)
        elif label in RECORD_LABELS:
            name, keys = RECORD_LABELS[label]
            _mark(seen, name, lineno, path, label)
            values[name] = _parse_records(label, keys, items, path)
        else:
            match = _SCALAR.match(stripped)
            if match is None:
                # An unknown label is kept, never fatal: a new exporter field must not
                # stop an import.
                extra.append(_note_for_unknown(stripped, items))
                continue
            if items:
                scalar = match.group(0).lower()
                raise ContentFormatError(
                    path,
                    items[0][0],
                    f"the value of {scalar!r} on its own line, glued to the label "
                    f"(e.g. '{scalar}value'), not as a list",
                    lines[items[0][0] - 1],
                )
            scalar = match.group(0).lower()
            name = SCALAR_LABELS[scalar]
            _mark(seen, name, lineno, path, scalar)
            raw = stripped[_VALUE_START.match(stripped, match.end()).end() :]
            values[name] = _scalar(name, raw, path, lineno)
    return values, extra, seen


def _bullets(lines, index, bullet=_BULLET.match):
    """Consecutive bullet lines from `index`: [(line number, text)], and the next index."""
    items = []
    end = len(lines)
    while index < end:
        line = lines[index]
        match = bullet(line)
        if match is None:
            break
        items.append((index + 1, line[match.end() :].rstrip()))
        index += 1
    return items, index


def _mark(seen, name, lineno, path, label):
    if name in seen:
        raise ContentFormatError(
            path, lineno, f"{label!r} once (it was already given on line {seen[name]})"
        )
    seen[name] = lineno


def _pair(text, label, lineno, path):
    key, sep, value = text.partition(":")
    if not sep or not key.strip():
        raise ContentFormatError(path, lineno, f"'name: value' items under {label!r}", text)
    return key.strip().lower(), value.strip()


def _parse_pairs(label, items, values, seen, extra, path):
    keys = PAIR_KEYS[label]
    for lineno, text in items:
        key, value = _pair(text, label, lineno, path)
        name = keys.get(key)
        if name is not None:
            _mark(seen, name, lineno, path, f"{label} {key}")
            values[name] = _scalar(name, value, path, lineno)
        elif label == "payload":
            slug = re.sub(r"\W+", "_", key).strip("_")
            values.setdefault("payload", {})[slug] = _payload_value(slug, value, path, lineno)
            seen.setdefault("payload", lineno)
        else:
            extra.append(f"{label} {key}: {value}")


def _payload_value(key, value, path, lineno):
    if key in PAYLOAD_INTEGERS:
        expected = f"a whole number for payload {key!r}, at most {BIGINT_MAX:,}"
        return _integer(value, expected, path, lineno)
    return value


def _parse_records(label, keys, items, path):
    """Group `key: value` bullets into records; a key seen again starts the next record."""
    records = []
    current = None
    for lineno, text in items:
        key, value = _pair(text, label, lineno, path)
        if current is None or key in current:
            current = {}
            records.append(current)
        current[key] = value
    return [{**dict.fromkeys(keys, ""), **record} for record in records]


def _note_for_unknown(stripped, items):
    if not items:
        return stripped
    return f"{stripped.rstrip(':')}: " + "; ".join(text for _, text in items)


# ---------------------------------------------------------------------------
# Values


def _integer(value, expected, path, lineno, maximum=BIGINT_MAX):
    """A whole number from 0 to `maximum` (`expected` says so), or ContentFormatError."""
    text = str(value).strip().replace(",", "").replace("_", "")
    if (
        isinstance(value, bool)
        or not re.fullmatch(r"\d+", text)
        # by length first: int() refuses more than 4,300 digits
        or len(text.lstrip("0")) > len(str(maximum))
        or int(text) > maximum
    ):
        raise ContentFormatError(path, lineno, expected, value)
    return int(text)


def _scalar(name, raw, path, lineno):
    """Convert one field's text (or JSON value) to its Python value, or raise."""
    if name in SCORES:
        if raw is None or raw == "":
            return None
        expected = f"a whole number from 0 to 100 for score {name!r}"
        return _integer(raw, expected, path, lineno, maximum=100)
    if name in FLAGS:
        text = str(raw).strip().lower()
        if raw is True or raw is False:
            return raw
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        label = name.replace("_", " ")
        raise ContentFormatError(path, lineno, f"1 or 0 for flag {label!r}", raw)
    if name in INTEGER_FIELDS:
        if raw is None or raw == "":
            return None
        label, maximum = name.replace("_", " "), INTEGER_FIELDS[name]
        expected = f"a whole number after {label!r}, at most {maximum:,}"
        return _integer(raw, expected, path, lineno, maximum=maximum)
    if name == "last_reviewed_at":
        if raw is None or raw == "":
            return None
        try:
            return datetime.date.fromisoformat(str(raw).strip()[:10])
        except ValueError:
            raise ContentFormatError(
                path, lineno, "a date like 2022-04-22 for 'last reviewed'", raw
            ) from None
    if raw is None:
        return ""
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ContentFormatError(path, lineno, f"text for {name!r}", raw)
    text = str(raw).strip()
    limit = MAX_LENGTHS.get(name)
    if limit and len(text) > limit:
        raise ContentFormatError(
            path, lineno, f"at most {limit} characters for {name!r}", f"{len(text)} characters"
        )
    return text


def _document(values, seen, path, line_of=None):
    """The checks of a whole document; `line_of(name)` gives a text document's line of a
    field (the title defaults to line 1); a JSON document (no `line_of`) names the field."""

    def at(name):
        if line_of is None:
            return f"{path} ({name})", None
        return path, line_of(name) or (1 if name == "title" else None)

    reference = values["reference"]
    if not _REFERENCE.match(reference):
        raise ContentFormatError(
            *at("reference"),
            "a reference of letters, digits, '.', '-' and '_' (it is part of the API's URLs)",
            reference,
        )
    title = values.get("title", "")
    if not title:
        raise ContentFormatError(*at("title"), "a title", "")
    if len(title) > MAX_LENGTHS["title"]:
        raise ContentFormatError(*at("title"), "a title of at most 500 characters", f"{len(title)}")
    document = ContentDocument(path=str(path), **values)
    document.missing_fields = [name for name in META_FIELDS if _is_missing(document, name, seen)]
    return document


def _is_missing(document, name, seen):
    if name in FLAGS:
        return name not in seen
    return getattr(document, name) in (None, "", [], {})


# ---------------------------------------------------------------------------
# JSON documents: the same fields, either by the text format's labels ("ai outline",
# nested "score": {"quality": 80}) or by the ContentItem field names ("ai_outline",
# "quality": 80).


def parse_json(text, path="<json>", *, keep_going=False):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContentFormatError(path, exc.lineno, f"valid JSON ({exc.msg})") from exc
    except ValueError as exc:  # what json.loads refuses beyond its syntax: int() limits
        limit = sys.get_int_max_str_digits()
        raise ContentFormatError(
            path, None, f"valid JSON with numbers of at most {limit:,} digits"
        ) from exc
    except RecursionError as exc:
        raise ContentFormatError(path, None, "valid JSON (nested too deeply)") from exc
    if isinstance(data, dict) and "documents" in data:
        if not isinstance(data["documents"], list):  # not a document missing its reference
            raise ContentFormatError(
                path, None, "'documents' to be a list of documents", data["documents"]
            )
        data = data["documents"]
    documents = data if isinstance(data, list) else [data]
    parsed = []
    for position, entry in enumerate(documents):
        where = f"{path}[{position}]" if isinstance(data, list) else path
        try:
            if not isinstance(entry, dict):
                raise ContentFormatError(
                    where, None, "a JSON object per document", type(entry).__name__
                )
            parsed.append(_json_document(entry, where))
        except ContentFormatError as error:
            if not keep_going:
                raise
            parsed.append(error)
    return parsed


def _key(name):
    return re.sub(r"[\s_\-]+", " ", str(name).strip().lower())


_JSON_FIELDS = {
    **SCALAR_LABELS,
    **LIST_LABELS,
    **{label: spec[0] for label, spec in RECORD_LABELS.items()},
    "title": "title",
    "body": "body",
    "content hash": "content_hash",
    "source id": "source_id",
    **{name: name for name in SCORES},
    **{name.replace("_", " "): name for name in FLAGS},
    "revision status": "revision_status",
    "version": "version",
    "last reviewed": "last_reviewed_at",
    "last reviewed at": "last_reviewed_at",
}
# Groups of fields, as the text format nests them; "scores" is how our API names them.
_JSON_GROUPS = {"score": "score", "scores": "score", "revision": "revision", "flags": "flags"}
# What our own API adds to a document; ignored so that an exported item imports again.
_JSON_IGNORED = {"id", "url", "review status", "imported at", "updated at", "missing fields"}


def _json_document(entry, path):
    values, seen, extra = {}, {}, []
    for raw_key, value in entry.items():
        key = _key(raw_key)
        where = f"{path} ({raw_key})"
        if key in _JSON_IGNORED:
            continue
        _check_storable([raw_key, value], where)
        if key in _JSON_GROUPS or key == "payload":
            if not isinstance(value, dict):
                raise ContentFormatError(where, None, "an object of 'name: value' fields", value)
            for sub_key, sub_value in value.items():
                sub, sub_where = _key(sub_key), f"{path} ({raw_key}.{sub_key})"
                if key == "payload" and sub != "source id":
                    slug = sub.replace(" ", "_")
                    values.setdefault("payload", {})[slug] = _payload_value(
                        slug, sub_value, sub_where, None
                    )
                    continue
                name = PAIR_KEYS[_JSON_GROUPS.get(key, key)].get(sub)
                if name is None:
                    extra.append(f"{key} {sub}: {sub_value}")
                else:
                    _set_json(values, seen, name, sub_value, sub_where)
        elif key in _JSON_FIELDS:
            _set_json(values, seen, _JSON_FIELDS[key], value, where)
        else:
            extra.append(f"{raw_key}: {json.dumps(value, ensure_ascii=False)}")
    if extra:
        values["notes"] = [*values.get("notes", []), *extra]
    if not values.get("reference"):
        raise ContentFormatError(path, None, "a 'reference' field")
    values.setdefault("title", "")
    values.setdefault("body", "")
    return _document(values, seen, path)


def _check_storable(value, where):
    """Refuse the strings JSON escapes can make and no database stores: NUL (\\u0000;
    PostgreSQL) and lone surrogates (\\ud800; neither encodes them as UTF-8)."""
    pending = [value]
    while pending:  # a loop, not recursion: the nesting depth is the document's
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ContentFormatError(where, None, NO_NUL, item)
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ContentFormatError(
                        where, None, "text without lone surrogates (like \\ud800)", item
                    ) from None


def _set_json(values, seen, name, value, where):
    seen[name] = True
    if name in LIST_LABELS.values():
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ContentFormatError(where, None, "a list of strings", value)
        values[name] = [v.strip() for v in value]
    elif name in ("entities", "image_sources"):
        keys = next(spec[1] for spec in RECORD_LABELS.values() if spec[0] == name)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ContentFormatError(
                where, None, f"a list of objects with {', '.join(keys)}", value
            )
        values[name] = [
            {**dict.fromkeys(keys, ""), **{_key(k): str(v) for k, v in record.items()}}
            for record in value
        ]
    elif name in ("title", "body"):
        if not isinstance(value, str):
            raise ContentFormatError(where, None, "text", value)
        values[name] = value.strip() if name == "title" else value.strip("\n")
    else:
        values[name] = _scalar(name, value, where, None)
