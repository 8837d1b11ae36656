"""Schemathesis, default checks, against a live server: the evaluation endpoints.

No 500 for any input (route status, comparisons, baseline capture), responses conform to the
schema, schema-invalid input is refused, and credentials are not ignored. The ids in the paths
are those of real objects, so the comparisons are reached, not only their 404.
"""

import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from tests.builders import make_change, make_readings, make_route, make_threshold, make_user
from tests.test_api_fuzzing import CONFIG, SCHEMATHESIS

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


PATHS = (
    r"^/api/v1/(routes/\{id\}/(status|comparison)|changes/\{id\}/comparison"
    r"|baselines/capture)$"
)


def schemathesis(live_server, config, token, phases):
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            f"{live_server.url}/api/schema",
            "--workers",
            "1",
            "--max-examples",
            "30",
            "--seed",
            "20261126",
            "--no-color",
            "--include-path-regex",
            PATHS,
            "--phases",
            phases,
            "--header",
            f"Authorization: Token {token}",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    return result.stdout


def test_the_evaluation_endpoints_hold_their_contract(live_server, blog, tmp_path):
    route = make_route(blog, "/posts/{slug}")
    make_threshold(route)
    make_readings(route, [100.0 + i for i in range(30)], start=timezone.now())
    change = make_change(route, timezone.now() - timedelta(minutes=30))
    token = Token.objects.create(user=make_user("root", is_superuser=True, is_staff=True)).key
    # Invalid and edge-case input first (ids mostly unknown: 404 is a right answer) ...
    schemathesis(live_server, CONFIG, token, "examples,coverage")
    # ... then valid input on real objects, so the comparisons themselves are reached.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.read_text()
        + "".join(
            f'\n[[operations]]\ninclude-path = "{path}"\nparameters = {{ id = {pk} }}\n'
            for path, pk in (
                ("/api/v1/routes/{id}/status", route.pk),
                ("/api/v1/routes/{id}/comparison", route.pk),
                ("/api/v1/changes/{id}/comparison", change.pk),
            )
        )
    )
    output = schemathesis(live_server, config, token, "fuzzing")
    assert "Missing test data" not in output, output[-4000:]
