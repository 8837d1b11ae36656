"""/metrics: Prometheus exposition from the database, behind a bearer token."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from signals_app.evaluation import run_evaluation
from signals_app.models import EvaluationRun, Incident, Notification
from tests.builders import make_readings, make_route, make_threshold

TOKEN = "scrape-me-" + "x" * 20


@pytest.fixture
def token(settings):
    settings.DQ_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client, token=TOKEN, expect_status=200):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == expect_status, response.content
    return response


def samples(response):
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.django_db
def test_it_is_disabled_without_a_token(client, settings):
    settings.DQ_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    scrape(client, expect_status=404)


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Token {TOKEN}", "Bearer"])
def test_it_needs_the_bearer_token(client, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


@pytest.mark.django_db
def test_it_exposes_statuses_readings_incidents_and_the_last_run(client, token, blog, search):
    route = make_route(blog, "/posts/{slug}")
    make_threshold(route, statistic="max", min_samples=1, warn=300, critical=800)
    make_threshold(
        route, statistic="max", min_samples=1, window_minutes=60, warn=1000, critical=2000
    )
    make_threshold(route, statistic="p50", min_samples=50)
    never = make_threshold(make_route(search, "/search"), statistic="p95")
    make_readings(route, [900.0, 100.0], start=timezone.now() - timedelta(seconds=5))
    run_evaluation()
    make_threshold(never.route, statistic="p99")  # created after the run: no state yet

    response = scrape(client)
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response)

    def status(window="15m", statistic="max", route_label="GET /posts/{slug}", service="blog"):
        labels = {
            "service": service,
            "route": route_label,
            "signal": "response_time_ms",
            "environment": "production",
            "statistic": statistic,
            "segment": "all",
            "window": window,
        }
        return found[("dq_threshold_status", tuple(sorted(labels.items())))]

    assert status() == 2
    assert status(window="60m") == 0
    assert status(statistic="p50") == -1
    assert status(statistic="p99", route_label="GET /search", service="search") == -1
    assert found[("dq_readings_last_5m", (("service", "blog"),))] == 2
    assert found[("dq_readings_last_5m", (("service", "search"),))] == 0
    assert found[("dq_open_incidents", (("level", "critical"), ("service", "blog")))] == 1
    assert found[("dq_last_evaluation_thresholds", ())] == 4
    assert found[("dq_last_evaluation_duration_seconds", ())] > 0


@pytest.mark.django_db
def test_it_speaks_openmetrics_when_asked(client, token):
    response = client.get(
        "/metrics",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        HTTP_ACCEPT="application/openmetrics-text; version=1.0.0",
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


@pytest.mark.django_db
def test_the_last_run_is_the_latest_finished_pass_by_start(client, token):
    now = timezone.now()
    EvaluationRun.objects.create(
        started_at=now - timedelta(minutes=1),
        finished_at=now - timedelta(seconds=50),
        duration_ms=250,
        thresholds=4,
    )
    # Older, finished later: it found the pass above finished and stored nothing.
    EvaluationRun.objects.create(
        started_at=now - timedelta(minutes=2), finished_at=now, duration_ms=90000, thresholds=0
    )
    EvaluationRun.objects.create(started_at=now)  # still running
    found = samples(scrape(client))
    assert found[("dq_last_evaluation_thresholds", ())] == 4
    assert found[("dq_last_evaluation_duration_seconds", ())] == 0.25
    assert found[("dq_last_evaluation_timestamp_seconds", ())] == pytest.approx(
        (now - timedelta(seconds=50)).timestamp()
    )


@pytest.mark.django_db
def test_its_queries_do_not_grow_with_thresholds(client, token, blog, django_assert_num_queries):
    for _ in range(5):
        make_threshold(make_route(blog))
    run_evaluation()
    # thresholds with states, readings per service, services, open incidents, notifications
    # per status, last run
    with django_assert_num_queries(6):
        scrape(client)


@pytest.mark.django_db
def test_it_counts_notifications_by_status_in_one_query(client, token, blog):
    route = make_route(blog)
    statuses = ["pending", "pending", "delivered", "failed"]
    for index, status in enumerate(statuses):
        threshold = make_threshold(route, window_minutes=index + 1)
        incident = Incident.objects.create(
            threshold=threshold, route=route, level="warn", peak_value=1.0
        )
        Notification.objects.create(
            incident=incident, owner=blog.owner, event="opened", payload={}, status=status
        )
    found = samples(scrape(client))
    assert {
        status: found[("dq_notifications", (("status", status),))]
        for status in ("pending", "delivered", "failed", "skipped")
    } == {"pending": 2, "delivered": 1, "failed": 1, "skipped": 0}
