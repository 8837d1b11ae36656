"""/api/v1/signals and /api/v1/environments: the vocabulary; administrators change it."""

import pytest

from signals_app.models import Signal
from tests.api import bearer, call
from tests.builders import make_key

SIGNALS, ENVIRONMENTS = "/api/v1/signals", "/api/v1/environments"


@pytest.mark.django_db
def test_people_list_the_default_signals(client, mallory, django_assert_num_queries):
    client.force_login(mallory)
    # session, user, signals
    with django_assert_num_queries(3):
        results = call(client, "GET", SIGNALS).json()["results"]
    by_key = {s["key"]: s for s in results}
    assert by_key["response_time_ms"] == {
        "key": "response_time_ms",
        "name": "Response time",
        "unit": "ms",
        "kind": "duration",
        "direction": "higher_worse",
    }
    assert call(client, "GET", SIGNALS + "/cache_hit").json()["direction"] == "lower_worse"
    ratios = call(client, "GET", SIGNALS + "?kind=ratio").json()["results"]
    assert {s["key"] for s in ratios} == {"error_rate", "cache_hit"}


@pytest.mark.django_db
def test_a_service_key_reads_the_vocabulary_it_posts_with(client, blog):
    key = bearer(make_key(blog))
    assert call(client, "GET", SIGNALS, **key).json()["results"]
    slugs = {e["slug"] for e in call(client, "GET", ENVIRONMENTS, **key).json()["results"]}
    assert slugs == {"production", "staging"}
    call(client, "POST", SIGNALS, {"key": "x", "kind": "count"}, expect_status=403, **key)


@pytest.mark.django_db
def test_only_an_administrator_adds_a_signal(client, alice, django_user_model):
    client.force_login(alice)
    call(client, "POST", SIGNALS, {"key": "lcp_ms", "kind": "duration"}, expect_status=403)
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    call(client, "POST", SIGNALS, {"key": "lcp_ms", "kind": "duration", "unit": "ms"},
         expect_status=201)  # fmt: skip
    assert Signal.objects.get(key="lcp_ms").direction == "higher_worse"


@pytest.mark.django_db
def test_environments_filter_by_production(client, mallory):
    client.force_login(mallory)
    results = call(client, "GET", ENVIRONMENTS + "?is_production=true").json()["results"]
    assert [e["slug"] for e in results] == ["production"]
    call(client, "GET", ENVIRONMENTS + "/nowhere", expect_status=404)
