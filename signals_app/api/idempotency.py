"""The `Idempotency-Key` request header (IETF httpapi draft), per service.

The first request inserts a RUNNING row in its own transaction, so a concurrent retry
with the same key hits the unique constraint and gets 409 instead of running twice.
The response is stored with the row in the transaction that stores the readings; a
retry with the same body replays it (`Idempotent-Replayed: true`), another body is 422.
A failed request removes its row, so the client may retry it.
"""

import contextlib
import hashlib
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from signals_app.models import IdempotentRequest

from .problems import Problem, item_error

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
# A RUNNING row older than this belongs to a request that died (worker killed).
STALE_AFTER = timedelta(minutes=2)
IN_PROGRESS_RETRY_AFTER_SECONDS = 1


def fingerprint(raw_body):
    return hashlib.sha256(raw_body).hexdigest()


def malformed(key):
    """The 400 Problem for a header value that is no key (empty, too long), else None.

    ApiProblemMiddleware asks it on every API request: an empty header is a mistake
    whichever endpoint it is sent to, not a request without a key."""
    if key and len(key) <= MAX_LENGTH:
        return None
    return Problem(
        400,
        f"the {HEADER} header must be 1 to {MAX_LENGTH} characters; "
        f"received {'an empty one' if not key else f'{len(key)} characters'}",
        errors=[
            item_error(
                HEADER,
                "empty" if not key else "too long",
                expected=f"1 to {MAX_LENGTH} characters",
                received=len(key),
            )
        ],
    )


def header_key(request):
    key = request.headers.get(HEADER)
    if key is None:
        return None
    problem = malformed(key)
    if problem is not None:
        raise problem
    return key


def begin(service, key, digest):
    """Claim the key: returns (record, None) to run, or (None, stored record) to replay."""
    try:
        with transaction.atomic():
            record = IdempotentRequest.objects.create(service=service, key=key, fingerprint=digest)
        return record, None
    except IntegrityError:
        pass
    existing = IdempotentRequest.objects.filter(service=service, key=key).first()
    if existing is None:  # the first request failed and removed its row meanwhile
        return begin(service, key, digest)
    if existing.fingerprint != digest:
        raise Problem(
            422,
            f"{HEADER} {key!r} was used with another request body; use a new key",
            slug="idempotency-key-reused",
            errors=[item_error(HEADER, "key reused with another body", received=key)],
        )
    if existing.state == IdempotentRequest.State.DONE:
        return None, existing
    stale = timezone.now() - STALE_AFTER
    taken_over = IdempotentRequest.objects.filter(
        pk=existing.pk, state=IdempotentRequest.State.RUNNING, created_at__lt=stale
    ).update(created_at=timezone.now())
    if taken_over:
        return existing, None
    raise Problem(
        409,
        f"a request with {HEADER} {key!r} is still being processed; retry after it finishes",
        slug="idempotency-key-in-use",
        errors=[item_error(HEADER, "request in progress", received=key)],
        # The same request, retried a moment later, replays the first one's response.
        retryable=True,
        headers={"Retry-After": str(IN_PROGRESS_RETRY_AFTER_SECONDS)},
    )


def finish(record, status, body):
    """Store the response; call inside the transaction that did the work."""
    record.state = IdempotentRequest.State.DONE
    record.response_status = status
    record.response_body = body
    record.save(update_fields=["state", "response_status", "response_body"])


def abandon(record):
    # The database may be what failed; then the row goes stale instead.
    with contextlib.suppress(DatabaseError):
        IdempotentRequest.objects.filter(
            pk=record.pk, state=IdempotentRequest.State.RUNNING
        ).delete()
