"""A trace as its users saw it: a header of facts and one tab per way of showing it.

All trace content goes through evalboard.render, which escapes or sanitises it; this module
only places the resulting HTML (never with JavaScript enabled).
"""

from __future__ import annotations

import streamlit as st

from evalboard.models import TraceRecord
from evalboard.render import RENDERER_LABELS, TemplateError, detect_renderer, render_trace


def facts(trace: TraceRecord) -> None:
    tokens = (trace.input_tokens or 0) + (trace.output_tokens or 0)
    numbers = [
        ("time", trace.timestamp.strftime("%Y-%m-%d %H:%M") if trace.timestamp else None),
        ("latency", f"{trace.latency_ms / 1000:.2f} s" if trace.latency_ms else None),
        ("cost", f"${trace.cost:.5f}" if trace.cost else None),
        ("tokens", f"{tokens:,}" if tokens else None),
        ("steps", str(len(trace.spans)) if trace.spans else None)]
    st.markdown(" · ".join(f"{label} **{value}**" for label, value in numbers if value))
    meta = [f"source `{trace.source}`", f"id `{trace.source_id}`"]
    for label, value in (("user", trace.user_id), ("session", trace.session_id),
                         ("env", trace.environment), ("release", trace.release)):
        if value:
            meta.append(f"{label} `{value}`")
    # st.caption renders Markdown: values are shown in code spans, which Markdown never
    # interprets; backticks inside values are stripped so they cannot close the span.
    st.caption(" · ".join(m.replace("``", "") for m in meta))
    if trace.tags:
        st.caption("tags: " + ", ".join(f"`{t.replace('`', '')}`" for t in trace.tags))
    if trace.dimensions:
        st.caption("tuple: " + ", ".join(f"{k} = `{str(v).replace('`', '')}`" for k, v in trace.dimensions.items()))
    if trace.error:
        st.error("The app returned an error:")
        st.code(trace.error[:2000], language=None)  # a code block: never read as Markdown


def show(trace: TraceRecord, settings: dict | None = None, key: str = "trace") -> str:
    """Render a trace with a chooser of views; returns the view shown.

    `settings` are the project's: `default_renderer` ("auto" detects per trace) and, for the
    custom view, `custom_template` and `custom_template_mode`."""
    settings = settings or {}
    facts(trace)
    template = settings.get("custom_template") or ""
    names = [n for n in RENDERER_LABELS if n != "custom" or template.strip()]
    default = settings.get("default_renderer", "auto")
    chosen_default = detect_renderer(trace) if default in ("auto", "", None) else default
    if chosen_default not in names:
        chosen_default = detect_renderer(trace)
    view = st.pills("Show as", names, default=chosen_default, format_func=RENDERER_LABELS.get,
                    key=f"{key}.view") or chosen_default
    try:
        st.html(render_trace(trace, view, template=template or None,
                             template_mode=settings.get("custom_template_mode", "markdown")))
    except TemplateError as exc:
        st.error(f"The project's custom template failed: {exc}")
        st.html(render_trace(trace, "raw"))
    return view
