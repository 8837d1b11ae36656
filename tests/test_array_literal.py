"""signals_app.sql: Python values sent to PostgreSQL as ONE array literal parameter."""

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from signals_app.sql import float_array, int_array, text_array, timestamp_array

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL array literal"),
]


def round_trip(literal, cast):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{cast}", [literal])
        return cursor.fetchone()[0]


def test_strings_that_look_like_syntax_come_back_unchanged():
    values = ['a"b', "c\\d", "e,f", "{g}", "NULL", "", " h ", "ü", "'", None]
    assert round_trip(text_array(values), "text[]") == values


def test_floats_come_back_exactly():
    values = [0.1, 1e-300, 1.7976931348623157e308, 182.5, 3, None, math.inf, -math.inf]
    assert round_trip(float_array(values), "float8[]") == values
    negative_zero, nan = round_trip(float_array([-0.0, math.nan]), "float8[]")
    assert math.copysign(1, negative_zero) == -1
    assert math.isnan(nan)


def test_integers():
    assert round_trip(int_array([1, -2, 2**62, None]), "bigint[]") == [1, -2, 2**62, None]


def test_timestamps_keep_their_instant():
    moment = datetime(2026, 11, 26, 7, 0, 0, 123456, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert round_trip(timestamp_array([moment, elsewhere, None]), "timestamptz[]") == [
        moment,
        moment,
        None,
    ]


def test_nothing_but_a_number_gets_into_a_numeric_literal():
    with pytest.raises(TypeError):
        int_array(["1}, {2"])
    with pytest.raises(TypeError):
        int_array([2.7])  # not truncated to 2
    with pytest.raises(ValueError):
        float_array(["1.0,2.0"])


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        timestamp_array([datetime(2026, 11, 26, 7, 0)])
