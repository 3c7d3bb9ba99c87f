"""Show a trace the way the product's user saw it, safely.

Every view is a function `fn(trace, **opts) -> str` returning an HTML string that is safe for
Streamlit's `st.html()` or `st.markdown(..., unsafe_allow_html=True)`: trace text is escaped,
or, where it is Markdown/HTML, rendered and sanitised with an allowlist (see `safe.py`). Each
output starts with a small `<style>` block of `eb-` classes we write ourselves.

    from evalboard.render import RENDERERS, detect_renderer, render_trace
    name = detect_renderer(trace)                 # "chat", "rag", "email", "timeline", "markdown"
    html = render_trace(trace, name)
    html = render_trace(trace, "custom", template="## {{ input }}", template_mode="markdown")

`render_trace` raises `ValueError` for an unknown view name and `TemplateError` (a ValueError)
for a broken custom template; a bug in any other view falls back to the raw view with a note,
so a page never crashes on a strange trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalboard.models import TraceRecord
from evalboard.render.chat import render_chat
from evalboard.render.fields import has_tool_calls
from evalboard.render.mail import looks_like_email, render_email
from evalboard.render.plain import raw_body, render_json, render_markdown, render_raw
from evalboard.render.rag import find_documents, render_rag
from evalboard.render.safe import esc, page, sanitize_html
from evalboard.render.template import TemplateError, render_template
from evalboard.render.timeline import render_timeline

__all__ = [
    "RENDERERS",
    "RENDERER_LABELS",
    "TemplateError",
    "detect_renderer",
    "render_template",
    "render_trace",
    "sanitize_html",
]

TIMELINE_MIN_SPANS = 3
"""A trace with at least this many spans (and nothing more specific) opens as a timeline."""


def render_custom(
    trace: TraceRecord, template: str | None = None, template_mode: str = "markdown", **_: Any
) -> str:
    """The project's own Jinja2 template (see `template.py`); raises TemplateError."""
    if template is None or not template.strip():
        raise TemplateError("no template given: write one in the project's view settings")
    return page(render_template(template, trace, template_mode), "custom")


render_custom.label = "Custom template"  # type: ignore[attr-defined]

RENDERERS: dict[str, Callable[..., str]] = {
    "chat": render_chat,
    "email": render_email,
    "rag": render_rag,
    "markdown": render_markdown,
    "timeline": render_timeline,
    "json": render_json,
    "raw": render_raw,
    "custom": render_custom,
}
"""View name -> function; each function has a human `.label`."""

RENDERER_LABELS: dict[str, str] = {
    name: fn.label for name, fn in RENDERERS.items()  # type: ignore[attr-defined]
}
"""View name -> label for pickers ("chat" -> "Chat transcript")."""


def detect_renderer(trace: TraceRecord) -> str:
    """A sensible default view, checked in this order:

    tool calls in the conversation -> "chat"; retrieved documents -> "rag"; an output with at
    least two email features -> "email"; TIMELINE_MIN_SPANS or more spans -> "timeline"; any
    chat messages -> "chat"; otherwise "markdown".
    """
    try:
        if has_tool_calls(trace):
            return "chat"
        if find_documents(trace):
            return "rag"
        if looks_like_email(trace):
            return "email"
    except Exception:  # an odd trace must not break the page; the raw view always works
        return "raw"
    if len(trace.spans) >= TIMELINE_MIN_SPANS:
        return "timeline"
    if trace.messages:
        return "chat"
    return "markdown"


def render_trace(
    trace: TraceRecord,
    renderer: str,
    template: str | None = None,
    template_mode: str = "markdown",
    **opts: Any,
) -> str:
    """Render `trace` with the view named `renderer` (a key of RENDERERS).

    Raises ValueError for an unknown name and TemplateError for custom-template problems. Any
    other failure inside a view is shown as a note above the raw view instead of raising.
    """
    if renderer not in RENDERERS:
        raise ValueError(
            f"unknown renderer {renderer!r}; choose one of: {', '.join(RENDERERS)}"
        )
    if renderer == "custom":  # template problems are the caller's to show: let them raise
        return RENDERERS["custom"](trace, template=template, template_mode=template_mode)
    try:
        return RENDERERS[renderer](trace, **opts)
    except Exception as exc:  # a view bug must not take the page down; say so and show raw
        note = (
            f'<div class="eb-note eb-error">The {esc(renderer)} view failed '
            f"({esc(type(exc).__name__)}: {esc(str(exc), 300)}); showing the raw trace.</div>"
        )
        return page(note + raw_body(trace), "raw")
