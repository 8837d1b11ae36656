"""OpenAPI: every operation documents its problem-details responses (RFC 9457)."""

from drf_spectacular.openapi import AutoSchema

from .negotiation import JsonOnly
from .problems import CONTENT_TYPE, body
from .serializers import ProblemSerializer

DESCRIPTIONS = {
    400: "Invalid request, parameter or cursor (retryable: false); `errors` lists each field "
    "with what it expected and received",
    401: "Missing, unknown, expired or revoked credentials",
    403: "Authenticated, but not allowed to do this or to name that object",
    404: "No such object or path",
    406: "The Accept header names no JSON type",
    409: "A state conflict: a duplicate of an existing object (named in the detail), or an "
    "Idempotency-Key still running (retryable after Retry-After)",
    413: "Body over 1 MiB or more than 1,000 readings",
    415: "The body is not JSON, or is compressed (only Content-Encoding identity)",
    422: "Idempotency-Key reused with another body",
    429: "Rate limit of the key reached; see Retry-After (retryable: true)",
    500: "Unexpected error, logged",
    503: "The database is unavailable; see Retry-After (retryable: true)",
}

EXAMPLE_DETAILS = {
    400: "1 invalid field(s) in the batch; nothing was stored. First: readings[0].value: "
    "must be a finite number",
    401: "the API key is unknown",
    403: "route GET /search belongs to another service; this key posts only for service blog",
    404: "no route with id 987654",
    409: "a request with Idempotency-Key 'req-1' is still being processed",
    413: "1001 readings in one request; send at most 1000",
    415: "send the readings as JSON (Content-Type: application/json)",
    422: "Idempotency-Key 'req-1' was used with another request body; use a new key",
    429: "Request was throttled. Expected available in 12 seconds.",
    503: "the database is unavailable; retry later",
}


def _example(status):
    errors = []
    if status == 400:
        errors = [
            {
                "index": 0,
                "field": "value",
                "message": "must be a finite number",
                "expected": "a finite JSON number",
                "received": "NaN",
            }
        ]
    detail = EXAMPLE_DETAILS.get(status, "an unexpected error occurred")
    # The 409 example is the Idempotency-Key still running, which a retry may replay.
    return body(status, detail, errors=errors, retryable=True if status == 409 else None)


class ProblemAutoSchema(AutoSchema):
    def _problem_statuses(self):
        statuses = {401, 403, 500, 503}
        if getattr(self.view, "content_negotiation_class", None) is not JsonOnly:
            statuses.add(406)
        if self.method in ("POST", "PUT", "PATCH"):
            statuses |= {400, 409, 413, 415}
        if self.method == "GET":
            statuses |= {400, 404}  # bad filter value or cursor; unknown object
        if "{" in self.path:
            statuses.add(404)
        if getattr(self.view, "throttle_classes", None):
            statuses.add(429)
        if getattr(self.view, "idempotency_header", False):
            statuses.add(422)
        return statuses

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status in sorted(self._problem_statuses()):
            code = str(status)
            if code in responses:
                continue
            response = self._get_response_for_code(
                ProblemSerializer, code, [CONTENT_TYPE], direction
            )
            response["description"] = DESCRIPTIONS[status]
            response["content"][CONTENT_TYPE]["examples"] = {
                f"problem{status}": {"summary": DESCRIPTIONS[status], "value": _example(status)}
            }
            responses[code] = response
        return responses


def without_trailing_slashes(result, generator, request, public):
    """Paths as DESIGN.md writes them: `/api/v1/routes`, not `/api/v1/routes/`.

    The URL patterns accept both (`/?`); drf-spectacular renders the optional slash.
    """
    result["paths"] = {
        (path.rstrip("/") or "/"): operations for path, operations in result["paths"].items()
    }
    return result


def closed_request_bodies(result, generator, request, public):
    """Request bodies take only their writable fields (serializers.StrictBody): say so,
    `additionalProperties: false`, so a client generator or fuzzer knows an extra key is
    refused. (A read-only field sent back unchanged is accepted too, beyond the schema.)"""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
