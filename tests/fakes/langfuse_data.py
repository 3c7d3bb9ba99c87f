"""Deterministic seed data for the fake Langfuse server.

`generate(n_traces, seed=...)` builds observation rows and score rows in the wire format of
`GET /api/public/v2/observations` (every field group filled in) and `GET /api/public/v3/scores`.
The same (n_traces, seed, start, days) always gives the same rows, so tests can rely on counts
and on individual traces.

A generated trace has a root SPAN and, below it, a GENERATION (model, usage, cost) and often a
TOOL or RETRIEVER step; about 3 observations per trace on average. About 8% of traces have an
ERROR-level step. Trace-level attributes (name, tags, user, session, environment, release,
version) are copied onto every observation, as SDK 5 propagates them. Input and output are
sent as raw strings, as the v2 API does: chat messages as JSON text, plain questions as text.

Rows carry private keys starting with "_" (e.g. "_neg" = minus the start time in microseconds,
used for sorting); the server strips them before answering.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

PROJECT_ID = "proj-fake"
BASE_TIME = datetime(2026, 10, 1, tzinfo=timezone.utc)

TRACE_NAMES = ["support-chat", "order-lookup", "rag-qa"]
TAG_POOL = ["web", "mobile", "beta", "vip", "experiment-a"]
ENVIRONMENTS = ["production", "production", "production", "production", "staging"]
RELEASES = ["v1.4.0", "v1.5.0"]
VERSIONS = ["app-7", "app-8"]
MODELS = ["gpt-4o-mini", "gpt-4.1"]
QUESTIONS = [
    "Where is my order {n}? It was due yesterday.",
    "Can I change the delivery address for order {n}?",
    "How do I return item {n}?",
    "Is product {n} available in blue?",
    "Why was I charged twice for order {n}?",
]
ANSWERS = [
    "Your order {n} shipped today and should arrive tomorrow.",
    "I have updated the delivery address for order {n}.",
    "You can return item {n} within 30 days from the orders page.",
    "Product {n} is out of stock in blue; it is back next week.",
    "I am sorry: the second charge for order {n} was refunded.",
]
SYSTEM_PROMPT = "You are the support assistant of ACME. Answer briefly and politely."
ERRORS = ["Provider returned 500 Internal Server Error", "Tool timed out after 30 s"]


_MINUTE_PREFIX: dict[int, str] = {}


def iso(us: int) -> str:
    """Microseconds since the epoch -> ISO 8601 UTC with milliseconds and a Z, as Langfuse writes."""
    seconds = us // 1_000_000
    minute = seconds // 60
    prefix = _MINUTE_PREFIX.get(minute)
    if prefix is None:  # strftime is the slow part of seeding 60k rows: do it once per minute
        prefix = datetime.fromtimestamp(minute * 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:")
        if len(_MINUTE_PREFIX) > 200_000:
            _MINUTE_PREFIX.clear()
        _MINUTE_PREFIX[minute] = prefix
    return f"{prefix}{seconds % 60:02d}.{(us // 1000) % 1000:03d}Z"


def to_us(dt: datetime) -> int:
    """Aware datetime -> microseconds since the epoch."""
    if dt.tzinfo is None:
        raise ValueError(f"datetime {dt!r} has no timezone; pass an aware datetime (UTC)")
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


@dataclass
class SeedData:
    """Rows for the fake: observations (all field groups) and scores (v3 shape)."""

    observations: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)


@dataclass
class TraceSpec:
    """Trace-level attributes shared by every observation of one trace."""

    trace_id: str
    name: str
    start_us: int
    tags: list[str] = field(default_factory=list)
    user_id: str | None = None
    session_id: str | None = None
    environment: str = "default"
    release: str | None = None
    version: str | None = None


def observation_row(
    trace: TraceSpec,
    *,
    obs_id: str,
    type: str,
    name: str,
    start_us: int,
    end_us: int | None,
    parent_id: str | None = None,
    level: str = "DEFAULT",
    status_message: str | None = None,
    input: Any = None,
    output: Any = None,
    metadata: dict[str, Any] | None = None,
    model: str | None = None,
    model_parameters: dict[str, Any] | None = None,
    usage: dict[str, int] | None = None,
    cost: dict[str, float] | None = None,
    project_id: str = PROJECT_ID,
) -> dict[str, Any]:
    """One observation in v2 wire format with every field group present.

    `input`/`output` are stored as the API returns them: a str stays as is, anything else is
    JSON-encoded text.
    """

    def raw(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return orjson.dumps(value).decode()

    total_cost = cost.get("total") if cost else None
    return {
        "id": obs_id,
        "traceId": trace.trace_id,
        "startTime": iso(start_us),
        "endTime": iso(end_us) if end_us is not None else None,
        "projectId": project_id,
        "parentObservationId": parent_id,
        "type": type,
        # basic
        "name": name,
        "level": level,
        "statusMessage": status_message,
        "version": trace.version,
        "environment": trace.environment,
        "bookmarked": False,
        "public": False,
        "userId": trace.user_id,
        "sessionId": trace.session_id,
        "isRootObservation": parent_id is None,
        # time
        "completionStartTime": iso(start_us + (end_us - start_us) // 3) if (type == "GENERATION" and end_us) else None,
        "createdAt": iso(start_us),
        "updatedAt": iso(end_us or start_us),
        # io
        "input": raw(input),
        "output": raw(output),
        # metadata
        "metadata": metadata or {},
        # model
        "model": model,
        "internalModelId": None,
        "modelParameters": model_parameters,
        "modelId": None,
        "inputPrice": None,
        "outputPrice": None,
        "totalPrice": None,
        # usage
        "usageDetails": usage or {},
        "costDetails": cost or {},
        "totalCost": total_cost,
        "usagePricingTierName": None,
        # prompt
        "promptId": None,
        "promptName": None,
        "promptVersion": None,
        # metrics
        "latency": (end_us - start_us) / 1e6 if end_us is not None else None,
        "timeToFirstToken": None,
        # trace_context
        "tags": list(trace.tags),
        "release": trace.release,
        "traceName": trace.name,
        # private: sort key (newest first)
        "_neg": -start_us,
    }


def score_row(
    *,
    score_id: str,
    trace_id: str | None,
    name: str,
    value: Any,
    data_type: str,
    timestamp_us: int,
    source: str = "API",
    environment: str = "default",
    comment: str | None = None,
    observation_id: str | None = None,
    session_id: str | None = None,
    dataset_run_id: str | None = None,
    config_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    author_user_id: str | None = None,
    queue_id: str | None = None,
    project_id: str = PROJECT_ID,
) -> dict[str, Any]:
    """One score in v3 wire format, plus private keys used for filtering."""
    if observation_id:
        subject: dict[str, Any] = {"kind": "observation", "id": observation_id, "traceId": trace_id}
    elif trace_id:
        subject = {"kind": "trace", "id": trace_id}
    elif session_id:
        subject = {"kind": "session", "id": session_id}
    else:
        subject = {"kind": "experiment", "id": dataset_run_id}
    return {
        "id": score_id,
        "projectId": project_id,
        "name": name,
        "value": value,
        "dataType": data_type,
        "source": source,
        "timestamp": iso(timestamp_us),
        "environment": environment,
        "createdAt": iso(timestamp_us),
        "updatedAt": iso(timestamp_us),
        "comment": comment,
        "configId": config_id,
        "metadata": metadata,
        "authorUserId": author_user_id,
        "queueId": queue_id,
        "subject": subject,
        "_traceId": trace_id,
        "_observationId": observation_id,
        "_sessionId": session_id,
        "_datasetRunId": dataset_run_id,
        "_neg": -timestamp_us,
    }


def generate(
    n_traces: int,
    *,
    seed: int = 0,
    start: datetime = BASE_TIME,
    days: float = 14.0,
    score_rate: float = 0.3,
    project_id: str = PROJECT_ID,
) -> SeedData:
    """Generate `n_traces` traces (about 3 observations each) spread over `days` from `start`.

    About `score_rate` of the traces get a `user_feedback` score (NUMERIC 0/1, source API), and
    a third of those also a `helpfulness` score (CATEGORICAL, source ANNOTATION).
    """
    if n_traces < 0:
        raise ValueError(f"n_traces must be >= 0, got {n_traces}")
    rng = random.Random(seed)
    start_us = to_us(start)
    span_us = int(days * 86_400 * 1_000_000)
    data = SeedData()
    obs = data.observations
    for i in range(n_traces):
        t0 = start_us + rng.randrange(span_us)
        trace = TraceSpec(
            trace_id=f"{rng.getrandbits(128):032x}",
            name=rng.choice(TRACE_NAMES),
            start_us=t0,
            tags=sorted(rng.sample(TAG_POOL, rng.randrange(3))),
            user_id=f"user-{rng.randrange(400)}",
            session_id=f"sess-{rng.randrange(5000)}",
            environment=rng.choice(ENVIRONMENTS),
            release=rng.choice(RELEASES),
            version=rng.choice(VERSIONS),
        )
        data.trace_ids.append(trace.trace_id)
        n = rng.randrange(10_000, 99_999)
        k = rng.randrange(len(QUESTIONS))
        question = QUESTIONS[k].format(n=n)
        answer = ANSWERS[k].format(n=n)
        duration = rng.randrange(400_000, 9_000_000)
        root_id = f"{rng.getrandbits(64):016x}"
        chat_io = rng.random() < 0.7
        error_step = rng.random() < 0.08
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
        root_in: Any = messages if chat_io else question
        root_out: Any = {"role": "assistant", "content": answer} if chat_io else answer
        obs.append(
            observation_row(
                trace,
                obs_id=root_id,
                type="SPAN",
                name=trace.name,
                start_us=t0,
                end_us=t0 + duration,
                input=root_in,
                output=root_out,
                metadata={"region": rng.choice(["eu-west", "us-east"]), "plan": rng.choice(["free", "pro"])},
                project_id=project_id,
            )
        )
        # Steps run one after another inside the root span.
        shape = rng.random()
        steps = ["GENERATION"] if shape < 0.3 else (
            [rng.choice(["TOOL", "RETRIEVER"]), "GENERATION"] if shape < 0.75 else ["RETRIEVER", "GENERATION", "TOOL", "GENERATION"][: rng.choice([3, 4])]
        )
        cursor = t0 + 1000
        step_len = (duration - 2000) // len(steps)
        failed_at = rng.randrange(len(steps)) if error_step else -1
        for j, step in enumerate(steps):
            sid = f"{rng.getrandbits(64):016x}"
            s_start, s_end = cursor, cursor + step_len - 500
            cursor += step_len
            failed = j == failed_at
            level = "ERROR" if failed else "DEFAULT"
            status = (ERRORS[0] if step == "GENERATION" else ERRORS[1]) if failed else None
            if step == "GENERATION":
                model = rng.choice(MODELS)
                n_in, n_out = rng.randrange(50, 2000), rng.randrange(10, 500)
                c_in, c_out = round(n_in * 0.15e-6, 9), round(n_out * 0.6e-6, 9)
                obs.append(
                    observation_row(
                        trace,
                        obs_id=sid,
                        type="GENERATION",
                        name="llm-call",
                        start_us=s_start,
                        end_us=s_end,
                        parent_id=root_id,
                        level=level,
                        status_message=status,
                        input=messages,
                        output=None if failed else {"role": "assistant", "content": answer},
                        model=model,
                        model_parameters={"temperature": 0.2},
                        usage={"input": n_in, "output": n_out, "total": n_in + n_out},
                        cost={"input": c_in, "output": c_out, "total": round(c_in + c_out, 9)},
                        project_id=project_id,
                    )
                )
            elif step == "TOOL":
                obs.append(
                    observation_row(
                        trace,
                        obs_id=sid,
                        type="TOOL",
                        name="lookup_order",
                        start_us=s_start,
                        end_us=s_end,
                        parent_id=root_id,
                        level=level,
                        status_message=status,
                        input={"order_id": str(n)},
                        output=None if failed else {"status": "shipped", "eta_days": rng.randrange(1, 5)},
                        project_id=project_id,
                    )
                )
            else:
                obs.append(
                    observation_row(
                        trace,
                        obs_id=sid,
                        type="RETRIEVER",
                        name="search_help_center",
                        start_us=s_start,
                        end_us=s_end,
                        parent_id=root_id,
                        level=level,
                        status_message=status,
                        input=question,
                        output=None if failed else [{"doc": f"kb-{rng.randrange(300)}", "score": round(rng.random(), 3)}],
                        project_id=project_id,
                    )
                )
        if rng.random() < score_rate:
            ts = t0 + duration + rng.randrange(60_000_000, 3 * 86_400_000_000)
            data.scores.append(
                score_row(
                    score_id=f"{rng.getrandbits(128):032x}",
                    trace_id=trace.trace_id,
                    name="user_feedback",
                    value=float(rng.random() < 0.7),
                    data_type="NUMERIC",
                    timestamp_us=ts,
                    environment=trace.environment,
                    comment=rng.choice([None, "thumbs from the widget"]),
                    project_id=project_id,
                )
            )
            if rng.random() < 1 / 3:
                data.scores.append(
                    score_row(
                        score_id=f"{rng.getrandbits(128):032x}",
                        trace_id=trace.trace_id,
                        name="helpfulness",
                        value=rng.choice(["helpful", "not helpful"]),
                        data_type="CATEGORICAL",
                        timestamp_us=ts + 1_000_000,
                        source="ANNOTATION",
                        environment=trace.environment,
                        author_user_id="reviewer-1",
                        project_id=project_id,
                    )
                )
    return data


def start_of(days_after_base: float) -> datetime:
    """A datetime `days_after_base` days after BASE_TIME (handy for time filters in tests)."""
    return BASE_TIME + timedelta(days=days_after_base)
