"""Middleware of the pages people use (the API has its own, signals_app.api.middleware)."""

from django.http import HttpResponseBadRequest

ADMIN_PREFIX = "/admin/"


def refuse_nul_in_admin_query(get_response):
    """A NUL (0x00) in a query parameter of an admin page is a 400 saying so.

    Every changelist turns its lookup parameters (`?release=`, `?path=`) into a filter, and
    PostgreSQL refuses a NUL in text: each was a 500 (DataError). The admin's search form
    refuses one in `?q=`, not in the lookups.
    """

    def middleware(request):
        if request.path.startswith(ADMIN_PREFIX) and any(
            "\x00" in name or any("\x00" in value for value in values)
            for name, values in request.GET.lists()
        ):
            return HttpResponseBadRequest(
                "A query parameter contains a NUL character (0x00), which no text can hold: "
                "remove it from the address.",
                content_type="text/plain; charset=utf-8",
            )
        return get_response(request)

    return middleware
