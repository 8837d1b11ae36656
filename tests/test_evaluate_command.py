from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from signals_app.models import EvaluationRun, IdempotentRequest, Incident
from tests.builders import make_readings, make_route, make_threshold


def evaluate(*args):
    out = StringIO()
    call_command("evaluate", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_one_pass_prints_a_one_line_summary(blog):
    route = make_route(blog)
    make_threshold(route, statistic="max", min_samples=1)
    make_threshold(route, statistic="p50", min_samples=50)
    make_readings(route, [900.0, 100.0], start=timezone.now())
    output = evaluate()
    assert output.count("\n") == 1
    assert output.startswith("evaluated 2 thresholds in ")
    assert "ok=0 no_data=1 pending=0 warn=0 critical=1;" in output
    assert output.rstrip().endswith("incidents opened=1 escalated=0 resolved=0")
    assert Incident.objects.count() == 1
    assert EvaluationRun.objects.count() == 1


@pytest.mark.django_db
def test_running_it_again_opens_nothing_new(blog):
    route = make_route(blog)
    make_threshold(route, statistic="max", min_samples=1)
    make_readings(route, [900.0], start=timezone.now())
    evaluate()
    assert "incidents opened=0 escalated=0 resolved=0" in evaluate()
    assert Incident.objects.count() == 1


@pytest.mark.django_db
def test_loop_prints_one_line_per_run():
    output = evaluate("--loop", "0.01", "--max-runs", "3")
    assert output.count("evaluated 0 thresholds") == 3
    assert EvaluationRun.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--loop", "0"], "--loop expects a number of seconds from 0.01 to 86400"),
        (["--loop", "nan"], "--loop expects a number of seconds .*; received nan"),
        (["--loop", "inf"], "--loop expects .*; received inf"),
        (["--loop", "1", "--max-runs", "0"], "--max-runs expects a number of runs of at least 1"),
        (["--loop", "1", "--max-runs", "-1"], "--max-runs expects .*; received -1"),
        (["--max-runs", "0"], "--max-runs expects .*; received 0"),
        (["--loop", "60", "--prune-every", "0"], "--prune-every expects .*; received 0.0"),
        (["--loop", "60", "--prune-every", "nan"], "--prune-every expects .*; received nan"),
        (["--prune-every", "3600"], "--prune-every expects --loop"),
        (["--max-failures", "5"], "--max-failures expects --loop, e.g. --loop 60 --max-failures"),
        # It ran one pass and ignored the option, silently.
        (
            ["--max-runs", "3"],
            "--max-runs expects --loop, e.g. --loop 60 --max-runs 3; received no",
        ),
        (
            ["--loop", "60", "--max-failures", "-1"],
            "--max-failures expects a number of failed passes of at least 0, e.g. "
            "--max-failures 5; received -1",
        ),
    ],
)
def test_loop_options_out_of_range_fail_naming_the_option(args, message):
    with pytest.raises(CommandError, match=message):
        evaluate(*args)
    assert not EvaluationRun.objects.exists()


@pytest.mark.django_db
def test_loop_prunes_after_its_first_run_and_then_every_interval(blog):
    old = timezone.now() - timedelta(hours=25)
    IdempotentRequest.objects.create(service=blog, key="k", fingerprint="f", created_at=old)
    output = evaluate("--loop", "0.01", "--max-runs", "3", "--prune-every", "3600")
    lines = output.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("evaluated 0 thresholds")
    assert lines[1].startswith(
        "prune: 1 idempotency records, 0 readings, 0 evaluation runs, 0 notifications deleted in "
    )
    assert lines[2].startswith("evaluated 0 thresholds")
    assert not IdempotentRequest.objects.exists()


@pytest.mark.django_db
def test_loop_prunes_on_every_run_when_the_interval_is_shorter():
    output = evaluate("--loop", "0.01", "--max-runs", "3", "--prune-every", "0.001")
    summary = "prune: 0 idempotency records, 0 readings, 0 evaluation runs, 0 notifications deleted"
    assert output.count(summary) == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
def test_loop_replaces_a_connection_the_database_dropped(blog):
    """No CONN_HEALTH_CHECKS: the loop checks its kept connection before each pass, so a
    database restart between passes costs no failed pass."""
    import psycopg

    make_threshold(make_route(blog), statistic="max", min_samples=1)
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(connection.connection.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    out, err = StringIO(), StringIO()
    call_command("evaluate", "--loop", "0.01", "--max-runs", "1", stdout=out, stderr=err)
    assert err.getvalue() == ""
    assert out.getvalue().startswith("evaluated 1 thresholds in ")
    assert connection.connection.info.backend_pid != pid


def failing_first(monkeypatch, error):
    """run_evaluation that raises `error` on its first call, then runs: a bug in one pass."""
    from signals_app.management.commands import evaluate as command

    real, calls = command.run_evaluation, []

    def run_evaluation():
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real()

    monkeypatch.setattr(command, "run_evaluation", run_evaluation)


@pytest.mark.django_db
def test_loop_survives_an_unexpected_error_logging_its_traceback(monkeypatch, caplog):
    # A window of 2,000,000,000 minutes raised OverflowError, and the clock exited with it.
    failing_first(monkeypatch, OverflowError("date value out of range"))
    output = evaluate("--loop", "0.01", "--max-runs", "2")
    assert output.count("evaluated 0 thresholds") == 1
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "evaluation failed with an unexpected error, retrying in 0.01s"
    assert record.exc_info[0] is OverflowError
    assert EvaluationRun.objects.count() == 1


@pytest.mark.django_db
def test_one_pass_turns_an_unexpected_error_into_a_command_error(monkeypatch):
    failing_first(monkeypatch, OverflowError("date value out of range"))
    with pytest.raises(CommandError) as raised:
        evaluate()
    assert str(raised.value) == (
        "evaluation failed with an unexpected error: OverflowError: date value out of range"
    )


@pytest.mark.django_db
def test_a_pass_that_a_later_pass_overtook_says_it_skipped():
    from signals_app.evaluation import run_evaluation, summary_line

    later = timezone.now()
    run_evaluation(now=later)
    skipped = run_evaluation(now=later - timedelta(seconds=30))
    assert summary_line(skipped) == (
        f"evaluation at {(later - timedelta(seconds=30)).isoformat()} skipped, stored nothing: "
        f"a pass started later, at {later.isoformat()}, has finished"
    )


@pytest.mark.django_db
def test_a_pass_evaluates_a_mean_over_readings_stored_beyond_1e12(blog):
    # Stored before readings were bounded: PostgreSQL's avg() overflowed and no threshold of
    # any team was evaluated.
    from signals_app.models import ThresholdState

    threshold = make_threshold(make_route(blog), statistic="mean", min_samples=1)
    make_readings(threshold.route, [1.7e308] * 3, start=timezone.now())
    assert evaluate().startswith("evaluated 1 thresholds")
    state = ThresholdState.objects.get()
    assert (state.status, state.value) == ("critical", 1e12)


def failing_runs(monkeypatch, outcomes):
    """run_evaluation that raises on each True of `outcomes` (then runs for real): a deploy
    bug, an ImportError of a module the pass needs, on those passes."""
    from signals_app.management.commands import evaluate as command

    real, calls = command.run_evaluation, []

    def run_evaluation():
        calls.append(1)
        if outcomes[len(calls) - 1]:
            raise ImportError("cannot import name 'percentile' from 'signals_app.sql'")
        return real()

    monkeypatch.setattr(command, "run_evaluation", run_evaluation)
    return calls


@pytest.mark.django_db
def test_loop_exits_after_max_failures_in_a_row_saying_why(monkeypatch, caplog):
    calls = failing_runs(monkeypatch, [True] * 10)
    with pytest.raises(CommandError) as raised:
        evaluate("--loop", "0.01", "--max-runs", "10", "--max-failures", "3")
    message = (
        "evaluation failed 3 times in a row (--max-failures 3), exiting: the last error was "
        "ImportError: cannot import name 'percentile' from 'signals_app.sql'. Something "
        "retrying does not fix (a deploy or a database problem) is likely; fix it, then start "
        "the process again (its process manager may already be restarting it)."
    )
    assert str(raised.value) == message
    assert len(calls) == 3
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        "evaluation failed with an unexpected error, retrying in 0.01s",
        "evaluation failed with an unexpected error, retrying in 0.01s",
        "evaluation failed with an unexpected error, not retrying",
        message,
    ]


@pytest.mark.django_db
def test_loop_exits_after_five_failures_by_default(monkeypatch):
    calls = failing_runs(monkeypatch, [True] * 10)
    with pytest.raises(CommandError, match="failed 5 times in a row"):
        evaluate("--loop", "0.01", "--max-runs", "10")
    assert len(calls) == 5


@pytest.mark.django_db
def test_a_successful_pass_resets_the_count_of_failures(monkeypatch):
    calls = failing_runs(monkeypatch, [True, True, False, True, True, False])
    output = evaluate("--loop", "0.01", "--max-runs", "6", "--max-failures", "3")
    assert output.count("evaluated 0 thresholds") == 2
    assert len(calls) == 6


@pytest.mark.django_db
def test_max_failures_0_never_exits(monkeypatch):
    calls = failing_runs(monkeypatch, [True] * 8)
    assert evaluate("--loop", "0.01", "--max-runs", "8", "--max-failures", "0") == ""
    assert len(calls) == 8
