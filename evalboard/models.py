"""Pydantic models at the boundaries: what importers, integrations and pages exchange.

A trace is one execution of the user's app. It carries what a reader needs to judge it
(input, output, chat messages, spans) and what is needed to slice it later (tags, user,
session, environment, release, dimension tuple). The store keeps the same fields as columns
or JSON; `TraceRecord` is the shape everything agrees on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["pass", "fail"]


class ToolCall(BaseModel):
    """A tool call requested by the assistant; `arguments` is kept as given (JSON text or dict)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    name: str
    arguments: Any = None


class Message(BaseModel):
    """One chat message. `role` is system/user/assistant/tool (anything else is kept as is)."""

    model_config = ConfigDict(extra="ignore")

    role: str
    content: Any = None
    name: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None


class Span(BaseModel):
    """One step of a trace (Langfuse calls these observations).

    `type` follows Langfuse: SPAN, GENERATION, EVENT, TOOL, RETRIEVER, AGENT, ...
    `level` is DEBUG/DEFAULT/WARNING/ERROR; an ERROR span is a failed step.
    """

    model_config = ConfigDict(extra="ignore")

    id: str
    parent_id: str | None = None
    type: str = "SPAN"
    name: str | None = None
    input: Any = None
    output: Any = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    level: str | None = None
    status_message: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def latency_ms(self) -> float | None:
        if self.start_time and self.end_time:
            return (self.end_time - self.start_time).total_seconds() * 1000.0
        return None


class TraceRecord(BaseModel):
    """A trace as it enters or leaves the store.

    `source` names where it came from ("file:traces.jsonl", "langfuse", "target:my-app", "demo")
    and `source_id` its id there; together they are unique in a project, which is what makes
    re-imports and re-pulls add nothing twice.
    `labels` holds labels found in the source (e.g. a PASS/FAIL column and a notes column),
    kept raw until open coding turns them into annotations.
    `scores` holds scores that already exist at the vendor ({name, value, comment, source}).
    """

    model_config = ConfigDict(extra="ignore")

    id: int | None = None
    project_id: int | None = None
    source: str
    source_id: str
    name: str | None = None
    timestamp: datetime | None = None
    end_time: datetime | None = None
    input: Any = None
    output: Any = None
    messages: list[Message] = Field(default_factory=list)
    spans: list[Span] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = None
    session_id: str | None = None
    environment: str | None = None
    release: str | None = None
    latency_ms: float | None = None
    cost: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    dimensions: dict[str, str] | None = None
    labels: dict[str, Any] = Field(default_factory=dict)
    scores: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None


class Project(BaseModel):
    id: int | None = None
    name: str
    description: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)


class Round(BaseModel):
    """A sample of traces under analysis, with how it was drawn (method, seed, filters, n)."""

    id: int | None = None
    project_id: int
    name: str
    description: str = ""
    sampling: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    trace_count: int = 0
