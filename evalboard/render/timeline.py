"""Timeline view: the span tree of a multi-step agent, with a bar per span on a shared clock.

Spans are nested by `parent_id` (a span whose parent is missing, or that sits in a parent
cycle, is shown as a root) and listed depth-first, children by start time. The tree is drawn as
a flat list with indentation rather than nested HTML, so a 5,000-deep chain costs no more than
a flat one.

The bar of a span starts at (start - t0) / (t1 - t0) of the track and is
(end - start) / (t1 - t0) wide, where t0 is the earliest start and t1 the latest end among
the trace and its spans.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from evalboard.models import Span, TraceRecord
from evalboard.render.safe import esc, folded, page, pre, section, text_block

MAX_SPANS = 1_000
"""Spans shown; more are counted in a note."""
SPAN_IO_LIMIT = 20_000
"""Characters shown per span input or output (a long agent run would otherwise be huge)."""
_MAX_INDENT = 24

_TYPE_CLASSES = {
    "span", "generation", "event", "tool", "retriever", "agent", "chain", "embedding",
    "evaluator", "guardrail",
}  # fmt: skip


def _seconds(moment: datetime | None) -> float | None:
    """POSIX seconds; a naive datetime is taken as UTC so mixed inputs still compare."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def span_order(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans depth-first with their depth; children sorted by start time, no recursion."""
    by_id = {span.id: span for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in by_id and span.parent_id != span.id else None
        children.setdefault(parent, []).append(span)

    def start_key(span: Span) -> tuple[bool, float]:
        started = _seconds(span.start_time)
        return (started is None, started or 0.0)

    for siblings in children.values():
        siblings.sort(key=start_key)  # stable: spans without times keep their given order

    ordered: list[tuple[Span, int]] = []
    seen: set[int] = set()

    def walk(root: Span) -> None:
        stack = [(root, 0)]
        while stack:
            span, depth = stack.pop()
            if id(span) in seen:
                continue
            seen.add(id(span))
            ordered.append((span, depth))
            stack.extend((child, depth + 1) for child in reversed(children.get(span.id, [])))

    for root in children.get(None, []):
        walk(root)
    for span in sorted(spans, key=start_key):  # spans only reachable through a parent cycle
        if id(span) not in seen:
            walk(span)
    return ordered


def _span_html(span: Span, depth: int, t0: float | None, total: float | None) -> str:
    level = (span.level or "").lower()
    kind = span.type.lower()
    classes = "eb-span" + (f" eb-level-{level}" if level in ("error", "warning") else "")
    indent = min(depth, _MAX_INDENT) * 14
    head = (
        f'<span class="eb-badge eb-type-{kind if kind in _TYPE_CLASSES else "other"}">'
        f"{esc(span.type, 40)}</span>"
        f'<bdi class="eb-span-name">{esc(span.name or span.id, 500)}</bdi>'
    )
    if depth > _MAX_INDENT:
        head += f' <span class="eb-meta">depth {depth}</span>'
    start, end = _seconds(span.start_time), _seconds(span.end_time)
    if start is not None and end is not None:  # not span.latency_ms: it fails on naive+aware
        head += f' <span class="eb-meta">{_duration(max(end - start, 0.0))}</span>'
    if span.model:
        head += f' <span class="eb-meta">{esc(span.model, 200)}</span>'
    if span.input_tokens is not None or span.output_tokens is not None:
        head += (
            f' <span class="eb-meta">{span.input_tokens or 0:,} → {span.output_tokens or 0:,} tok'
            "</span>"
        )
    elif span.total_tokens is not None:
        head += f' <span class="eb-meta">{span.total_tokens:,} tok</span>'
    if span.cost is not None:
        head += f' <span class="eb-meta">${span.cost:.4g}</span>'
    if level == "error":
        head += ' <span class="eb-error">ERROR</span>'

    bar = ""
    if t0 is not None and total and start is not None:
        left = min(max((start - t0) / total * 100, 0.0), 100.0)
        width = min(max(((end or start) - start) / total * 100, 0.0), 100.0 - left)
        bar = (
            f'<div class="eb-track"><div class="eb-bar" '
            f'style="margin-left:{left:.2f}%;width:{width:.2f}%"></div></div>'
        )
    status = ""
    if span.status_message:
        status_class = "eb-error" if level == "error" else "eb-meta"
        status = f'<div class="{status_class} eb-text">{esc(span.status_message, 5_000)}</div>'
    io = ""
    sections = [
        section(title, pre(value, SPAN_IO_LIMIT))
        for title, value in (("Input", span.input), ("Output", span.output))
        if value is not None
    ]
    if sections:
        io = folded("input / output", "".join(sections))
    return (
        f'<div class="{classes}" style="margin-left:{indent}px">'
        f'<div class="eb-span-head">{head}</div>{bar}{status}{io}</div>'
    )


def render_timeline(trace: TraceRecord, **_: Any) -> str:
    """Span tree with type, name, duration, a proportional bar, model, tokens, cost and errors."""
    if not trace.spans:
        body = '<div class="eb-note">This trace has no spans.</div>'
        body += section("Input", text_block(trace.input))
        body += section("Output", text_block(trace.output))
        return page(body, "timeline")

    starts = [_seconds(s.start_time) for s in trace.spans] + [_seconds(trace.timestamp)]
    ends = [_seconds(s.end_time) for s in trace.spans] + [_seconds(trace.end_time)]
    known_starts = [t for t in starts if t is not None]
    known_times = known_starts + [t for t in ends if t is not None]
    t0 = min(known_starts) if known_starts else None
    t1 = max(known_times) if known_times else None
    total = (t1 - t0) if t0 is not None and t1 is not None and t1 > t0 else None

    errors = sum(1 for s in trace.spans if (s.level or "").upper() == "ERROR")
    tokens = sum(
        s.total_tokens or (s.input_tokens or 0) + (s.output_tokens or 0) for s in trace.spans
    )
    costs = [s.cost for s in trace.spans if s.cost is not None]
    summary = f"{len(trace.spans):,} spans"
    if total:
        summary += f" · {_duration(total)}"
    if tokens:
        summary += f" · {tokens:,} tokens"
    if costs:
        summary += f" · ${sum(costs):.4g}"
    if errors:
        summary += f' · <span class="eb-error">{errors} error{"s" if errors > 1 else ""}</span>'
    body = f'<div class="eb-note">{summary}</div>'

    ordered = span_order(trace.spans)
    body += "".join(_span_html(span, depth, t0, total) for span, depth in ordered[:MAX_SPANS])
    if len(ordered) > MAX_SPANS:
        body += f'<div class="eb-note">{len(ordered) - MAX_SPANS:,} more spans not shown.</div>'
    if trace.error:
        body += f'<div class="eb-error eb-text">Trace error: {esc(trace.error, 5_000)}</div>'
    return page(body, "timeline")


render_timeline.label = "Span timeline"  # type: ignore[attr-defined]
