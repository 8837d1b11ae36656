"""RFC 9457 problem details: the one shape of every API error.

`{"type", "title", "status", "detail", "retryable", "errors": [{"index", "field",
"message", "expected", "received"}]}` with `Content-Type: application/problem+json`.
DRF views get it through `exception_handler`; what happens outside a DRF view under
/api/ (unknown paths, uncaught errors) gets it through `ApiProblemMiddleware`.
"""

import logging
import math
from http import HTTPStatus

from django import forms
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.signals import got_request_exception
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, relations, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:dq-registry:problem:"
# Clients retry only what says so (DESIGN.md): rate limits and an unavailable database.
RETRYABLE_STATUSES = {429, 503}
DATABASE_RETRY_AFTER_SECONDS = 5

_TYPES = {
    400: "invalid-request",
    401: "not-authenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "unprocessable",
    429: "rate-limited",
    500: "server-error",
    503: "unavailable",
}


class ProblemResponse(Response):
    """Always JSON, whatever renderer the request negotiated (even the browsable API)."""

    @property
    def rendered_content(self):
        self.accepted_renderer = JSONRenderer()
        self.accepted_media_type = CONTENT_TYPE
        return super().rendered_content


def problem_type(status, slug=None):
    return TYPE_PREFIX + (slug or _TYPES.get(status, str(status)))


class Problem(exceptions.APIException):
    """An API error with an explicit type, title and per-item errors."""

    def __init__(
        self,
        status,
        detail,
        *,
        slug=None,
        title=None,
        errors=(),
        retryable=None,
        headers=None,
    ):
        self.status_code = status
        self.detail = detail
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.errors = list(errors)
        self.retryable = status in RETRYABLE_STATUSES if retryable is None else retryable
        self.headers = headers or {}
        super().__init__(detail)


class Described:
    """What an error of one body key expected and received, when the key's field cannot say
    it itself: an unknown key, a read-only one, or a rule over several fields (a serializer
    sets these in `described`, by key)."""

    def __init__(self, expected, received):
        self.expected = expected
        self.received = received


def item_error(field, message, *, index=None, expected=None, received=None):
    return {
        "index": index,
        "field": field,
        "message": message,
        "expected": expected,
        "received": received,
    }


def body(status, detail, *, slug=None, title=None, errors=(), retryable=None):
    return {
        "type": problem_type(status, slug),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "retryable": status in RETRYABLE_STATUSES if retryable is None else retryable,
        "errors": list(errors),
    }


def json_response(status, detail, *, headers=None, **fields):
    """A problem response built outside DRF (middleware, Django error handlers)."""
    response = JsonResponse(
        body(status, detail, **fields), status=status, content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def shown(value):
    """A JSON-safe, short rendering of what the client sent, for `received`."""
    if isinstance(value, float) and not math.isfinite(value):  # as JSON's tokens spell them
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)[:40]
    if isinstance(value, str):
        value = value if len(value) <= 200 else value[:200] + "…"
        return value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, (dict, list)):
        return f"<{type(value).__name__}>"
    return value


def not_found(model, field, value):
    """A 404 that says what is missing: `no route with id 5`, `no signal with key 'x'`."""
    field = "id" if field == "pk" else field
    shown_value = value if isinstance(value, int) or str(value).isdigit() else repr(value)
    return exceptions.NotFound(f"no {model._meta.verbose_name} with {field} {shown_value}")


def get_or_404(queryset, **lookup):
    """The one object of `queryset` matching the single `lookup`, else `not_found`."""
    ((field, value),) = lookup.items()
    try:
        return queryset.get(**lookup)
    except queryset.model.DoesNotExist:
        raise not_found(queryset.model, field, value) from None


class NamesMissingObject:
    """A generic view mixin: its 404 says which resource and id (`no threshold with id
    13`), not DRF's bare "Not found."."""

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            value = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
            raise not_found(self.get_queryset().model, self.lookup_field, value) from None


# A related field lists the names it accepts when there are at most this many.
MAX_KNOWN = 20
TIMESTAMP = "an ISO 8601 date-time with a UTC offset, e.g. 2026-11-26T07:00:00Z"


def known(queryset, name):
    """The existing values of `name` (when few), else words saying what is expected."""
    values = list(queryset.order_by(name).values_list(name, flat=True)[: MAX_KNOWN + 1])
    if 0 < len(values) <= MAX_KNOWN:
        return values
    return f"an existing {queryset.model._meta.verbose_name} {name}"


def _within(kind, low, high):
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def expected(field):
    """What a serializer field or a form field (query parameter) accepts, for `expected`:
    words, or the list of its choices. A field may say it itself (`expected = "..."`)."""
    if field is None:
        return None
    if getattr(field, "expected", None):
        return field.expected
    if isinstance(field, relations.PrimaryKeyRelatedField):
        return f"an integer id of an existing {field.queryset.model._meta.verbose_name}"
    if isinstance(field, relations.SlugRelatedField):
        return known(field.queryset, field.slug_field)
    if isinstance(field, forms.ModelChoiceField):
        return known(field.queryset, field.to_field_name or "pk")
    if isinstance(field, (serializers.ChoiceField, forms.ChoiceField)):
        if isinstance(field.choices, dict):  # DRF: {value: label}
            values = list(field.choices)
        else:  # Django: [(value, label)], with django-filter's blank choice
            values = [value for value, _ in field.choices]
        return [value for value in values if value != ""]
    if isinstance(field, (serializers.BooleanField, forms.BooleanField)):
        return "true or false"
    if isinstance(field, (serializers.FloatField, forms.FloatField)):  # before IntegerField:
        return _within("a finite number", field.min_value, field.max_value)  # forms' subclass
    if isinstance(field, (serializers.IntegerField, forms.IntegerField)):
        return _within("an integer", field.min_value, field.max_value)
    if isinstance(field, (serializers.DateTimeField, forms.DateTimeField)):
        return TIMESTAMP
    if isinstance(field, (serializers.CharField, forms.CharField)):
        limit = field.max_length
        return f"a string of at most {limit} characters" if limit else "a string"
    return None


def _child(spec, name):
    """The field `name` of a serializer (or of each item of a many=True one)."""
    spec = getattr(spec, "child", spec)
    described = getattr(spec, "described", None)
    if described and name in described:
        return described[name]
    fields = getattr(spec, "fields", None)
    return fields.get(name) if fields is not None else None


def _flatten(detail, data, field=None, index=None, spec=None):
    """DRF ValidationError detail (nested dicts/lists) -> flat `errors` items.

    `spec` is the serializer (then its fields) that raised it, for `expected`.
    """
    if isinstance(detail, dict):
        for name, sub in detail.items():
            sub_field = name if name != "non_field_errors" else None
            if field:
                sub_field = f"{field}.{name}" if sub_field else field
            sub_data = data.get(name) if isinstance(data, dict) else None
            yield from _flatten(sub, sub_data, sub_field, index, _child(spec, name))
    elif isinstance(detail, list):
        if detail and all(isinstance(d, (dict, list)) for d in detail):
            # many=True: one entry per item
            for position, sub in enumerate(detail):
                sub_data = (
                    data[position] if isinstance(data, list) and position < len(data) else None
                )
                yield from _flatten(sub, sub_data, field, position, getattr(spec, "child", spec))
        else:
            for message in detail:
                yield from _flatten(message, data, field, index, spec)
    elif isinstance(spec, Described):
        yield item_error(
            field, str(detail), index=index, expected=spec.expected, received=spec.received
        )
    else:
        described = None if isinstance(spec, serializers.BaseSerializer) else expected(spec)
        yield item_error(
            field,
            str(detail),
            index=index,
            expected=described,
            # Not the whole body (or query) for an error of no one field.
            received=None if field is None and isinstance(data, dict) else shown(data),
        )


def summary(errors):
    """The `detail` of a problem listing invalid fields: the first five of them."""
    detail = "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors[:5]
    )
    return detail or "the request is invalid"


def _suspects(context):
    """': check the path's pk, the query parameters a, b, the body fields c, d': the parts of
    the request that a value out of range can have come from ("" when it had none)."""
    request = context.get("request")
    parts = []
    if context.get("kwargs"):
        parts.append("the path's " + ", ".join(context["kwargs"]))
    if request is not None and getattr(request, "query_params", None):
        parts.append("the query parameters " + ", ".join(sorted(request.query_params)))
    data = _request_data(context)
    if isinstance(data, dict) and data:
        parts.append("the body fields " + ", ".join(sorted(str(name) for name in data)[:20]))
    elif data:
        parts.append("the body")
    return ": check " + "; ".join(parts) if parts else ""


def _request_data(context):
    request = context.get("request")
    try:
        return request.data if request is not None else None
    except Exception:  # the body itself may be what failed
        return None


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every exception of an API view becomes a problem."""
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES when it loads, and
    # our parser (signals_app.api.parsers) imports this module.
    from rest_framework.views import set_rollback

    headers = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, Problem):
        data = body(
            exc.status_code,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            errors=exc.errors,
            retryable=exc.retryable,
        )
        headers.update(exc.headers)
    elif isinstance(exc, exceptions.APIException):
        status = exc.status_code
        errors = []
        if isinstance(exc, exceptions.ValidationError):
            # A serializer's errors carry the serializer: its fields say what they expect,
            # and its input (a body or the query parameters) what was received.
            serializer = getattr(exc.detail, "serializer", None)
            data = getattr(serializer, "initial_data", None)
            if data is None:
                data = _request_data(context)
            errors = list(_flatten(exc.detail, data, spec=serializer))
            detail = summary(errors)
        else:
            detail = str(exc.detail)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.Throttled):
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait or 1)))
        data = body(status, detail, errors=errors)
    elif isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc)
        data = body(503, "the database is unavailable; retry later", slug="database-unavailable")
        headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    elif isinstance(exc, UnicodeEncodeError):
        # JSON may carry a lone surrogate (\ud800), which no database text can hold.
        data = body(400, "a string is not valid Unicode text (lone surrogate)")
    elif isinstance(exc, (DataError, OverflowError)):
        # A value the validation let through but the database (or a date) cannot hold: the
        # input is at fault, not the server. Neither says which value: the detail names the
        # parts of the request it can have come from.
        logger.warning("data error: %s", exc)
        data = body(400, "a value is out of range for the database" + _suspects(context))
    elif isinstance(exc, IntegrityError):
        # A concurrent change won a race the validation could not see (e.g. a deleted route).
        logger.warning("integrity error: %s", exc)
        data = body(409, "a concurrent change conflicts with this request; read and retry")
    else:
        if isinstance(exc, DatabaseError):
            logger.error("database error", exc_info=exc)
        else:
            logger.error("unexpected error in an API view", exc_info=exc)
        request = context.get("request")
        # As Django does for a 500, so the test client re-raises what went wrong.
        got_request_exception.send(sender=None, request=getattr(request, "_request", request))
        data = body(500, "an unexpected error occurred; it has been logged")

    set_rollback()
    return ProblemResponse(data, status=data["status"], headers=headers, content_type=CONTENT_TYPE)
