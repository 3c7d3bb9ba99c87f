"""A local OpenAI-compatible server for tests: scripted answers, latency and faults.

Tests drive the real `openai` SDK against it, so what we test is what runs against OpenAI,
vLLM, Ollama or LiteLLM. It binds 127.0.0.1 on a free port and serves, under `/v1`:

- `POST /chat/completions`: plain text, or JSON for `response_format` json_schema / json_object,
  in the OpenAI response shape with `usage`;
- `POST /embeddings`: a hashed bag of words (256 dims by default), L2-normalised, so texts that
  share words are close in cosine similarity;
- `GET /models`;
- `POST /files` (multipart upload), `GET /files`, `GET /files/{id}`, `GET /files/{id}/content`;
- `POST /batches`, `GET /batches/{id}` (validating -> in_progress -> completed over `batch_polls`
  retrievals), `POST /batches/{id}/cancel`; batch lines are answered by the same scripting as
  chat completions.

Scripting, consulted in this order for every chat answer:
1. `queue(*answers)`: answers handed out first-in first-out;
2. `respond_with(fn)`: `fn(request_json) -> answer`, or None to fall through;
3. `add_rule(pattern, answer)`: the first regex found in the request's message text wins
   (`answer` may also be a function of the request);
4. the default: for json_schema a minimal valid object for the schema, for json_object `{}`,
   otherwise `echo: <last user message>`.
An answer is a str (the content as is), a dict/list or pydantic model (serialised to JSON), or a
`Fault` (an HTTP error for that request).

Faults: `latency` (seconds, or a function of the request), `fail_next(k, status, retry_after=...)`,
`fail_fraction(p, status, seed=...)`, `malformed_next(k)` (broken JSON content for structured
requests), `reject_response_format(kinds)` (400, like servers without structured output),
`hang_next(k)` (the request blocks until `release_hangs()` or `stop()`).

Everything is counted: `requests` (a list of `RecordedRequest`), `count(path)`, `max_in_flight`.

    with FakeOpenAI(latency=0.2) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0)

or as a pytest fixture: `from tests.fakes.openai_server import fake_openai`.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import math
import random
import re
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"

#: Content that is not JSON; handy as a scripted answer for structured-output tests.
MALFORMED = '{"answer": "unterminated'

Answer = Any  # str | dict | list | pydantic.BaseModel | Fault
Responder = Callable[[dict], Answer]


@dataclass
class Fault:
    """An HTTP error to return instead of an answer.

    `retry_after` goes into the `Retry-After` header (seconds; written as an integer when it is
    one) and `retry_after_ms` into `retry-after-ms`, as OpenAI sends them.
    """

    status: int = 500
    message: str | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None

    def body(self) -> dict:
        kinds = {
            400: "invalid_request_error",
            401: "invalid_request_error",
            404: "invalid_request_error",
            429: "rate_limit_exceeded",
        }
        return {
            "error": {
                "message": self.message or f"fake server error {self.status}",
                "type": kinds.get(self.status, "server_error"),
                "param": None,
                "code": "rate_limit_exceeded" if self.status == 429 else None,
            }
        }

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after is not None:
            value = self.retry_after
            headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        return headers


@dataclass
class RecordedRequest:
    """One request as the fake saw it, and what it answered."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    started: float
    finished: float | None = None
    status: int | None = None
    response: Any = None


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    created_at: int
    metadata: dict | None
    polls: int = 0
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    stamps: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "created_at": self.created_at,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
            "errors": None,
            **self.stamps,
        }


class FakeOpenAI:
    """The fake server. Start it with `with FakeOpenAI() as fake:` or `start()`/`stop()`.

    `api_key`: when set, requests must carry `Authorization: Bearer <api_key>`; a wrong key gets
    a 401 whose message quotes the key sent (servers do that; clients must not repeat it).
    `batch_polls`: retrievals a batch takes to complete (first "validating", then "in_progress").
    `hang_limit`: the longest a hanging request blocks, so a forgotten hang cannot stall a run.
    """

    def __init__(
        self,
        *,
        latency: float | Callable[[dict], float] = 0.0,
        api_key: str | None = None,
        models: tuple[str, ...] = ("fake-model", "fake-embedding"),
        batch_polls: int = 2,
        embedding_dims: int = 256,
        hang_limit: float = 30.0,
    ) -> None:
        self.latency = latency
        self.api_key = api_key
        self.models = list(models)
        self.batch_polls = batch_polls
        self.embedding_dims = embedding_dims
        self.hang_limit = hang_limit

        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._release = threading.Event()
        self.reset()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeOpenAI:
        if self._httpd is not None:
            return self
        handler = _make_handler(self)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
        # The default listen backlog of 5 drops connections when 64 clients connect at once.
        httpd.request_queue_size = 256
        httpd.daemon_threads = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-openai"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._release.set()  # let hanging requests go
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAI is not started; use `with FakeOpenAI() as fake:`")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The URL to give the SDK: `http://127.0.0.1:<port>/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    # ----------------------------------------------------------------- scripting

    def reset(self) -> None:
        """Forget scripting, faults and recorded requests (files and batches stay)."""
        with self._lock:
            self._queue: deque[Answer] = deque()
            self._responder: Responder | None = None
            self._rules: list[tuple[re.Pattern, Answer]] = []
            self._fail_next: deque[tuple[Fault, tuple[str, ...]]] = deque()
            self._fail_fraction: tuple[float, Fault, random.Random] | None = None
            self._malformed_next = 0
            self._hang_next = 0
            self._rejected_formats: tuple[str, ...] = ()
            self.requests: list[RecordedRequest] = []
            self._in_flight = 0
            self.max_in_flight = 0
            if not hasattr(self, "_files"):
                self._files: dict[str, dict] = {}
                self._batches: dict[str, _Batch] = {}
                self._ids = 0

    def queue(self, *answers: Answer) -> None:
        """Hand these answers out, in order, before any other scripting applies."""
        with self._lock:
            self._queue.extend(answers)

    def respond_with(self, responder: Responder | None) -> None:
        """`responder(request_json) -> answer`, or None to fall through to rules and default."""
        self._responder = responder

    def add_rule(self, pattern: str, answer: Answer | Responder) -> None:
        """Answer requests whose message text matches the regex `pattern` (first rule wins)."""
        with self._lock:
            self._rules.append((re.compile(pattern, re.S), answer))

    # ----------------------------------------------------------------- faults

    def fail_next(
        self,
        k: int = 1,
        status: int = 429,
        *,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
        message: str | None = None,
        paths: tuple[str, ...] = (CHAT_PATH,),
    ) -> None:
        """The next `k` requests to `paths` fail with `status` (and Retry-After if given)."""
        fault = Fault(status, message, retry_after, retry_after_ms)
        with self._lock:
            self._fail_next.extend([(fault, paths)] * k)

    def fail_fraction(
        self,
        p: float,
        status: int = 429,
        *,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
        seed: int = 0,
    ) -> None:
        """Each chat request fails with probability `p` (seeded, so runs repeat); p=0 turns it off."""
        with self._lock:
            if p <= 0:
                self._fail_fraction = None
            else:
                fault = Fault(status, None, retry_after, retry_after_ms)
                self._fail_fraction = (p, fault, random.Random(seed))

    def malformed_next(self, k: int = 1) -> None:
        """The next `k` structured (response_format) answers are broken JSON."""
        with self._lock:
            self._malformed_next += k

    def reject_response_format(self, kinds: tuple[str, ...] = ("json_schema", "json_object")) -> None:
        """Answer 400 to requests whose response_format type is in `kinds`; () accepts all again."""
        with self._lock:
            self._rejected_formats = tuple(kinds)

    def hang_next(self, k: int = 1) -> None:
        """The next `k` chat requests block until `release_hangs()`, `stop()` or `hang_limit`."""
        with self._lock:
            self._hang_next += k
            self._release.clear()

    def release_hangs(self) -> None:
        self._release.set()

    # ----------------------------------------------------------------- observation

    def count(self, path: str | None = CHAT_PATH) -> int:
        """Requests received for `path` (all paths when None)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == CHAT_PATH]

    # ----------------------------------------------------------------- answering

    def answer_for(self, request: dict, *, in_batch: bool = False) -> Answer:
        """The scripted answer for one chat request (queue, responder, rules, default)."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder, rules = self._responder, list(self._rules)
        if responder is not None:
            answer = responder(request)
            if answer is not None:
                return answer
        text = message_text(request)
        for pattern, answer in rules:
            if pattern.search(text):
                return answer(request) if callable(answer) else answer
        return default_answer(request)

    def chat_completion(self, request: dict) -> tuple[int, dict, dict]:
        """(status, body, headers) for one chat request, after format rejection and scripting."""
        if not isinstance(request, dict) or not request.get("model") or not request.get("messages"):
            return _error(400, "'model' and 'messages' are required")
        fmt = (request.get("response_format") or {}).get("type")
        with self._lock:
            rejected = fmt in self._rejected_formats
        if rejected:
            return _error(400, f"response_format type '{fmt}' is not supported by this server")
        answer = self.answer_for(request)
        if isinstance(answer, Fault):
            return answer.status, answer.body(), answer.headers()
        content = to_content(answer)
        if fmt in ("json_schema", "json_object"):
            with self._lock:
                if self._malformed_next > 0:
                    self._malformed_next -= 1
                    content = MALFORMED
        with self._lock:
            self._ids += 1
            n = self._ids
        usage = {
            "prompt_tokens": count_tokens(message_text(request)),
            "completion_tokens": count_tokens(content),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        body = {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "system_fingerprint": "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
        return 200, body, {}

    def embeddings(self, request: dict) -> tuple[int, dict, dict]:
        inputs = request.get("input") if isinstance(request, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            return _error(400, "'input' must be a string or a list of strings")
        dims = int(request.get("dimensions") or self.embedding_dims)
        b64 = request.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vector = hashed_embedding(text, dims)
            value: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if b64 else vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(count_tokens(t) for t in inputs)
        body = {
            "object": "list",
            "data": data,
            "model": request.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return 200, body, {}

    # ----------------------------------------------------------------- files and batches

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}-fake{self._ids}"

    def _store_file(self, content: bytes, filename: str, purpose: str) -> dict:
        file_id = self._new_id("file")
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        with self._lock:
            self._files[file_id] = {"meta": meta, "content": content}
        return meta

    def file_content(self, file_id: str) -> bytes | None:
        with self._lock:
            entry = self._files.get(file_id)
        return None if entry is None else entry["content"]

    def create_batch(self, request: dict) -> tuple[int, dict, dict]:
        file_id = request.get("input_file_id")
        if self.file_content(file_id) is None:
            return _error(404, f"No such file: {file_id}")
        if request.get("endpoint") != CHAT_PATH:
            return _error(400, f"the fake only batches {CHAT_PATH}, not {request.get('endpoint')}")
        batch = _Batch(
            id=self._new_id("batch"),
            input_file_id=file_id,
            endpoint=request["endpoint"],
            created_at=int(time.time()),
            metadata=request.get("metadata"),
        )
        batch.counts["total"] = sum(1 for line in self.file_content(file_id).splitlines() if line.strip())
        with self._lock:
            self._batches[batch.id] = batch
        return 200, batch.as_json(), {}

    def retrieve_batch(self, batch_id: str) -> tuple[int, dict, dict]:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            return _error(404, f"No such batch: {batch_id}")
        finish = False
        with self._lock:
            if batch.status == "cancelling":
                batch.status = "cancelled"
                batch.stamps["cancelled_at"] = int(time.time())
            elif batch.status in ("validating", "in_progress"):
                batch.polls += 1
                if batch.polls >= self.batch_polls:
                    finish = True
                elif batch.status == "validating":
                    batch.status = "in_progress"
                    batch.stamps["in_progress_at"] = int(time.time())
        if finish:
            self._run_batch(batch)
        return 200, batch.as_json(), {}

    def cancel_batch(self, batch_id: str) -> tuple[int, dict, dict]:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _error(404, f"No such batch: {batch_id}")
            if batch.status in ("validating", "in_progress"):
                batch.status = "cancelling"
                batch.stamps["cancelling_at"] = int(time.time())
            return 200, batch.as_json(), {}

    def _run_batch(self, batch: _Batch) -> None:
        """Answer every line with the chat scripting; HTTP-level faults and latency do not apply."""
        outputs, errors = [], []
        for n, line in enumerate(self.file_content(batch.input_file_id).splitlines()):
            if not line.strip():
                continue
            item = json.loads(line)
            status, body, _ = self.chat_completion(item.get("body") or {})
            row = {
                "id": f"batch_req_{batch.id}_{n}",
                "custom_id": item.get("custom_id"),
                "response": {"status_code": status, "request_id": f"req_{n}", "body": body},
                "error": None,
            }
            (outputs if status == 200 else errors).append(row)
        if outputs:
            meta = self._store_file(_jsonl(outputs), f"{batch.id}_output.jsonl", "batch_output")
            batch.output_file_id = meta["id"]
        if errors:
            meta = self._store_file(_jsonl(errors), f"{batch.id}_errors.jsonl", "batch_output")
            batch.error_file_id = meta["id"]
        with self._lock:
            batch.counts.update(completed=len(outputs), failed=len(errors))
            batch.status = "completed"
            batch.stamps["completed_at"] = int(time.time())

    # ----------------------------------------------------------------- HTTP plumbing

    def _authorised(self, headers: dict[str, str]) -> tuple[bool, str]:
        if self.api_key is None:
            return True, ""
        sent = headers.get("authorization", "").removeprefix("Bearer ").strip()
        return sent == self.api_key, sent

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            if self._fail_next and path in self._fail_next[0][1]:
                return self._fail_next.popleft()[0]
            if path == CHAT_PATH and self._fail_fraction is not None:
                p, fault, rng = self._fail_fraction
                if rng.random() < p:
                    return fault
        return None

    def _should_hang(self, path: str) -> bool:
        with self._lock:
            if path == CHAT_PATH and self._hang_next > 0:
                self._hang_next -= 1
                return True
        return False

    def _latency_for(self, request: Any) -> float:
        latency = self.latency
        return float(latency(request) if callable(latency) else latency)

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict]:
        """Route one request; returns (status, body as dict or bytes, extra headers)."""
        ok, sent = self._authorised(headers)
        if not ok:
            return _error(401, f"Incorrect API key provided: {sent}")
        ctype = headers.get("content-type", "")
        if method == "POST" and path == "/v1/files":
            return self._upload(ctype, raw)
        payload: Any = None
        if raw and "json" in ctype:
            try:
                payload = json.loads(raw)
            except ValueError:
                return _error(400, "request body is not valid JSON")
        if method == "POST" and path in (CHAT_PATH, EMBEDDINGS_PATH):
            if self._should_hang(path):
                self._release.wait(self.hang_limit)
            delay = self._latency_for(payload)
            if delay > 0:
                self._stopping.wait(delay)
            fault = self._fault_for(path)
            if fault is not None:
                return fault.status, fault.body(), fault.headers()
            if path == CHAT_PATH:
                return self.chat_completion(payload)
            return self.embeddings(payload)
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
            return 200, {"object": "list", "data": data}, {}
        if method == "GET" and path == "/v1/files":
            with self._lock:
                data = [f["meta"] for f in self._files.values()]
            return 200, {"object": "list", "data": data, "has_more": False}, {}
        m = re.fullmatch(r"/v1/files/([^/]+)(/content)?", path)
        if method == "GET" and m:
            with self._lock:
                entry = self._files.get(m.group(1))
            if entry is None:
                return _error(404, f"No such file: {m.group(1)}")
            return 200, (entry["content"] if m.group(2) else entry["meta"]), {}
        if method == "POST" and path == "/v1/batches":
            return self.create_batch(payload or {})
        m = re.fullmatch(r"/v1/batches/([^/]+)(/cancel)?", path)
        if m and method == "GET" and not m.group(2):
            return self.retrieve_batch(m.group(1))
        if m and method == "POST" and m.group(2):
            return self.cancel_batch(m.group(1))
        return _error(404, f"{method} {path} is not served by the fake")

    def _upload(self, ctype: str, raw: bytes) -> tuple[int, Any, dict]:
        if "multipart/form-data" not in ctype:
            return _error(400, "file uploads must be multipart/form-data")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
        )
        fields: dict[str, Any] = {}
        filename = "upload"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                filename = part.get_filename()
            fields[name] = part.get_payload(decode=True)
        if "file" not in fields:
            return _error(400, "multipart body has no 'file' field")
        purpose = (fields.get("purpose") or b"batch").decode()
        return 200, self._store_file(fields["file"], filename, purpose), {}

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self, record: RecordedRequest) -> None:
        with self._lock:
            self._in_flight -= 1
            self.requests.append(record)


def _make_handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
        # Headers and body go out in two writes; with Nagle on, the second waits ~40 ms for an ACK.
        disable_nagle_algorithm = True

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = urlsplit(self.path).path
            payload = None
            if raw and "json" in headers.get("content-type", ""):
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = raw.decode(errors="replace")
            record = RecordedRequest(self.command, path, payload, headers, time.monotonic())
            fake._enter()
            try:
                status, body, extra = fake.handle(self.command, path, headers, raw)
            except Exception as exc:  # a bug in a test's responder should show, not hang the SDK
                status, body, extra = _error(500, f"fake server crashed: {exc!r}")
            finally:
                record.finished = time.monotonic()
            record.status, record.response = status, body
            fake._leave(record)
            if isinstance(body, bytes):
                data, ctype = body, "application/octet-stream"
            else:
                data, ctype = json.dumps(body).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout); nothing to tell it

        do_GET = do_POST = do_DELETE = _serve

    return Handler


# --------------------------------------------------------------------- helpers


def _error(status: int, message: str) -> tuple[int, dict, dict]:
    return status, Fault(status, message).body(), {}


def _jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def message_text(request: dict) -> str:
    """All message text of a chat request, one message per line (list content parts joined)."""
    lines = []
    for message in (request or {}).get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content:
            lines.append(str(content))
    return "\n".join(lines)


def count_tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words, at least 1."""
    return max(1, len(str(text).split()))


def to_content(answer: Answer) -> str:
    if isinstance(answer, str):
        return answer
    if hasattr(answer, "model_dump_json"):
        return answer.model_dump_json()
    return json.dumps(answer)


def default_answer(request: dict) -> Answer:
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        return minimal_instance(schema, schema)
    if fmt.get("type") == "json_object":
        return {}
    last_user = ""
    for message in request.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            last_user = message_text({"messages": [message]})
    return f"echo: {last_user}"


def minimal_instance(schema: dict, root: dict, name: str = "text") -> Any:
    """A small value valid for `schema` (objects get their required properties only)."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return minimal_instance(target, root, name)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return minimal_instance(options[0], root, name)
    if "allOf" in schema:
        merged: dict = {}
        for sub in schema["allOf"]:
            value = minimal_instance(sub, root, name)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {key: minimal_instance(props.get(key, {}), root, key) for key in schema.get("required", [])}
    if kind == "array":
        item = schema.get("items") or {}
        return [minimal_instance(item, root, name) for _ in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        text = name
        text = text + "x" * max(0, int(schema.get("minLength", 0)) - len(text))
        return text[: schema["maxLength"]] if "maxLength" in schema else text
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return int(math.ceil(low)) if low > 0 else 0
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


def hashed_embedding(text: str, dims: int = 256) -> list[float]:
    """Hashed bag of words: each lower-cased word adds +-1 at sha256(word) mod dims; L2-normalised.

    Texts sharing words share coordinates, so cosine similarity tracks word overlap.
    """
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "little") % dims
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


@pytest.fixture
def fake_openai():
    """A started FakeOpenAI, stopped after the test."""
    with FakeOpenAI() as fake:
        yield fake
