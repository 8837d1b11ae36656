"""Schemathesis, default checks, against a live server: the ingestion and list endpoints.

No 500 for any input, responses conform to the schema (status codes, content types,
bodies, headers), schema-invalid input is refused, and credentials are not ignored. The
lists also answer every schema-valid request (its names made real by
tests/schemathesis_hooks.py), so a filter that refuses valid input fails.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from signals_app.models import Change, Environment, Owner, Route, Service, Signal
from tests.builders import make_change, make_key, make_route, make_threshold

CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
LISTS = (
    r"^/api/v1/(routes|signals|environments|thresholds|baselines|changes|rollback-notes"
    r"|content)$"
)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def schemathesis(live_server, *args, max_examples, env=None):
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            f"{live_server.url}/api/schema",
            "--workers",
            "1",
            "--max-examples",
            str(max_examples),
            "--seed",
            "20261126",
            "--no-color",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def ingest_rate(settings):
    settings.DQ_INGEST_RATE = "1000000/min"


def test_the_ingestion_endpoint_holds_its_contract(live_server, blog, ingest_rate):
    make_route(blog, "/posts/{slug}")
    output = schemathesis(
        live_server,
        "--include-path",
        "/api/v1/readings",
        "--header",
        f"Authorization: Bearer {make_key(blog)}",
        max_examples=100,
    )
    assert "No issues found" in output


def real_names():
    """The names and ids the list filters accept, for the hooks (tests/schemathesis_hooks.py)
    that put them in place of the random ones of schema-valid requests."""
    return {
        "service": list(Service.objects.values_list("slug", flat=True)),
        "owner": list(Owner.objects.values_list("name", flat=True)),
        "environment": list(Environment.objects.values_list("slug", flat=True)),
        "signal": list(Signal.objects.values_list("key", flat=True)),
        "route": list(Route.objects.values_list("pk", flat=True)),
        "change": list(Change.objects.values_list("pk", flat=True)),
    }


def test_the_list_endpoints_hold_their_contract(live_server, blog, mallory, search):
    posts = make_route(blog, "/posts/{slug}")
    make_threshold(posts)
    make_change(posts, timezone.now())
    make_route(search, "/search")
    token = Token.objects.create(user=mallory)
    # Only this run loads the hooks: schema-valid requests name what exists and carry no
    # cursor, so the lists must answer every one of them (no 400, schemathesis.toml).
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "DQ_FUZZ_NAMES": json.dumps(real_names()),
    }
    output = schemathesis(
        live_server,
        "--include-path-regex",
        LISTS,
        *[
            arg
            for method in ("POST", "PUT", "PATCH", "DELETE")
            for arg in ("--exclude-method", method)
        ],
        "--phases",
        "examples,coverage,fuzzing",
        "--header",
        f"Authorization: Token {token.key}",
        max_examples=40,
        env=env,
    )
    assert "No issues found" in output
