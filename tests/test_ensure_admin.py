from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command


def ensure_admin():
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_takes_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-password-from-env")
    output = ensure_admin()
    assert "password from the environment" in output
    assert "a-password-from-env" not in output
    assert authenticate(username="admin", password="a-password-from-env").is_superuser


@pytest.mark.django_db
def test_it_generates_and_prints_a_password(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    output = ensure_admin()
    password = output.rsplit("password: ", 1)[1].strip()
    assert authenticate(username="admin", password=password) is not None


@pytest.mark.django_db
def test_a_second_run_leaves_the_password_alone(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "first-password-123")
    ensure_admin()
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "second-password-456")
    output = ensure_admin()
    assert "password unchanged" in output
    assert "manage.py changepassword admin" in output
    assert get_user_model().objects.get(username="admin").check_password("first-password-123")
