"""ASGI middleware (FastAPI, Starlette): one measurement per routed HTTP request."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from .measure import Exclusions, cache_status_from_asgi
from .reporter import Reporter, get_reporter

log = logging.getLogger("dqclient")


def route_template(scope: dict[str, Any]) -> str | None:
    """The matched route's template, e.g. `/posts/{slug}`; None when nothing matched.

    Starlette's router puts the matched route in `scope["route"]` once it has routed; inside
    a mounted app the route's path is relative to the mount, so the mount's prefix is added.
    """
    route = scope.get("route")
    if route is None:
        return None
    # path_format drops convertors: "/items/{id:int}" -> "/items/{id}".
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return None
    root_path = scope.get("root_path", "")
    app_root_path = scope.get("app_root_path", root_path)
    if root_path != app_root_path and root_path.startswith(app_root_path):
        template = root_path[len(app_root_path) :] + template
    return template


class DQMiddleware:
    """Measure each request: `app.add_middleware(DQMiddleware, exclude=["/health"])`.

    Without a `reporter`, the process-wide one (configured from DQ_* variables) is used.
    Give `engine` (a SQLAlchemy Engine or AsyncEngine, or several) to count db_calls.
    Requests that match no route (404s) are not reported: their raw paths are unbounded.
    """

    def __init__(
        self,
        app: Any,
        reporter: Reporter | None = None,
        *,
        exclude: Iterable[str] = ("/health",),
        engine: Any = None,
    ) -> None:
        self.app = app
        self.reporter = reporter if reporter is not None else get_reporter()
        self.exclude = Exclusions(exclude)
        self._queries = None
        if engine is not None:
            from .sqlalchemy import QueryCounter

            self._queries = QueryCounter(engine)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.exclude:
            await self.app(scope, receive, send)
            return

        response: list[Any] = [500, None]  # status, headers

        async def send_and_watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response[0] = message["status"]
                response[1] = message.get("headers")
            await send(message)

        queries = self._queries
        box = token = None
        if queries is not None:
            box, token = queries.start()
        error = 0
        start = perf_counter()
        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException:
            error = 1
            raise
        finally:
            elapsed_ms = (perf_counter() - start) * 1000.0
            if token is not None:
                queries.stop(token)
            try:
                template = route_template(scope)
                if template is not None:
                    status = response[0]
                    methods = getattr(scope.get("route"), "methods", None)
                    method = scope["method"]
                    # A partial match (405) names a route this method does not have.
                    if not methods or method in methods:
                        self.reporter.record_request(
                            method,
                            template,
                            elapsed_ms,
                            1 if error or status >= 500 else 0,
                            cache_status_from_asgi(response[1]),
                            box[0] if box is not None else None,
                        )
            except Exception:
                log.debug("dqclient: could not record a request", exc_info=True)
