"""The simple views: Markdown, JSON and raw text."""

from __future__ import annotations

from typing import Any

from evalboard.models import TraceRecord
from evalboard.render.fields import last_content, message_text
from evalboard.render.safe import esc, markdown_html, page, pre, pretty_json, section

MAX_JSON_VIEW_CHARS = 1_000_000
"""Characters of the whole-trace JSON view; the rest is cut with a note."""


def _as_markdown(value: Any) -> str:
    if value is None:
        return '<div class="eb-muted">(empty)</div>'
    return markdown_html(value) if isinstance(value, str) else pre(value)


def render_markdown(trace: TraceRecord, **_: Any) -> str:
    """Input and output rendered as Markdown (sanitised); structured values as JSON.

    When the trace has no input/output fields, the last user and assistant messages stand in.
    """
    given = trace.input
    if given is None:
        content = last_content(trace, "user")
        given = message_text(content) or content
    answer = trace.output
    if answer is None:
        content = last_content(trace, "assistant")
        answer = message_text(content) or content
    body = section("Input", _as_markdown(given)) + section("Output", _as_markdown(answer))
    if trace.error:
        body += section("Error", pre(trace.error, 5_000))
    return page(body, "markdown")


def render_json(trace: TraceRecord, **_: Any) -> str:
    """The whole trace as indented JSON, escaped; depth, size and length bounded."""
    text = pretty_json(trace, MAX_JSON_VIEW_CHARS)
    return page(f'<pre class="eb-pre eb-json">{esc(text, MAX_JSON_VIEW_CHARS + 200)}</pre>', "json")


def raw_body(trace: TraceRecord) -> str:
    """Input, output and error as escaped `<pre>` blocks (the body of the raw view)."""
    body = section("Input", pre(trace.input)) + section("Output", pre(trace.output))
    if trace.error:
        body += section("Error", pre(trace.error))
    return body


def render_raw(trace: TraceRecord, **_: Any) -> str:
    """Input and output exactly as stored (structured values as JSON), escaped in <pre>."""
    return page(raw_body(trace), "raw")


render_markdown.label = "Markdown"  # type: ignore[attr-defined]
render_json.label = "JSON"  # type: ignore[attr-defined]
render_raw.label = "Raw text"  # type: ignore[attr-defined]
