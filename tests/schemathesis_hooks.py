"""Schemathesis hooks for the list endpoints' fuzz (tests/test_api_fuzzing.py), loaded only by
that test's schemathesis process (SCHEMATHESIS_HOOKS in its environment, never imported here).

A schema-valid (positive) request to a list names a service, environment, signal or owner
with any non-empty string, a route or change with any id, and may carry any string as its
cursor; the registry rightly refuses an unknown name or id and a cursor no page gave (400).
So each positive case names only what the test's database holds (given in DQ_FUZZ_NAMES,
a JSON object of parameter -> names) and carries no cursor: positive data is then truly
valid, and any 400 to it is a bug. Negative (schema-invalid) cases are left as generated.
"""

import json
import os
import zlib

import schemathesis
from schemathesis import GenerationMode

# As test_api_fuzzing.LISTS: the operations whose schema-valid requests are made truly valid.
LISTS = (
    r"^/api/v1/(routes|signals|environments|thresholds|baselines|changes|rollback-notes"
    r"|content)$"
)
NAMES = json.loads(os.environ["DQ_FUZZ_NAMES"])


def real_name(parameter, generated):
    """A name the database holds, picked by the generated value (the same value picks the
    same name, so a seed still reproduces a run)."""
    names = NAMES[parameter]
    return names[zlib.crc32(str(generated).encode()) % len(names)]


@schemathesis.hook.apply_to(path_regex=LISTS)
def map_case(ctx, case):
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if case.query:
        query = {name: value for name, value in case.query.items() if name != "cursor"}
        for name, value in query.items():
            if name in NAMES:
                query[name] = real_name(name, value)
        case.query = query
    return case
