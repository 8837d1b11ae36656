"""A real HTTP receiver for notification tests: http.server on 127.0.0.1 (port 0) in a
thread, recording every request. The path says how to answer:

- `/ok` (or anything else): 200
- `/status/<code>`: that status, with a short body (`?body=<text>`: that text instead);
  `?retry_after=<s>` adds Retry-After
- `/sleep/<seconds>`: answers 200 after sleeping (past the client's timeout)
- `/trickle/<seconds>`: answers 200 a header byte every 0.1 s for that long (never idle long
  enough for a per-read timeout)
"""

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit


class Received(NamedTuple):
    path: str
    headers: dict
    body: dict
    raw: bytes  # the body as sent, for signatures


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        self.server.received.append(
            Received(self.path, dict(self.headers.items()), json.loads(raw or b"null"), raw)
        )
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        query = parse_qs(url.query)
        status, extra = 200, {}
        if parts[0] == "status":
            status = int(parts[1])
            if "retry_after" in query:
                extra["Retry-After"] = query["retry_after"][0]
        elif parts[0] == "sleep":
            time.sleep(float(parts[1]))
        elif parts[0] == "trickle":
            self.trickle(float(parts[1]))
            return
        delay = float(query.get("delay", ["0"])[0])
        if delay:
            time.sleep(delay)
        body = f"receiver says {status}".encode() if status >= 300 else b"thanks"
        if "body" in query:
            body = query["body"][0].encode()
        if "nul" in query:
            body += b"\x00 and more"
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def trickle(self, seconds):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                self.wfile.write(b"z")
                self.wfile.flush()
            except OSError:  # the client gave up
                return
            time.sleep(0.1)
        self.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")

    def log_message(self, *args):
        pass  # quiet tests


class Receiver:
    def __init__(self, server, scheme="http"):
        self.server = server
        host, self.port = server.server_address[:2]
        self.base = f"{scheme}://{host}:{self.port}"

    def url(self, path="/ok"):
        return self.base + path

    @property
    def received(self):
        return list(self.server.received)


@contextmanager
def webhook_receiver(tls=None):
    """A receiver on 127.0.0.1; `tls` (a server-side ssl.SSLContext) makes it https."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True  # a sleeping handler never holds the test run
    server.received = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Receiver(server, "https" if tls is not None else "http")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
