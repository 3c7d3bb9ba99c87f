"""Finding the parts a view needs inside a trace whose shape varies by app and vendor.

Traces arrive from files, Langfuse and the user's own app, so the same thing can sit in
different places: a chat may be in `messages`, in `input["messages"]`, or be an OpenAI
response in `output`; a question may be `input` itself or `input["question"]`. These helpers
look in the usual places and never raise on odd shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from evalboard.models import Message, ToolCall, TraceRecord
from evalboard.render.safe import parse_json_text

MAX_MESSAGES = 500
"""Messages shown per chat; the rest are counted in a note (bounds page size)."""


def pick(value: Any, keys: tuple[str, ...]) -> Any:
    """The first non-empty `value[key]` (keys matched case-insensitively) when `value` is a dict."""
    if not isinstance(value, Mapping):
        return None
    lowered = {str(k).lower(): v for k, v in value.items()}
    for key in keys:
        found = lowered.get(key)
        if found not in (None, "", [], {}):
            return found
    return None


def _tool_call(raw: Any) -> ToolCall | None:
    """A ToolCall from our shape, OpenAI's ({function: {name, arguments}}) or Anthropic's."""
    if isinstance(raw, ToolCall):
        return raw
    if not isinstance(raw, Mapping):
        return None
    function = raw.get("function")
    if isinstance(function, Mapping):
        raw = {
            "id": raw.get("id"),
            "name": function.get("name"),
            "arguments": function.get("arguments"),
        }
    elif "input" in raw and "arguments" not in raw:  # Anthropic tool_use block
        raw = {"id": raw.get("id"), "name": raw.get("name"), "arguments": raw.get("input")}
    name = raw.get("name")
    call_id = raw.get("id")
    return ToolCall(
        id=None if call_id is None else str(call_id),
        name="(unnamed tool)" if name in (None, "") else str(name),
        arguments=raw.get("arguments"),
    )


def to_message(raw: Any) -> Message | None:
    """A Message from a message-like dict (OpenAI/Anthropic/our own), or None if it isn't one."""
    if isinstance(raw, Message):
        return raw
    if not isinstance(raw, Mapping) or not ("role" in raw or "tool_calls" in raw):
        return None
    calls = []
    raw_calls = raw.get("tool_calls")
    if isinstance(raw_calls, list):
        calls = [call for call in map(_tool_call, raw_calls) if call is not None]
    role = raw.get("role") or "assistant"
    name = raw.get("name")
    call_id = raw.get("tool_call_id")
    try:
        return Message(
            role=str(role),
            content=raw.get("content"),
            name=None if name is None else str(name),
            tool_calls=calls,
            tool_call_id=None if call_id is None else str(call_id),
        )
    except ValidationError:
        return None


def _messages_in(value: Any) -> list[Message]:
    """Messages held by an input/output value: a list of messages, {"messages": [...]},
    an OpenAI chat completion ({"choices": [{"message": ...}]}) or a single message."""
    value = parse_json_text(value) or value
    if isinstance(value, Mapping):
        if isinstance(value.get("messages"), list):
            value = value["messages"]
        elif isinstance(value.get("choices"), list) and value["choices"]:
            first = value["choices"][0]
            value = [first.get("message")] if isinstance(first, Mapping) else []
        else:
            message = to_message(value)
            return [message] if message else []
    if isinstance(value, list) and value and all(to_message(item) for item in value[:3]):
        # parse a bounded number: the chat view shows MAX_MESSAGES anyway
        return [m for m in map(to_message, value[: MAX_MESSAGES * 10]) if m is not None]
    return []


def chat_messages(trace: TraceRecord) -> list[Message]:
    """The conversation of a trace: `messages`, else messages found in input and output."""
    if trace.messages:
        return list(trace.messages)
    found = _messages_in(trace.input)
    answer = _messages_in(trace.output)
    if found and not answer and isinstance(trace.output, str) and trace.output:
        answer = [Message(role="assistant", content=trace.output)]
    return found + answer


def has_tool_calls(trace: TraceRecord) -> bool:
    return any(m.tool_calls or m.role == "tool" for m in chat_messages(trace))


def last_content(trace: TraceRecord, role: str) -> Any:
    """Content of the last message with `role`, or None."""
    for message in reversed(chat_messages(trace)):
        if message.role == role and message.content not in (None, ""):
            return message.content
    return None


def message_text(content: Any) -> str | None:
    """Plain text of message content: a string, or the text parts of a multi-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part.get("text")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
        texts += [part for part in content if isinstance(part, str)]
        return "\n\n".join(texts) if texts else None
    return None


def output_text(trace: TraceRecord, keys: tuple[str, ...]) -> Any:
    """The trace output, unwrapped: `output[key]` for the first of `keys`, a JSON string parsed,
    an OpenAI completion's message text, or the last assistant message when output is empty."""
    output = trace.output
    parsed = parse_json_text(output)
    if isinstance(parsed, Mapping):
        output = parsed
    if isinstance(output, Mapping):
        inner = pick(output, keys)
        if inner is not None:
            return inner
        messages = _messages_in(output)
        if messages and messages[-1].content not in (None, ""):
            return message_text(messages[-1].content) or messages[-1].content
    if output in (None, ""):
        content = last_content(trace, "assistant")
        return message_text(content) or content
    return output
