"""PostgreSQL array parameters, each sent as ONE text literal and cast on the server.

Django's psycopg cursor binds parameters on the client: a Python list becomes an ARRAY[...]
rendered element by element in Python (measured: 12 ms for the eight 500-element columns of a
readings batch, 0.2 ms for a single reading; ~7 ms for one column of 4,000 ids). A literal
such as '{1,2,3}' is built with one join and quoted once; the query casts it
(`%s::bigint[]`). Every element is converted by type first, so nothing but a number, a quoted
string or NULL can get into a literal.
"""

import operator


def int_array(values):
    # operator.index: an int (or bool); a float or a string is a TypeError, not truncated.
    return "{" + ",".join("NULL" if v is None else str(operator.index(v)) for v in values) + "}"


def float_array(values):
    # repr() round-trips a float exactly; PostgreSQL reads its 'inf'/'nan' spellings too.
    return "{" + ",".join("NULL" if v is None else repr(float(v)) for v in values) + "}"


def text_array(values):
    return "{" + ",".join("NULL" if v is None else _quoted(str(v)) for v in values) + "}"


def timestamp_array(values):
    """Aware datetimes (or None), in ISO 8601 with their offset; a naive one is refused (the
    database would read it in its session's time zone)."""
    return "{" + ",".join("NULL" if v is None else _quoted_instant(v) for v in values) + "}"


def _quoted_instant(moment):
    if moment.utcoffset() is None:
        raise ValueError(f"a naive datetime has no instant: {moment!r}")
    return f'"{moment.isoformat()}"'


def _quoted(text):
    # Inside double quotes only backslash and double quote are special.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
