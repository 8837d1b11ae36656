"""Django middleware: add "dqclient.django.DQMiddleware" near the top of MIDDLEWARE.

Settings (all optional; the DQ_* environment variables are the fallback):
DQ_URL, DQ_KEY, DQ_ENVIRONMENT, DQ_RELEASE, DQ_EXCLUDE (paths; a trailing * is a prefix).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from time import perf_counter
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db import connections

from .measure import Exclusions, cache_status, django_route_template
from .reporter import Reporter, get_reporter

log = logging.getLogger("dqclient")

_templates: dict[str, str] = {}


def route_template(request: Any) -> str | None:
    """`posts/<slug:slug>` (Django's resolver route) -> `/posts/{slug}`; None if unresolved."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if not route:
        return None
    template = _templates.get(route)
    if template is None:
        template = _templates[route] = django_route_template(route)
    return template


_from_settings: dict[tuple, Reporter] = {}


def _reporter_from_settings() -> Reporter:
    options = {
        name: getattr(settings, f"DQ_{name.upper()}", None)
        for name in ("url", "key", "environment", "release")
    }
    if not any(options.values()):
        return get_reporter()
    # Django builds its middleware chain once per handler (and tests build many handlers):
    # they all share one reporter per configuration.
    cache_key = tuple(sorted(options.items()))
    reporter = _from_settings.get(cache_key)
    if reporter is None:
        reporter = _from_settings[cache_key] = Reporter(**options)
    return reporter


class _Counter:
    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, execute, sql, params, many, context):
        self.calls += 1
        return execute(sql, params, many, context)


class DQMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any, reporter: Reporter | None = None) -> None:
        self.get_response = get_response
        self.reporter = reporter if reporter is not None else _reporter_from_settings()
        self.exclude = Exclusions(getattr(settings, "DQ_EXCLUDE", ("/health",)))
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        if request.path_info in self.exclude:
            return self.get_response(request)
        counter = _Counter()
        start = perf_counter()
        response = None
        try:
            # Django hands each thread its own connections; wrapping them here counts the
            # queries this request makes, on every configured database.
            with ExitStack() as stack:
                for alias in connections:
                    stack.enter_context(connections[alias].execute_wrapper(counter))
                response = self.get_response(request)
        finally:
            self._record(request, response, start, counter.calls)
        return response

    async def _acall(self, request: Any) -> Any:
        if request.path_info in self.exclude:
            return await self.get_response(request)
        start = perf_counter()
        response = None
        try:
            response = await self.get_response(request)
        finally:
            # Async views run their queries through sync_to_async in other threads, whose
            # connections this middleware cannot wrap: db_calls is not reported here.
            self._record(request, response, start, None)
        return response

    def _record(self, request: Any, response: Any, start: float, db_calls: int | None) -> None:
        elapsed_ms = (perf_counter() - start) * 1000.0
        try:
            template = route_template(request)
            if template is None:
                return
            status = response.status_code if response is not None else 500
            headers = response.headers if response is not None else {}
            self.reporter.record_request(
                request.method,
                template,
                elapsed_ms,
                1 if status >= 500 else 0,
                cache_status(lambda name: headers.get(name)),
                db_calls,
            )
        except Exception:
            log.debug("dqclient: could not record a request", exc_info=True)
