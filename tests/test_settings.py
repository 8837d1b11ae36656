import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DEBUG": "off",
    "SECRET_KEY": "x" * 30 + "a-long-random-production-secret-key-0123456789",
    "ALLOWED_HOSTS": "dq.example.com",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "SECURE_HSTS_PRELOAD": "on",
}


def manage(*args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(*args, **env_overrides):
    """Run manage.py with these variables, assert it stopped, return what it said."""
    result = manage(*args, **env_overrides)
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_production_mode_refuses_to_start_without_secret_key():
    env = {**PRODUCTION, "SECRET_KEY": ""}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_mode_refuses_to_start_without_allowed_hosts():
    env = {**PRODUCTION, "ALLOWED_HOSTS": ""}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is not set" in result.stderr


def test_malformed_variable_names_itself():
    result = manage("check", DEBUG="perhaps")
    assert result.returncode != 0
    assert "DEBUG is malformed" in result.stderr


def test_a_refused_setting_is_one_line_not_a_traceback():
    # The README promises "an error naming the variable": it was the last of 40 lines.
    result = manage("check", DQ_INGEST_RATE="abc")
    assert result.returncode == 1
    assert result.stderr == (
        "ImproperlyConfigured: DQ_INGEST_RATE is malformed: expected requests per service key "
        "and period, e.g. 6000/min or 100/s (periods s, min, hour, day); received 'abc'\n"
    )


def test_deploy_check_prints_no_warnings_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stderr + result.stdout


def test_malformed_ingest_rate_names_itself_and_the_expected_form():
    stderr = refused("check", DQ_INGEST_RATE="lots")
    assert "DQ_INGEST_RATE is malformed" in stderr
    assert "6000/min" in stderr


def test_cache_url_defaults_to_the_per_process_memory_cache():
    result = manage(
        "shell", "-c", "from django.conf import settings; print(settings.CACHES)", CACHE_URL=""
    )
    assert result.returncode == 0, result.stderr
    assert "django.core.cache.backends.locmem.LocMemCache" in result.stdout


def test_a_redis_cache_url_uses_djangos_own_redis_backend():
    # cache.internal does not resolve: start-up never connects (README, CACHE_URL).
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.CACHES['default'])",
        CACHE_URL="redis://cache.internal:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert "'BACKEND': 'django.core.cache.backends.redis.RedisCache'" in result.stdout
    assert "'LOCATION': 'redis://cache.internal:6379/0'" in result.stdout


@pytest.mark.parametrize(
    "url", ["memcached-somewhere", "redis://cache:abc/0", "redis://cache:99999/0"]
)
def test_malformed_cache_url_names_itself_and_the_expected_form(url):
    stderr = refused("check", CACHE_URL=url)
    assert "CACHE_URL is malformed" in stderr
    assert "redis://host:6379/0" in stderr


def test_deploy_check_is_clean_with_a_redis_cache():
    env = {**PRODUCTION, "CACHE_URL": "redis://127.0.0.1:6379/0"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stderr + result.stdout


def test_connection_health_checks_are_off_unless_asked_for():
    show = (
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['CONN_HEALTH_CHECKS'])"
    )
    assert manage("shell", "-c", show).stdout.splitlines()[-1] == "False"
    assert manage("shell", "-c", show, CONN_HEALTH_CHECKS="on").stdout.splitlines()[-1] == "True"
    assert "CONN_HEALTH_CHECKS is malformed" in refused(
        "shell", "-c", show, CONN_HEALTH_CHECKS="sometimes"
    )


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("DATABASE_URL", "bogus", "DATABASE_URL is malformed (expected postgres://"),
        ("DATABASE_URL", "mysql://dq:secret@db/dq", "received the scheme 'mysql'"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL is malformed (expected one of CRITICAL, FATAL, ERROR"),
        ("DQ_BOARD_REFRESH_SECONDS", "0", "DQ_BOARD_REFRESH_SECONDS is out of range"),
        ("DQ_BOARD_REFRESH_SECONDS", "-1", "5 or more; received -1"),
        ("DQ_CONTENT_MIN_SCORE", "200", "expected a score, from 0 to 100; received 200"),
        ("DQ_CONTENT_MIN_SCORE", "-5", "DQ_CONTENT_MIN_SCORE is out of range"),
        ("DQ_REHEARSAL_MAX_AGE_DAYS", "-1", "DQ_REHEARSAL_MAX_AGE_DAYS is out of range"),
        ("DQ_REHEARSAL_MAX_AGE_DAYS", "1000000", "from 1 to 36500; received 1000000"),
        ("DQ_INGEST_CACHE_SECONDS", "-1", "DQ_INGEST_CACHE_SECONDS is out of range"),
    ],
)
def test_a_value_out_of_range_stops_start_up_naming_the_variable(variable, value, message):
    stderr = refused("check", **{variable: value})
    assert "ImproperlyConfigured" in stderr
    assert message in stderr
    assert "secret" not in stderr  # a database URL's password is never shown


def test_the_log_level_is_read_in_any_case():
    show = "from django.conf import settings; print(settings.LOGGING['root']['level'])"
    assert manage("shell", "-c", show, LOG_LEVEL="debug").stdout.splitlines()[-1] == "DEBUG"
    # every name Python's logging takes, as LOG_LEVEL always could
    assert manage("shell", "-c", show, LOG_LEVEL="warn").stdout.splitlines()[-1] == "WARN"


def test_webhooks_go_to_private_addresses_only_when_allowed():
    show = "from django.conf import settings; print(settings.DQ_WEBHOOK_ALLOW_PRIVATE)"
    assert manage("shell", "-c", show).stdout.splitlines()[-1] == "False"
    allowed = manage("shell", "-c", show, DQ_WEBHOOK_ALLOW_PRIVATE="on")
    assert allowed.stdout.splitlines()[-1] == "True"
    assert "DQ_WEBHOOK_ALLOW_PRIVATE is malformed" in refused(
        "shell", "-c", show, DQ_WEBHOOK_ALLOW_PRIVATE="internal"
    )
