"""Issuing service keys: the command and the admin action; only a hash is stored."""

import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from signals_app.models import ServiceKey


@pytest.mark.django_db
def test_create_service_key_prints_the_key_alone_on_its_last_line(blog):
    out, err = StringIO(), StringIO()
    call_command("create_service_key", "blog", "--name", "web-1", stdout=out, stderr=err)
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("dq_")
    prefix, secret = raw.removeprefix("dq_").split(".", 1)
    key = ServiceKey.objects.get()
    assert (key.service, key.name, key.prefix) == (blog, "web-1", prefix)
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in key.secret_hash
    assert "cannot be shown again" in err.getvalue()
    assert ServiceKey.authenticate(raw) == (key, "")


@pytest.mark.django_db
def test_create_service_key_can_expire(blog):
    out = StringIO()
    call_command(
        "create_service_key", "blog", "--expires-in-days", "30", stdout=out, stderr=StringIO()
    )
    assert ServiceKey.objects.get().expires_at is not None


@pytest.mark.django_db
def test_create_service_key_names_the_known_services_for_an_unknown_one(blog):
    with pytest.raises(CommandError, match="known services: blog"):
        call_command("create_service_key", "nope", stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--expires-in-days", "99999999"], "--expires-in-days expects .* from 1 to 3650"),
        (["--expires-in-days", "0"], "--expires-in-days expects .*; received 0"),
        (["--name", "n" * 101], "--name expects at most 100 characters; received 101"),
    ],
)
def test_create_service_key_refuses_out_of_range_options(blog, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_service_key", "blog", *args, stdout=StringIO(), stderr=StringIO())
    assert not ServiceKey.objects.exists()


@pytest.mark.django_db
def test_the_admin_action_shows_the_key_once_and_stores_its_hash(client, blog, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin_user)
    response = client.post(
        "/admin/signals_app/service/",
        {"action": "issue_key", "_selected_action": [blog.pk]},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    key = ServiceKey.objects.get()
    start = page.index(f"dq_{key.prefix}.")
    raw = page[start : page.index("<", start)]
    assert ServiceKey.authenticate(raw) == (key, "")
    assert key.created_by == admin_user
    # The change page never shows the secret again.
    again = client.get(f"/admin/signals_app/service/{blog.pk}/change/").content.decode()
    assert raw not in again


@pytest.mark.django_db
def test_the_admin_revokes_selected_keys(client, blog, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    key, raw = ServiceKey.issue(blog)
    client.force_login(admin_user)
    response = client.post(
        "/admin/signals_app/servicekey/", {"action": "revoke", "_selected_action": [key.pk]}
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert ServiceKey.authenticate(raw) == (None, "the API key was revoked")


@pytest.mark.django_db
def test_the_admin_has_no_add_form_for_keys_and_points_to_the_action(
    client, blog, django_user_model
):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin_user)
    assert client.get("/admin/signals_app/servicekey/add/").status_code == 403
    response = client.post("/admin/signals_app/servicekey/add/", {"service": blog.pk})
    assert response.status_code == 403
    assert not ServiceKey.objects.exists()
    page = client.get("/admin/signals_app/servicekey/").content.decode()
    assert "/admin/signals_app/servicekey/add/" not in page
    assert "Issue an API key (shown once)" in page
    # Nor an "add another" row on the service page: it would save a key without a secret.
    service_page = client.get(f"/admin/signals_app/service/{blog.pk}/change/").content.decode()
    assert 'name="keys-MAX_NUM_FORMS" value="0"' in service_page


@pytest.mark.django_db
def test_a_key_cannot_move_to_another_service_in_the_admin(client, blog, search, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    key, raw = ServiceKey.issue(blog, name="web-1")
    client.force_login(admin_user)
    url = f"/admin/signals_app/servicekey/{key.pk}/change/"
    response = client.post(url, {"service": search.pk, "name": "web-2"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.service, key.name) == (blog, "web-2")
    assert ServiceKey.authenticate(raw) == (key, "")
