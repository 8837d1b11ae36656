"""JSON bodies: invalid JSON and too deep nesting are 400 problems, never a 500.

Python's JSON decoder recurses once per level (a RecursionError near 1,000-2,000 levels),
and so does Django's lookup of a related field given nested lists (near 500). No API body
needs more than a few levels: a readings batch has three.
"""

import codecs
import json

from rest_framework import parsers
from rest_framework.utils.json import strict_constant

from .problems import Problem, item_error

MAX_DEPTH = 32


def too_deep():
    return Problem(
        400,
        f"the body nests deeper than {MAX_DEPTH} levels",
        slug="invalid-json",
        errors=[
            item_error(
                None,
                "nested too deeply",
                expected=f"JSON nested at most {MAX_DEPTH} levels deep",
                received=f"more than {MAX_DEPTH} levels",
            )
        ],
    )


def invalid_json(message, expected="a JSON object"):
    return Problem(
        400,
        f"the body is not valid JSON: {message}",
        slug="invalid-json",
        errors=[item_error(None, message, expected=expected)],
    )


def nests_deeper(document, limit=MAX_DEPTH):
    """Whether a parsed document has containers nested more than `limit` levels deep."""
    if not isinstance(document, (dict, list)):
        return False
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def integer(text):
    """JSON's parse_int: Python reads at most 4,300 digits, and its error names
    sys.set_int_max_str_digits(), which means nothing to a client."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"a number of {len(text)} digits, more than any field takes") from None


def loads(raw, **kwargs):
    """json.loads, with a decoder's RecursionError turned into the 400 problem."""
    try:
        return json.loads(raw, **kwargs)
    except RecursionError:
        raise too_deep() from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (DEFAULT_PARSER_CLASSES): refuses bodies nested over MAX_DEPTH."""

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF's parse, with `integer` for parse_int (DRF passes no parse_int).
        encoding = parsers.get_encoding(parser_context or {})
        try:
            document = json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=strict_constant,
                parse_int=integer,
            )
        except RecursionError:
            raise too_deep() from None
        except ValueError as exc:
            raise invalid_json(str(exc)) from None
        if nests_deeper(document):
            raise too_deep()
        return document
