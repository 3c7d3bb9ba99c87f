"""A fake Langfuse server for tests: the endpoints evalboard uses, read and write, in memory.

Shaped by the public API spec (../shared/vendor-specs/langfuse-openapi.yml, v4.16) and by what
the `langfuse` 5.0.4 SDK actually sends (read from its generated client under
langfuse/api/*/raw_client.py). Where the two disagree the fake follows the SDK, because the SDK
is newer than the spec:
- `POST /api/public/scores` takes a JSON array and answers 202 {"message": "Accepted"} or
  207 {accepted, rejected, errors} (a single object still gets the spec's 200 {"id"});
- evaluators and evaluation rules live under /api/public/v2/ (the spec has /unstable/);
- v2 observations carry the model name as `model` (SDK 5) and also as `providedModelName`
  (spec v4.16), so either reader works.

Use it in-process:

    with FakeLangfuse(traces=200, seed=1) as fake:
        Langfuse(public_key=fake.public_key, secret_key=fake.secret_key, base_url=fake.url)

or as pytest fixtures (`fake_langfuse`, `fake_langfuse_factory`; import them into the test
module), or in a separate process for benchmarks (`FakeLangfuseProcess`, or
`python -m tests.fakes.langfuse_server --traces 20000 --latency 0.03`), so that the server's
CPU work does not compete with the client for the GIL.

Faults are set per test: `fake.latency = 0.03`, `fake.inject(status=429, count=2,
retry_after=1)`, `fake.inject(status=500, fraction=0.2, seed=3)`, `fake.inject(hang=5,
count=1)`, `fake.inject(broken=True, count=1)`. Every request is recorded in `fake.requests`
(method, path, query, body, status).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import gzip
import json
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from tests.fakes.langfuse_data import PROJECT_ID, generate, iso, score_row, to_us

DEFAULT_PUBLIC_KEY = "pk-lf-fake-0000-1234"
DEFAULT_SECRET_KEY = "sk-lf-fake-0000-5678"
SERVER_VERSION = "4.16.0"
MAX_OBSERVATION_LIMIT = 1000
MAX_SCORE_LIMIT = 100
METADATA_TRUNCATE = 200

# Field groups of GET /api/public/v2/observations (docstring of the SDK's get_many).
# `modelId`/`inputPrice`/`outputPrice`/`totalPrice` are required by the spec: null unless `model`.
CORE_FIELDS = ("id", "traceId", "startTime", "endTime", "projectId", "parentObservationId", "type")
FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "core": CORE_FIELDS,
    "basic": (
        "name", "level", "statusMessage", "version", "environment", "bookmarked", "public",
        "userId", "sessionId", "isRootObservation",
    ),
    "time": ("completionStartTime", "createdAt", "updatedAt"),
    "io": ("input", "output"),
    "metadata": ("metadata",),
    "model": ("model", "internalModelId", "modelParameters", "modelId", "inputPrice", "outputPrice", "totalPrice"),
    "usage": ("usageDetails", "costDetails", "totalCost", "usagePricingTierName"),
    "prompt": ("promptId", "promptName", "promptVersion"),
    "metrics": ("latency", "timeToFirstToken"),
    "trace_context": ("tags", "release", "traceName"),
}
SCORE_CORE = ("id", "projectId", "name", "value", "dataType", "source", "timestamp", "environment", "createdAt", "updatedAt")
SCORE_GROUPS = {"details": ("comment", "configId", "metadata"), "subject": ("subject",), "annotation": ("authorUserId", "queueId")}

# Columns of the structured `filter` parameter -> row key (see the SDK docstring of get_many).
FILTER_COLUMNS = {
    "id": "id", "type": "type", "name": "name", "traceId": "traceId", "startTime": "startTime",
    "endTime": "endTime", "environment": "environment", "level": "level",
    "statusMessage": "statusMessage", "version": "version", "userId": "userId",
    "sessionId": "sessionId", "isRootObservation": "isRootObservation", "traceName": "traceName",
    "traceTags": "tags", "tags": "tags", "latency": "latency", "totalCost": "totalCost",
    "model": "model", "providedModelName": "model", "promptName": "promptName",
    "input": "input", "output": "output", "metadata": "metadata",
}


class HttpError(Exception):
    """Raised by route handlers: becomes a JSON error response with `message` and `code`.

    Codes are the SDK's PublicApiErrorCode values (authentication_failed, resource_not_found,
    invalid_request, rate_limited, internal_error, ...): the v2 evaluator clients parse them.
    """

    def __init__(self, status: int, message: str, code: str = "invalid_request", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass
class RecordedRequest:
    """One request as the fake saw it. `query` maps each name to all its values."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]
    status: int | None = None
    response: Any = None  # parsed JSON body, only when the server records responses

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class _Fault:
    """An injected fault; `count` (next K matching requests) or `fraction` (seeded coin)."""

    status: int | None = None
    retry_after: float | None = None
    hang: float | None = None
    broken: bool = False
    count: int | None = None
    fraction: float | None = None
    rng: random.Random | None = None
    path: str | None = None
    method: str | None = None
    hits: int = 0


def _now_iso() -> str:
    return iso(to_us(datetime.now(timezone.utc)))


def _parse_dt(value: str, name: str) -> int:
    """ISO 8601 text -> epoch microseconds; 400 naming the parameter on bad input."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise HttpError(400, f"Invalid datetime for '{name}': {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return to_us(dt)


def _encode_cursor(key: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        neg, ident = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(neg), str(ident)
    except Exception:
        raise HttpError(400, f"Invalid cursor: {cursor!r}") from None


def _page_meta(page: int, limit: int, total: int) -> dict[str, int]:
    return {"page": page, "limit": limit, "totalItems": total, "totalPages": (total + limit - 1) // limit if limit else 0}


def _paginate(items: list[Any], query: dict[str, list[str]], default_limit: int = 50) -> tuple[list[Any], dict[str, int]]:
    page = _int_param(query, "page", 1, minimum=1)
    limit = _int_param(query, "limit", default_limit, minimum=1)
    start = (page - 1) * limit
    return items[start : start + limit], _page_meta(page, limit, len(items))


def _int_param(query: dict[str, list[str]], name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = (query.get(name) or [None])[0]
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"Query parameter '{name}' must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise HttpError(400, f"Query parameter '{name}' must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise HttpError(400, f"Query parameter '{name}' must be <= {maximum}, got {value}")
    return value


def _bool_param(query: dict[str, list[str]], name: str) -> bool | None:
    raw = (query.get(name) or [None])[0]
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise HttpError(400, f"Query parameter '{name}' must be true or false, got {raw!r}")


def _str_param(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _csv_param(query: dict[str, list[str]], name: str) -> list[str] | None:
    raw = _str_param(query, name)
    if raw is None or raw == "":
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _require(body: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(body, dict):
        raise HttpError(400, f"{where}: request body must be a JSON object")
    if key not in body or body[key] is None:
        raise HttpError(400, f"{where}: '{key}' is required")
    if not isinstance(body[key], kind):
        raise HttpError(400, f"{where}: '{key}' has the wrong type ({type(body[key]).__name__})")
    return body[key]


class ObservationIndex:
    """Observations sorted newest first, with a per-trace index and a separate root list.

    Rows are kept sorted by the key (-start_us, id); a page is a bisect to the time window or
    the cursor, then a forward scan until `limit` rows match. Seeding 60k rows costs one sort.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.keys: list[tuple[int, str]] = []
        self.roots: list[dict[str, Any]] = []
        self.root_keys: list[tuple[int, str]] = []
        self.by_trace: dict[str, list[dict[str, Any]]] = {}

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if "_neg" not in row:
                row["_neg"] = -_parse_dt(row["startTime"], "startTime")
        merged = self.rows + rows
        merged.sort(key=lambda r: (r["_neg"], r["id"]))
        self.rows = merged
        self.keys = [(r["_neg"], r["id"]) for r in merged]
        self.roots = [r for r in merged if r.get("isRootObservation")]
        self.root_keys = [(r["_neg"], r["id"]) for r in self.roots]
        self.by_trace = {}
        for r in merged:
            self.by_trace.setdefault(r["traceId"], []).append(r)

    def __len__(self) -> int:
        return len(self.rows)


class FakeLangfuse:
    """In-memory Langfuse: seeded traces, scores, configs, datasets, prompts, evaluators, comments.

    Thread-safe for concurrent clients: reads of the observation index need no lock (it is
    replaced, never mutated, by `add_observations`); everything else takes `self.lock`.
    """

    def __init__(
        self,
        *,
        traces: int = 0,
        seed: int = 0,
        public_key: str = DEFAULT_PUBLIC_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        project_id: str = PROJECT_ID,
        latency: float = 0.0,
        record_responses: bool = False,
        days: float = 14.0,
    ):
        self.public_key, self.secret_key, self.project_id = public_key, secret_key, project_id
        self.latency = latency
        self.record_responses = record_responses
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.faults: list[_Fault] = []
        self.otel_batches = 0
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.index = ObservationIndex()
        self.scores: dict[str, dict[str, Any]] = {}
        self.scores_by_trace: dict[str, set[str]] = {}
        self.score_configs: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.dataset_items: dict[str, dict[str, Any]] = {}
        self.prompts: dict[str, list[dict[str, Any]]] = {}
        self.evaluators: dict[str, dict[str, Any]] = {}
        self.evaluator_versions: dict[str, list[dict[str, Any]]] = {}
        self.evaluation_rules: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        if traces:
            seed_data = generate(traces, seed=seed, project_id=project_id, days=days)
            self.add_observations(seed_data.observations)
            self.add_scores(seed_data.scores)
        self._routes = self._build_routes()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> "FakeLangfuse":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._stop.clear()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes hanging requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeLangfuse":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeLangfuse is not running; call start() or use it as a context manager")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- data
    def add_observations(self, rows: list[dict[str, Any]]) -> None:
        """Add observation rows (wire format, see langfuse_data.observation_row)."""
        index = ObservationIndex()
        index.add(self.index.rows + list(rows))
        self.index = index  # swap, never mutate: concurrent readers keep a consistent view

    def add_scores(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            for row in rows:
                self._put_score(row)

    def _put_score(self, row: dict[str, Any]) -> None:
        old = self.scores.get(row["id"])
        if old is not None and old.get("_traceId") and old["_traceId"] in self.scores_by_trace:
            self.scores_by_trace[old["_traceId"]].discard(row["id"])
        self.scores[row["id"]] = row
        if row.get("_traceId"):
            self.scores_by_trace.setdefault(row["_traceId"], set()).add(row["id"])

    @property
    def trace_ids(self) -> list[str]:
        return list(self.index.by_trace)

    # ----------------------------------------------------------------- faults and records
    def inject(
        self,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        hang: float | None = None,
        broken: bool = False,
        count: int | None = None,
        fraction: float | None = None,
        seed: int = 0,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Add a fault for the next `count` matching requests, or for a seeded `fraction` of them.

        status: answer with this HTTP status (429 adds `Retry-After: retry_after` when given);
        hang: wait this many seconds before answering normally (longer than the client timeout);
        broken: answer 200 with a body that is not JSON. `path` is a path prefix to match.
        """
        if (count is None) == (fraction is None):
            raise ValueError("inject(): give exactly one of count= or fraction=")
        if status is None and hang is None and not broken:
            raise ValueError("inject(): give status=, hang= or broken=True")
        with self.lock:
            self.faults.append(
                _Fault(status=status, retry_after=retry_after, hang=hang, broken=broken, count=count,
                       fraction=fraction, rng=random.Random(seed), path=path, method=method)
            )

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path is `path` (exact), optionally with this method."""
        with self.lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def _pick_fault(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path and not path.startswith(fault.path):
                    continue
                if fault.method and fault.method != method:
                    continue
                if fault.count is not None:
                    if fault.hits >= fault.count:
                        continue
                    fault.hits += 1
                    return fault
                assert fault.rng is not None and fault.fraction is not None
                if fault.rng.random() < fault.fraction:
                    fault.hits += 1
                    return fault
        return None

    # ----------------------------------------------------------------- request handling
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body_bytes: bytes) -> tuple[int, dict[str, str], bytes]:
        """Route one request; returns (status, headers, body). Called from handler threads."""
        split = urlsplit(raw_path)
        path = split.path.rstrip("/") or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        body: Any = None
        if body_bytes:
            if headers.get("content-encoding", "").lower() == "gzip":
                body_bytes = gzip.decompress(body_bytes)
            if "json" in headers.get("content-type", "json"):
                try:
                    body = orjson.loads(body_bytes)
                except orjson.JSONDecodeError:
                    body = body_bytes
            else:
                body = body_bytes
        record = RecordedRequest(method, path, query, body, {k.lower(): v for k, v in headers.items()})
        with self.lock:
            self.requests.append(record)

        if self.latency:
            time.sleep(self.latency)
        status, out_headers, payload = self._respond(method, path, query, headers, body, body_bytes)
        record.status = status
        if self.record_responses and payload is not None:
            try:
                record.response = orjson.loads(payload) if isinstance(payload, bytes) and payload else payload
            except orjson.JSONDecodeError:
                record.response = payload  # an injected broken page
        if isinstance(payload, bytes):
            data = payload
        else:
            data = orjson.dumps(payload)
        out_headers.setdefault("Content-Type", "application/json")
        return status, out_headers, data

    def _respond(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any, body_bytes: bytes) -> tuple[int, dict[str, str], Any]:
        fault = self._pick_fault(method, path)
        if fault is not None:
            if fault.hang:
                self._stop.wait(fault.hang)
            if fault.broken:
                return 200, {}, b'{"data": [{"id": "truncated'  # not JSON: the page was cut off
            if fault.status:
                extra = {}
                if fault.retry_after is not None:
                    extra["Retry-After"] = f"{fault.retry_after:g}"
                code = "rate_limited" if fault.status == 429 else "internal_error"
                message = "Rate limit exceeded" if fault.status == 429 else "Internal server error (injected)"
                details = {"retryAfterSeconds": int(fault.retry_after)} if fault.retry_after is not None else {}
                return fault.status, extra, {"message": message, "code": code, "details": details}
        for route_method, pattern, needs_auth, fn in self._routes:
            if route_method != method:
                continue
            match = pattern.fullmatch(path)
            if match is None:
                continue
            try:
                if needs_auth:
                    self._check_auth(headers)
                status, payload = fn(query=query, body=body, **{k: unquote(v) for k, v in match.groupdict().items()})
                return status, {}, payload
            except HttpError as err:
                return err.status, dict(err.headers), {"message": err.message, "code": err.code}
        if any(p.fullmatch(path) for _, p, _, _ in self._routes):
            return 405, {}, {"message": f"Method {method} not allowed on {path}", "code": "method_not_allowed"}
        return 404, {}, {"message": f"No route for {method} {path}", "code": "resource_not_found"}

    def _check_auth(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization") or headers.get("Authorization") or ""
        ok = False
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                ok = user == self.public_key and password == self.secret_key
            except Exception:
                ok = False
        if not ok:
            raise HttpError(401, "Invalid credentials. Confirm that you've configured the correct host.", "authentication_failed")

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], bool, Callable[..., tuple[int, Any]]]]:
        r = re.compile
        return [
            ("GET", r(r"/api/public/health"), False, self.get_health),
            ("GET", r(r"/api/public/projects"), True, self.get_projects),
            ("GET", r(r"/api/public/v2/observations"), True, self.get_observations),
            ("POST", r(r"/api/public/otel/v1/traces"), True, self.post_otel),
            ("POST", r(r"/api/public/scores"), True, self.post_scores),
            ("DELETE", r(r"/api/public/scores/(?P<score_id>[^/]+)"), True, self.delete_score),
            ("GET", r(r"/api/public/v3/scores"), True, self.get_scores_v3),
            ("POST", r(r"/api/public/score-configs"), True, self.post_score_config),
            ("GET", r(r"/api/public/score-configs"), True, self.list_score_configs),
            ("GET", r(r"/api/public/score-configs/(?P<config_id>[^/]+)"), True, self.get_score_config),
            ("PATCH", r(r"/api/public/score-configs/(?P<config_id>[^/]+)"), True, self.patch_score_config),
            ("POST", r(r"/api/public/v2/datasets"), True, self.post_dataset),
            ("GET", r(r"/api/public/v2/datasets"), True, self.list_datasets),
            ("GET", r(r"/api/public/v2/datasets/(?P<name>.+)"), True, self.get_dataset),
            ("POST", r(r"/api/public/dataset-items"), True, self.post_dataset_item),
            ("GET", r(r"/api/public/dataset-items"), True, self.list_dataset_items),
            ("GET", r(r"/api/public/dataset-items/(?P<item_id>[^/]+)"), True, self.get_dataset_item),
            ("DELETE", r(r"/api/public/dataset-items/(?P<item_id>[^/]+)"), True, self.delete_dataset_item),
            ("POST", r(r"/api/public/v2/prompts"), True, self.post_prompt),
            ("GET", r(r"/api/public/v2/prompts"), True, self.list_prompts),
            ("PATCH", r(r"/api/public/v2/prompts/(?P<name>.+)/versions/(?P<version>\d+)"), True, self.patch_prompt_version),
            ("GET", r(r"/api/public/v2/prompts/(?P<name>.+)"), True, self.get_prompt),
            ("POST", r(r"/api/public/v2/evaluators"), True, self.post_evaluator),
            ("GET", r(r"/api/public/v2/evaluators"), True, self.list_evaluators),
            ("GET", r(r"/api/public/v2/evaluators/(?P<evaluator_id>[^/]+)/versions"), True, self.list_evaluator_versions),
            ("GET", r(r"/api/public/v2/evaluators/(?P<evaluator_id>[^/]+)"), True, self.get_evaluator),
            ("PATCH", r(r"/api/public/v2/evaluators/(?P<evaluator_id>[^/]+)"), True, self.patch_evaluator),
            ("DELETE", r(r"/api/public/v2/evaluators/(?P<evaluator_id>[^/]+)"), True, self.delete_evaluator),
            ("POST", r(r"/api/public/v2/evaluation-rules"), True, self.post_evaluation_rule),
            ("GET", r(r"/api/public/v2/evaluation-rules"), True, self.list_evaluation_rules),
            ("GET", r(r"/api/public/v2/evaluation-rules/(?P<rule_id>[^/]+)"), True, self.get_evaluation_rule),
            ("PATCH", r(r"/api/public/v2/evaluation-rules/(?P<rule_id>[^/]+)"), True, self.patch_evaluation_rule),
            ("DELETE", r(r"/api/public/v2/evaluation-rules/(?P<rule_id>[^/]+)"), True, self.delete_evaluation_rule),
            ("POST", r(r"/api/public/comments"), True, self.post_comment),
            ("GET", r(r"/api/public/comments"), True, self.list_comments),
            ("GET", r(r"/api/public/comments/(?P<comment_id>[^/]+)"), True, self.get_comment),
        ]

    # ----------------------------------------------------------------- health, projects, otel
    def get_health(self, **_: Any) -> tuple[int, Any]:
        return 200, {"status": "OK", "version": SERVER_VERSION}

    def get_projects(self, **_: Any) -> tuple[int, Any]:
        project = {"id": self.project_id, "name": "Fake project", "organization": {"id": "org-fake", "name": "Fake org"}, "metadata": {}}
        return 200, {"data": [project]}

    def post_otel(self, body: Any, **_: Any) -> tuple[int, Any]:
        with self.lock:
            self.otel_batches += 1  # accepted and discarded: tests do not read traces written over OTLP
        return 200, {}

    # ----------------------------------------------------------------- observations
    def get_observations(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        limit = _int_param(query, "limit", 50, minimum=1, maximum=MAX_OBSERVATION_LIMIT)
        if _bool_param(query, "parseIoAsJson"):
            raise HttpError(400, "parseIoAsJson is deprecated; input/output are always returned as raw strings")
        groups = ["core", "basic"] if not _str_param(query, "fields") else ["core"] + [g.strip() for g in _str_param(query, "fields").split(",") if g.strip()]
        unknown = [g for g in groups if g not in FIELD_GROUPS]
        if unknown:
            raise HttpError(400, f"Unknown field group(s) in 'fields': {', '.join(unknown)}; allowed: {', '.join(FIELD_GROUPS)}")
        expand = set(_csv_param(query, "expandMetadata") or [])
        index = self.index
        raw_filter = _str_param(query, "filter")
        lo_us: int | None = None
        hi_us: int | None = None
        roots_only: bool | None = None
        trace_id: str | None = None
        predicates: list[Callable[[dict[str, Any]], bool]] = []
        if raw_filter:
            # The structured filter takes precedence over the query-parameter filters.
            conditions = self._parse_filter(raw_filter)
            for cond in conditions:
                predicates.append(self._condition_predicate(cond))
                if cond["column"] == "startTime" and cond["type"] == "datetime":
                    us = _parse_dt(str(cond["value"]), "filter startTime")
                    # Narrow the scanned range; the predicate still applies the exact operator.
                    if cond["operator"] in (">=", ">"):
                        lo_us = us if lo_us is None else max(lo_us, us)
                    elif cond["operator"] in ("<", "<="):
                        bound = us + 1 if cond["operator"] == "<=" else us
                        hi_us = bound if hi_us is None else min(hi_us, bound)
                if cond["column"] == "isRootObservation" and cond["type"] == "boolean" and cond["operator"] == "=":
                    roots_only = bool(cond["value"])
        else:
            simple = {"name": "name", "userId": "userId", "sessionId": "sessionId", "type": "type", "level": "level", "version": "version"}
            for param, key in simple.items():
                value = _str_param(query, param)
                if value is not None:
                    predicates.append(lambda row, key=key, value=value: row.get(key) == value)
            trace_id = _str_param(query, "traceId")
            parent = _str_param(query, "parentObservationId")
            if parent is not None:
                predicates.append(lambda row, parent=parent: (row.get("parentObservationId") or "") == parent)
            roots_only = _bool_param(query, "isRootObservation")
            envs = query.get("environment")
            if envs:
                env_set = set(envs)
                predicates.append(lambda row: row.get("environment") in env_set)
            if _str_param(query, "fromStartTime"):
                lo_us = _parse_dt(_str_param(query, "fromStartTime"), "fromStartTime")
            if _str_param(query, "toStartTime"):
                hi_us = _parse_dt(_str_param(query, "toStartTime"), "toStartTime")
        if trace_id is not None:
            rows = index.by_trace.get(trace_id, [])
            keys = [(r["_neg"], r["id"]) for r in rows]
        elif roots_only:
            rows, keys = index.roots, index.root_keys
        else:
            rows, keys = index.rows, index.keys
        if roots_only is False:
            predicates.append(lambda row: not row.get("isRootObservation"))
        # Sorted by -start: start < hi  <=>  -start > -hi;  start >= lo  <=>  -start <= -lo.
        first = 0 if hi_us is None else bisect.bisect_right(keys, (-hi_us, "\uffff"))
        end = len(rows) if lo_us is None else bisect.bisect_right(keys, (-lo_us, "\uffff"))
        cursor = _str_param(query, "cursor")
        if cursor:
            first = max(first, bisect.bisect_right(keys, _decode_cursor(cursor)))
        out: list[dict[str, Any]] = []
        next_cursor: str | None = None
        i = first
        while i < end:
            row = rows[i]
            i += 1
            if predicates and not all(p(row) for p in predicates):
                continue
            if len(out) == limit:
                last = out[-1]
                next_cursor = _encode_cursor((last["_k"][0], last["_k"][1]))
                break
            out.append({"_k": (row["_neg"], row["id"]), "_row": row})
        meta: dict[str, Any] = {}
        if next_cursor is not None:
            meta["cursor"] = next_cursor  # absent on the last page, as the real API does
        if expand:
            data = [self._project_observation(item["_row"], groups, expand) for item in out]
            return 200, {"data": data, "meta": meta}
        # Rows are serialised once per field selection and cached, so that the fake's own CPU
        # time stays small next to the client's in benchmarks.
        key = ",".join(groups)
        parts = []
        for item in out:
            row = item["_row"]
            cache = row.get("_json")
            if cache is None:
                cache = row["_json"] = {}
            blob = cache.get(key)
            if blob is None:
                blob = cache[key] = orjson.dumps(self._project_observation(row, groups, expand))
            parts.append(blob)
        return 200, b'{"data":[' + b",".join(parts) + b'],"meta":' + orjson.dumps(meta) + b"}"

    def _project_observation(self, row: dict[str, Any], groups: list[str], expand: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"modelId": None, "inputPrice": None, "outputPrice": None, "totalPrice": None}
        for group in groups:
            for key in FIELD_GROUPS[group]:
                out[key] = row.get(key)
        if "model" in groups:
            out["providedModelName"] = row.get("model")
        if "metadata" in groups and out.get("metadata"):
            meta = {}
            for k, v in out["metadata"].items():
                text = v if isinstance(v, str) else None
                if k not in expand and text is not None and len(text) > METADATA_TRUNCATE:
                    v = text[:METADATA_TRUNCATE] + "..."
                meta[k] = v
            out["metadata"] = meta
        return out

    @staticmethod
    def _parse_filter(raw: str) -> list[dict[str, Any]]:
        try:
            conditions = json.loads(raw)
        except ValueError:
            raise HttpError(400, "Query parameter 'filter' is not valid JSON") from None
        if not isinstance(conditions, list):
            raise HttpError(400, "Query parameter 'filter' must be a JSON array of conditions")
        for i, cond in enumerate(conditions):
            if not isinstance(cond, dict) or not all(k in cond for k in ("type", "column", "operator")):
                raise HttpError(400, f"filter[{i}] needs 'type', 'column' and 'operator'")
            if cond["column"] not in FILTER_COLUMNS:
                raise HttpError(400, f"filter[{i}]: unknown column {cond['column']!r}")
        return conditions

    @staticmethod
    def _condition_predicate(cond: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
        kind, op, value = cond["type"], cond["operator"], cond.get("value")
        key = FILTER_COLUMNS[cond["column"]]
        if kind == "datetime":
            bound = _parse_dt(str(value), f"filter {cond['column']}")

            def get_us(row: dict[str, Any]) -> int | None:
                if key == "startTime":
                    return -row["_neg"]
                return _parse_dt(row[key], key) if row.get(key) else None

            ops = {">": lambda a: a > bound, ">=": lambda a: a >= bound, "<": lambda a: a < bound, "<=": lambda a: a <= bound}
            if op not in ops:
                raise HttpError(400, f"filter: operator {op!r} is not valid for datetime")
            test = ops[op]
            return lambda row: (lambda us: us is not None and test(us))(get_us(row))
        if kind == "string":
            text = str(value)
            string_ops: dict[str, Callable[[str], bool]] = {
                "=": lambda a: a == text, "contains": lambda a: text in a, "does not contain": lambda a: text not in a,
                "starts with": lambda a: a.startswith(text), "ends with": lambda a: a.endswith(text),
                "matches": lambda a: text.lower() in a.lower(),
            }
            if op not in string_ops:
                raise HttpError(400, f"filter: operator {op!r} is not valid for string")
            stest = string_ops[op]
            return lambda row: row.get(key) is not None and stest(str(row.get(key)))
        if kind in ("stringOptions", "categoryOptions"):
            options = set(value or [])
            if op == "any of":
                return lambda row: row.get(key) in options
            if op == "none of":
                return lambda row: row.get(key) not in options
            raise HttpError(400, f"filter: operator {op!r} is not valid for {kind}")
        if kind == "arrayOptions":
            options = set(value or [])
            if op == "any of":
                return lambda row: bool(options & set(row.get(key) or []))
            if op == "none of":
                return lambda row: not (options & set(row.get(key) or []))
            if op == "all of":
                return lambda row: options <= set(row.get(key) or [])
            raise HttpError(400, f"filter: operator {op!r} is not valid for arrayOptions")
        if kind == "number":
            number = float(value)
            num_ops = {"=": lambda a: a == number, ">": lambda a: a > number, "<": lambda a: a < number, ">=": lambda a: a >= number, "<=": lambda a: a <= number}
            if op not in num_ops:
                raise HttpError(400, f"filter: operator {op!r} is not valid for number")
            ntest = num_ops[op]
            return lambda row: row.get(key) is not None and ntest(float(row[key]))
        if kind == "boolean":
            flag = bool(value)
            if op == "=":
                return lambda row: bool(row.get(key)) == flag
            if op == "<>":
                return lambda row: bool(row.get(key)) != flag
            raise HttpError(400, f"filter: operator {op!r} is not valid for boolean")
        if kind == "null":
            if op == "is null":
                return lambda row: row.get(key) is None
            if op == "is not null":
                return lambda row: row.get(key) is not None
            raise HttpError(400, f"filter: operator {op!r} is not valid for null")
        if kind == "stringObject":
            sub = cond.get("key")
            if not sub:
                raise HttpError(400, "filter: stringObject needs 'key'")
            text = str(value)
            if op == "=":
                return lambda row: str((row.get(key) or {}).get(sub)) == text
            if op == "contains":
                return lambda row: text in str((row.get(key) or {}).get(sub, ""))
            if op == "is set":
                return lambda row: sub in (row.get(key) or {})
            if op == "is not set":
                return lambda row: sub not in (row.get(key) or {})
            raise HttpError(400, f"filter: operator {op!r} is not supported by the fake for stringObject")
        raise HttpError(400, f"filter: unknown type {kind!r}")

    # ----------------------------------------------------------------- scores
    def post_scores(self, body: Any, **_: Any) -> tuple[int, Any]:
        if isinstance(body, dict):  # spec v4.16: one object, answered 200 {"id"}
            with self.lock:
                row = self._score_from_request(body, "body")
                self._put_score(row)
            return 200, {"id": row["id"]}
        if not isinstance(body, list):
            raise HttpError(400, "POST /api/public/scores: body must be a JSON array of scores")
        accepted, errors = 0, []
        with self.lock:
            for i, item in enumerate(body):
                try:
                    self._put_score(self._score_from_request(item, f"scores[{i}]"))
                    accepted += 1
                except HttpError as err:
                    errors.append({"message": err.message})
        if not errors:
            return 202, {"message": "Accepted"}
        return 207, {"accepted": accepted, "rejected": len(errors), "errors": errors}

    def _score_from_request(self, item: Any, where: str) -> dict[str, Any]:
        name = _require(item, "name", str, where)
        value = item.get("value")
        if value is None:
            raise HttpError(400, f"{where}: 'value' is required")
        trace_id, session_id, run_id = item.get("traceId"), item.get("sessionId"), item.get("datasetRunId")
        if not (trace_id or session_id or run_id):
            raise HttpError(400, f"{where}: one of 'traceId', 'sessionId' or 'datasetRunId' is required")
        if item.get("observationId") and not trace_id:
            raise HttpError(400, f"{where}: 'observationId' needs 'traceId'")
        config = None
        if item.get("configId"):
            config = self.score_configs.get(item["configId"])
            if config is None:
                raise HttpError(400, f"{where}: score config {item['configId']!r} not found")
        data_type = item.get("dataType") or (config["dataType"] if config else ("CATEGORICAL" if isinstance(value, str) else "NUMERIC"))
        if data_type in ("NUMERIC", "BOOLEAN") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise HttpError(400, f"{where}: {data_type} score needs a number value, got {value!r}")
        if data_type == "BOOLEAN" and value not in (0, 1):
            raise HttpError(400, f"{where}: BOOLEAN score value must be 0 or 1, got {value!r}")
        if data_type in ("CATEGORICAL", "TEXT") and not isinstance(value, str):
            raise HttpError(400, f"{where}: {data_type} score needs a string value, got {value!r}")
        if config and config["dataType"] != data_type:
            raise HttpError(400, f"{where}: dataType {data_type} does not match config {config['id']} ({config['dataType']})")
        ts = _parse_dt(item["timestamp"], f"{where}.timestamp") if item.get("timestamp") else to_us(datetime.now(timezone.utc))
        score_id = item.get("id") or uuid.uuid4().hex
        row = score_row(
            score_id=score_id, trace_id=trace_id, name=name,
            value=(bool(value) if data_type == "BOOLEAN" else float(value) if data_type == "NUMERIC" else value),
            data_type=data_type, timestamp_us=ts, source=item.get("source") or "API",
            environment=item.get("environment") or "default", comment=item.get("comment"),
            observation_id=item.get("observationId"), session_id=session_id, dataset_run_id=run_id,
            config_id=item.get("configId"), metadata=item.get("metadata"), queue_id=item.get("queueId"),
            project_id=self.project_id,
        )
        old = self.scores.get(score_id)
        if old is not None:  # upsert: keep the creation time
            row["createdAt"] = old["createdAt"]
            row["updatedAt"] = _now_iso()
        return row

    def delete_score(self, score_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            row = self.scores.pop(score_id, None)
            if row is None:
                raise HttpError(404, f"Score {score_id!r} not found", "resource_not_found")
            if row.get("_traceId"):
                self.scores_by_trace.get(row["_traceId"], set()).discard(score_id)
        return 204, b""

    def get_scores_v3(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        limit = _int_param(query, "limit", 50, minimum=1, maximum=MAX_SCORE_LIMIT)
        groups = _csv_param(query, "fields") or []
        unknown = [g for g in groups if g not in SCORE_GROUPS]
        if unknown:
            raise HttpError(400, f"Unknown field group(s) in 'fields': {', '.join(unknown)}; allowed: {', '.join(SCORE_GROUPS)}")
        trace_ids = _csv_param(query, "traceId")
        session_ids = _csv_param(query, "sessionId")
        obs_ids = _csv_param(query, "observationId")
        run_ids = _csv_param(query, "experimentId")
        if obs_ids and not trace_ids:
            raise HttpError(400, "'observationId' needs 'traceId'")
        if sum(bool(x) for x in (trace_ids, session_ids, run_ids)) > 1:
            raise HttpError(400, "'traceId', 'sessionId' and 'experimentId' are mutually exclusive")
        with self.lock:
            if trace_ids:
                candidates = [self.scores[sid] for tid in trace_ids for sid in self.scores_by_trace.get(tid, ())]
            else:
                candidates = list(self.scores.values())
        checks: list[Callable[[dict[str, Any]], bool]] = []
        for param, key, fold in (("id", "id", False), ("name", "name", False), ("source", "source", True),
                                 ("dataType", "dataType", True), ("environment", "environment", False),
                                 ("configId", "configId", False), ("queueId", "queueId", False),
                                 ("authorUserId", "authorUserId", False)):
            values = _csv_param(query, param)
            if values:
                allowed = {v.upper() for v in values} if fold else set(values)
                checks.append(lambda row, key=key, allowed=allowed, fold=fold: (str(row.get(key)).upper() if fold else row.get(key)) in allowed)
        for param, key in (("sessionId", "_sessionId"), ("observationId", "_observationId"), ("experimentId", "_datasetRunId")):
            values = _csv_param(query, param)
            if values:
                checks.append(lambda row, key=key, allowed=set(values): row.get(key) in allowed)
        for param, test in (("valueMin", lambda v, b: v >= b), ("valueMax", lambda v, b: v <= b)):
            raw = _str_param(query, param)
            if raw:
                bound = float(raw)
                checks.append(lambda row, bound=bound, test=test: isinstance(row["value"], (int, float)) and test(row["value"], bound))
        if _str_param(query, "fromTimestamp"):
            lo = _parse_dt(_str_param(query, "fromTimestamp"), "fromTimestamp")
            checks.append(lambda row: -row["_neg"] >= lo)
        if _str_param(query, "toTimestamp"):
            hi = _parse_dt(_str_param(query, "toTimestamp"), "toTimestamp")
            checks.append(lambda row: -row["_neg"] < hi)
        rows = sorted((row for row in candidates if all(c(row) for c in checks)), key=lambda r: (r["_neg"], r["id"]))
        cursor = _str_param(query, "cursor")
        if cursor:
            after = _decode_cursor(cursor)
            rows = [row for row in rows if (row["_neg"], row["id"]) > after]
        page = rows[:limit]
        meta: dict[str, Any] = {"limit": limit}
        if len(rows) > limit:
            meta["cursor"] = _encode_cursor((page[-1]["_neg"], page[-1]["id"]))
        keys = SCORE_CORE + tuple(k for g in groups for k in SCORE_GROUPS[g])
        return 200, {"data": [{k: row.get(k) for k in keys} for row in page], "meta": meta}

    # ----------------------------------------------------------------- score configs
    def post_score_config(self, body: Any, **_: Any) -> tuple[int, Any]:
        where = "POST /api/public/score-configs"
        name = _require(body, "name", str, where)
        if len(name) > 35:
            raise HttpError(400, f"{where}: 'name' must be at most 35 characters, got {len(name)}")
        data_type = _require(body, "dataType", str, where)
        if data_type not in ("NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT"):
            raise HttpError(400, f"{where}: unknown dataType {data_type!r}")
        categories = body.get("categories")
        if data_type == "CATEGORICAL" and not categories:
            raise HttpError(400, f"{where}: a CATEGORICAL config needs 'categories'")
        if data_type == "BOOLEAN":
            categories = [{"value": 1, "label": "True"}, {"value": 0, "label": "False"}]
        now = _now_iso()
        config = {
            "id": uuid.uuid4().hex, "name": name, "createdAt": now, "updatedAt": now, "projectId": self.project_id,
            "dataType": data_type, "isArchived": False, "minValue": body.get("minValue"), "maxValue": body.get("maxValue"),
            "categories": categories, "description": body.get("description"),
        }
        with self.lock:
            self.score_configs[config["id"]] = config
        return 200, config

    def list_score_configs(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        with self.lock:
            items = sorted(self.score_configs.values(), key=lambda c: c["createdAt"])
        page, meta = _paginate(items, query, default_limit=100)
        return 200, {"data": page, "meta": meta}

    def get_score_config(self, config_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            config = self.score_configs.get(config_id)
        if config is None:
            raise HttpError(404, f"Score config {config_id!r} not found", "resource_not_found")
        return 200, config

    def patch_score_config(self, config_id: str, body: Any, **_: Any) -> tuple[int, Any]:
        with self.lock:
            config = self.score_configs.get(config_id)
            if config is None:
                raise HttpError(404, f"Score config {config_id!r} not found", "resource_not_found")
            for key in ("isArchived", "name", "categories", "minValue", "maxValue", "description"):
                if isinstance(body, dict) and key in body:
                    config[key] = body[key]
            config["updatedAt"] = _now_iso()
            return 200, config

    # ----------------------------------------------------------------- datasets and items
    def post_dataset(self, body: Any, **_: Any) -> tuple[int, Any]:
        name = _require(body, "name", str, "POST /api/public/v2/datasets")
        now = _now_iso()
        with self.lock:
            dataset = self.datasets.get(name)
            if dataset is None:  # upsert on name
                dataset = {"id": uuid.uuid4().hex, "name": name, "projectId": self.project_id, "createdAt": now}
                self.datasets[name] = dataset
            dataset.update({
                "description": body.get("description"), "metadata": body.get("metadata"),
                "inputSchema": body.get("inputSchema"), "expectedOutputSchema": body.get("expectedOutputSchema"),
                "updatedAt": now,
            })
            return 200, dict(dataset)

    def list_datasets(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        with self.lock:
            items = [dict(d) for d in self.datasets.values()]
        page, meta = _paginate(items, query)
        return 200, {"data": page, "meta": meta}

    def get_dataset(self, name: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            dataset = self.datasets.get(name)
        if dataset is None:
            raise HttpError(404, f"Dataset {name!r} not found", "resource_not_found")
        return 200, dict(dataset)

    def post_dataset_item(self, body: Any, **_: Any) -> tuple[int, Any]:
        where = "POST /api/public/dataset-items"
        dataset_name = _require(body, "datasetName", str, where)
        now = _now_iso()
        with self.lock:
            dataset = self.datasets.get(dataset_name)
            if dataset is None:
                raise HttpError(404, f"{where}: dataset {dataset_name!r} not found", "resource_not_found")
            item_id = body.get("id") or uuid.uuid4().hex
            item = self.dataset_items.get(item_id)
            if item is None:  # upsert on id
                item = {"id": item_id, "createdAt": now}
                self.dataset_items[item_id] = item
            item.update({
                "status": body.get("status") or "ACTIVE", "input": body.get("input"),
                "expectedOutput": body.get("expectedOutput"), "metadata": body.get("metadata"),
                "sourceTraceId": body.get("sourceTraceId"), "sourceObservationId": body.get("sourceObservationId"),
                "datasetId": dataset["id"], "datasetName": dataset_name, "updatedAt": now, "mediaReferences": [],
            })
            return 200, dict(item)

    def list_dataset_items(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        name = _str_param(query, "datasetName")
        trace = _str_param(query, "sourceTraceId")
        obs = _str_param(query, "sourceObservationId")
        with self.lock:
            items = [dict(i) for i in self.dataset_items.values()
                     if (name is None or i["datasetName"] == name) and (trace is None or i["sourceTraceId"] == trace)
                     and (obs is None or i["sourceObservationId"] == obs)]
        items.sort(key=lambda i: i["createdAt"])
        page, meta = _paginate(items, query)
        return 200, {"data": page, "meta": meta}

    def get_dataset_item(self, item_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            item = self.dataset_items.get(item_id)
        if item is None:
            raise HttpError(404, f"Dataset item {item_id!r} not found", "resource_not_found")
        return 200, dict(item)

    def delete_dataset_item(self, item_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            if self.dataset_items.pop(item_id, None) is None:
                raise HttpError(404, f"Dataset item {item_id!r} not found", "resource_not_found")
        return 200, {"message": "Dataset item successfully deleted"}

    # ----------------------------------------------------------------- prompts
    def post_prompt(self, body: Any, **_: Any) -> tuple[int, Any]:
        where = "POST /api/public/v2/prompts"
        name = _require(body, "name", str, where)
        kind = body.get("type") or "text"
        prompt = body.get("prompt")
        if kind == "chat" and not isinstance(prompt, list):
            raise HttpError(400, f"{where}: a chat prompt needs 'prompt' as a list of messages")
        if kind == "text" and not isinstance(prompt, str):
            raise HttpError(400, f"{where}: a text prompt needs 'prompt' as a string")
        labels = list(dict.fromkeys(body.get("labels") or []))
        if "latest" in labels:
            raise HttpError(400, f"{where}: the 'latest' label is managed by Langfuse")
        with self.lock:
            versions = self.prompts.setdefault(name, [])
            for old in versions:  # labels are unique across versions; 'latest' moves to the new one
                old["labels"] = [lab for lab in old["labels"] if lab not in labels and lab != "latest"]
            tags = body.get("tags")
            if tags is None:
                tags = versions[-1]["tags"] if versions else []
            for old in versions:
                old["tags"] = list(tags)  # tags are the same across versions
            now = _now_iso()
            version = {
                "type": kind, "name": name, "version": len(versions) + 1, "prompt": prompt,
                "config": body.get("config") if body.get("config") is not None else {},
                "labels": labels + ["latest"], "tags": list(tags), "commitMessage": body.get("commitMessage"),
                "resolutionGraph": None, "_updatedAt": now,
            }
            versions.append(version)
            return 200, self._public(version)

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if not k.startswith("_")}

    def get_prompt(self, name: str, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        version = _int_param(query, "version", 0)
        label = _str_param(query, "label")
        with self.lock:
            versions = self.prompts.get(name, [])
            if version:
                found = [v for v in versions if v["version"] == version]
            else:
                wanted = label or "production"
                found = [v for v in versions if wanted in v["labels"]]
            if not found:
                what = f"version {version}" if version else f"label {label or 'production'!r}"
                raise HttpError(404, f"Prompt {name!r} with {what} not found", "resource_not_found")
            return 200, self._public(found[-1])

    def list_prompts(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        name, label, tag = _str_param(query, "name"), _str_param(query, "label"), _str_param(query, "tag")
        with self.lock:
            metas = []
            for prompt_name, versions in sorted(self.prompts.items()):
                chosen = [v for v in versions if (label is None or label in v["labels"]) and (tag is None or tag in v["tags"])]
                if (name is not None and prompt_name != name) or not chosen:
                    continue
                metas.append({
                    "name": prompt_name, "type": chosen[-1]["type"], "versions": [v["version"] for v in chosen],
                    "labels": sorted({lab for v in chosen for lab in v["labels"]}), "tags": list(chosen[-1]["tags"]),
                    "lastUpdatedAt": chosen[-1]["_updatedAt"], "lastConfig": chosen[-1]["config"],
                })
        page, meta = _paginate(metas, query)
        return 200, {"data": page, "meta": meta}

    def patch_prompt_version(self, name: str, version: str, body: Any, **_: Any) -> tuple[int, Any]:
        labels = _require(body, "newLabels", list, "PATCH prompt version")
        if "latest" in labels:
            raise HttpError(400, "The 'latest' label is managed by Langfuse")
        with self.lock:
            versions = self.prompts.get(name, [])
            target = next((v for v in versions if v["version"] == int(version)), None)
            if target is None:
                raise HttpError(404, f"Prompt {name!r} version {version} not found", "resource_not_found")
            for other in versions:
                if other is not target:
                    other["labels"] = [lab for lab in other["labels"] if lab not in labels]
            keep_latest = ["latest"] if "latest" in target["labels"] else []
            target["labels"] = list(dict.fromkeys(list(labels) + keep_latest))
            return 200, self._public(target)

    # ----------------------------------------------------------------- evaluators (v2)
    def post_evaluator(self, body: Any, **_: Any) -> tuple[int, Any]:
        where = "POST /api/public/v2/evaluators"
        name = _require(body, "name", str, where)
        kind = body.get("type") or "llm_as_judge"
        now = _now_iso()
        evaluator: dict[str, Any] = {
            "type": kind, "id": uuid.uuid4().hex, "name": name, "description": body.get("description"),
            "status": "active", "evaluationRuleAssignments": [], "createdAt": now, "updatedAt": now,
        }
        self._apply_evaluator_definition(evaluator, body, where)
        with self.lock:
            self.evaluators[evaluator["id"]] = evaluator
            self.evaluator_versions[evaluator["id"]] = []
            self._new_evaluator_version(evaluator, now)
            return 200, dict(evaluator)

    def _apply_evaluator_definition(self, evaluator: dict[str, Any], body: dict[str, Any], where: str) -> None:
        if evaluator["type"] == "llm_as_judge":
            prompt = body.get("prompt")
            if prompt is None:
                raise HttpError(400, f"{where}: 'prompt' is required for llm_as_judge", "invalid_request")
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            output = _require(body, "outputDefinition", dict, where)
            if output.get("dataType") not in ("NUMERIC", "BOOLEAN", "CATEGORICAL"):
                raise HttpError(400, f"{where}: outputDefinition.dataType must be NUMERIC, BOOLEAN or CATEGORICAL", "invalid_request")
            text = " ".join(str(m.get("content", "")) for m in messages)
            variables = list(dict.fromkeys(re.findall(r"\{\{\s*([\w.]+)\s*\}\}", text)))
            mapping = body.get("variableMapping") or []
            unknown = [m.get("variable") for m in mapping if m.get("variable") not in variables]
            if unknown:
                raise HttpError(400, f"{where}: variableMapping names unknown variable(s) {unknown}; the prompt has {variables}", "invalid_request")
            evaluator.update({"prompt": messages, "variables": variables, "variableMapping": mapping,
                              "modelConfig": body.get("modelConfig"), "outputDefinition": output})
        elif evaluator["type"] == "code":
            evaluator.update({"sourceCode": _require(body, "sourceCode", str, where),
                              "sourceCodeLanguage": _require(body, "sourceCodeLanguage", str, where)})
        else:
            raise HttpError(400, f"{where}: unknown evaluator type {evaluator['type']!r}", "invalid_request")

    def _new_evaluator_version(self, evaluator: dict[str, Any], now: str) -> None:
        versions = self.evaluator_versions[evaluator["id"]]
        version = {"id": uuid.uuid4().hex, "version": len(versions) + 1, "createdAt": now, "type": evaluator["type"]}
        for key in ("prompt", "variables", "variableMapping", "modelConfig", "outputDefinition", "sourceCode", "sourceCodeLanguage"):
            if key in evaluator:
                version[key] = evaluator[key]
        versions.append(version)
        evaluator.update({"versionId": version["id"], "version": version["version"], "versionCreatedAt": now})

    def list_evaluators(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        with self.lock:
            items = [dict(e) for e in sorted(self.evaluators.values(), key=lambda e: (e["createdAt"], e["id"]))]
        return 200, self._cursor_page(items, query)

    @staticmethod
    def _cursor_page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
        limit = _int_param(query, "limit", 50, minimum=1, maximum=100)
        cursor = _str_param(query, "cursor")
        start = 0
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
            except Exception:
                raise HttpError(400, f"Invalid cursor: {cursor!r}") from None
        page = items[start : start + limit]
        meta: dict[str, Any] = {}
        if start + limit < len(items):
            meta["cursor"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return {"data": page, "meta": meta}

    def get_evaluator(self, evaluator_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            evaluator = self.evaluators.get(evaluator_id)
        if evaluator is None:
            raise HttpError(404, f"Evaluator {evaluator_id!r} not found", "resource_not_found")
        return 200, dict(evaluator)

    def patch_evaluator(self, evaluator_id: str, body: Any, **_: Any) -> tuple[int, Any]:
        where = f"PATCH /api/public/v2/evaluators/{evaluator_id}"
        with self.lock:
            evaluator = self.evaluators.get(evaluator_id)
            if evaluator is None:
                raise HttpError(404, f"Evaluator {evaluator_id!r} not found", "resource_not_found")
            if not isinstance(body, dict):
                raise HttpError(400, f"{where}: body must be a JSON object")
            for key in ("name", "description"):
                if key in body:
                    evaluator[key] = body[key]
            now = _now_iso()
            if "prompt" in body or "sourceCode" in body:  # a new definition is a new version
                self._apply_evaluator_definition(evaluator, {**evaluator, **body}, where)
                self._new_evaluator_version(evaluator, now)
            evaluator["updatedAt"] = now
            return 200, dict(evaluator)

    def delete_evaluator(self, evaluator_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            if self.evaluators.pop(evaluator_id, None) is None:
                raise HttpError(404, f"Evaluator {evaluator_id!r} not found", "resource_not_found")
            self.evaluator_versions.pop(evaluator_id, None)
        return 200, {"id": evaluator_id}

    def list_evaluator_versions(self, evaluator_id: str, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        with self.lock:
            if evaluator_id not in self.evaluators:
                raise HttpError(404, f"Evaluator {evaluator_id!r} not found", "resource_not_found")
            items = [dict(v) for v in reversed(self.evaluator_versions[evaluator_id])]
        return 200, self._cursor_page(items, query)

    # ----------------------------------------------------------------- evaluation rules (v2)
    def post_evaluation_rule(self, body: Any, **_: Any) -> tuple[int, Any]:
        where = "POST /api/public/v2/evaluation-rules"
        name = _require(body, "name", str, where)
        enabled = _require(body, "enabled", bool, where)
        assignments = _require(body, "evaluatorAssignments", list, where)
        now = _now_iso()
        rule = {"id": uuid.uuid4().hex, "name": name, "enabled": enabled, "createdAt": now, "updatedAt": now}
        with self.lock:
            self._apply_rule(rule, {**body, "evaluatorAssignments": assignments}, where)
            self.evaluation_rules[rule["id"]] = rule
            return 200, dict(rule)

    def _apply_rule(self, rule: dict[str, Any], body: dict[str, Any], where: str) -> None:
        sampling = body.get("sampling", rule.get("sampling", 1.0))
        if sampling is None:
            sampling = 1.0
        if not isinstance(sampling, (int, float)) or not 0 < sampling <= 1:
            raise HttpError(400, f"{where}: 'sampling' must be in (0, 1], got {sampling!r}", "invalid_request")
        assignments = body.get("evaluatorAssignments", rule.get("evaluatorAssignments", []))
        for i, assignment in enumerate(assignments):
            if assignment.get("evaluatorId") not in self.evaluators:
                raise HttpError(404, f"{where}: evaluatorAssignments[{i}]: evaluator {assignment.get('evaluatorId')!r} not found", "resource_not_found")
        for evaluator in self.evaluators.values():
            evaluator["evaluationRuleAssignments"] = [a for a in evaluator["evaluationRuleAssignments"] if a["evaluationRuleId"] != rule["id"]]
        for assignment in assignments:
            self.evaluators[assignment["evaluatorId"]]["evaluationRuleAssignments"].append(
                {"evaluationRuleId": rule["id"], "variableMappingOverride": assignment.get("variableMapping")}
            )
        rule.update({
            "sampling": float(sampling), "filter": body.get("filter", rule.get("filter")) or [],
            "evaluatorAssignments": [{"evaluatorId": a["evaluatorId"], "variableMapping": a.get("variableMapping")} for a in assignments],
        })
        if "name" in body:
            rule["name"] = body["name"]
        if "enabled" in body:
            rule["enabled"] = body["enabled"]

    def list_evaluation_rules(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        with self.lock:
            items = [dict(r) for r in sorted(self.evaluation_rules.values(), key=lambda r: (r["createdAt"], r["id"]))]
        return 200, self._cursor_page(items, query)

    def get_evaluation_rule(self, rule_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            rule = self.evaluation_rules.get(rule_id)
        if rule is None:
            raise HttpError(404, f"Evaluation rule {rule_id!r} not found", "resource_not_found")
        return 200, dict(rule)

    def patch_evaluation_rule(self, rule_id: str, body: Any, **_: Any) -> tuple[int, Any]:
        where = f"PATCH /api/public/v2/evaluation-rules/{rule_id}"
        with self.lock:
            rule = self.evaluation_rules.get(rule_id)
            if rule is None:
                raise HttpError(404, f"Evaluation rule {rule_id!r} not found", "resource_not_found")
            if not isinstance(body, dict):
                raise HttpError(400, f"{where}: body must be a JSON object")
            self._apply_rule(rule, body, where)
            rule["updatedAt"] = _now_iso()
            return 200, dict(rule)

    def delete_evaluation_rule(self, rule_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            if self.evaluation_rules.pop(rule_id, None) is None:
                raise HttpError(404, f"Evaluation rule {rule_id!r} not found", "resource_not_found")
            for evaluator in self.evaluators.values():
                evaluator["evaluationRuleAssignments"] = [a for a in evaluator["evaluationRuleAssignments"] if a["evaluationRuleId"] != rule_id]
        return 200, {"id": rule_id}

    # ----------------------------------------------------------------- comments
    def post_comment(self, body: Any, **_: Any) -> tuple[int, Any]:
        where = "POST /api/public/comments"
        object_type = _require(body, "objectType", str, where)
        if object_type not in ("TRACE", "OBSERVATION", "SESSION", "PROMPT"):
            raise HttpError(400, f"{where}: unknown objectType {object_type!r}")
        content = _require(body, "content", str, where)
        if len(content) > 5000:
            raise HttpError(400, f"{where}: 'content' is longer than 5000 characters")
        now = _now_iso()
        comment = {
            "id": uuid.uuid4().hex, "projectId": self.project_id, "createdAt": now, "updatedAt": now,
            "objectType": object_type, "objectId": _require(body, "objectId", str, where), "content": content,
            "authorUserId": body.get("authorUserId"),
        }
        with self.lock:
            self.comments[comment["id"]] = comment
        return 200, {"id": comment["id"]}

    def list_comments(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        wanted = {k: _str_param(query, k) for k in ("objectType", "objectId", "authorUserId")}
        with self.lock:
            items = [dict(c) for c in self.comments.values() if all(v is None or c.get(k) == v for k, v in wanted.items())]
        items.sort(key=lambda c: c["createdAt"])
        page, meta = _paginate(items, query)
        return 200, {"data": page, "meta": meta}

    def get_comment(self, comment_id: str, **_: Any) -> tuple[int, Any]:
        with self.lock:
            comment = self.comments.get(comment_id)
        if comment is None:
            raise HttpError(404, f"Comment {comment_id!r} not found", "resource_not_found")
        return 200, dict(comment)


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) overflows when a client opens a dozen connections at
    # once; the kernel then drops SYNs and the client retries only after a second.
    request_queue_size = 128
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler that forwards every request to `server_fake.handle`."""

    protocol_version = "HTTP/1.1"
    server_fake: FakeLangfuse
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    # Headers and body go out in one write with Nagle off: with http.server's separate writes a
    # small body waited for the client's delayed ACK, adding about 40 ms to every request.
    disable_nagle_algorithm = True

    def _dispatch(self) -> None:
        length = self.headers.get("Content-Length")
        if length:
            body = self.rfile.read(int(length))
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = b""
        status, headers, data = self.server_fake.handle(self.command, self.path, dict(self.headers.items()), body)
        try:
            reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            head = [f"HTTP/1.1 {status} {reason}", f"Date: {self.date_time_string()}", "Server: fake-langfuse"]
            head += [f"{key}: {value}" for key, value in headers.items()]
            head.append(f"Content-Length: {len(data)}")
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logs
        pass


# --------------------------------------------------------------------- pytest fixtures
try:
    import pytest
except ImportError:  # pragma: no cover - the module also runs as a plain script
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_langfuse() -> Iterator[FakeLangfuse]:
        """A running fake with 60 seeded traces (seed 1); stopped after the test."""
        with FakeLangfuse(traces=60, seed=1) as fake:
            yield fake

    @pytest.fixture
    def fake_langfuse_factory() -> Iterator[Callable[..., FakeLangfuse]]:
        """Call with FakeLangfuse(...) keyword arguments; every server made is stopped after the test."""
        made: list[FakeLangfuse] = []

        def make(**kwargs: Any) -> FakeLangfuse:
            fake = FakeLangfuse(**kwargs).start()
            made.append(fake)
            return fake

        yield make
        for fake in made:
            fake.stop()


# --------------------------------------------------------------------- separate process
class FakeLangfuseProcess:
    """Run the fake in a child process (for benchmarks: its CPU work then uses another core).

    Faults other than latency are not available this way; use FakeLangfuse in-process for those.
    """

    def __init__(self, *, traces: int, seed: int = 0, latency: float = 0.0, timeout: float = 120.0):
        self.args = ["--traces", str(traces), "--seed", str(seed), "--latency", str(latency)]
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.public_key = DEFAULT_PUBLIC_KEY
        self.secret_key = DEFAULT_SECRET_KEY

    def __enter__(self) -> "FakeLangfuseProcess":
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.langfuse_server", *self.args],
            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the child prints one JSON line once it listens
        if not line:
            self.proc.kill()
            raise RuntimeError("the fake Langfuse process exited before it was ready")
        info = json.loads(line)
        self.url, self.public_key, self.secret_key = info["url"], info["public_key"], info["secret_key"]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the child stops when its stdin closes
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Langfuse server (127.0.0.1, until stdin closes).")
    parser.add_argument("--traces", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeLangfuse(traces=args.traces, seed=args.seed, latency=args.latency).start()
    print(json.dumps({"url": fake.url, "public_key": fake.public_key, "secret_key": fake.secret_key}), flush=True)
    try:
        sys.stdin.read()  # blocks until the parent closes our stdin (or dies)
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
