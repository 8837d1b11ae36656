"""The Django middleware in a real Django request cycle."""

import asyncio

import pytest
from django.test import AsyncClient

from dqclient import django as dq_django

from .conftest import Recorder


@pytest.fixture
def recorder(settings, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(dq_django, "_reporter_from_settings", lambda: recorder)
    settings.ROOT_URLCONF = "tests.client.django_urls"
    settings.MIDDLEWARE = ["dqclient.django.DQMiddleware", *settings.MIDDLEWARE]
    return recorder


def test_it_reports_the_resolver_route_as_a_template(client, recorder, db):
    client.get("/posts/hello-world")
    client.get("/archive/2026/")
    client.get("/api/items/7")
    assert [(r["method"], r["route"]) for r in recorder.requests] == [
        ("GET", "/posts/{slug}"),
        ("GET", "/archive/{year}/"),
        ("GET", "/api/items/{pk}"),
    ]


def test_it_counts_the_requests_database_calls(client, recorder, db):
    client.get("/posts/hello")
    client.get("/api/items/1")
    assert [r["db_calls"] for r in recorder.requests] == [2, 0]


def test_it_reads_the_cache_status_from_the_response(client, recorder, db):
    client.get("/posts/cached")
    client.get("/posts/fresh")
    assert [r["cache_status"] for r in recorder.requests] == ["HIT", "UNKNOWN"]


def test_an_exception_is_an_error(client, recorder):
    client.raise_request_exception = False
    assert client.get("/boom").status_code == 500
    assert [(r["route"], r["error"]) for r in recorder.requests] == [("/boom", 1)]


def test_it_skips_excluded_and_unresolved_paths(client, recorder):
    client.get("/health")
    client.get("/nowhere")
    assert recorder.requests == []


def test_it_runs_in_an_async_middleware_chain(recorder, settings):
    # Alone in the chain, it gets an async get_response and takes its async path, where the
    # view's queries run in another thread: db_calls is left out rather than wrong.
    settings.MIDDLEWARE = ["dqclient.django.DQMiddleware"]
    response = asyncio.run(AsyncClient().get("/api/items/5"))
    assert response.status_code == 200
    assert [(r["route"], r["db_calls"]) for r in recorder.requests] == [("/api/items/{pk}", None)]


def test_settings_configure_a_shared_reporter(settings):
    settings.DQ_URL = "http://registry.invalid:9"
    settings.DQ_KEY = "dq_x.y"
    settings.DQ_ENVIRONMENT = "staging"
    first = dq_django._reporter_from_settings()
    try:
        assert first is dq_django._reporter_from_settings()
        assert (first.url, first.environment) == (
            "http://registry.invalid:9/api/v1/readings",
            "staging",
        )
    finally:
        first.close(timeout=0)
        dq_django._from_settings.clear()
