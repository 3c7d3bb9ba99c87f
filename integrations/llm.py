"""The LLM client every LLM feature uses: any OpenAI-compatible chat endpoint.

It talks to the server through the real `openai` SDK with a configurable base URL, so OpenAI,
Azure, vLLM, Ollama and LiteLLM all work. On top of the SDK it adds what an evaluation tool
needs when it makes thousands of calls:

- structured output: a pydantic model in, a validated object out (JSON-schema response format;
  when the server rejects that, JSON mode; then a plain prompt and the first JSON object in the
  text). A malformed answer is shown its error and asked again, then reported;
- many calls at once (`map`): bounded concurrency, a requests/tokens-per-minute budget, retries
  with backoff that honour Retry-After, cancellation, and one failure per item instead of one
  exception for the batch;
- a cache (the store's `llm_calls` table in the app, `DictCache` in tests): the same call twice
  costs one request;
- token usage and cost per call, from a configurable price table.

Settings come from explicit values, environment variables or the `[llm]` table of Streamlit
secrets (see `LLMSettings.resolve`). The API key never appears in reprs, logs or error messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import io
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit, urlunsplit

import openai
from pydantic import BaseModel, ValidationError

from integrations.retry_after import retry_after_seconds

log = logging.getLogger("evalboard.llm")

T = TypeVar("T", bound=BaseModel)

OPENAI_BASE_URL = "https://api.openai.com/v1"
CHAT_ENDPOINT = "/v1/chat/completions"
#: Statuses worth another try: timeouts, conflicts, rate limits and server errors.
RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
#: Batch states after which nothing changes any more.
BATCH_FINAL_STATES = frozenset({"completed", "failed", "expired", "cancelled"})


# =============================================================================== errors


class LLMNotConfigured(RuntimeError):
    """No LLM endpoint or model is configured; the message says how to configure one."""


class LLMCallError(RuntimeError):
    """A call failed for good (after retries, or at once for a client error such as 400/401).

    `status` is the HTTP status (None for timeouts and connection errors), `server_message`
    what the server said (with any key removed), `attempts` how many requests were made.
    """

    def __init__(self, message: str, *, status: int | None = None, server_message: str | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message
        self.attempts = attempts


class LLMCancelled(RuntimeError):
    """The caller cancelled while this call was waiting (for a retry or for the budget)."""


class LLMOutputError(ValueError):
    """The model's answer never became a valid object; `problems` lists what was wrong each time."""

    def __init__(self, message: str, *, problems: Sequence[str] = (), text: str | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems)
        self.text = text


# =============================================================================== settings


def _redact_url(url: str | None) -> str | None:
    """The URL without a user:password part, for reprs and messages."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))
    return url


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to call the LLM.

    `model` is the default; `feature_models` overrides it per feature (e.g. {"judge": "gpt-4.1"}).
    `temperature` None means the server's default. `requests_per_minute` / `tokens_per_minute`
    None means no budget. `prices` maps a model name to (input $, output $) per million tokens.
    `max_retries` counts retries after the first request; `output_retries` how many times a
    malformed structured answer is asked again.
    """

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    feature_models: dict[str, str] = field(default_factory=dict)
    temperature: float | None = None
    max_concurrency: int = 32
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout: float = 60.0
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_retries: int = 5
    output_retries: int = 2
    retry_base_delay: float = 0.5
    max_retry_wait: float = 120.0

    def __post_init__(self) -> None:
        if self.base_url and not re.match(r"https?://", self.base_url):
            raise ValueError(f"LLM base_url must start with http:// or https://, got {_redact_url(self.base_url)!r}")
        if self.max_concurrency < 1:
            raise ValueError(f"LLM max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.timeout <= 0:
            raise ValueError(f"LLM timeout must be positive seconds, got {self.timeout}")
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"LLM {name} must be positive (or unset for no budget), got {value}")
        for model, price in self.prices.items():
            if len(price) != 2 or any(not isinstance(p, (int, float)) or p < 0 for p in price):
                raise ValueError(
                    f"LLM price for {model!r} must be (input $/1M tokens, output $/1M tokens), got {price!r}"
                )

    def __repr__(self) -> str:  # the dataclass repr would show a password inside base_url
        return (f"LLMSettings(base_url={_redact_url(self.base_url)!r}, model={self.model!r}, "
                f"feature_models={self.feature_models!r}, api_key={'set' if self.api_key else 'unset'})")

    __str__ = __repr__

    @property
    def configured(self) -> bool:
        """True when there is a model and somewhere to send it (a base URL or an OpenAI key)."""
        return bool(self.model) and bool(self.base_url or self.api_key)

    def why_not_configured(self) -> str | None:
        """One plain line saying how to configure an LLM, or None when one is configured."""
        where = "or under [llm] in .streamlit/secrets.toml"
        if self.configured:
            return None
        if not self.model and not (self.base_url or self.api_key):
            return ("No LLM configured: set EVALBOARD_LLM_BASE_URL (or OPENAI_API_KEY for OpenAI) and "
                    f"EVALBOARD_LLM_MODEL, {where} (base_url, api_key, model).")
        if not self.model:
            return f"No LLM model chosen: set EVALBOARD_LLM_MODEL, {where} (model)."
        return ("No LLM endpoint: set EVALBOARD_LLM_BASE_URL (plus EVALBOARD_LLM_API_KEY if it needs one) "
                f"or OPENAI_API_KEY for OpenAI, {where} (base_url, api_key).")

    def model_for(self, feature: str | None = None) -> str | None:
        """The model a feature uses: its override, else the default."""
        return self.feature_models.get(feature or "", self.model) or self.model

    def cost(self, model: str | None, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """Dollars for one call: (input_tokens x input price + output_tokens x output price) / 1e6.

        None when the model has no price or the server reported no usage.
        """
        price = self.prices.get(model or "")
        if price is None or input_tokens is None or output_tokens is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000

    def replace(self, **changes: Any) -> LLMSettings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def resolve(
        cls,
        explicit: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, Any] | None = None,
    ) -> LLMSettings:
        """Settings from, highest precedence first: `explicit` values (e.g. typed in the session;
        None and "" are ignored), environment variables, then `secrets["llm"]` (the `[llm]` table
        of Streamlit secrets, passed in so this module needs no Streamlit).

        Environment: EVALBOARD_LLM_BASE_URL or OPENAI_BASE_URL, EVALBOARD_LLM_API_KEY or
        OPENAI_API_KEY, EVALBOARD_LLM_MODEL, EVALBOARD_LLM_MODEL_<FEATURE> (e.g. _JUDGE),
        EVALBOARD_LLM_TEMPERATURE, EVALBOARD_LLM_MAX_CONCURRENCY, EVALBOARD_LLM_REQUESTS_PER_MINUTE,
        EVALBOARD_LLM_TOKENS_PER_MINUTE, EVALBOARD_LLM_TIMEOUT, EVALBOARD_LLM_PRICES (JSON object
        model -> [input, output] $ per 1M tokens).
        Secrets: the same names in lower case without the prefix (base_url, api_key, model, ...),
        plus the tables [llm.models] (feature -> model) and [llm.prices] (model -> [in, out]).
        """
        env = os.environ if env is None else env
        layers: list[tuple[str, dict[str, Any]]] = []

        table = (secrets or {}).get("llm") if secrets is not None else None
        if table is not None:
            if not hasattr(table, "items"):
                raise ValueError("secrets [llm] must be a table of settings (base_url, api_key, model, ...)")
            layer = {k: v for k, v in table.items() if k not in ("models", "prices")}
            layer["feature_models"] = dict(table.get("models") or {})
            layer["prices"] = dict(table.get("prices") or {})
            layers.append(("secrets [llm]", layer))

        from_env: dict[str, Any] = {
            "base_url": env.get("EVALBOARD_LLM_BASE_URL") or env.get("OPENAI_BASE_URL"),
            "api_key": env.get("EVALBOARD_LLM_API_KEY") or env.get("OPENAI_API_KEY"),
            "model": env.get("EVALBOARD_LLM_MODEL"),
        }
        for name in ("temperature", "max_concurrency", "requests_per_minute", "tokens_per_minute", "timeout"):
            from_env[name] = env.get(f"EVALBOARD_LLM_{name.upper()}")
        prefix = "EVALBOARD_LLM_MODEL_"
        from_env["feature_models"] = {
            k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix) and v
        }
        if env.get("EVALBOARD_LLM_PRICES"):
            try:
                from_env["prices"] = json.loads(env["EVALBOARD_LLM_PRICES"])
            except ValueError as exc:
                raise ValueError(f"EVALBOARD_LLM_PRICES must be a JSON object model -> [in, out]: {exc}") from None
        layers.append(("environment", from_env))
        layers.append(("explicit settings", dict(explicit or {})))

        merged: dict[str, Any] = {"feature_models": {}, "prices": {}}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for source, layer in layers:
            for name, value in layer.items():
                if name not in fields:
                    raise ValueError(f"unknown LLM setting {name!r} in {source}; known: {', '.join(fields)}")
                if value is None or value == "":
                    continue
                if name in ("feature_models", "prices"):
                    if not hasattr(value, "items"):
                        raise ValueError(f"LLM setting {name!r} in {source} must be a mapping")
                    merged[name].update(value)
                else:
                    merged[name] = _coerce(name, value, source)
        merged["prices"] = {m: _price(m, p) for m, p in merged["prices"].items()}
        return cls(**merged)


_NUMBERS: dict[str, type] = {
    "temperature": float, "max_concurrency": int, "requests_per_minute": float,
    "tokens_per_minute": float, "timeout": float, "max_retries": int, "output_retries": int,
    "retry_base_delay": float, "max_retry_wait": float,
}


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _NUMBERS.get(name)
    if kind is None:
        return str(value)
    try:
        number = float(value)
        if kind is int and not number.is_integer():
            raise ValueError
        return kind(number)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"LLM setting {name!r} in {source} must be {what}, got {value!r}") from None


def _price(model: str, value: Any) -> tuple[float, float]:
    try:
        pin, pout = value
        return float(pin), float(pout)
    except (TypeError, ValueError):
        raise ValueError(
            f"LLM price for {model!r} must be [input $/1M tokens, output $/1M tokens], got {value!r}"
        ) from None


# =============================================================================== results and cache


@dataclass(frozen=True)
class LLMResult:
    """One answer. Tokens and cost are what the answer cost when it was made (None when the
    server reported no usage or the model has no price); `cached` means nothing was spent now."""

    text: str
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    cached: bool
    model: str


@dataclass(frozen=True)
class MapResult:
    """One item of `LLMClient.map`: `status` is "ok" (see `value`), "error" (see `error`), or
    "cancelled" (never started, or still running when the caller cancelled)."""

    index: int
    status: Literal["ok", "error", "cancelled"]
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class BatchStatus:
    """A provider batch job as last seen."""

    id: str
    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None

    @property
    def done(self) -> bool:
        return self.status in BATCH_FINAL_STATES


@dataclass(frozen=True)
class RetryEvent:
    """A retry the client made: which status (None for timeouts), and how long it waited."""

    attempt: int
    status: int | None
    wait: float
    retry_after: float | None


class DictCache:
    """In-memory cache with the store's interface: `get(key) -> record | None`, `put(key, record)`.

    A record is {model, feature, request, response, input_tokens, output_tokens, cost}.
    """

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self.records.get(key)

    def put(self, key: str, record: dict) -> None:
        with self._lock:
            self.records[key] = record

    def __len__(self) -> int:
        return len(self.records)


# =============================================================================== structured output helpers


def strict_schema(schema: dict) -> dict | None:
    """The JSON schema rewritten for OpenAI's strict mode, or None if it cannot be strict.

    Strict mode needs every object closed (`additionalProperties: false`) with all its properties
    required, and no `default`. Free-form maps (`dict[str, X]`) cannot be closed, so such a
    schema is sent non-strict instead. Requiring optional fields is harmless: the model fills
    them and pydantic still validates the answer.
    """
    defs = schema.get("$defs") or schema.get("definitions") or {}

    def visit(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = {k: v for k, v in node.items() if k != "default"}
        if "$ref" in node and len(node) > 1:  # strict mode wants a bare $ref: inline the target
            target = defs.get(node["$ref"].split("/")[-1], {})
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {name: visit(sub) for name, sub in value.items()}
            elif key in ("items", "not") and isinstance(value, dict):
                out[key] = visit(value)
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
                out[key] = [visit(sub) for sub in value]
            else:
                out[key] = value
        if out.get("type") == "object" or "properties" in out:
            if out.get("additionalProperties") not in (None, False) or "patternProperties" in out:
                raise _NotStrict
            out["additionalProperties"] = False
            out["required"] = list(out.get("properties", {}))
        return out

    try:
        return visit(schema)
    except _NotStrict:
        return None


class _NotStrict(Exception):
    pass


def response_format_for(schema: type[BaseModel]) -> dict:
    """The chat `response_format` for a pydantic model: json_schema, strict when possible.

    A fresh dict on every call (callers may change it); the schema work is done once per model.
    """
    return json.loads(_response_format_json(schema))


@functools.lru_cache(maxsize=256)
def _response_format_json(schema: type[BaseModel]) -> str:
    # pydantic's model_json_schema() costs about as much as the rest of a call's own work, and
    # a run of thousands of calls asks for the same schema each time.
    plain = schema.model_json_schema()
    strict = strict_schema(plain)
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64] or "answer"
    return json.dumps({
        "type": "json_schema",
        "json_schema": {"name": name, "schema": strict if strict is not None else plain, "strict": strict is not None},
    })


def extract_json(text: str) -> Any:
    """The JSON object in a model's answer: the whole text if it parses, else the first `{...}`
    that parses (answers often wrap JSON in prose or ``` fences). Raises ValueError."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
            return value
        except ValueError:
            continue
    raise ValueError("the answer contains no JSON object")


def parse_json_answer(text: str | None, schema: type[T]) -> T:
    """Validate a model's answer against `schema`; LLMOutputError says what was wrong."""
    if not text:
        raise LLMOutputError("the answer was empty", problems=["the answer was empty"], text=text)
    try:
        data = extract_json(text)
    except ValueError as exc:
        raise LLMOutputError(str(exc), problems=[str(exc)], text=text) from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()[:5]]
        problem = f"does not match {schema.__name__}: " + "; ".join(parts)
        raise LLMOutputError(problem, problems=[problem], text=text) from None


# =============================================================================== rate budget


class _TokenBucket:
    """A token bucket: fills at `per_minute / 60` units per second up to one second's worth
    (at least 1 unit), so a burst cannot spend the whole minute's budget at once.

    `reserve(n)` takes n units now and returns how long to wait before using them; the level
    may go negative, which makes later callers wait longer (first come, first served).
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, amount: float) -> float:
        with self._lock:
            now = time.monotonic()
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now
            self.level -= amount
            return max(0.0, -self.level / self.rate)

    def give_back(self, amount: float) -> None:
        """Return units (a cancelled reservation, or an over-estimate); negative takes more."""
        with self._lock:
            self.level = min(self.capacity, self.level + amount)


# =============================================================================== client

_CHAT_PARAMS = frozenset(inspect.signature(openai.resources.chat.completions.Completions.create).parameters) - {"self"}
_NEXT_FORMAT = {"json_schema": "json_object", "json_object": "plain"}
_JSON_INSTRUCTION = "Answer with only a JSON object, and no other text, that matches this JSON Schema:\n{schema}"


class LLMClient:
    """Calls an OpenAI-compatible chat endpoint; see the module docstring.

    `cache` is any object with `get(key) -> dict | None` and `put(key, record)`; None disables
    caching. The client is safe to share between threads (Streamlit keeps one per session or app).
    """

    def __init__(self, settings: LLMSettings, cache: Any = None) -> None:
        self.settings = settings
        self.cache = cache
        self.base_url = (settings.base_url or OPENAI_BASE_URL).rstrip("/")
        self.retry_events: deque[RetryEvent] = deque(maxlen=1000)
        self._sdk: openai.OpenAI | None = None
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._rpm = _TokenBucket(settings.requests_per_minute) if settings.requests_per_minute else None
        self._tpm = _TokenBucket(settings.tokens_per_minute) if settings.tokens_per_minute else None
        # (base_url, model) -> the structured-output mode the server accepted, so we ask once
        self._formats: dict[tuple[str, str], str] = {}
        self._usage: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._never = threading.Event()

    def __repr__(self) -> str:
        return f"LLMClient(base_url={_redact_url(self.base_url)!r}, model={self.settings.model!r})"

    # ------------------------------------------------------------------ plumbing

    @property
    def sdk(self) -> openai.OpenAI:
        """The underlying SDK client (built on first use; SDK retries off, ours do the work)."""
        if not self.settings.configured:
            raise LLMNotConfigured(self.settings.why_not_configured())
        if self._sdk is None:
            with self._lock:
                if self._sdk is None:
                    self._sdk = openai.OpenAI(
                        base_url=self.base_url,
                        # Local servers (Ollama, vLLM) need no key, but the SDK insists on one.
                        api_key=self.settings.api_key or "no-key",
                        max_retries=0,
                        timeout=self.settings.timeout,
                    )
        return self._sdk

    def cache_key(self, request: Mapping[str, Any]) -> str:
        """sha256 of the endpoint and the full request (model, messages, parameters, schema)."""
        canonical = json.dumps({"base_url": self.base_url, "request": request}, sort_keys=True,
                               separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        text = re.sub(r"\bsk-[A-Za-z0-9_\-]{6,}", "sk-***", text)
        return re.sub(r"(?i)bearer\s+\S+", "Bearer ***", text)

    def _cancel_event(self) -> threading.Event:
        return getattr(self._local, "cancel", None) or self._never

    def _build_request(self, messages: Any, feature: str | None, model: str | None,
                       temperature: float | None, params: Mapping[str, Any]) -> dict[str, Any]:
        if not self.settings.configured:
            raise LLMNotConfigured(self.settings.why_not_configured())
        request: dict[str, Any] = {
            "model": model or self.settings.model_for(feature),
            "messages": _normalise_messages(messages),
        }
        temperature = self.settings.temperature if temperature is None else temperature
        if temperature is not None:
            request["temperature"] = temperature
        for key in ("model", "messages"):
            if key in params:
                raise TypeError(f"pass {key} as its own argument, not in **params")
        request.update(params)
        return request

    def _wait_for_budget(self, tokens: int, cancel: threading.Event) -> None:
        wait = self._rpm.reserve(1) if self._rpm else 0.0
        if self._tpm and tokens:
            wait = max(wait, self._tpm.reserve(tokens))
        if wait > 0 and cancel.wait(wait):
            if self._rpm:
                self._rpm.give_back(1)
            if self._tpm:
                self._tpm.give_back(tokens)
            raise LLMCancelled("cancelled while waiting for the request budget")

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server gave one (plus up to 10% so we land after it), else
        exponential backoff with jitter: uniform in [b/2, b] for b = base x 2^(attempt-1), capped."""
        if retry_after is not None:
            return retry_after + random.uniform(0, 0.1 * retry_after)
        ceiling = min(self.settings.max_retry_wait, self.settings.retry_base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _with_retries(self, call: Callable[[], Any], *, tokens: int = 0, what: str = "LLM call",
                      limited: bool = True) -> Any:
        """Run `call` (one SDK request), retrying timeouts, 408/409/429 and 5xx.

        `limited` calls take a concurrency slot and spend the per-minute budget (`tokens` is the
        token estimate); bookkeeping calls (files, batches) skip both.
        """
        cancel = self._cancel_event()
        attempt = 0
        while True:
            attempt += 1
            if cancel.is_set():
                raise LLMCancelled(f"{what} cancelled")
            if limited:
                self._wait_for_budget(tokens, cancel)
            status: int | None = None
            retry_after: float | None = None
            try:
                if limited:
                    with self._map_slot(cancel, what), self._slots:
                        return call()
                return call()
            except openai.APIStatusError as exc:
                status, retry_after = exc.status_code, retry_after_seconds(exc.response.headers)
                error: Exception = exc
                retryable = status in RETRYABLE_STATUSES
            except openai.APIConnectionError as exc:  # includes timeouts
                error, retryable = exc, True
            if not retryable or attempt > self.settings.max_retries:
                raise self._call_error(error, status, attempt, what) from None
            if retry_after is not None and retry_after > self.settings.max_retry_wait:
                raise self._call_error(error, status, attempt, what,
                                       note=f"server asked to wait {retry_after:.0f} s") from None
            wait = self._retry_delay(attempt, retry_after)
            self.retry_events.append(RetryEvent(attempt, status, wait, retry_after))
            log.info("%s: %s, retry %d in %.2f s", what, status or type(error).__name__, attempt, wait)
            if cancel.wait(wait):
                raise LLMCancelled(f"{what} cancelled while waiting to retry")

    @contextlib.contextmanager
    def _map_slot(self, cancel: threading.Event, what: str) -> Iterator[None]:
        """Hold one of the current `map`'s request slots (none outside `map`) while a request is
        on the wire; waiting for it stops when the map is cancelled."""
        slots: threading.BoundedSemaphore | None = getattr(self._local, "slots", None)
        if slots is None:
            yield
            return
        while not slots.acquire(timeout=0.05):
            if cancel.is_set():
                raise LLMCancelled(f"{what} cancelled while waiting for a free slot")
        try:
            yield
        finally:
            slots.release()

    def _call_error(self, exc: Exception, status: int | None, attempts: int, what: str,
                    note: str | None = None) -> LLMCallError:
        body = getattr(exc, "body", None)
        server = body.get("message") if isinstance(body, dict) else None
        server = self._redact(str(server or getattr(exc, "message", None) or exc))
        label = f"HTTP {status}" if status else ("timed out" if isinstance(exc, openai.APITimeoutError)
                                                  else "connection failed")
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"{what} failed ({label}){tries} at {_redact_url(self.base_url)}: {server}"
        if note:
            message += f" ({note})"
        return LLMCallError(message, status=status, server_message=server, attempts=attempts)

    def _chat(self, request: dict[str, Any]) -> Any:
        """One chat completion through retries and the budget; returns the SDK's ChatCompletion."""
        known = {k: v for k, v in request.items() if k in _CHAT_PARAMS}
        extra = {k: v for k, v in request.items() if k not in _CHAT_PARAMS}  # e.g. vLLM's top_k
        if extra:
            known["extra_body"] = {**(known.get("extra_body") or {}), **extra}
        estimate = _estimate_tokens(request)
        completion = self._with_retries(lambda: self.sdk.chat.completions.create(**known),
                                        tokens=estimate, what=f"LLM call to {request['model']}")
        if self._tpm and completion.usage is not None:
            self._tpm.give_back(estimate - (completion.usage.total_tokens or 0))
        return completion

    def _result(self, completion: Any, requested_model: str) -> LLMResult:
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content if choice is not None else None) or ""
        usage = completion.usage
        input_tokens = usage.prompt_tokens if usage is not None else None
        output_tokens = usage.completion_tokens if usage is not None else None
        model = completion.model or requested_model
        cost = self.settings.cost(requested_model, input_tokens, output_tokens)
        if cost is None:
            cost = self.settings.cost(model, input_tokens, output_tokens)
        return LLMResult(text, input_tokens, output_tokens, cost, False, model)

    def _record_usage(self, feature: str | None, result: LLMResult | None = None, *,
                      cache_hit: bool = False, failed: bool = False) -> None:
        with self._lock:
            row = self._usage.setdefault(feature or "default", {
                "calls": 0, "cache_hits": 0, "failures": 0, "input_tokens": 0,
                "output_tokens": 0, "cost": 0.0, "unpriced_calls": 0,
            })
            if cache_hit:
                row["cache_hits"] += 1
            elif failed:
                row["failures"] += 1
            elif result is not None:
                row["calls"] += 1
                row["input_tokens"] += result.input_tokens or 0
                row["output_tokens"] += result.output_tokens or 0
                if result.cost is None:
                    row["unpriced_calls"] += 1
                else:
                    row["cost"] += result.cost

    def _cached(self, key: str) -> dict | None:
        return self.cache.get(key) if self.cache is not None else None

    def _store(self, key: str, feature: str | None, request: dict, result: LLMResult,
               finish_reason: str | None = None) -> None:
        if self.cache is None:
            return
        self.cache.put(key, {
            "model": result.model, "feature": feature, "request": request,
            "response": {"text": result.text, "model": result.model, "finish_reason": finish_reason},
            "input_tokens": result.input_tokens, "output_tokens": result.output_tokens, "cost": result.cost,
        })

    @staticmethod
    def _from_record(record: dict) -> LLMResult:
        response = record.get("response") or {}
        return LLMResult(response.get("text") or "", record.get("input_tokens"), record.get("output_tokens"),
                         record.get("cost"), True, record.get("model") or response.get("model") or "")

    # ------------------------------------------------------------------ public calls

    def complete(self, messages: Any, *, feature: str | None = None, model: str | None = None,
                 temperature: float | None = None, use_cache: bool = True, **params: Any) -> LLMResult:
        """One chat completion. `messages` is a list of {role, content} dicts (or pydantic
        messages), or a string taken as one user message. `params` go to the server as given
        (max_tokens, seed, response_format, or server-specific ones such as top_k).
        `use_cache=False` forces a fresh answer (the new answer still replaces the cached one)."""
        request = self._build_request(messages, feature, model, temperature, params)
        key = self.cache_key(request)
        record = self._cached(key) if use_cache else None
        if record is not None:
            self._record_usage(feature, cache_hit=True)
            return self._from_record(record)
        try:
            completion = self._chat(request)
        except LLMCallError:
            self._record_usage(feature, failed=True)
            raise
        result = self._result(completion, request["model"])
        self._record_usage(feature, result)
        finish = completion.choices[0].finish_reason if completion.choices else None
        self._store(key, feature, request, result, finish)
        return result

    def structured(self, messages: Any, schema: type[T], *, feature: str | None = None,
                   model: str | None = None, temperature: float | None = None, use_cache: bool = True,
                   output_retries: int | None = None, **params: Any) -> tuple[T, LLMResult]:
        """A validated `schema` object from the model, and the call's result (tokens and cost
        summed over every request it took).

        Asks for the JSON-schema response format (strict when the schema allows). If the server
        answers 400/422 to that, it tries JSON mode, then a plain request, both with the schema
        in the prompt, and remembers which mode worked for this model. An answer that does not
        parse or validate is sent back with the error, up to `output_retries` times (default
        from settings); then LLMOutputError. Only valid answers are cached.
        """
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError(f"schema must be a pydantic model class, got {schema!r}")
        base = self._build_request(messages, feature, model, temperature, params)
        response_format = response_format_for(schema)
        canonical = {**base, "response_format": response_format}
        key = self.cache_key(canonical)
        record = self._cached(key) if use_cache else None
        if record is not None:
            try:
                obj = parse_json_answer((record.get("response") or {}).get("text"), schema)
                self._record_usage(feature, cache_hit=True)
                return obj, self._from_record(record)
            except LLMOutputError:
                pass  # a bad record (written by someone else): ask again and overwrite it

        retries = self.settings.output_retries if output_retries is None else output_retries
        mode_key = (self.base_url, base["model"])
        conversation = list(base["messages"])
        spent: list[LLMResult] = []
        problems: list[str] = []
        while True:
            mode = self._formats.get(mode_key, "json_schema")
            request = _request_in_mode(base, conversation, mode, response_format)
            try:
                completion = self._chat(request)
            except LLMCallError as exc:
                if exc.status in (400, 422) and mode in _NEXT_FORMAT:
                    log.info("server refused response_format %s for %s; trying %s",
                             mode, base["model"], _NEXT_FORMAT[mode])
                    self._formats[mode_key] = _NEXT_FORMAT[mode]
                    continue
                self._record_usage(feature, failed=True)
                raise
            result = self._result(completion, base["model"])
            self._record_usage(feature, result)
            spent.append(result)
            refusal = getattr(completion.choices[0].message, "refusal", None) if completion.choices else None
            try:
                if refusal and not result.text:
                    raise LLMOutputError(f"the model refused: {refusal}", problems=[f"refused: {refusal}"])
                obj = parse_json_answer(result.text, schema)
            except LLMOutputError as exc:
                problems.append(str(exc))
                if len(problems) > retries:
                    self._record_usage(feature, failed=True)
                    raise LLMOutputError(
                        f"{result.model} gave no valid {schema.__name__} in {len(problems)} answers; "
                        f"last problem: {exc}; last answer began {result.text[:200]!r}",
                        problems=problems, text=result.text) from None
                conversation += [
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": f"That answer was not valid: {exc}. Reply again with only "
                                                f"a JSON object that matches the schema."},
                ]
                continue
            total = _sum_results(spent, result.text, result.model)
            self._store(key, feature, canonical, total)
            return obj, total

    def embed(self, texts: Sequence[str], *, model: str | None = None,
              feature: str = "embedding") -> list[list[float]]:
        """Embedding vectors for `texts`, in order. The model is `model`, else the feature
        override (settings.feature_models["embedding"]); chat models cannot embed, so there is
        no fallback to the default model."""
        model = model or self.settings.feature_models.get(feature)
        if not model:
            raise LLMNotConfigured(
                f"No embedding model: set EVALBOARD_LLM_MODEL_{feature.upper()} or [llm.models] {feature}.")
        texts = list(texts)
        response = self._with_retries(lambda: self.sdk.embeddings.create(model=model, input=texts),
                                      tokens=sum(len(t) for t in texts) // 4 + 1, what=f"embedding call to {model}")
        tokens = response.usage.prompt_tokens if response.usage else None
        self._record_usage(feature, LLMResult("", tokens, 0, self.settings.cost(model, tokens, 0), False, model))
        return [d.embedding for d in sorted(response.data, key=lambda d: d.index)]

    def map(self, requests: Sequence[Any],
            fn: Callable[[Any], Any] | Literal["complete", "structured"] = "complete", *,
            concurrency: int | None = None, on_progress: Callable[[int, int], None] | None = None,
            cancel: threading.Event | None = None, **common: Any) -> list[MapResult]:
        """Run many calls at once; results come back in the order of `requests`.

        `fn` is "complete" or "structured" (each request is then a messages list, a string, or a
        dict of arguments such as {"messages": ..., "schema": ...}; `common` arguments apply to
        all), or any function of one request (which may call this client; its calls share the
        client's budget and retries). At most `concurrency` (default settings.max_concurrency)
        requests are on the wire at once; a few spare workers keep those slots busy while other
        items wait out a retry. A failure is captured in its item (status "error"), never raised.

        `on_progress(done, total)` runs in the calling thread (where Streamlit calls are allowed).
        When `cancel` is set, no new call starts, waiting retries stop, and map returns at once:
        items not finished by then are "cancelled" (calls already on the wire still finish in the
        background and fill the cache). If on_progress raises, the same happens, then it re-raises.
        """
        total = len(requests)
        if total == 0:
            return []
        call = self._item_runner(fn, common)
        if not self.settings.configured and not callable(fn):
            raise LLMNotConfigured(self.settings.why_not_configured())
        stop = threading.Event()
        results = [MapResult(i, "cancelled") for i in range(total)]
        order = iter(range(total))
        order_lock = threading.Lock()
        finished: queue.Queue[int] = queue.Queue()

        # At most `limit` requests of this map are on the wire at once (the slots); a few spare
        # workers beyond that keep every slot busy while other workers wait out a Retry-After or
        # a backoff, which holds no slot. Without them each rate-limited call would leave its
        # slot idle for the whole wait.
        limit = min(total, concurrency or self.settings.max_concurrency)
        slots = threading.BoundedSemaphore(limit)
        width = limit + min(total - limit, max(2, limit // 2))

        def worker() -> None:
            self._local.cancel = stop
            self._local.slots = slots
            while not stop.is_set() and not (cancel is not None and cancel.is_set()):
                with order_lock:
                    index = next(order, None)
                if index is None:
                    return
                try:
                    results[index] = MapResult(index, "ok", call(requests[index]))
                except LLMCancelled as exc:
                    results[index] = MapResult(index, "cancelled", error=exc)
                except Exception as exc:  # one bad item must not sink the batch
                    results[index] = MapResult(index, "error", error=exc)
                finished.put(index)

        threads = [threading.Thread(target=worker, daemon=True, name=f"llm-map-{i}") for i in range(width)]
        for thread in threads:
            thread.start()
        done = 0
        try:
            while done < total:
                if cancel is not None and cancel.is_set():
                    break
                try:
                    finished.get(timeout=0.05)
                except queue.Empty:
                    if not any(t.is_alive() for t in threads):
                        break
                    continue
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
        finally:
            stop.set()
        return list(results)

    def _item_runner(self, fn: Any, common: Mapping[str, Any]) -> Callable[[Any], Any]:
        if callable(fn):
            return fn
        if fn not in ("complete", "structured"):
            raise ValueError(f"map fn must be a function, 'complete' or 'structured', got {fn!r}")
        method = self.complete if fn == "complete" else self.structured

        def run(item: Any) -> Any:
            kwargs = {**common, **item} if isinstance(item, Mapping) else {**common, "messages": item}
            if "messages" not in kwargs:
                raise ValueError("a map request must be messages, or a dict with a 'messages' key")
            messages = kwargs.pop("messages")
            if fn == "structured":
                if "schema" not in kwargs:
                    raise ValueError("map(..., 'structured') needs schema= (or a 'schema' key per request)")
                return method(messages, kwargs.pop("schema"), **kwargs)
            return method(messages, **kwargs)

        return run

    # ------------------------------------------------------------------ batch API

    def submit_batch(self, items: Iterable[tuple[str, Any, Mapping[str, Any] | None]], *,
                     feature: str | None = None, model: str | None = None,
                     metadata: Mapping[str, str] | None = None) -> str:
        """Upload (custom_id, messages, params) requests as a provider batch; returns its id.

        `params` are chat parameters; a "schema" entry (a pydantic class) becomes the JSON-schema
        response format. Batches are slow (up to 24 h) but cheap; poll with `poll_batch`.
        """
        lines, seen = [], set()
        for n, item in enumerate(items):
            try:
                custom_id, messages, params = item
            except (TypeError, ValueError):
                raise ValueError(f"batch item {n} must be (custom_id, messages, params)") from None
            if custom_id in seen:
                raise ValueError(f"batch item {n}: custom_id {custom_id!r} is used twice")
            seen.add(custom_id)
            params = dict(params or {})
            schema = params.pop("schema", None)
            request = self._build_request(messages, feature, params.pop("model", model),
                                          params.pop("temperature", None), params)
            if schema is not None:
                request["response_format"] = response_format_for(schema)
            lines.append({"custom_id": str(custom_id), "method": "POST", "url": CHAT_ENDPOINT, "body": request})
        if not lines:
            raise ValueError("submit_batch needs at least one request")
        data = b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
        upload = self._with_retries(
            lambda: self.sdk.files.create(file=("evalboard-batch.jsonl", io.BytesIO(data)), purpose="batch"),
            what="batch upload", limited=False)
        meta = {**({"feature": feature} if feature else {}), **dict(metadata or {})}
        batch = self._with_retries(
            lambda: self.sdk.batches.create(input_file_id=upload.id, endpoint=CHAT_ENDPOINT,
                                            completion_window="24h", metadata=meta or None),
            what="batch create", limited=False)
        return batch.id

    def poll_batch(self, batch_id: str) -> BatchStatus:
        """The batch's current state (`.done` once it is completed, failed, expired or cancelled)."""
        return self._status(self._retrieve_batch(batch_id))

    def _retrieve_batch(self, batch_id: str) -> Any:
        return self._with_retries(lambda: self.sdk.batches.retrieve(batch_id), what="batch poll", limited=False)

    @staticmethod
    def _status(batch: Any) -> BatchStatus:
        counts = batch.request_counts
        return BatchStatus(batch.id, batch.status, counts.total if counts else 0,
                           counts.completed if counts else 0, counts.failed if counts else 0,
                           batch.output_file_id, batch.error_file_id)

    def cancel_batch(self, batch_id: str) -> BatchStatus:
        self._with_retries(lambda: self.sdk.batches.cancel(batch_id), what="batch cancel", limited=False)
        return self.poll_batch(batch_id)

    def fetch_batch_results(self, batch_id: str) -> dict[str, LLMResult | LLMCallError]:
        """custom_id -> LLMResult, or LLMCallError for requests that failed or never ran.

        Answers go into the cache under the same key a direct call would use, so a later
        `complete`/`structured` with the same request costs nothing. Costs use the normal price
        table (a provider's batch discount is not applied).
        """
        batch = self._retrieve_batch(batch_id)
        status = self._status(batch)
        if not status.done:
            raise ValueError(f"batch {batch_id} is {status.status}; poll until it is done before fetching")
        feature = (batch.metadata or {}).get("feature")

        def read(file_id: str | None) -> list[dict]:
            if not file_id:
                return []
            content = self._with_retries(lambda: self.sdk.files.content(file_id), what="batch download",
                                         limited=False)
            return [json.loads(line) for line in content.text.splitlines() if line.strip()]

        requests = {row["custom_id"]: row.get("body") or {} for row in read(batch.input_file_id)}
        results: dict[str, LLMResult | LLMCallError] = {}
        for row in read(status.output_file_id) + read(status.error_file_id):
            custom_id = row.get("custom_id")
            response = row.get("response") or {}
            body = response.get("body") or {}
            code = response.get("status_code")
            if code == 200 and body.get("choices"):
                request = requests.get(custom_id, {})
                completion = openai.types.chat.ChatCompletion.model_validate(body)
                result = self._result(completion, request.get("model") or completion.model)
                self._record_usage(feature, result)
                if request:
                    finish = completion.choices[0].finish_reason
                    self._store(self.cache_key(request), feature, request, result, finish)
                results[custom_id] = result
            else:
                error = row.get("error") or body.get("error") or {}
                server = self._redact(str(error.get("message") or error or "no answer"))
                results[custom_id] = LLMCallError(f"batch request {custom_id} failed (HTTP {code}): {server}",
                                                  status=code, server_message=server)
                self._record_usage(feature, failed=True)
        for custom_id in requests:
            if custom_id not in results:
                results[custom_id] = LLMCallError(
                    f"batch request {custom_id} has no result: the batch ended {status.status}")
        return results

    # ------------------------------------------------------------------ accounting

    def usage_summary(self) -> dict[str, dict[str, Any]]:
        """Per feature: requests made (`calls`), `cache_hits`, `failures`, tokens, `cost` in $
        (priced calls only) and `unpriced_calls` (models missing from the price table)."""
        with self._lock:
            return {feature: dict(row) for feature, row in self._usage.items()}


# =============================================================================== small helpers


def _normalise_messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        messages = [messages]
    out = []
    for n, message in enumerate(messages or []):
        if isinstance(message, BaseModel):
            message = message.model_dump(exclude_none=True, exclude_defaults=True)
            message.setdefault("content", "")
        if not isinstance(message, Mapping) or "role" not in message:
            raise ValueError(f"message {n} must be a dict with 'role' and 'content', got {message!r:.80}")
        out.append(dict(message))
    if not out:
        raise ValueError("messages is empty: give at least one message")
    return out


def _estimate_tokens(request: Mapping[str, Any]) -> int:
    """A rough token count for the budget before the server tells us: about 4 characters a token
    for the messages, plus the output cap when one is set."""
    text = json.dumps(request.get("messages"), ensure_ascii=False, default=str)
    cap = request.get("max_completion_tokens") or request.get("max_tokens") or 0
    return len(text) // 4 + int(cap) + 1


def _request_in_mode(base: dict, conversation: list[dict], mode: str, response_format: dict) -> dict:
    """The request for one structured attempt: json_schema as is; json_object and plain carry
    the schema in the system prompt (JSON mode also requires the word JSON in the messages)."""
    request = {**base, "messages": list(conversation)}
    if mode == "json_schema":
        request["response_format"] = response_format
        return request
    schema = json.dumps(response_format["json_schema"]["schema"], ensure_ascii=False)
    instruction = _JSON_INSTRUCTION.format(schema=schema)
    messages = request["messages"]
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        messages[0] = {**messages[0], "content": messages[0]["content"] + "\n\n" + instruction}
    else:
        messages.insert(0, {"role": "system", "content": instruction})
    if mode == "json_object":
        request["response_format"] = {"type": "json_object"}
    return request


def _sum_results(results: Sequence[LLMResult], text: str, model: str) -> LLMResult:
    """One result for several requests: tokens and cost add up; unknown if any is unknown."""
    def total(values: list) -> Any:
        return None if any(v is None for v in values) else sum(values)

    return LLMResult(text, total([r.input_tokens for r in results]), total([r.output_tokens for r in results]),
                     total([r.cost for r in results]), False, model)
