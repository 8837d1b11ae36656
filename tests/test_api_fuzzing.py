"""Schemathesis, default checks, against a live server: the ingestion and list endpoints.

No 500 for any input, responses conform to the schema (status codes, content types,
bodies, headers), schema-invalid input is refused, and credentials are not ignored.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from tests.builders import make_key, make_route, make_threshold

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
LISTS = r"^/api/v1/(routes|signals|environments|thresholds|baselines|changes|rollback-notes)$"

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def schemathesis(live_server, *args, max_examples):
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


def test_the_list_endpoints_hold_their_contract(live_server, blog, mallory, search):
    make_threshold(make_route(blog, "/posts/{slug}"))
    make_route(search, "/search")
    token = Token.objects.create(user=mallory)
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
    )
    assert "No issues found" in output
