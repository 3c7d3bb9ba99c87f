"""Targets: the user's own app, called with synthetic queries; every answer becomes a trace.

Two kinds:

- `HttpTarget`: any JSON-over-HTTP endpoint. A URL, a method, headers, a JSON body template in
  which `{{query}}` stands for the query, and a path to the answer in the response
  (`data.answer`, `choices[0].message.content`; empty means the whole body).
- `OpenAITarget`: an OpenAI-compatible chat endpoint with a system prompt (the app is a prompt
  on a model), called through `integrations.llm.LLMClient` without its cache: every run must
  really call the app.

Secrets never enter the database: a header value (or the OpenAI API key) may be a reference,
`${ENV:NAME}` for an environment variable or `${SECRET:section.key}` for Streamlit secrets,
resolved only when a run calls the target. Saving a target whose secret-looking header holds a
literal value is refused (`check_no_literal_secrets`).

Running (`run_target`): the queries of a run go out with bounded concurrency; HTTP calls are
retried on 408/429/5xx and connection errors, waiting what `Retry-After` says (else exponential
backoff with jitter); the caller sees progress and may cancel. Each result is stored as a
`TraceRecord` in the run's round, with the query's tuple as `dimensions`, the latency, and, for a
call that failed for good, `error` set (a failed call is a trace, never a lost query). The trace's
`source_id` is `run<run id>-query<query id>`, so running the same run again sends only the
queries that have no trace yet, and never stores one twice.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator, model_validator

from evalboard import query_store
from evalboard.models import TraceRecord
from evalboard.query_store import StoredQuery, StoredTarget, TargetRun, trace_source, trace_source_id
from evalboard.store import Store, StoreError
from integrations.retry_after import retry_after_seconds
from integrations.llm import LLMCallError, LLMClient, LLMSettings

QUERY_PLACEHOLDER = re.compile(r"\{\{\s*query\s*\}\}")
REFERENCE = re.compile(r"\$\{(ENV|SECRET):([A-Za-z0-9_.\-]+)\}")
RETRYABLE = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
#: Header names whose values are credentials: they must be references, never literals.
SECRET_HEADER = re.compile(r"(?i)authorization|cookie|token|secret|api[-_]?key|password|signature")
DEFAULT_BODY = '{"query": "{{query}}"}'
#: Longest answer stored in a trace; a runaway response should not bloat the database.
MAX_ANSWER_CHARS = 200_000


class TargetError(ValueError):
    """A target that cannot be used as configured; the message says what and where."""


# ------------------------------------------------------------------------------------- config


class _TargetBase(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    concurrency: int = Field(default=8, ge=1, le=256)
    timeout: float = Field(default=60.0, gt=0, le=3600)
    max_retries: int = Field(default=3, ge=0, le=20)

    @field_validator("name")
    @classmethod
    def _strip(cls, name: str) -> str:
        name = name.strip()
        if not name:
            raise ValueError("a target needs a name")
        return name


class HttpTarget(_TargetBase):
    kind: Literal["http"] = "http"
    url: str
    method: Literal["POST", "PUT", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body_template: str = DEFAULT_BODY
    answer_path: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        url = url.strip()
        if not re.match(r"https?://[^\s/]+", url):
            raise ValueError(f"the URL must start with http:// or https:// and name a host, got {url!r}")
        return url

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: Any) -> Any:
        return method.strip().upper() if isinstance(method, str) else method

    @model_validator(mode="after")
    def _template(self) -> HttpTarget:
        if self.method == "GET":
            if not QUERY_PLACEHOLDER.search(self.url):
                raise ValueError("a GET target must put {{query}} in the URL (e.g. ...?q={{query}})")
        else:
            check_body_template(self.body_template)
        parse_answer_path(self.answer_path)
        return self


class OpenAITarget(_TargetBase):
    kind: Literal["openai"] = "openai"
    base_url: str
    model: str = Field(min_length=1)
    system_prompt: str = ""
    api_key: str = ""  # a ${ENV:...} / ${SECRET:...} reference, or empty for servers without keys
    temperature: float | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, url: str) -> str:
        url = url.strip()
        if not re.match(r"https?://[^\s/]+", url):
            raise ValueError(f"the base URL must start with http:// or https://, got {url!r}")
        return url

    @field_validator("api_key")
    @classmethod
    def _key_is_reference(cls, key: str) -> str:
        key = key.strip()
        if key and not REFERENCE.fullmatch(key):
            raise ValueError("the API key must be a reference such as ${ENV:MYAPP_OPENAI_KEY} "
                             "(or ${SECRET:section.key}), never the key itself: targets are saved in the database")
        return key


TargetConfig = Annotated[HttpTarget | OpenAITarget, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[HttpTarget | OpenAITarget] = TypeAdapter(TargetConfig)


def parse_target(data: Mapping[str, Any]) -> HttpTarget | OpenAITarget:
    """A target config from a dict (the form, a saved row); TargetError lists what is wrong."""
    try:
        target = _ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'target'}: {e['msg'].removeprefix('Value error, ')}"
                 for e in exc.errors()]
        raise TargetError("; ".join(parts)) from None
    if isinstance(target, HttpTarget):
        check_no_literal_secrets(target.headers)
    return target


def target_from_stored(stored: StoredTarget) -> HttpTarget | OpenAITarget:
    return parse_target({**stored.config, "kind": stored.kind, "name": stored.name})


def save_target(store: Store, project_id: int, target: HttpTarget | OpenAITarget) -> int:
    """Validate and save (create or replace by name); returns the target's id."""
    target = parse_target(target.model_dump())
    config = target.model_dump(exclude={"name", "kind"})
    return query_store.save_target(store, project_id, target.name, target.kind, config)


def check_no_literal_secrets(headers: Mapping[str, str]) -> None:
    """Refuse credential headers whose value holds no `${...}` reference (it would be stored)."""
    for name, value in headers.items():
        if SECRET_HEADER.search(name) and value.strip() and not REFERENCE.search(value):
            raise TargetError(
                f"header '{name}' looks like a credential: write a reference such as "
                f"'Bearer ${{ENV:MYAPP_TOKEN}}' and set that environment variable (or "
                f"${{SECRET:section.key}} in .streamlit/secrets.toml); targets are saved in the database")


def parse_headers(text: str) -> dict[str, str]:
    """Headers typed one per line as `Name: value`; TargetError names a bad line."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise TargetError(f"headers line {number}: expected 'Name: value', got {line.strip()!r}")
        headers[name] = value.strip()
    return headers


def headers_text(headers: Mapping[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers.items())


# ------------------------------------------------------------------------------------- secrets


def resolve_references(text: str, *, env: Mapping[str, str] | None = None,
                       secrets: Mapping[str, Any] | None = None, where: str = "value") -> str:
    """Replace `${ENV:NAME}` with the environment variable and `${SECRET:a.b}` with secrets[a][b].

    A missing one raises TargetError naming the reference and `where` it is used (never a value).
    """
    env = os.environ if env is None else env

    def lookup(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "ENV":
            value = env.get(name)
            if not value:
                raise TargetError(f"{where}: environment variable {name} is not set (referenced as ${{ENV:{name}}})")
            return value
        node: Any = secrets or {}
        for part in name.split("."):
            if not hasattr(node, "get") or node.get(part) is None:
                raise TargetError(f"{where}: secret '{name}' is not in .streamlit/secrets.toml "
                                  f"(referenced as ${{SECRET:{name}}})")
            node = node.get(part)
        return str(node)

    return REFERENCE.sub(lookup, text)


# ------------------------------------------------------------------------------------- body and path


def render_body(template: str, query: str) -> str:
    """The request body: `template` with each `{{query}}` replaced so the result is valid JSON.

    Inside a JSON string ("Q: {{query}}") the query goes in escaped (quotes, backslashes,
    newlines); outside one ({"q": {{query}}}) it goes in as a JSON string. A scan tracks whether
    each placeholder sits inside a string (a quote not preceded by a backslash toggles it).
    Raises TargetError if the result is not JSON.
    """
    encoded = json.dumps(query, ensure_ascii=False)
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(template):
        match = QUERY_PLACEHOLDER.match(template, i)
        if match:
            out.append(encoded[1:-1] if in_string else encoded)
            i = match.end()
            continue
        char = template[i]
        if char == "\\" and in_string:
            out.append(template[i:i + 2])
            i += 2
            continue
        if char == '"':
            in_string = not in_string
        out.append(char)
        i += 1
    body = "".join(out)
    try:
        json.loads(body)
    except ValueError as exc:
        raise TargetError(f"the body template is not valid JSON once {{{{query}}}} is filled in: {exc}") from None
    return body


def check_body_template(template: str) -> None:
    """A template must hold `{{query}}` and stay valid JSON for any query (checked with a nasty one)."""
    if not QUERY_PLACEHOLDER.search(template):
        raise ValueError('the body template must contain {{query}}, e.g. {"query": "{{query}}"}')
    try:
        render_body(template, 'a "quoted" \\ back\\slash\nnew line \u00e9')
    except TargetError as exc:
        raise ValueError(str(exc)) from None


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def parse_answer_path(path: str) -> list[str | int]:
    """`a.b[0].c` -> ["a", "b", 0, "c"]; "" -> [] (the whole body). TargetError on bad syntax."""
    path = path.strip().removeprefix("$").lstrip(".")
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        if path[pos] == "." and parts and pos + 1 < len(path):
            pos += 1
        match = _PATH_PART.match(path, pos)
        if not match:
            raise TargetError(f"answer path {path!r}: cannot read it at position {pos + 1}; "
                              "write keys with dots and list positions in brackets, e.g. choices[0].message.content")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return parts


def extract_answer(data: Any, path: str) -> Any:
    """The value at `path` in a parsed response; TargetError says which part is missing."""
    node = data
    walked = ""
    for part in parse_answer_path(path):
        if isinstance(part, int):
            if not isinstance(node, list):
                raise TargetError(f"answer path: {walked or 'the response'} is not a list, cannot take [{part}]")
            if not -len(node) <= part < len(node):
                raise TargetError(f"answer path: {walked or 'the response'} has {len(node)} items, no [{part}]")
            node = node[part]
            walked += f"[{part}]"
        else:
            if not isinstance(node, dict):
                raise TargetError(f"answer path: {walked or 'the response'} is not an object, has no key '{part}'")
            if part not in node:
                keys = ", ".join(list(node)[:10])
                raise TargetError(f"answer path: {walked or 'the response'} has no key '{part}' (keys: {keys})")
            node = node[part]
            walked += f".{part}" if walked else part
    return node


# ------------------------------------------------------------------------------------- one call


@dataclass
class CallResult:
    """One query sent: the answer (or the raw body when the answer path failed), timing, error."""

    output: Any = None
    error: str | None = None
    status: int | None = None
    attempts: int = 0
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended: datetime | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    model: str | None = None
    cancelled: bool = False  # cut short by cancel while waiting to retry: not an answer


class TargetCaller:
    """Sends single queries to one target. Build it once per run (it holds the HTTP connection
    pool or the LLM client) and `close()` it after. Secrets are resolved here, at build time."""

    def __init__(self, target: HttpTarget | OpenAITarget, *, env: Mapping[str, str] | None = None,
                 secrets: Mapping[str, Any] | None = None, retry_base_delay: float = 0.5,
                 max_retry_wait: float = 60.0) -> None:
        self.target = target
        self.retry_base_delay = retry_base_delay
        self.max_retry_wait = max_retry_wait
        self._http: httpx.Client | None = None
        self._llm: LLMClient | None = None
        if isinstance(target, HttpTarget):
            self._headers = {name: resolve_references(value, env=env, secrets=secrets, where=f"header '{name}'")
                             for name, value in target.headers.items()}
            self._headers.setdefault("Content-Type", "application/json")
            # Connection pool as wide as the concurrency, so parallel calls do not queue here.
            limits = httpx.Limits(max_connections=target.concurrency, max_keepalive_connections=target.concurrency)
            self._http = httpx.Client(timeout=target.timeout, limits=limits, follow_redirects=True)
        else:
            key = resolve_references(target.api_key, env=env, secrets=secrets, where="API key") if target.api_key else None
            settings = LLMSettings(base_url=target.base_url, api_key=key, model=target.model,
                                   temperature=target.temperature, timeout=target.timeout,
                                   max_concurrency=target.concurrency, max_retries=target.max_retries,
                                   retry_base_delay=retry_base_delay, max_retry_wait=max_retry_wait)
            self._llm = LLMClient(settings, cache=None)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> TargetCaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, query: str, cancel: threading.Event | None = None) -> CallResult:
        """Send one query; never raises for a failed call (the error is in the result)."""
        cancel = cancel or threading.Event()
        result = CallResult()
        clock = time.perf_counter()
        try:
            if self._http is not None:
                self._call_http(query, result, cancel)
            else:
                self._call_openai(query, result)
        except TargetError as exc:
            result.error = str(exc)
        except Exception as exc:  # a bug or an odd server must cost one trace, not the run
            result.error = f"{type(exc).__name__}: {exc}"
        result.latency_ms = (time.perf_counter() - clock) * 1000.0
        result.ended = datetime.now(UTC)
        return result

    def _call_openai(self, query: str, result: CallResult) -> None:
        assert self._llm is not None and isinstance(self.target, OpenAITarget)
        messages = ([{"role": "system", "content": self.target.system_prompt}] if self.target.system_prompt else [])
        messages.append({"role": "user", "content": query})
        try:
            answer = self._llm.complete(messages, use_cache=False, feature="target")
        except LLMCallError as exc:
            result.error, result.status, result.attempts = str(exc), exc.status, exc.attempts
            return
        result.output, result.status, result.attempts = answer.text, 200, 1
        result.input_tokens, result.output_tokens = answer.input_tokens, answer.output_tokens
        result.cost, result.model = answer.cost, answer.model

    def _call_http(self, query: str, result: CallResult, cancel: threading.Event) -> None:
        assert self._http is not None and isinstance(self.target, HttpTarget)
        target = self.target
        if target.method == "GET":
            url, body = _fill_url(target.url, query), None
        else:
            url, body = target.url, render_body(target.body_template, query).encode()
        while True:
            result.attempts += 1
            retry_after = None
            try:
                response = self._http.request(target.method, url, content=body, headers=self._headers)
            except httpx.TransportError as exc:  # connection refused, reset, timeout
                result.status, error = None, f"{type(exc).__name__}: {exc or 'no answer'}"
                retryable = True
            else:
                result.status = response.status_code
                if response.is_success:
                    self._read_answer(response, result)
                    return
                error = f"HTTP {response.status_code}: {response.text[:300]}"
                retryable = response.status_code in RETRYABLE
                retry_after = retry_after_seconds(response.headers)
            if not retryable or result.attempts > target.max_retries:
                result.error = error + (f" (after {result.attempts} attempts)" if result.attempts > 1 else "")
                return
            if retry_after is not None and retry_after > self.max_retry_wait:
                result.error = f"{error} (the server asked to wait {retry_after:.0f} s; gave up)"
                return
            if retry_after is not None:
                wait = retry_after + random.uniform(0, 0.1 * retry_after)
            else:
                ceiling = min(self.max_retry_wait, self.retry_base_delay * 2 ** (result.attempts - 1))
                wait = random.uniform(ceiling / 2, ceiling)
            if cancel.wait(wait):
                result.error, result.cancelled = f"{error} (cancelled while waiting to retry)", True
                return

    def _read_answer(self, response: httpx.Response, result: CallResult) -> None:
        target = self.target
        assert isinstance(target, HttpTarget)
        try:
            data = response.json()
        except ValueError:
            if target.answer_path.strip():
                result.output = response.text[:MAX_ANSWER_CHARS]
                result.error = "the response is not JSON, so the answer path cannot be applied"
            else:
                result.output = response.text[:MAX_ANSWER_CHARS]
            return
        try:
            answer = extract_answer(data, target.answer_path)
        except TargetError as exc:
            result.output, result.error = data, str(exc)  # keep the body so the path can be fixed
            return
        if isinstance(answer, str):
            answer = answer[:MAX_ANSWER_CHARS]
        result.output = answer


def _fill_url(template: str, query: str) -> str:
    """A GET URL with the query percent-encoded where `{{query}}` stands."""
    return QUERY_PLACEHOLDER.sub(lambda _: quote(query, safe=""), template)


# ------------------------------------------------------------------------------------- runs


def to_trace(run: TargetRun, query: StoredQuery, call: CallResult) -> TraceRecord:
    """One call as a trace: the query in, the answer out, the tuple as `dimensions`."""
    return TraceRecord(
        source=trace_source(run.target_name), source_id=trace_source_id(run.id, query.id),
        name=f"query {query.id}", timestamp=call.started, end_time=call.ended,
        input={"query": query.text}, output=call.output, latency_ms=call.latency_ms,
        dimensions=query.dimensions, error=call.error, tags=["synthetic", f"run:{run.id}"],
        input_tokens=call.input_tokens, output_tokens=call.output_tokens, cost=call.cost,
        metadata={"query_id": query.id, "tuple_id": query.tuple_id, "run_id": run.id,
                  "target": run.target_name, "http_status": call.status, "attempts": call.attempts,
                  **({"model": call.model} if call.model else {})},
    )


def start_run(store: Store, project_id: int, target_id: int, *, round_name: str,
              query_ids: Sequence[int] | None = None) -> TargetRun:
    """Create a run of the target over `query_ids` (default: every kept query) and the new round
    its traces go into (the round's sampling records the target and the run)."""
    stored = query_store.get_target(store, target_id)
    if stored is None or stored.project_id != project_id:
        raise StoreError(f"No target {target_id} in this project.")
    target_from_stored(stored)  # refuse a config that no longer validates before making a round
    round_name = round_name.strip()
    if not round_name:
        raise StoreError("Name the round the answers go into.")
    if any(r.name == round_name for r in store.list_rounds(project_id)):
        raise StoreError(f"This project already has a round named '{round_name}'.")
    if query_ids is None:
        query_ids = [q.id for q in query_store.get_queries(store, project_id, ["kept"])]
    run_id = query_store.create_run(store, project_id, stored, query_ids, None)
    try:
        rnd = store.create_round(project_id, round_name, [],
                                 description=f"Kept queries sent to target '{stored.name}'.",
                                 sampling={"method": "target", "target": stored.name, "run_id": run_id,
                                           "n": len(query_ids)})
    except StoreError:
        query_store.delete_run(store, run_id)
        raise
    query_store.attach_round(store, run_id, rnd.id)
    run = query_store.get_run(store, run_id)
    assert run is not None
    return run


@dataclass
class RunReport:
    """What `run_target` did this time: calls made, ok, failed, skipped (already had a trace),
    cancelled (not sent), and the run's totals after it."""

    run_id: int
    round_id: int | None
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.sent} queries sent: {self.succeeded} answered, {self.failed} failed"
        if self.skipped:
            text += f"; {self.skipped} already had a trace from this run"
        if self.cancelled:
            text += f"; {self.cancelled} not sent (cancelled)"
        return text + "."


def pending_query_ids(store: Store, run: TargetRun, *, retry_errors: bool = False) -> list[int]:
    """The run's queries without a trace yet (and, with `retry_errors`, those whose trace is a
    failed call)."""
    done = query_store.run_traces(store, run)
    return [q for q in run.query_ids if q not in done or (retry_errors and done[q][1])]


def run_target(store: Store, run_id: int, *, env: Mapping[str, str] | None = None,
               secrets: Mapping[str, Any] | None = None, retry_errors: bool = False,
               concurrency: int | None = None, on_progress: Callable[[int, int], None] | None = None,
               cancel: threading.Event | None = None, flush_every: int = 25,
               retry_base_delay: float = 0.5, drain_timeout: float = 10.0) -> RunReport:
    """Send the run's pending queries to its target and store each result as a trace.

    Workers call the target (at most `concurrency` at once, default the target's); this thread
    reports progress and writes traces in batches of `flush_every`, so a cancelled or killed run
    keeps what it finished and the next call of `run_target` on the same run sends only the rest.
    On cancel no new call starts; calls on the wire are awaited up to `drain_timeout` seconds and
    stored (a call still running after that is sent again by the next run).
    `retry_errors` also re-sends queries whose earlier call failed (their failed traces are
    replaced). Queries deleted since the run began are skipped.
    """
    run = query_store.get_run(store, run_id)
    if run is None:
        raise StoreError(f"No target run {run_id}.")
    target = parse_target({**{k: v for k, v in run.config.items() if k != "kind"},
                           "kind": run.config.get("kind", "http"), "name": run.target_name})
    report = RunReport(run_id=run.id, round_id=run.round_id)
    # Secrets resolve here: a missing one fails the run before anything is sent or deleted.
    caller = TargetCaller(target, env=env, secrets=secrets, retry_base_delay=retry_base_delay)
    done = query_store.run_traces(store, run)
    if retry_errors:
        failed_ids = [tid for tid, failed in done.values() if failed]
        if failed_ids:
            store.delete_traces(run.project_id, failed_ids)
            done = {q: v for q, v in done.items() if not v[1]}
    todo_ids = [q for q in run.query_ids if q not in done]
    report.skipped = len(run.query_ids) - len(todo_ids)
    todo = query_store.get_queries(store, run.project_id, ids=todo_ids)
    cancel = cancel or threading.Event()
    stop = threading.Event()
    results: queue.Queue[tuple[StoredQuery, CallResult]] = queue.Queue()
    order = iter(todo)
    order_lock = threading.Lock()

    with caller:
        query_store.update_run(store, run.id, status="running", succeeded=run.succeeded, failed=run.failed)

        def worker() -> None:
            while not stop.is_set() and not cancel.is_set():
                with order_lock:
                    query = next(order, None)
                if query is None:
                    return
                results.put((query, caller.call(query.text, cancel)))

        width = max(1, min(len(todo), concurrency or target.concurrency))
        threads = [threading.Thread(target=worker, daemon=True, name=f"target-run-{i}") for i in range(width)]
        for thread in threads:
            thread.start()
        pending: list[TraceRecord] = []
        received = 0

        def record(query: StoredQuery, call: CallResult) -> bool:
            """Count a result and queue its trace; False for a call cut short by cancel (no trace:
            the query stays pending for the next run)."""
            if call.cancelled:
                return False
            report.sent += 1
            if call.error:
                report.failed += 1
                if len(report.errors) < 20:
                    report.errors.append(f"query {query.id}: {call.error}")
            else:
                report.succeeded += 1
            pending.append(to_trace(run, query, call))
            return True

        def flush() -> None:
            if pending:
                store.add_traces(run.project_id, pending, round_id=run.round_id)
                pending.clear()

        try:
            while received < len(todo):
                if cancel.is_set():
                    break
                try:
                    query, call = results.get(timeout=0.05)
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and results.empty():
                        break
                    continue
                received += 1
                if not record(query, call):
                    continue
                if len(pending) >= flush_every:
                    flush()
                if on_progress is not None:
                    on_progress(received, len(todo))
        finally:
            stop.set()
            # Calls already on the wire were paid for: wait for them (up to drain_timeout) and
            # store them too, so a resume does not send them again.
            deadline = time.monotonic() + drain_timeout
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            while True:
                try:
                    query, call = results.get_nowait()
                except queue.Empty:
                    break
                received += 1
                record(query, call)
            flush()
            report.cancelled = len(todo) - report.sent
            totals = query_store.run_traces(store, run)
            failed_total = sum(1 for _, failed in totals.values() if failed)
            gone = set(todo_ids) - {q.id for q in todo}  # deleted since the run began
            complete = all(q in totals or q in gone for q in run.query_ids)
            status = "finished" if complete else "cancelled"
            query_store.update_run(store, run.id, status=status, succeeded=len(totals) - failed_total,
                                   failed=failed_total, finished=status == "finished")
    return report
