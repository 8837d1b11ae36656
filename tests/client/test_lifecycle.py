"""Process lifecycle: the reporter flushes at interpreter exit and survives a fork."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLIENT_ROOT = str(Path(__file__).resolve().parents[2] / "dqclient")


def run(script, url):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), url],
        env={"PYTHONPATH": CLIENT_ROOT, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_it_flushes_at_exit_without_close(registry_server):
    registry = registry_server()
    result = run(
        """
        import sys
        from dqclient import Reporter
        reporter = Reporter(url=sys.argv[1], key="dq_k.s", flush_interval=3600)
        for _ in range(3):
            reporter.record_request("GET", "/posts/{slug}", 1.0, 0)
        """,
        registry.url,
    )
    assert result.returncode == 0, result.stderr
    assert len(registry.readings) == 6


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_worker_reports_under_its_own_instance_id(registry_server):
    registry = registry_server()
    result = run(
        """
        import os, sys
        from dqclient import Reporter
        reporter = Reporter(url=sys.argv[1], key="dq_k.s", flush_interval=3600)
        reporter.record_request("GET", "/parent", 1.0, 0)
        pid = os.fork()
        if pid == 0:  # like a gunicorn worker forked after the app was imported
            reporter.record_request("GET", "/child", 1.0, 0)
            reporter.close()
            os._exit(0)
        os.waitpid(pid, 0)
        reporter.close()
        """,
        registry.url,
    )
    assert result.returncode == 0, result.stderr
    by_route = {}
    for reading in registry.readings:
        by_route.setdefault(reading["route"], set()).add(reading["idempotency_key"].split(":")[0])
    # the child did not resend the parent's queued reading, and its keys cannot collide
    assert sorted(by_route) == ["/child", "/parent"]
    assert len(registry.readings) == 4
    assert by_route["/child"].isdisjoint(by_route["/parent"])
