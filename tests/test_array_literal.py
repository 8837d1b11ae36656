"""evaluation._array_literal: Python values sent to PostgreSQL as ONE array parameter."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from signals_app.evaluation import _array_literal

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL array literal"),
]


def round_trip(values, cast):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{cast}", [_array_literal(values)])
        return cursor.fetchone()[0]


def test_strings_that_look_like_syntax_come_back_unchanged():
    values = ['a"b', "c\\d", "e,f", "{g}", "NULL", "", " h ", "ü", None]
    assert round_trip(values, "text[]") == values


def test_floats_come_back_exactly():
    values = [0.1, 1e-300, 1.7976931348623157e308, -0.0, 182.5, None]
    assert round_trip(values, "float8[]") == values


def test_datetimes_and_integers():
    moment = datetime(2026, 11, 26, 7, 0, 0, 123456, tzinfo=UTC)
    assert round_trip([moment, None], "timestamptz[]") == [moment, None]
    assert round_trip([1, 2**62, None], "bigint[]") == [1, 2**62, None]
