"""Chat view: the conversation as bubbles, with tool calls and their results folded.

Each tool call gets an anchor; a tool result links back to the call it answers (matched on
`tool_call_id`), so a reviewer can jump from "the tool returned X" to "the model asked for Y".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalboard.models import Message, ToolCall, TraceRecord
from evalboard.render.fields import MAX_MESSAGES, chat_messages
from evalboard.render.safe import (
    anchor_prefix,
    esc,
    folded,
    markdown_html,
    page,
    parse_json_text,
    pre,
    pretty_json,
    text_block,
)

_ROLE_CLASSES = {"system", "developer", "user", "assistant", "tool", "function"}


class _CallIndex:
    """Anchor ids for tool calls in this trace, so results can link to their call."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.by_id: dict[str, tuple[str, str]] = {}  # call id -> (anchor, tool name)
        self.count = 0

    def add(self, call: ToolCall) -> str:
        self.count += 1
        anchor = f"{self.prefix}-call-{self.count}"
        if call.id is not None and call.id not in self.by_id:
            self.by_id[call.id] = (anchor, call.name)
        return anchor


def _arguments_html(arguments: Any) -> str:
    """Tool arguments pretty-printed; JSON text is parsed first, invalid JSON shown as given."""
    if arguments in (None, "", {}):
        return '<div class="eb-muted">(no arguments)</div>'
    if isinstance(arguments, str):
        parsed = parse_json_text(arguments)
        if parsed is None:
            return '<div class="eb-note">Arguments are not valid JSON; shown as given.</div>' + pre(
                arguments
            )
        arguments = parsed
    return pre(pretty_json(arguments))


def _call_html(call: ToolCall, calls: _CallIndex) -> str:
    anchor = calls.add(call)
    summary = (
        '<span class="eb-badge">tool call</span>'
        f'<bdi class="eb-tool-name">{esc(call.name, 500)}</bdi>'
        + (f' <code>{esc(call.id, 500)}</code>' if call.id else "")
    )
    return (
        f'<div class="eb-tool-call" id="{anchor}">'
        + folded(summary, _arguments_html(call.arguments))
        + "</div>"
    )


def _result_link(call_id: str | None, calls: _CallIndex) -> str:
    if call_id is None:
        return ""
    found = calls.by_id.get(call_id)
    if found is None:
        return (
            f" for <code>{esc(call_id, 500)}</code>"
            ' <span class="eb-muted">(no matching call)</span>'
        )
    anchor, name = found
    return (
        f' for <a href="#{anchor}"><bdi>{esc(name, 500)}</bdi>'
        f" <code>{esc(call_id, 500)}</code></a>"
    )


def _result_html(content: Any, call_id: str | None, calls: _CallIndex) -> str:
    parsed = parse_json_text(content)
    if content in (None, ""):
        body = '<div class="eb-muted">(empty result)</div>'
    else:
        body = pre(parsed if parsed is not None else content)
    summary = '<span class="eb-badge">tool result</span>' + _result_link(call_id, calls)
    return f'<div class="eb-tool-result">{folded(summary, body)}</div>'


def _part_html(part: Any, as_markdown: bool, calls: _CallIndex) -> str:
    """One part of multi-part content (OpenAI/Anthropic content blocks)."""
    if isinstance(part, str):
        return markdown_html(part) if as_markdown else text_block(part)
    if not isinstance(part, Mapping):
        return pre(part)
    kind = str(part.get("type", ""))
    if isinstance(part.get("text"), str):
        return markdown_html(part["text"]) if as_markdown else text_block(part["text"])
    if kind in ("image_url", "image", "input_image"):
        # Untrusted images are not loaded (tracking pixels, huge files); say where it was.
        source = part.get("image_url") or part.get("source") or part.get("url")
        if isinstance(source, Mapping):
            source = source.get("url") or source.get("media_type") or "inline data"
        return f'<div class="eb-muted">[image: {esc(source, 300)}]</div>'
    if kind == "tool_use":
        call = ToolCall(
            id=_str(part.get("id")),
            name=str(part.get("name") or "(unnamed tool)"),
            arguments=part.get("input"),
        )
        return _call_html(call, calls)
    if kind == "tool_result":
        return _result_html(part.get("content"), _str(part.get("tool_use_id")), calls)
    return pre(part)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def content_html(content: Any, as_markdown: bool, calls: _CallIndex) -> str:
    """Message content: Markdown or plain text for strings, blocks for lists, JSON otherwise."""
    if content in (None, ""):
        return ""
    if isinstance(content, str):
        return markdown_html(content) if as_markdown else text_block(content)
    if isinstance(content, list):
        return "".join(_part_html(part, as_markdown, calls) for part in content[:200])
    return pre(content)


def _message_html(message: Message, calls: _CallIndex, markdown: bool) -> str:
    role = message.role.lower()
    role_class = role if role in _ROLE_CLASSES else "other"
    head = f'<div class="eb-msg-head">{esc(message.role, 100)}'
    if message.name:
        head += f' · <bdi class="eb-name">{esc(message.name, 200)}</bdi>'
    head += "</div>"
    if role == "tool" or (role == "function" and message.tool_call_id):
        body = _result_html(message.content, message.tool_call_id, calls)
    else:
        body = content_html(message.content, markdown and role == "assistant", calls)
        body += "".join(_call_html(call, calls) for call in message.tool_calls)
        if not body:
            body = '<div class="eb-muted">(empty)</div>'
    return f'<div class="eb-msg eb-role-{role_class}">{head}{body}</div>'


def render_chat(trace: TraceRecord, *, markdown: bool = True, **_: Any) -> str:
    """The conversation as bubbles, system/user/assistant/tool.

    Assistant text is rendered as Markdown (as the product's user sees it) unless
    `markdown=False`; other roles are shown as plain text. Without messages, the trace input
    and output are shown as one user and one assistant bubble.
    """
    calls = _CallIndex(anchor_prefix(trace.source, trace.source_id))
    messages = chat_messages(trace)
    if not messages:
        messages = [
            Message(role="user", content=trace.input),
            Message(role="assistant", content=trace.output),
        ]
    shown = messages[:MAX_MESSAGES]
    body = "".join(_message_html(message, calls, markdown) for message in shown)
    if len(messages) > len(shown):
        body += (
            f'<div class="eb-note">{len(messages) - len(shown):,} more messages not shown '
            "(use the JSON view).</div>"
        )
    if trace.error:
        body += f'<div class="eb-error">Error: {esc(trace.error, 5_000)}</div>'
    return page(body, "chat")


render_chat.label = "Chat transcript"  # type: ignore[attr-defined]
