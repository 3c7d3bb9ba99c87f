"""A stand-in for the user's app: a small JSON HTTP service that answers from the query.

It binds 127.0.0.1 on a free port (threaded stdlib server) and serves:

- `POST /chat` with a JSON body: the query is read from `query_field` (default "query") and the
  answer is `{"data": {"answer": "answer to: <query>", "length": n}, "request_id": ...}`;
- `GET /search?q=...`: the same answer for the query in `q`.

Faults are chosen by markers inside the query, so a test decides per query what happens:

- `[500]`: always HTTP 500;
- `[429]`: the first request for that query gets 429 with `Retry-After: <retry_after>`, later
  ones succeed;
- `[flaky]`: the first request gets 503 (no Retry-After), later ones succeed;
- `[slow]`: answers after `slow_seconds`;
- `[text]`: answers 200 with a body that is not JSON.

`token`: when set, requests must carry `Authorization: Bearer <token>` or get 401.
Everything is recorded: `requests` (method, path, headers, body), `hits(query)`.

    with TargetApp() as app:
        url = app.url("/chat")
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    query: str | None


class TargetApp:
    def __init__(self, *, query_field: str = "query", token: str | None = None,
                 retry_after: float = 0.1, slow_seconds: float = 0.3) -> None:
        self.query_field = query_field
        self.token = token
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.requests: list[SeenRequest] = []
        self._hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TargetApp:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self), bind_and_activate=False)
        httpd.request_queue_size = 128
        httpd.daemon_threads = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-target-app")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> TargetApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "/chat") -> str:
        assert self._httpd is not None, "start the app first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def hits(self, query: str) -> int:
        """How many requests carried this query."""
        with self._lock:
            return self._hits[query]

    # ------------------------------------------------------------------ answering

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict]:
        query: str | None = None
        body: Any = None
        if method == "GET" and path.startswith("/search"):
            query = (parse_qs(urlsplit(path).query).get("q") or [""])[0]
        elif method == "POST" and path == "/chat":
            try:
                body = json.loads(raw or b"null")
            except ValueError as exc:
                return 400, {"error": f"body is not JSON: {exc}"}, {}
            if not isinstance(body, dict) or not isinstance(body.get(self.query_field), str):
                return 400, {"error": f"body needs a string field '{self.query_field}'"}, {}
            query = body[self.query_field]
        with self._lock:
            self.requests.append(SeenRequest(method, path, headers, body, query))
            if query is not None:
                self._hits[query] += 1
                attempt = self._hits[query]
        if query is None:
            return 404, {"error": f"{method} {path} is not served"}, {}
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "missing or wrong token"}, {}
        if "[slow]" in query:
            self._stopping.wait(self.slow_seconds)
        if "[500]" in query:
            return 500, {"error": "internal error"}, {}
        if "[429]" in query and attempt == 1:
            return 429, {"error": "slow down"}, {"Retry-After": str(self.retry_after)}
        if "[flaky]" in query and attempt == 1:
            return 503, {"error": "try again"}, {}
        if "[text]" in query:
            return 200, b"plain text, not JSON", {}
        return 200, {"data": {"answer": f"answer to: {query}", "length": len(query)},
                     "request_id": f"r{attempt}"}, {}


def _handler(app: TargetApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            with app._lock:
                app.in_flight += 1
                app.max_in_flight = max(app.max_in_flight, app.in_flight)
            try:
                status, body, extra = app.answer(self.command, self.path, headers, raw)
            finally:
                with app._lock:
                    app.in_flight -= 1
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            ctype = "text/plain" if isinstance(body, bytes) else "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_PUT = _serve

    return Handler


@pytest.fixture
def target_app():
    """A started TargetApp, stopped after the test."""
    with TargetApp() as app:
        yield app


__all__ = ["TargetApp", "SeenRequest", "target_app"]
