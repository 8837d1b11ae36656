"""Middleware of the pages people use (the API has its own, signals_app.api.middleware)."""

from django.http import HttpResponseBadRequest

from .models import MAX_ID

ADMIN_PREFIX = "/admin/"


# Django's date lookups (`?applied_at__year=0`), which build a date from the number.
DATE_PARTS = {"year", "iso_year", "month", "day", "week", "week_day", "iso_week_day", "quarter"}


class AdminInputMiddleware:
    """What Django's admin leaves to a 500, answered with a 400 that says what to change:

    - a NUL (0x00) in a query parameter: every changelist turns its lookup parameters
      (`?release=`, `?path=`) into a filter, and PostgreSQL refuses a NUL in text (a
      DataError); the admin's search form refuses one in `?q=`, not in the lookups;
    - a lookup Django accepts but cannot turn into a date (`?applied_at__year=0`: "year 0 is
      out of range" is a ValueError raised while the changelist is built);
    - an action on rows given by something other than their ids (`_selected_action=abc`:
      "Field 'id' expected a number"). Every model of the registry has integer ids;
    - a whole number beyond the database's integers (`?route=99999999999999999999999` on an
      add form): SQLite raises OverflowError where PostgreSQL finds nothing.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(ADMIN_PREFIX):
            return self.get_response(request)
        if any(
            "\x00" in name or any("\x00" in value for value in values)
            for name, values in request.GET.lists()
        ):
            return HttpResponseBadRequest(
                "A query parameter contains a NUL character (0x00), which no text can hold: "
                "remove it from the address.",
                content_type="text/plain; charset=utf-8",
            )
        if request.method == "POST":
            wrong = [v for v in request.POST.getlist("_selected_action") if not _is_id(v)]
            if wrong:
                return HttpResponseBadRequest(
                    "The selected rows must be given by their ids (whole numbers); received "
                    f"{', '.join(map(repr, wrong))[:200]}.",
                    content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not request.path.startswith(ADMIN_PREFIX):
            return None
        too_large = isinstance(exception, OverflowError) and _too_large_numbers(request)
        if too_large:
            return HttpResponseBadRequest(
                f"A number in the request is too large: {too_large[0][:40]} "
                f"(expected at most {MAX_ID}). Change or remove it.",
                content_type="text/plain; charset=utf-8",
            )
        # Only that case: any other ValueError is a bug, and stays a 500 with its traceback.
        if (
            request.method == "GET"
            and isinstance(exception, ValueError)
            and "out of range" in str(exception)
            and any(name.rsplit("__", 1)[-1] in DATE_PARTS for name in request.GET)
        ):
            return HttpResponseBadRequest(
                f"A query parameter does not fit this page ({exception}): change or remove it "
                "in the address.",
                content_type="text/plain; charset=utf-8",
            )
        return None


def _is_id(value):
    return value.isascii() and value.isdigit()


def _too_large_numbers(request):
    """The whole numbers of the query and form beyond the databases' integers."""
    fields = [*request.GET.lists(), *(request.POST.lists() if request.method == "POST" else ())]
    return [value for _, values in fields for value in values if _too_large(value)]


def _too_large(value):
    digits = value.removeprefix("-").lstrip("0")
    # More than 19 digits is too large whatever they are (and int() of 5,000 digits raises).
    return _is_id(digits) and (len(digits) > 19 or int(digits) > MAX_ID)
