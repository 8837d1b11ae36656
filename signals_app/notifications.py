"""Notifications: incident events sent to the webhook of the route's owner (README,
"Notifications").

Two halves, joined by the `Notification` table (an outbox):

- `record_incident_events(events, now)` runs inside the evaluation pass's transaction
  (`evaluation._apply_incidents`), so an incident change and its notification commit
  together or not at all. One query for the routes and owners of the events, one insert.
- `deliver_batch(limit)` (`manage.py deliver_notifications`) claims due notifications in a
  short transaction, commits, POSTs each one with no transaction open, and records the
  outcome on its row. Delivery is at least once: receivers de-duplicate on `X-DQ-Delivery`.

Claims: on PostgreSQL the claim is SELECT ... FOR UPDATE SKIP LOCKED, and the claimed rows'
`next_attempt_at` moves to the end of a lease (LEASE) with `attempts` + 1, so another delivery
process neither waits for them nor takes them. A batch sends its notifications one after
the other, so the lease must cover the batch, not one request: a batch stops sending when
less than SEND_BUDGET of its lease is left and gives the rest back. An outcome is written
only while the row is still the claim it took (same `attempts`, still pending): a
delivery whose lease ran out (a receiver that trickles its answer for minutes) cannot
overwrite what a later claim recorded. On SQLite writers are serialised (BEGIN IMMEDIATE).

Signing: a delivery to an owner with a signing secret carries `X-DQ-Signature: t=<unix
seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` over the exact bytes sent, signed when it is
sent, so each retry has a fresh timestamp (README, "Verifying a notification").

Destinations: owners set their own webhook URL and read how the receiver answered, so a
delivery goes only to public addresses unless DQ_WEBHOOK_ALLOW_PRIVATE is on (see
"Where a webhook may go" below).
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import Notification, Threshold

logger = logging.getLogger(__name__)


def _version():
    """The registry's version, from pyproject.toml (the project is not installed as a
    package); "unknown" if a deployment left the file out, rather than failing to start."""
    try:
        return tomllib.loads((settings.BASE_DIR / "pyproject.toml").read_text())["project"][
            "version"
        ]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


USER_AGENT = f"dq-registry/{_version()}"

TIMEOUT = 5.0  # seconds, for each of connect, write and read
MAX_ATTEMPTS = 8
BACKOFF_CAP = timedelta(minutes=60)
# A Retry-After (seconds) on 429/503 is honoured when it asks for longer than the backoff,
# up to this.
RETRY_AFTER_CAP = timedelta(hours=24)
BATCH_SIZE = 100
LEASE = timedelta(minutes=5)
# The longest one request may take, whole: TIMEOUT bounds each socket operation only, and a
# receiver that trickles its answer a byte every few seconds never trips it. A request still
# running at SEND_BUDGET is abandoned and retried later (`_post_within`); a batch stops
# sending when less than this is left of its lease.
SEND_BUDGET = timedelta(seconds=30)
# Of a public receiver's error body kept in last_error, as one printable line: enough for an
# error code (Slack's "invalid_token", "channel_not_found"), not a page.
BODY_CHARS = 100

RETRY_STATUSES = {408, 429}  # and every 5xx

SIGNATURE_HEADER = "X-DQ-Signature"


# ---------------------------------------------------------------------------------------------
# Recording events (inside the evaluation pass)
# ---------------------------------------------------------------------------------------------


class IncidentEvent(NamedTuple):
    """An incident opened, escalated or resolved by a pass, as it is after the pass."""

    event: str  # Notification.Event
    incident_id: int
    level: str
    peak_value: float
    opened_at: datetime
    escalated_at: datetime | None
    resolved_at: datetime | None
    threshold: object  # evaluation.ThresholdSpec: the levels the pass judged with
    value: float | None  # the statistic at the event
    # Why it resolved, when not because the statistic recovered: "incident_deleted".
    reason: str | None = None


def _iso(moment):
    return moment.isoformat() if moment is not None else None


def event_payload(event, route, owner_name):
    """The facts of one event (stored on the row; delivery wraps them with "event" and
    "delivery"). `route` is (route_id, service, method, path, signal, environment)."""
    route_id, service, method, path, signal_key, environment = route
    threshold = event.threshold
    return {
        "incident": {
            "id": event.incident_id,
            "level": event.level,
            "peak_value": event.peak_value,
            "opened_at": _iso(event.opened_at),
            "escalated_at": _iso(event.escalated_at),
            "resolved_at": _iso(event.resolved_at),
        },
        "route": {"id": route_id, "service": service, "method": method, "path": path},
        "threshold": {
            "id": threshold.pk,
            "signal": signal_key,
            "environment": environment,
            "statistic": threshold.statistic,
            "cache_segment": threshold.cache_segment,
            "window_minutes": threshold.window_minutes,
            "warn": threshold.warn,
            "critical": threshold.critical,
        },
        "owner": owner_name,
        "value": event.value,
        "reason": event.reason,
    }


def record_incident_events(events, now):
    """Write a pending Notification per event whose route's owner has a webhook URL now.

    Called in the pass's transaction. Two queries however many events (none without
    events): the routes, owners, signals and environments of the events' thresholds, then
    one INSERT that skips an (incident, event) already recorded. Returns how many rows it
    tried to write.
    """
    if not events:
        return 0
    rows = (
        Threshold.objects.filter(pk__in={event.threshold.pk for event in events})
        .exclude(route__owner__webhook_url="")
        .values_list(
            "pk",
            "route__owner_id",
            "route__owner__name",
            "route_id",
            "route__service__slug",
            "route__method",
            "route__path",
            "signal__key",
            "environment__slug",
        )
    )
    facts = {pk: (owner_id, owner_name, route) for pk, owner_id, owner_name, *route in rows}
    notifications = []
    for event in events:
        if event.threshold.pk not in facts:
            continue  # the owner has no webhook URL
        owner_id, owner_name, route = facts[event.threshold.pk]
        notifications.append(
            Notification(
                incident_id=event.incident_id,
                owner_id=owner_id,
                event=event.event,
                payload=event_payload(event, route, owner_name),
                created_at=now,
                next_attempt_at=now,
            )
        )
    Notification.objects.bulk_create(notifications, ignore_conflicts=True)
    return len(notifications)


def record_incident_deleted(sender, instance, **kwargs):
    """pre_delete of Incident (connected in apps.py): an open incident deleted, by itself or
    with its threshold, route or service, is notified as resolved ("reason":
    "incident_deleted"): its owner was paged about it, and an alert that never resolves
    stays open on their side. Its notifications outlive it (they keep the incident's id,
    without a foreign key), so those not sent yet still go, in order. Three queries for an
    open incident (its threshold, the facts, the insert), none for a resolved one."""
    if instance.resolved_at is not None:
        return
    now = timezone.now()
    event = IncidentEvent(
        event=Notification.Event.RESOLVED,
        incident_id=instance.pk,
        level=instance.level,
        peak_value=instance.peak_value,
        opened_at=instance.opened_at,
        escalated_at=instance.escalated_at,
        resolved_at=now,
        threshold=instance.threshold,  # the levels it was judged by
        value=None,
        reason="incident_deleted",
    )
    record_incident_events([event], now)


# ---------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------


class Outcome(NamedTuple):
    kind: str  # delivered, retried, failed, skipped
    status: str
    last_error: str = ""
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


@dataclass
class BatchResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0  # claimed but given back: the lease was running out
    seconds: float = 0.0

    def summary(self):
        line = (
            f"deliver_notifications: {self.delivered} delivered, {self.retried} retried, "
            f"{self.failed} failed, {self.skipped} skipped in {self.seconds:.2f} s"
        )
        if self.released:
            line += f"; {self.released} given back for the next batch (lease running out)"
        return line


def deliver_batch(limit=BATCH_SIZE, *, now=None, timeout=TIMEOUT, deadline=SEND_BUDGET):
    """Claim up to `limit` due notifications, send them, record each outcome.

    `now` fixes the clock (tests); by default each timestamp is the time it is taken.
    `timeout` bounds each socket operation, `deadline` a whole request. An exception while
    sending one notification is recorded on its row (retried later) and the batch goes on.
    """
    started = time.monotonic()
    result = BatchResult()
    claimed = claim(limit, now)
    if claimed:
        stop_at = started + (LEASE - SEND_BUDGET).total_seconds()
        for index, notification in enumerate(claimed):
            if time.monotonic() > stop_at:
                result.released = release(claimed[index:], now)
                break
            outcome = attempt(notification, now, timeout, deadline)
            record(notification, outcome)
            setattr(result, outcome.kind, getattr(result, outcome.kind) + 1)
    result.seconds = time.monotonic() - started
    return result


def claim(limit, now=None):
    """Take up to `limit` due notifications for this process: their lease starts now and
    their attempt is counted. One short transaction: a SELECT (FOR UPDATE SKIP LOCKED on
    PostgreSQL, so two processes never take the same row) and an UPDATE."""
    now = now or timezone.now()
    with transaction.atomic():
        due = _lock_due(limit, now)
        if due:
            Notification.objects.filter(pk__in=[n.pk for n in due]).update(
                attempts=F("attempts") + 1, next_attempt_at=now + LEASE
            )
    for notification in due:
        notification.attempts += 1
        notification.next_attempt_at = now + LEASE
    return due


def _lock_due(limit, now):
    """The due notifications this transaction may take: rows another claim holds are
    skipped, not waited for (PostgreSQL; SQLite ignores FOR UPDATE, one writer at a time)."""
    return list(
        Notification.objects.due(now)
        .select_related("owner")  # the webhook URL as it is now, at delivery
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("next_attempt_at", "pk")[:limit]
    )


def release(notifications, now=None):
    """Give claimed notifications back untried: due at once, their attempt not counted."""
    released = 0
    for notification in notifications:
        released += _still_claimed(notification).update(
            attempts=F("attempts") - 1, next_attempt_at=now or timezone.now()
        )
    return released


def _still_claimed(notification):
    """The row as this process claimed it. The end of the lease identifies the claim: every
    claim and every 'Deliver again' sets `next_attempt_at` anew, while `attempts` alone can
    come back to the same number after 'Deliver again' resets it."""
    return Notification.objects.filter(
        pk=notification.pk,
        status=Notification.Status.PENDING,
        attempts=notification.attempts,
        next_attempt_at=notification.next_attempt_at,
    )


def record(notification, outcome):
    """Write an outcome on the row, only if it is still this process's claim."""
    # A receiver's body may hold a NUL, which PostgreSQL text cannot: the record failed,
    # and the row went round again every lease, never failing for good.
    fields = {"status": outcome.status, "last_error": outcome.last_error.replace("\x00", "\\x00")}
    if outcome.next_attempt_at is not None:
        fields["next_attempt_at"] = outcome.next_attempt_at
    if outcome.delivered_at is not None:
        fields["delivered_at"] = outcome.delivered_at
    updated = _still_claimed(notification).update(**fields)
    log = logger.info if outcome.kind == "delivered" else logger.warning
    if not updated:
        logger.warning(
            "notification %s: outcome %s not recorded: the row changed while it was sent "
            "(its lease ran out and another batch took it, it was deleted, or someone asked "
            "to deliver it again)",
            notification.pk,
            outcome.kind,
        )
        return
    log(
        "notification %s (incident.%s to %s): %s%s",
        notification.pk,
        notification.event,
        notification.owner.name,
        outcome.kind,
        f": {outcome.last_error}" if outcome.last_error else "",
    )


def envelope(notification):
    """The JSON body sent: the event, the delivery id and the stored facts."""
    return {
        "event": f"incident.{notification.event}",
        "delivery": notification.pk,
        **notification.payload,
    }


class Overran(Exception):
    """A request still running at its deadline (abandoned, retried later)."""


def attempt(notification, now=None, timeout=TIMEOUT, deadline=SEND_BUDGET):
    """POST one notification to its owner's webhook URL; the Outcome, never an exception."""
    url = notification.owner.webhook_url
    if not url:
        return Outcome(
            "skipped",
            Notification.Status.SKIPPED,
            f"not sent: the owner {notification.owner.name!r} has no webhook URL; set one, "
            "then 'Deliver again'",
        )
    try:
        status, body, retry_after = _post_within(url, notification, timeout, deadline)
    except RefusedDestination as exc:
        return _failed(
            f"not sent: {refusal_text(url, exc.reason)}. Not retried: set a public URL, then "
            "'Deliver again'"
        )
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeError) as exc:
        # UnicodeError: a host name URLField accepts but IDNA refuses (http://xn--a.com/)
        return _failed(
            f"the webhook URL {shown_url(url)!r} cannot be requested over HTTP(S): {exc}"
        )
    except Overran:
        seconds = deadline.total_seconds()
        return _retry(notification, now, f"no complete answer within {seconds:g} s")
    except httpx.TimeoutException as exc:
        return _retry(notification, now, f"no answer within {timeout:g} s ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return _retry(notification, now, f"connection failed: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - recorded on the row; the batch goes on
        logger.exception("notification %s: unexpected error while sending", notification.pk)
        return _retry(notification, now, f"unexpected error: {type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Outcome(
            "delivered", Notification.Status.DELIVERED, delivered_at=now or timezone.now()
        )
    error = f"HTTP {status} (expected 2xx)"
    # None: the receiver is on a private address, where internal services answer.
    error += ": (body not shown: private address)" if body is None else f": {body}"
    if status in RETRY_STATUSES or status >= 500:
        wait = retry_after if status in (429, 503) else None
        return _retry(notification, now, error, retry_after=wait)
    return _failed(f"{error}; not retried: the same request would get the same answer")


def _post_within(url, notification, timeout, deadline):
    """`_post` with a deadline on the whole request: it runs in a thread of its own, which is
    abandoned at the deadline (its client closed; a daemon thread, it ends with its socket)
    so that one slow receiver cannot hold every other owner's notifications."""
    answer = {}
    transport = PinnedTransport(allow_private=settings.DQ_WEBHOOK_ALLOW_PRIVATE, verify=VERIFY)
    # With a transport of its own the client reads no proxy from the environment
    # (HTTPS_PROXY): a delivery connects to the address it checked, itself.
    client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)

    def send():
        try:
            answer["result"] = _post(client, url, notification)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            answer["error"] = exc

    sender = threading.Thread(target=send, name=f"notification-{notification.pk}", daemon=True)
    sender.start()
    sender.join(deadline.total_seconds())
    client.close()
    if sender.is_alive():
        raise Overran
    if "error" in answer:
        raise answer["error"]
    return answer["result"]


def _post(client, url, notification):
    """(status, the start of the body for non-2xx, Retry-After seconds or None). The body is
    None, not read, when the receiver is on a private address (DQ_WEBHOOK_ALLOW_PRIVATE):
    there internal services answer, and last_error is read by the owner who chose the URL."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-DQ-Event": f"incident.{notification.event}",
        "X-DQ-Delivery": str(notification.pk),
    }
    content = json.dumps(envelope(notification)).encode()
    secret = notification.owner.signing_secret
    if secret:  # else unsigned: an owner that has not generated a secret yet
        headers[SIGNATURE_HEADER] = signature(secret, content, int(time.time()))
    with client.stream("POST", url, content=content, headers=headers) as response:
        if response.is_success:
            return response.status_code, "", None  # the body is not needed
        public = response.extensions.get(PUBLIC_DESTINATION, False)
        return (
            response.status_code,
            _body_start(response) if public else None,
            _retry_after_seconds(response.headers.get("Retry-After")),
        )


def signature(secret, body, timestamp):
    """The X-DQ-Signature value for `body` (the bytes sent) at `timestamp` (unix seconds):
    `t=<timestamp>,v1=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` keyed with the
    secret's UTF-8 bytes. The timestamp is signed too, so a receiver can refuse an old
    request replayed."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _body_start(response):
    """The first characters of an error body as one printable line, read no further (it may
    be large or slow)."""
    data = b""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= BODY_CHARS * 4:
                break
    except httpx.HTTPError as exc:
        return f"(body unreadable: {type(exc).__name__})"
    return _one_line(data.decode("utf-8", errors="replace"))[:BODY_CHARS]


def _one_line(text):
    """`text` on one line of printable characters: each run of whitespace is one space, any
    other control character (a NUL, a terminal escape) is U+FFFD."""
    words = text.split()
    return " ".join("".join(c if c.isprintable() else "\ufffd" for c in w) for w in words)


def shown_url(url):
    """A webhook URL as errors and the admin show it to whoever may not read it whole: scheme
    and host, without what often holds its secret (user and password, path, query; a Slack
    or Teams webhook URL is a credential)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # IPv6
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL that cannot be read)"
    rest = "/…" if (parts.path.strip("/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _retry_after_seconds(value):
    """Retry-After as whole seconds; None when absent or an HTTP date (not used)."""
    value = (value or "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    # Any number of digits may come: more than the cap has is the cap (a timedelta of 10**30
    # seconds is an OverflowError, and int() refuses over 4,300 digits).
    cap = int(RETRY_AFTER_CAP.total_seconds())
    return cap if len(value) > len(str(cap)) else min(int(value), cap)


def _failed(error):
    return Outcome("failed", Notification.Status.FAILED, error)


def backoff(attempts):
    """Wait after a failed attempt number `attempts` (1-based): 1, 2, 4, ... minutes, at most
    BACKOFF_CAP."""
    return min(timedelta(minutes=2 ** (attempts - 1)), BACKOFF_CAP)


def _retry(notification, now, error, *, retry_after=None):
    attempts = notification.attempts
    if attempts >= MAX_ATTEMPTS:
        return _failed(f"{error}; gave up after {attempts} attempts")
    wait = backoff(attempts)
    if retry_after is not None:
        wait = max(wait, min(timedelta(seconds=retry_after), RETRY_AFTER_CAP))
    next_attempt_at = (now or timezone.now()) + wait
    return Outcome(
        "retried",
        Notification.Status.PENDING,
        f"{error}; attempt {attempts} of {MAX_ATTEMPTS}, "
        f"retrying at {next_attempt_at:%Y-%m-%d %H:%M:%S} UTC",
        next_attempt_at=next_attempt_at,
    )


# ---------------------------------------------------------------------------------------------
# Where a webhook may go
# ---------------------------------------------------------------------------------------------
#
# An owner sets their team's webhook URL and reads, in last_error, how the receiver answered.
# A URL into the registry's own network (http://127.0.0.1:6379/, the cloud metadata service
# at 169.254.169.254, a 10.x host) would make the registry request internal services for them
# and show them the answers: server-side request forgery. So, unless DQ_WEBHOOK_ALLOW_PRIVATE
# is on, a delivery resolves the URL's host when it is sent (DNS may have changed since the
# URL was saved) and refuses it when ANY of its addresses is not public. It then connects to
# an address it checked, never resolving the name again: a DNS answer that changes between
# the check and the connection (DNS rebinding) cannot take it elsewhere. The request still
# names the host: the Host header, and for https the TLS server name (SNI) and the check of
# the certificate against it (httpcore's documented `sni_hostname` request extension).
# Redirects are not followed, so a public receiver cannot bounce a delivery inward either.

VERIFY = True  # certificates checked against certifi's authorities (tests trust their own)

# A response extension set by PinnedTransport: True when the address it came from is public,
# so that the start of its body may be shown to the owner.
PUBLIC_DESTINATION = "dq_public_destination"

# Why an address is not public: the first of its ipaddress properties that holds.
_NOT_PUBLIC = [
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address (where cloud metadata services answer)"),
    ("is_multicast", "a multicast address"),
    ("is_reserved", "a reserved address"),
    ("is_private", "a private address"),
]


class RefusedDestination(Exception):
    """A webhook URL whose host has an address deliveries may not go to."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason  # e.g. "resolves to a loopback address"


def not_public(address):
    """Why deliveries may not go to `address` (an ipaddress object), or None when it is
    public. An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address it
    reaches; one carrying a 6to4 address is judged by both."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    judged = [address] + ([address.sixtofour] if address.version == 6 and address.sixtofour else [])
    for candidate in judged:
        for test, reason in _NOT_PUBLIC:
            if getattr(candidate, test):
                return reason
        if not candidate.is_global:  # shared (100.64.0.0/10), documentation, benchmarking…
            return "an address that is not globally routable"
    return None


def resolve(host):
    """The addresses of `host` (a name or an IP literal), in the resolver's order, each once.
    Raises OSError (socket.gaierror) when it does not resolve."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def _refusal(host, addresses):
    """Why `host` may not be sent to, or None: the first of its addresses that is not public.
    ANY such address refuses it, since a connection may go to any of them."""
    for address in addresses:
        reason = not_public(address)
        if reason is not None:
            return f"{'is' if _is_ip_literal(host) else 'resolves to'} {reason}"
    return None


def _is_ip_literal(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def refusal_text(url, reason):
    """What last_error and the admin form say of a refused URL: its scheme and host only."""
    return (
        f"the webhook URL {shown_url(url)!r} goes to a host that {reason}; notifications go "
        "only to public addresses (DQ_WEBHOOK_ALLOW_PRIVATE is off)"
    )


def url_refusal(url):
    """Why a delivery to `url` would be refused now, for a form to say so at once; None when
    its host is public, DQ_WEBHOOK_ALLOW_PRIVATE is on, or the host does not resolve (yet).
    Only a first answer: the delivery checks again, as DNS may change after the URL is saved."""
    if not url or settings.DQ_WEBHOOK_ALLOW_PRIVATE:
        return None
    try:
        host = urlsplit(url).hostname
        reason = host and _refusal(host, resolve(host))
    except (OSError, UnicodeError, ValueError):
        return None  # unresolvable now: the delivery retries, then fails, saying why
    return refusal_text(url, reason) if reason else None


class PinnedTransport(httpx.BaseTransport):
    """httpx's transport, sending each request to an address of its host that was checked:
    with `allow_private` off, a host with any address that is not public is refused
    (RefusedDestination, before any connection). The addresses are tried in the resolver's
    order, the next one when connecting to one fails or times out, as
    socket.create_connection does."""

    def __init__(self, *, allow_private, verify=True):
        self.allow_private = allow_private
        self._transport = httpx.HTTPTransport(verify=verify)

    def handle_request(self, request):
        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"expected an http or https URL; received {request.url.scheme!r}", request=request
            )
        host = request.url.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS need it
        try:
            addresses = resolve(host)
        except OSError as exc:  # socket.gaierror: no such name, or no DNS now; retried
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
        reason = _refusal(host, addresses)
        if reason is not None and not self.allow_private:
            raise RefusedDestination(reason)
        error = None
        for address in addresses:
            public = not_public(address) is None
            try:
                response = self._transport.handle_request(_pinned(request, host, address))
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = exc  # an IPv6 route that goes nowhere, say: the next address
                continue
            except httpx.ProtocolError as exc:
                if public:
                    raise
                # h11 quotes the bytes it could not read ("illegal status line: b'-ERR…'"):
                # what an internal service said stays out of last_error.
                raise type(exc)(
                    "the answer was not HTTP (not shown: the receiver is on a private address)",
                    request=request,
                ) from None
            response.extensions[PUBLIC_DESTINATION] = public
            return response
        raise error

    def close(self):
        self._transport.close()


def _pinned(request, host, address):
    """`request` sent to `address`: its Host header and, for https, the TLS server name and
    certificate check still name `host`."""
    return httpx.Request(
        request.method,
        request.url.copy_with(host=str(address)),
        headers=request.headers,
        stream=request.stream,
        extensions={**request.extensions, "sni_hostname": host},
    )
