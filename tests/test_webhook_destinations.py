"""Where a webhook may go: by default only to public addresses, checked when each delivery is
sent and connected to as checked (server-side request forgery, DNS rebinding); checked again
when an owner saves the URL in the admin; DQ_WEBHOOK_ALLOW_PRIVATE lets private ones through.
"""

import ipaddress
import socket
import ssl
import subprocess
import threading
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from signals_app import notifications
from signals_app.models import Owner
from signals_app.notifications import deliver_batch, not_public
from tests.builders import give_role, make_route, owner_form, owner_page
from tests.test_deliver_notifications import make_notification, set_webhook, stored
from tests.webhook_server import webhook_receiver

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
PUBLIC = "93.184.215.14"  # a global address no test connects to


@pytest.fixture
def route(blog):
    return make_route(blog, "/posts/{slug}")


@pytest.fixture
def private_receiver(settings):
    """A receiver on 127.0.0.1 with the default settings: deliveries must not reach it."""
    assert settings.DQ_WEBHOOK_ALLOW_PRIVATE is False  # the default, tested as it ships
    with webhook_receiver() as running:
        yield running


class FakeDNS:
    """getaddrinfo for names of the test's own (`answers`: name -> addresses, or a function
    of how many times the name was asked; no address is 'no such name'); every other name
    and every IP literal is resolved as ever. `asked` counts the questions per name."""

    def __init__(self, real):
        self.real = real
        self.answers = {}
        self.asked = Counter()

    def __call__(self, host, port, *args, **kwargs):
        if host not in self.answers:
            return self.real(host, port, *args, **kwargs)
        self.asked[host] += 1
        answer = self.answers[host]
        addresses = answer(self.asked[host]) if callable(answer) else answer
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [self._info(address, port or 0) for address in addresses]

    @staticmethod
    def _info(address, port):
        if ipaddress.ip_address(address).version == 6:
            return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
        return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def refused(url, reason):
    return (
        f"not sent: the webhook URL {url!r} goes to a host that {reason}; notifications go "
        "only to public addresses (DQ_WEBHOOK_ALLOW_PRIVATE is off). Not retried: set a public "
        "URL, then 'Deliver again'"
    )


# --- which addresses are public ----------------------------------------------------------


@pytest.mark.parametrize(
    "address, reason",
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),  # IPv4-mapped: judged as the IPv4 address it reaches
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("::ffff:169.254.169.254", "a link-local address (where cloud metadata services answer)"),
        ("2002:7f00:1::1", "a loopback address"),  # 6to4 carrying 127.0.0.1
        ("169.254.169.254", "a link-local address (where cloud metadata services answer)"),
        ("fe80::1", "a link-local address (where cloud metadata services answer)"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),  # is_global holds for it: checked on its own
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("64:ff9b::a00:1", "a reserved address"),  # NAT64 of 10.0.0.1
        ("100.64.0.1", "an address that is not globally routable"),  # shared (carrier NAT)
        ("2001:db8::1", "a private address"),  # documentation
    ],
)
def test_only_globally_routable_addresses_are_public(address, reason):
    assert not_public(ipaddress.ip_address(address)) == reason


# --- at delivery ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1:{port}/hooks", "is a loopback address"),
        ("http://localhost:{port}/hooks?token=s3cret", "resolves to a loopback address"),
        ("http://[::1]:{port}/hooks", "is a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/hooks", "is a loopback address"),
        ("http://2130706433:{port}/hooks", "resolves to a loopback address"),  # 127.0.0.1
        ("http://0.0.0.0:{port}/hooks", "is an unspecified address"),
    ],
)
def test_a_loopback_destination_fails_at_once_and_is_never_connected_to(
    private_receiver, route, url, reason
):
    url = url.format(port=private_receiver.port)
    set_webhook(route.owner, url)
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    notification = stored(notification)
    assert (notification.status, notification.attempts) == ("failed", 1)
    assert notification.last_error == refused(notifications.shown_url(url), reason)
    assert "s3cret" not in notification.last_error
    assert private_receiver.received == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, reason",
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "is a link-local address (where cloud metadata services answer)",
        ),
        ("http://10.1.2.3:8080/", "is a private address"),
        ("https://[fd00::1]/hooks", "is a private address"),
        ("http://100.64.0.1/", "is an address that is not globally routable"),
        ("http://224.0.0.1/", "is a multicast address"),
    ],
)
def test_an_internal_destination_fails_at_once(route, url, reason):
    set_webhook(route.owner, url)
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    assert stored(notification).last_error == refused(notifications.shown_url(url), reason)


@pytest.mark.django_db
def test_a_name_with_any_private_address_is_refused(route, dns):
    # A connection may go to any of a name's addresses: one private one refuses the name.
    dns.answers["mixed.test"] = [PUBLIC, "10.0.0.7"]
    set_webhook(route.owner, "https://mixed.test/hooks")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    assert stored(notification).last_error == refused(
        "https://mixed.test/…", "resolves to a private address"
    )


@pytest.mark.django_db
def test_the_connection_goes_to_the_address_checked(public_receiver, route, dns):
    # DNS rebinding: the name resolves to a public address when checked, then to an internal
    # one. The delivery connects to the address it checked and never asks again.
    dns.answers["rebind.test"] = lambda asked: ["127.0.0.1"] if asked == 1 else ["10.0.0.7"]
    set_webhook(route.owner, f"http://rebind.test:{public_receiver.port}/hooks")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).delivered == 1
    assert dns.asked["rebind.test"] == 1
    (request,) = public_receiver.received
    assert (request.path, request.headers["Host"]) == (
        "/hooks",
        f"rebind.test:{public_receiver.port}",
    )
    assert stored(notification).status == "delivered"


@pytest.mark.django_db
def test_the_next_checked_address_is_tried_when_one_refuses_the_connection(receiver, route, dns):
    # Nothing listens on 127.0.0.2 (the receiver is bound to 127.0.0.1).
    dns.answers["two.test"] = ["127.0.0.2", "127.0.0.1"]
    set_webhook(route.owner, f"http://two.test:{receiver.port}/hooks")
    make_notification(route)
    assert deliver_batch(now=NOW).delivered == 1
    assert dns.asked["two.test"] == 1
    assert [r.path for r in receiver.received] == ["/hooks"]


@pytest.mark.django_db
def test_a_name_resolving_to_loopback_after_it_was_saved_is_refused_when_sent(
    client, alice, blog_team, route, dns, private_receiver
):
    # Checked when saved (public then) and again when sent: DNS changed in between.
    dns.answers["moved.test"] = lambda asked: [PUBLIC] if asked == 1 else ["127.0.0.1"]
    url = f"http://moved.test:{private_receiver.port}/hooks"
    client.force_login(give_role(alice))
    assert (
        client.post(owner_page(blog_team), owner_form(blog_team, webhook_url=url)).status_code
        == 302
    )
    assert Owner.objects.get(pk=blog_team.pk).webhook_url == url
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    assert stored(notification).last_error == refused(
        f"http://moved.test:{private_receiver.port}/…", "resolves to a loopback address"
    )
    assert private_receiver.received == []


@pytest.mark.django_db
def test_a_name_that_does_not_resolve_is_retried(route, dns):
    dns.answers["gone.test"] = []
    set_webhook(route.owner, "https://gone.test/hooks")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    assert stored(notification).last_error.startswith(
        "connection failed: ConnectError: cannot resolve gone.test: [Errno -2] Name or service "
        "not known; attempt 1 of 8"
    )


@pytest.mark.django_db
def test_private_destinations_are_reached_when_allowed(receiver, route, settings):
    assert settings.DQ_WEBHOOK_ALLOW_PRIVATE is True  # the `receiver` fixture's
    set_webhook(route.owner, receiver.url("/hooks"))
    make_notification(route)
    assert deliver_batch(now=NOW).delivered == 1
    assert [r.path for r in receiver.received] == ["/hooks"]


# --- what last_error shows of an answer ----------------------------------------------------


@pytest.mark.django_db
def test_a_public_receivers_body_is_shown_as_one_short_printable_line(public_receiver, route):
    body = "line one\nline two\x1b[31m" + "x" * 100  # the URL within its 200 characters
    set_webhook(route.owner, public_receiver.url(f"/status/400?body={quote(body)}"))
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    shown = ("line one line two\ufffd[31m" + "x" * 100)[:100]
    assert stored(notification).last_error == (
        f"HTTP 400 (expected 2xx): {shown}; not retried: the same request would get the same answer"
    )


@pytest.mark.django_db
def test_a_private_receivers_body_is_not_shown(receiver, route):
    set_webhook(route.owner, receiver.url("/status/400?body=internal secrets"))
    notification = make_notification(route)
    assert deliver_batch(now=NOW).failed == 1
    assert stored(notification).last_error == (
        "HTTP 400 (expected 2xx): (body not shown: private address); not retried: the same "
        "request would get the same answer"
    )


@pytest.fixture
def not_http_service():
    """A service on 127.0.0.1 that answers like Redis, not HTTP (http://127.0.0.1:6379/)."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        connection, _ = server.accept()
        with connection:
            connection.settimeout(5)
            connection.recv(65536)
            connection.sendall(b"-ERR unknown command 'POST', with args beginning with: \r\n")
            # Read the rest until the client hangs up: closing with the request's body unread
            # would reset the connection before the client reads the answer.
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(65536):
                pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(timeout=5)


@pytest.mark.django_db
def test_what_a_private_service_that_is_not_http_says_is_not_shown(
    route, settings, not_http_service
):
    # h11 quotes the line it could not read ("illegal status line: b'-ERR …'").
    settings.DQ_WEBHOOK_ALLOW_PRIVATE = True
    set_webhook(route.owner, f"http://127.0.0.1:{not_http_service}/")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    last_error = stored(notification).last_error
    assert last_error.startswith(
        "connection failed: RemoteProtocolError: the answer was not HTTP (not shown: the "
        "receiver is on a private address); attempt 1 of 8"
    )
    assert "ERR" not in last_error


# --- https: the connection goes to the address, TLS still names the host -------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A certificate authority and a certificate it signed for hooks.test (openssl)."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=dq-registry test authority")  # fmt: skip
    openssl("req", "-x509", *key, "-keyout", "hooks.key", "-out", "hooks.pem", "-days", "2",
            "-subj", "/CN=hooks.test", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-addext", "subjectAltName=DNS:hooks.test", "-addext", "basicConstraints=CA:FALSE",
            "-addext", "extendedKeyUsage=serverAuth")  # fmt: skip
    return folder


@pytest.fixture
def tls_receiver(certificates, settings, monkeypatch):
    """An https receiver on 127.0.0.1 with the certificate of hooks.test, trusted by
    deliveries for this test; `server_names` lists the TLS server names (SNI) it was sent."""
    settings.DQ_WEBHOOK_ALLOW_PRIVATE = True
    server_names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "hooks.pem", certificates / "hooks.key")
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    trusted = ssl.create_default_context(cafile=certificates / "ca.pem")
    monkeypatch.setattr(notifications, "VERIFY", trusted)
    with webhook_receiver(tls=context) as running:
        running.server_names = server_names
        yield running


@pytest.mark.django_db
def test_https_to_the_checked_address_keeps_the_host_name_for_tls(tls_receiver, route, dns):
    dns.answers["hooks.test"] = ["127.0.0.1"]
    set_webhook(route.owner, f"https://hooks.test:{tls_receiver.port}/hooks")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).delivered == 1, stored(notification).last_error
    # The certificate is for hooks.test, not 127.0.0.1: it verified against the name.
    assert tls_receiver.server_names == ["hooks.test"]
    (request,) = tls_receiver.received
    assert request.headers["Host"] == f"hooks.test:{tls_receiver.port}"


@pytest.mark.django_db
def test_https_to_a_host_the_certificate_is_not_for_is_retried(tls_receiver, route, dns):
    dns.answers["other.test"] = ["127.0.0.1"]
    set_webhook(route.owner, f"https://other.test:{tls_receiver.port}/hooks")
    notification = make_notification(route)
    assert deliver_batch(now=NOW).retried == 1
    last_error = stored(notification).last_error
    assert last_error.startswith(
        "connection failed: ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    assert "other.test" in last_error
    assert tls_receiver.received == []


# --- when an owner saves the URL -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, reason",
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "is a link-local address (where cloud metadata services answer)",
        ),
        ("http://127.0.0.1:6379/", "is a loopback address"),
        ("https://internal.test/hooks?token=s3cret", "resolves to a private address"),
    ],
)
def test_an_owner_cannot_save_an_internal_webhook_url(client, alice, blog_team, dns, url, reason):
    dns.answers["internal.test"] = ["10.0.0.7"]
    client.force_login(give_role(alice))
    response = client.post(owner_page(blog_team), owner_form(blog_team, webhook_url=url))
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["webhook_url"] == [
        f"The webhook URL {notifications.shown_url(url)!r} goes to a host that {reason}; "
        "notifications go only to public addresses (DQ_WEBHOOK_ALLOW_PRIVATE is off). Enter a "
        "public http(s) URL."
    ]
    assert Owner.objects.get(pk=blog_team.pk).webhook_url == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        f"https://{PUBLIC}/hooks",
        "https://public.test/hooks",
        "https://not-yet.test/hooks",  # does not resolve (yet): checked when sent
    ],
)
def test_an_owner_saves_a_public_or_unresolved_webhook_url(client, alice, blog_team, dns, url):
    dns.answers["public.test"] = [PUBLIC, "2606:4700:4700::1111"]
    dns.answers["not-yet.test"] = []
    client.force_login(give_role(alice))
    response = client.post(owner_page(blog_team), owner_form(blog_team, webhook_url=url))
    assert response.status_code == 302
    assert Owner.objects.get(pk=blog_team.pk).webhook_url == url


@pytest.mark.django_db
def test_private_webhook_urls_are_saved_when_allowed(client, alice, blog_team, settings):
    settings.DQ_WEBHOOK_ALLOW_PRIVATE = True
    client.force_login(give_role(alice))
    url = "http://10.1.2.3:8080/hooks"
    response = client.post(owner_page(blog_team), owner_form(blog_team, webhook_url=url))
    assert response.status_code == 302
    assert Owner.objects.get(pk=blog_team.pk).webhook_url == url


@pytest.mark.django_db
def test_an_unchanged_webhook_url_is_not_checked_again_on_save(client, alice, blog_team, dns):
    # The contact email changes: the URL saved before stays, whatever it resolves to now
    # (its deliveries say why they fail).
    set_webhook(blog_team, "https://moved.test/hooks")
    blog_team.refresh_from_db()
    dns.answers["moved.test"] = ["127.0.0.1"]
    client.force_login(give_role(alice))
    form = owner_form(blog_team, contact_email="oncall@example.com")
    assert client.post(owner_page(blog_team), form).status_code == 302
    assert dns.asked["moved.test"] == 0
    assert Owner.objects.get(pk=blog_team.pk).contact_email == "oncall@example.com"
