"""Middleware of the pages people use (the API has its own, signals_app.api.middleware)."""

from django.http import HttpResponseBadRequest

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
      "Field 'id' expected a number"). Every model of the registry has integer ids.
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
        # Only that case: any other ValueError is a bug, and stays a 500 with its traceback.
        if (
            request.method == "GET"
            and request.path.startswith(ADMIN_PREFIX)
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
