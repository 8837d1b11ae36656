"""Problem details for what happens under /api/ outside a DRF view, and the body guard."""

import io
import logging

from django.db import InterfaceError, OperationalError

from . import idempotency, problems

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
# DESIGN.md: a readings body is at most 1 MiB; no API body needs more.
MAX_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


def too_large():
    return problems.json_response(
        413,
        f"the request body is larger than {MAX_BODY_BYTES} bytes (1 MiB); "
        "send fewer readings per request",
        errors=[problems.item_error(None, "body too large", expected=f"<= {MAX_BODY_BYTES} bytes")],
    )


def _has_body(meta):
    declared = meta.get("CONTENT_LENGTH")
    return (
        declared not in (None, "", "0")
        or "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
    )


def refuse_headers(request):
    """A compressed body is a 415 naming its coding (it would fail as JSON that is not
    UTF-8); an empty or over-long Idempotency-Key is a 400 naming the header."""
    meta = request.META
    coding = meta.get("HTTP_CONTENT_ENCODING", "").strip()
    if coding and coding.lower() != "identity" and _has_body(meta):
        return problems.json_response(
            415,
            f"Content-Encoding {coding} is not supported; send the body uncompressed (identity)",
            headers={"Accept-Encoding": "identity"},
            errors=[
                problems.item_error(
                    "Content-Encoding",
                    "unsupported content coding",
                    expected=["identity"],
                    received=problems.shown(coding),
                )
            ],
        )
    key = meta.get("HTTP_IDEMPOTENCY_KEY")
    problem = idempotency.malformed(key) if key is not None else None
    if problem is not None:
        return problems.json_response(problem.status_code, problem.detail, errors=problem.errors)
    return None


def guard_body(request):
    """Refuse a body over 1 MiB before anything reads or parses it.

    A declared Content-Length over the limit is refused unread; Django then never reads
    more than the declared length, so a lying (short) length only truncates the body,
    which fails as invalid JSON. Without a Content-Length (chunked transfer), the stream
    is read only where the server marks it terminated (gunicorn), and at most one byte
    past the limit.
    """
    meta = request.META
    declared = meta.get("CONTENT_LENGTH")
    if declared not in (None, ""):
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            return problems.json_response(400, "the Content-Length header is not a byte count")
        return too_large() if length > MAX_BODY_BYTES else None
    if "chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    if not meta.get("wsgi.input_terminated"):
        return None  # the server cannot delimit the body; Django sees it as empty
    stream, data, size = meta["wsgi.input"], [], 0
    while size <= MAX_BODY_BYTES:
        chunk = stream.read(min(_CHUNK, MAX_BODY_BYTES + 1 - size))
        if not chunk:
            break
        data.append(chunk)
        size += len(chunk)
    if size > MAX_BODY_BYTES:
        return too_large()
    payload = b"".join(data)
    # Hand the body to Django (and DRF, which reads only when CONTENT_LENGTH is set).
    meta["CONTENT_LENGTH"] = str(len(payload))
    request._stream = io.BytesIO(payload)
    request._read_started = False
    return None


def _wants_conversion(response):
    content_type = response.get("Content-Type", "")
    return response.status_code >= 400 and not content_type.startswith(problems.CONTENT_TYPE)


class ApiProblemMiddleware:
    """Under /api/: 413 before parsing, and problem details for 404/405/500 outside DRF."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        refused = refuse_headers(request) or guard_body(request)
        if refused is not None:
            return refused
        response = self.get_response(request)
        if _wants_conversion(response):
            status = response.status_code
            detail = {
                404: f"no API resource at {request.path}",
                405: f"{request.method} is not allowed on {request.path}",
            }.get(status, "the request failed")
            converted = problems.json_response(status, detail)
            if response.has_header("Allow"):
                converted["Allow"] = response["Allow"]
            return converted
        return response

    def process_exception(self, request, exception):
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable: %s", exception)
            return problems.json_response(
                503,
                "the database is unavailable; retry later",
                slug="database-unavailable",
                headers={"Retry-After": str(problems.DATABASE_RETRY_AFTER_SECONDS)},
            )
        logger.error("unexpected error under /api/", exc_info=exception)
        return problems.json_response(500, "an unexpected error occurred; it has been logged")
