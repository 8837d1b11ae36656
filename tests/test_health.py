import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_health_answers_without_touching_the_database(client):
    # No django_db mark: pytest-django raises on any database access.
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_answers_200_when_migrated(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["pending_migrations"] == []


def run_ready(database_url):
    """Call /ready in a fresh process whose DATABASE_URL points elsewhere."""
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/ready');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "dqregistry.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ready_answers_503_when_the_database_is_unreachable():
    # A port nothing listens on: the connection is refused for real.
    result = run_ready("postgres://postgres@127.0.0.1:9/nowhere")
    assert result["status"] == 503
    assert result["body"]["database"] == "unreachable"
    assert result["body"]["retryable"] is True


def test_ready_answers_503_with_pending_migrations(tmp_path):
    result = run_ready(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert result["status"] == 503
    assert result["body"]["database"] == "ok"
    assert "signals_app.0001_initial" in result["body"]["pending_migrations"]
