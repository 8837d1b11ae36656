"""The HTTP side: one POST of a JSON body, with the standard library only."""

from __future__ import annotations

import contextlib
import http.client
import socket
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

# The registry's answers are small; never read an unbounded body into the service's memory.
MAX_RESPONSE_BYTES = 64 * 1024


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Transport(Protocol):
    def __call__(self, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        """POST body; return the response, or raise OSError/HTTPException on network failure."""


def readings_url(url: str) -> str:
    """DQ_URL may be the registry's base URL, its API's (`.../api/v1`) or the full
    ingestion URL, each with or without a trailing slash."""
    if not isinstance(url, str):
        raise ValueError(f"DQ_URL must be an http(s) URL like https://dq.example.com, got {url!r}")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"DQ_URL must be an http(s) URL like https://dq.example.com, got {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/api/v1"):
        path += "/readings"
    elif not path.endswith("/api/v1/readings"):
        path += "/api/v1/readings"
    return f"{parts.scheme}://{parts.netloc}{path}"


class HttpTransport:
    """POST with http.client: a fresh connection per batch.

    A batch goes out every few seconds at most, so keeping connections alive would save
    little and add the stale-connection cases; one connection per batch is simpler.
    """

    def __init__(self, url: str) -> None:
        self.url = readings_url(url)
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._conn: http.client.HTTPConnection | None = None

    def __call__(self, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn = conn
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(MAX_RESPONSE_BYTES)
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            self._conn = None
            conn.close()

    def abort(self) -> None:
        """Cut the request in flight (from another thread): a stalled registry must not
        hold the service's shutdown for a whole socket timeout."""
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to cut
                sock.shutdown(socket.SHUT_RDWR)
