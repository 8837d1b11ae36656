"""Baselines: captured from a window in one query, one active per key, history kept."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, ManagementUtility, call_command
from django.db import connection

from signals_app.evaluation import (
    BaselineKey,
    Window,
    capture_baselines,
    capture_window,
    window_stats,
)
from signals_app.models import Baseline, Incident, Signal
from tests.builders import environment, make_readings, make_route, make_threshold, signal
from tests.test_window_statistics import percentile_cont

END = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
START = END - timedelta(hours=1)


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


def capture(route, **kwargs):
    return Baseline.capture(route, signal(), environment(), start=START, end=END, **kwargs)


@pytest.mark.django_db
def test_it_stores_count_percentiles_and_mean_of_the_window(route, alice):
    values = [float(v) for v in range(100, 160)]  # one a minute, the last exactly at END
    make_readings(route, values, start=END, step=timedelta(minutes=1))
    make_readings(route, [5000.0], start=START)  # exactly at the start: not in (START, END]
    baseline = capture(route, user=alice, note="before the index")
    assert baseline.count == 60
    assert baseline.p50 == pytest.approx(percentile_cont(values, 0.5))
    assert baseline.p95 == pytest.approx(percentile_cont(values, 0.95))
    assert baseline.p99 == pytest.approx(percentile_cont(values, 0.99))
    assert baseline.mean == pytest.approx(129.5)
    assert (baseline.window_start, baseline.window_end) == (START, END)
    assert (baseline.captured_by, baseline.note, baseline.active) == (
        alice,
        "before the index",
        True,
    )
    assert baseline.history.get().history_user == alice


@pytest.mark.django_db
def test_a_new_capture_keeps_the_old_one_as_history(route):
    make_readings(route, [100.0] * 30, start=END)
    first = capture(route)
    make_readings(route, [200.0] * 30, start=END + timedelta(hours=1))
    second = Baseline.capture(route, signal(), environment(), end=END + timedelta(hours=1))
    first.refresh_from_db()
    assert (first.active, second.active) == (False, True)
    assert Baseline.objects.filter(active=True).get() == second
    assert second.p50 == 200.0
    assert first.history.first().active is False  # the deactivation is in its history


@pytest.mark.django_db
def test_a_window_without_readings_keeps_the_active_baseline(route):
    make_readings(route, [100.0] * 30, start=END)
    first = capture(route)
    assert Baseline.capture(route, signal(), environment(), cache_segment="hit") is None
    assert capture(route, cache_segment="hit") is None
    first.refresh_from_db()
    assert first.active


@pytest.mark.django_db
def test_segments_are_separate_keys(route):
    make_readings(route, [10.0] * 20, start=END, cache_status="HIT")
    make_readings(route, [300.0] * 10, start=END, cache_status="MISS")
    hit = capture(route, cache_segment="hit")
    miss = capture(route, cache_segment="miss")
    all_ = capture(route)
    assert (hit.count, miss.count, all_.count) == (20, 10, 30)
    assert (hit.p50, miss.p50) == (10.0, 300.0)
    assert Baseline.objects.filter(active=True).count() == 3


@pytest.mark.django_db
def test_it_can_leave_out_incident_periods(route):
    threshold = make_threshold(route)
    make_readings(route, [100.0] * 60, start=END, step=timedelta(minutes=1))
    make_readings(
        route, [900.0] * 10, start=START + timedelta(minutes=30), step=timedelta(seconds=5)
    )
    Incident.objects.create(
        threshold=threshold,
        route=route,
        level="critical",
        peak_value=900.0,
        opened_at=START + timedelta(minutes=29),
        resolved_at=START + timedelta(minutes=31),
    )
    with_incident = capture(route)
    assert with_incident.count == 70 and with_incident.p99 > 800
    without = capture(route, exclude_incidents=True)
    assert without.excludes_incidents
    assert without.count == 70 - 10 - 3  # the burst, and the readings at 06:29, 06:30, 06:31
    assert without.p99 == 100.0


@pytest.mark.django_db
def test_the_window_must_be_in_the_past_and_ordered():
    with pytest.raises(ValueError, match="future"):
        capture_window(end=END + timedelta(minutes=1), now=END)
    with pytest.raises(ValueError, match="after it starts"):
        capture_window(start=END, end=END, now=END)
    assert capture_window(now=END) == (END - timedelta(minutes=60), END)
    assert capture_window(minutes=15, now=END) == (END - timedelta(minutes=15), END)


@pytest.mark.django_db
@pytest.mark.parametrize("args", [["--end", "0001-01-01T00:30:00Z"], ["--start", "1970-01-01"]])
def test_a_window_before_2000_is_refused_naming_the_bound(args):
    # Year 1 overflowed `end - minutes`: a traceback.
    with pytest.raises(CommandError, match="must start on or after 2000-01-01T00:00:00"):
        call_command("capture_baselines", *args, stdout=StringIO())


@pytest.mark.django_db
def test_many_keys_cost_the_same_queries(blog, django_assert_num_queries):
    routes = [make_route(blog) for _ in range(5)]
    for route in routes:
        make_readings(route, [100.0] * 5, start=END)
    keys = [BaselineKey(r.pk, signal().pk, environment().pk, "all") for r in routes]
    capture_baselines(keys, start=START, end=END)
    # statistics, savepoint, (PostgreSQL: advisory lock), active baselines (locked),
    # deactivate, history of it, insert, history of it, release
    with django_assert_num_queries(8 + (connection.vendor == "postgresql")):
        result = capture_baselines(keys, start=START, end=END)
    assert len(result.baselines) == 5
    assert Baseline.objects.count() == 10
    assert Baseline.objects.filter(active=True).count() == 5


def command(*args):
    out = StringIO()
    call_command("capture_baselines", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_captures_every_route_signal_and_segment(blog, search, alice):
    posts, query = make_route(blog), make_route(search)
    make_readings(posts, [100.0] * 10, start=END, cache_status="HIT")
    make_readings(query, [50.0] * 10, start=END, signal_key="db_calls", cache_status="MISS")
    output = command("--end", "2026-11-26T07:00:00Z", "--note", "weekly", "--user", "alice")
    # posts: all + hit of response_time_ms; query: all + miss of db_calls
    assert output.startswith("captured 4 baselines for 2 routes over 2026-11-26T06:00:00Z")
    assert Baseline.objects.filter(note="weekly", captured_by=alice).count() == 4
    # every other signal × segment × route
    assert f"{Signal.objects.count() * 3 * 2 - 4} keys without readings skipped" in output

    output = command(
        "--service", "blog", "--segment", "all", "--minutes", "30", "--end", "2026-11-26T07:00Z"
    )
    assert output.startswith("captured 1 baselines for 1 routes over 2026-11-26T06:30:00Z")


@pytest.mark.django_db
def test_the_command_names_what_it_does_not_know():
    with pytest.raises(CommandError, match="unknown signal latency"):
        command("--signal", "latency")
    with pytest.raises(CommandError, match="ISO 8601"):
        command("--end", "yesterday")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--minutes", "inf"], "--minutes expects a number of minutes from 1 to 10080, .*inf"),
        (["--minutes", "1e20"], "--minutes expects .*; received 1e\\+20"),
        (["--minutes", "nan"], "--minutes expects .*; received nan"),
        (["--minutes", "0"], "--minutes expects .*; received 0.0"),
        (["--minutes", "-5"], "--minutes expects .*; received -5.0"),
        (["--start", "yesterday"], "--start expects an ISO 8601 time .*; received 'yesterday'"),
        (["--end", "2026-13-01T00:00:00Z"], "--end expects an ISO 8601 time"),
        # --minutes counts back from --end: with --start it was silently ignored.
        (
            ["--start", "2026-11-26T10:00:00Z", "--minutes", "30"],
            "give either --start or --minutes, not both .*; received --start "
            "2026-11-26T10:00:00Z --minutes 30",
        ),
        # SQLite raised OverflowError looking the id up (a traceback).
        (["--route", "99999999999999999999999"], "--route expects an id from 1 to 922337"),
        (["--route", "0"], "--route expects an id from 1 to 9223372036854775807; received 0"),
    ],
)
def test_bad_window_options_fail_naming_the_option(route, args, message):
    with pytest.raises(CommandError, match=message):
        command(*args)
    assert not Baseline.objects.exists()


@pytest.mark.django_db
def test_a_bad_time_from_the_shell_is_one_line_not_a_traceback(capsys):
    # An error raised while argparse reads the options escaped run_from_argv's handler.
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "capture_baselines", "--start", "yesterday"]).execute()
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "CommandError: --start expects an ISO 8601 time like 2026-11-26T07:00:00Z; "
        "received 'yesterday'"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--service", "nope", "unknown service nope; known: blog, search"),
        ("--route", "999999", "unknown route 999999; known: {route_ids}"),
        ("--signal", "latency", "unknown signal latency; known: "),
        ("--environment", "prod", "unknown environment prod; known: production"),
    ],
)
def test_an_unknown_selector_fails_naming_it_and_the_known_ones(
    blog, search, option, value, message
):
    routes = [make_route(blog), make_route(search)]
    message = message.format(route_ids=", ".join(str(r.pk) for r in routes))
    with pytest.raises(CommandError) as failure:
        command(option, value)
    assert str(failure.value).startswith(message)
    assert not Baseline.objects.exists()


@pytest.mark.django_db
def test_a_route_outside_the_chosen_service_fails(blog, search):
    make_route(blog)
    query = make_route(search)
    with pytest.raises(CommandError, match=f"route {query.pk} is not a route of blog"):
        command("--service", "blog", "--route", str(query.pk))


@pytest.mark.django_db
def test_many_keys_leave_out_incident_periods_too(route):
    # Over 100 windows of one span take PostgreSQL's constant-span form.
    threshold = make_threshold(route)
    make_readings(route, [100.0] * 60, start=END, step=timedelta(minutes=1))
    Incident.objects.create(
        threshold=threshold,
        route=route,
        level="warn",
        peak_value=1.0,
        opened_at=START + timedelta(minutes=29),
        resolved_at=START + timedelta(minutes=31),
    )
    key = Window(route.pk, signal().pk, environment().pk, "all", START, END, True)
    results = window_stats([key] * 101)
    assert {result.count for result in results} == {60 - 3}
