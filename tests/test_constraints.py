from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from signals_app.models import (
    Baseline,
    ContentItem,
    EvaluationRun,
    Incident,
    Reading,
    Route,
    ThresholdState,
)
from tests.builders import environment, make_readings, make_route, make_threshold, signal


def rejects(build):
    with pytest.raises(IntegrityError), transaction.atomic():
        build()


@pytest.mark.django_db
def test_route_is_unique_per_service_method_and_path(blog):
    make_route(blog, "/posts/{slug}")
    rejects(lambda: make_route(blog, "/posts/{slug}"))
    assert make_route(blog, "/posts/{slug}", method="POST").pk


@pytest.mark.django_db
def test_critical_must_be_above_warn_when_higher_is_worse(blog):
    route = make_route(blog)
    rejects(lambda: make_threshold(route, warn=500, critical=300))
    assert make_threshold(route, warn=300, critical=500).direction == "higher_worse"


@pytest.mark.django_db
def test_critical_must_be_below_warn_when_lower_is_worse(blog):
    route = make_route(blog)
    rejects(lambda: make_threshold(route, signal_key="cache_hit", warn=0.5, critical=0.8))
    threshold = make_threshold(route, signal_key="cache_hit", warn=0.8, critical=0.5)
    assert threshold.level_for(0.6) == "warn"
    assert threshold.level_for(0.4) == "critical"
    assert threshold.level_for(0.9) == "ok"


@pytest.mark.django_db
def test_threshold_is_unique_per_statistic_segment_and_window(blog):
    route = make_route(blog)
    make_threshold(route)
    rejects(lambda: make_threshold(route))
    assert make_threshold(route, cache_segment="hit").pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("window_minutes", 0), ("window_minutes", 10081), ("sustain_minutes", 10081)],
)
def test_threshold_window_and_sustain_are_at_most_a_week(blog, field, value):
    route = make_route(blog)
    rejects(lambda: make_threshold(route, **{field: value}))
    assert make_threshold(route, window_minutes=10080, sustain_minutes=10080).pk


@pytest.mark.django_db
def test_threshold_validation_says_its_bounds_in_words(blog):
    from django.core.exceptions import ValidationError

    from signals_app.api.serializers import ThresholdSerializer
    from signals_app.models import Threshold

    threshold = make_threshold(make_route(blog))
    threshold.window_minutes, threshold.sustain_minutes = 0, 10081
    with pytest.raises(ValidationError) as raised:
        threshold.validate_constraints()
    assert "window_minutes must be from 1 to 10080 minutes (a week)" in raised.value.messages
    assert "sustain_minutes must be from 0 to 10080 minutes (a week)" in raised.value.messages
    threshold.min_samples = 0
    with pytest.raises(ValidationError) as raised:
        threshold.full_clean()
    assert set(raised.value.message_dict) == {"window_minutes", "sustain_minutes", "min_samples"}
    # One rule: the API's fields take the model's bounds.
    fields = ThresholdSerializer().fields
    for name in ("window_minutes", "sustain_minutes", "min_samples"):
        model_field = Threshold._meta.get_field(name)
        limits = {type(v).__name__: v.limit_value for v in model_field._validators}
        assert fields[name].max_value == limits["MaxValueValidator"]
        assert fields[name].min_value == limits.get("MinValueValidator", 0)


@pytest.mark.django_db
def test_only_one_active_baseline_per_key(blog):
    route = make_route(blog)
    end = timezone.now()
    fields = {
        "route": route,
        "signal": signal(),
        "environment": environment(),
        "window_start": end - timedelta(hours=1),
        "window_end": end,
    }
    Baseline.objects.create(**fields)
    rejects(lambda: Baseline.objects.create(**fields))
    assert Baseline.objects.create(**fields, active=False).pk


@pytest.mark.django_db
def test_baseline_window_must_be_ordered(blog):
    end = timezone.now()
    rejects(
        lambda: Baseline.objects.create(
            route=make_route(blog),
            signal=signal(),
            environment=environment(),
            window_start=end,
            window_end=end,
        )
    )


@pytest.mark.django_db
def test_reading_idempotency_key_is_unique_per_service(blog, search):
    blog_route, search_route = make_route(blog), make_route(search)
    (reading,) = make_readings(blog_route, [1.0])
    Reading.objects.filter(pk=reading.pk).update(idempotency_key="web-1:1")

    def duplicate():
        (again,) = make_readings(blog_route, [2.0])
        Reading.objects.filter(pk=again.pk).update(idempotency_key="web-1:1")

    rejects(duplicate)
    (other,) = make_readings(search_route, [3.0])
    Reading.objects.filter(pk=other.pk).update(idempotency_key="web-1:1")
    # Readings without a key never collide.
    make_readings(blog_route, [4.0, 5.0])
    assert Reading.objects.filter(idempotency_key__isnull=True).count() == 2


@pytest.mark.django_db
def test_only_one_open_incident_per_threshold(blog):
    threshold = make_threshold(make_route(blog))
    Incident.objects.create(threshold=threshold, route=threshold.route, level="warn", peak_value=1)
    rejects(
        lambda: Incident.objects.create(
            threshold=threshold, route=threshold.route, level="warn", peak_value=2
        )
    )
    Incident.objects.update(resolved_at=timezone.now())
    assert Incident.objects.create(
        threshold=threshold, route=threshold.route, level="critical", peak_value=3
    ).pk


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["quality", "freshness", "depth", "clarity"])
def test_content_scores_must_be_within_0_and_100(field):
    rejects(lambda: ContentItem.objects.create(reference="r-1", title="t", **{field: 101}))
    rejects(lambda: ContentItem.objects.create(reference="r-2", title="t", **{field: -1}))
    assert ContentItem.objects.create(reference="r-3", title="t", **{field: 100}).pk


@pytest.mark.django_db
def test_default_signals_and_environments_exist():
    assert signal("response_time_ms").kind == "duration"
    assert signal("response_time_ms").unit == "ms"
    assert signal("error_rate").kind == "ratio"
    assert signal("db_calls").kind == "count"
    assert signal("cache_hit").direction == "lower_worse"
    assert environment("production").is_production
    assert not environment("staging").is_production
    assert Route.objects.count() == 0


@pytest.mark.django_db
def test_readings_are_indexed_for_their_queries_and_no_more():
    """Each index is paid on every insert: route_id has none of its own (it leads the
    composite index); signal_id and environment_id keep theirs (filters, deletes)."""
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Reading._meta.db_table)
    indexed = [
        tuple(c["columns"]) for c in constraints.values() if c["index"] and not c["primary_key"]
    ]
    assert ("route_id",) not in indexed
    assert ("route_id", "signal_id", "environment_id", "observed_at") in indexed
    assert ("signal_id",) in indexed
    assert ("environment_id",) in indexed
    assert ("observed_at",) in indexed


@pytest.mark.django_db
def test_the_previous_release_can_still_write_runs_and_states(blog):
    """Migration 0008 renames nothing and requires nothing new, so processes of the previous
    release keep working while it runs: their run inserts leave out states_changed, their
    state updates write the column evaluated_at."""
    threshold = make_threshold(make_route(blog))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO signals_app_evaluationrun (started_at, thresholds, statuses, "
            "incidents_opened, incidents_escalated, incidents_resolved) "
            "VALUES (%s, 0, '{}', 0, 0, 0)",
            [timezone.now()],
        )
        cursor.execute(
            "INSERT INTO signals_app_thresholdstate (threshold_id, status, samples, "
            "breach_level, evaluated_at) VALUES (%s, 'ok', 0, '', %s)",
            [threshold.pk, timezone.now()],
        )
    assert EvaluationRun.objects.get().states_changed == 0
    assert ThresholdState.objects.get().changed_at is not None
