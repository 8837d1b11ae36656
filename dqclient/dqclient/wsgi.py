"""WSGI middleware: one measurement per request, timed until the response is closed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from .measure import Exclusions, cache_status_from_wsgi, compile_templates
from .reporter import Reporter, get_reporter

log = logging.getLogger("dqclient")


class DQMiddleware:
    """Wrap a WSGI app: `app = DQMiddleware(app, routes=["/posts/{slug}"])`.

    Plain WSGI has no router to ask, so the route template comes from `routes` (templates
    matched against PATH_INFO; paths that match none are not reported) or from
    `route_for(environ)` (return None to skip). With neither, the raw path is reported:
    fine for apps without path parameters, wrong for `/posts/42`.
    """

    def __init__(
        self,
        app: Callable,
        reporter: Reporter | None = None,
        *,
        exclude: Iterable[str] = ("/health",),
        routes: Iterable[str] | None = None,
        route_for: Callable[[dict], str | None] | None = None,
        engine: Any = None,
    ) -> None:
        self.app = app
        self.reporter = reporter if reporter is not None else get_reporter()
        self.exclude = Exclusions(exclude)
        if route_for is None and routes is not None:
            match = compile_templates(routes)

            def route_for(environ: dict) -> str | None:
                return match(environ.get("PATH_INFO") or "/")

        self.route_for = route_for
        self._queries = None
        if engine is not None:
            from .sqlalchemy import QueryCounter

            self._queries = QueryCounter(engine)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") or "/") in self.exclude:
            return self.app(environ, start_response)
        state = _Request(self, environ)

        def start_and_watch(status: str, headers: list, exc_info: Any = None) -> Callable:
            state.status = int(status[:3])
            state.headers = headers
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, start_and_watch)
        except BaseException:
            state.error = 1
            state.finish()
            raise
        if isinstance(result, (list, tuple)):
            state.finish()
            return result
        return _ClosingIterable(result, state)


class _Request:
    __slots__ = ("middleware", "environ", "start", "status", "headers", "error", "box", "token")

    def __init__(self, middleware: DQMiddleware, environ: dict) -> None:
        self.middleware = middleware
        self.environ = environ
        self.status = 500
        self.headers = None
        self.error = 0
        self.box = self.token = None
        if middleware._queries is not None:
            self.box, self.token = middleware._queries.start()
        self.start = perf_counter()

    def finish(self) -> None:
        elapsed_ms = (perf_counter() - self.start) * 1000.0
        middleware = self.middleware
        try:
            if self.token is not None:
                middleware._queries.stop(self.token)
                self.token = None
            environ = self.environ
            route_for = middleware.route_for
            route = route_for(environ) if route_for is not None else environ.get("PATH_INFO")
            if route is None:
                return
            middleware.reporter.record_request(
                environ.get("REQUEST_METHOD", "GET"),
                route,
                elapsed_ms,
                1 if self.error or self.status >= 500 else 0,
                cache_status_from_wsgi(self.headers),
                self.box[0] if self.box is not None else None,
            )
        except Exception:
            log.debug("dqclient: could not record a request", exc_info=True)


class _ClosingIterable:
    """Passes the body through; the measurement ends when the server closes the response."""

    __slots__ = ("result", "state")

    def __init__(self, result: Iterable[bytes], state: _Request) -> None:
        self.result = result
        self.state = state

    def __iter__(self):
        try:
            yield from self.result
        except BaseException:
            self.state.error = 1
            raise

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.state.finish()
