"""Signed deliveries: X-DQ-Signature, checked by a real receiver with the README's snippet,
and the admin action that generates an owner's signing secret (shown once)."""

import re
import time
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry

from signals_app.models import Owner
from signals_app.notifications import deliver_batch
from tests.builders import make_route, make_user
from tests.test_deliver_notifications import make_notification, set_webhook

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_verify():
    """The `verify` function of the README's snippet, run as a receiver would copy it."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (snippet,) = [block for block in blocks if "def verify(" in block]
    namespace = {}
    exec(snippet, namespace)  # noqa: S102 - our own README
    return namespace["verify"]


verify = readme_verify()


@pytest.fixture
def route(blog):
    route = make_route(blog, "/posts/{slug}")
    set_webhook(route.owner, "")
    return route


def deliver_one(route, receiver):
    """Send one new notification of `route` to `receiver`; the request it received."""
    set_webhook(route.owner, receiver.url("/hooks/dq"))
    make_notification(route)
    route.owner.refresh_from_db()
    assert deliver_batch().delivered == 1
    return receiver.received[-1]


def signature_time(header):
    return int(re.fullmatch(r"t=(\d+),v1=[0-9a-f]{64}", header).group(1))


@pytest.mark.django_db
def test_a_signed_delivery_verifies_with_the_readme_snippet(receiver, route):
    secret = route.owner.rotate_signing_secret()
    before = int(time.time())
    request = deliver_one(route, receiver)
    header = request.headers["X-DQ-Signature"]
    assert before <= signature_time(header) <= time.time()  # signed when sent
    assert verify(secret, header, request.raw)
    # What the snippet refuses: another body, another secret, an old (replayed) request,
    # a header that is not ours.
    assert not verify(secret, header, request.raw.replace(b"opened", b"resolved"))
    assert not verify("dqwhsec_" + "x" * 43, header, request.raw)
    assert not verify(secret, header, request.raw, now=signature_time(header) + 301)
    assert verify(secret, header, request.raw, now=signature_time(header) + 300)
    for forged in ["", "t=,v1=", "v1=" + header.split("v1=")[1], "t=²,v1=ab", "t=1,v1=é"]:
        assert not verify(secret, forged, request.raw)


@pytest.mark.django_db
def test_rotating_the_secret_changes_the_signature(receiver, route):
    old = route.owner.rotate_signing_secret()
    first = deliver_one(route, receiver)
    new = Owner.objects.get(pk=route.owner.pk).rotate_signing_secret()
    second = deliver_one(route, receiver)
    assert new != old
    assert verify(old, first.headers["X-DQ-Signature"], first.raw)
    assert verify(new, second.headers["X-DQ-Signature"], second.raw)
    assert not verify(old, second.headers["X-DQ-Signature"], second.raw)
    assert not verify(new, first.headers["X-DQ-Signature"], first.raw)


@pytest.mark.django_db
def test_an_owner_without_a_secret_gets_no_signature_header(receiver, route):
    assert route.owner.signing_secret == ""  # every owner until one is generated
    request = deliver_one(route, receiver)
    assert "X-DQ-Signature" not in request.headers
    assert request.headers["X-DQ-Delivery"]  # the rest is as before


@pytest.mark.django_db
def test_a_secret_is_prefixed_random_and_never_the_same():
    owner = Owner.objects.create(name="Team")
    secrets = {owner.rotate_signing_secret() for _ in range(3)}
    assert len(secrets) == 3
    for secret in secrets:
        assert re.fullmatch(r"dqwhsec_[A-Za-z0-9_-]{43}", secret)
    assert Owner.objects.get().signing_secret in secrets


# ---- the admin action


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


def generate(client, *owners):
    return client.post(
        "/admin/signals_app/owner/",
        {"action": "generate_signing_secret", "_selected_action": [o.pk for o in owners]},
    )


def shown_secrets(response):
    return re.findall(r'<code class="signing-secret">([^<]+)</code>', response.content.decode())


@pytest.mark.django_db
def test_the_admin_action_shows_the_secret_once_and_stores_it(
    client, root, blog_team, search_team, caplog
):
    caplog.set_level("DEBUG")
    client.force_login(root)
    response = generate(client, blog_team, search_team)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = shown_secrets(response)
    stored = dict(Owner.objects.values_list("name", "signing_secret"))
    assert sorted(shown) == sorted([stored["Blog team"], stored["Search team"]])
    # Never again: not on the list, the team's page, the history, nor in a log or a message.
    pages = [
        client.get("/admin/signals_app/owner/"),
        client.get(f"/admin/signals_app/owner/{blog_team.pk}/change/"),
        client.get(f"/admin/signals_app/owner/{blog_team.pk}/history/"),
    ]
    for page in pages:
        assert page.status_code == 200
        for secret in shown:
            assert secret not in page.content.decode()
    assert "Set: deliveries carry X-DQ-Signature" in pages[1].content.decode()
    for secret in shown:
        assert secret not in caplog.text
    assert set(LogEntry.objects.values_list("change_message", flat=True)) == {
        "Generated a new signing secret."
    }


@pytest.mark.django_db
def test_saving_the_owner_page_neither_shows_nor_changes_the_secret(client, root, blog_team):
    secret = blog_team.rotate_signing_secret()
    client.force_login(root)
    response = client.post(
        f"/admin/signals_app/owner/{blog_team.pk}/change/",
        {
            "name": "Blog team",
            "contact_email": "blog@example.com",
            "webhook_url": "https://hooks.example.com/dq",
            "members": [],
            "signing_secret": "dqwhsec_chosen-by-hand",  # not a field: ignored
        },
    )
    assert response.status_code == 302
    blog_team.refresh_from_db()
    assert (blog_team.webhook_url, blog_team.signing_secret) == (
        "https://hooks.example.com/dq",
        secret,
    )


@pytest.mark.django_db
def test_a_staff_user_without_change_permission_cannot_generate_a_secret(client, blog_team):
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_owner"))
    client.force_login(viewer)
    response = generate(client, blog_team)
    assert shown_secrets(response) == []
    assert Owner.objects.get(pk=blog_team.pk).signing_secret == ""


@pytest.mark.django_db
def test_the_api_never_mentions_the_secret(client, root, blog):
    make_route(blog)
    blog.owner.rotate_signing_secret()
    client.force_login(root)
    schema = client.get("/api/schema")
    routes = client.get("/api/v1/routes")
    assert schema.status_code == routes.status_code == 200
    assert b"signing_secret" not in schema.content
    assert blog.owner.signing_secret.encode() not in routes.content
