"""db_calls for services on SQLAlchemy: count cursor executions per request."""

from __future__ import annotations

import weakref
from contextvars import ContextVar, Token
from typing import Any

# The request being measured holds a one-item list; the listener adds to it. A mutable box
# survives the context copy made when a sync endpoint runs in a worker thread.
_current: ContextVar[list[int] | None] = ContextVar("dqclient_db_calls", default=None)
_instrumented: weakref.WeakSet[Any] = weakref.WeakSet()


def _count(conn, cursor, statement, parameters, context, executemany) -> None:
    box = _current.get()
    if box is not None:
        box[0] += 1


class QueryCounter:
    """Listens to `before_cursor_execute` on the given engines (Engine or AsyncEngine)."""

    def __init__(self, engines: Any) -> None:
        from sqlalchemy import event

        if not isinstance(engines, (list, tuple, set)):
            engines = [engines]
        for engine in engines:
            sync_engine = getattr(engine, "sync_engine", engine)
            if sync_engine not in _instrumented:
                event.listen(sync_engine, "before_cursor_execute", _count)
                _instrumented.add(sync_engine)

    @staticmethod
    def start() -> tuple[list[int], Token]:
        box = [0]
        return box, _current.set(box)

    @staticmethod
    def stop(token: Token) -> None:
        _current.reset(token)
