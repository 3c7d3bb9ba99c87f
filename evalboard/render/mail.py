"""Email view: find the email an app drafted and show it as an email card.

The output may be a dict ({subject, to, cc, body, ...}), JSON text of one, or free text. Free
text is read with simple heuristics, in this order:

* header lines near the top: "Subject:", "To:", "Cc:", "Bcc:", "From:" (Markdown bold allowed,
  e.g. "**Subject:** ..."); text before them is a preamble ("Here is a draft:");
* a greeting as the first body line: "Dear X,", "Hi X,", "Hello X," ...;
* a sign-off near the end: a line such as "Best regards," or "Thanks," on its own, followed by
  the signature (name, title); "Best regards, Anna" on one line counts too;
* the paragraphs in between, split on blank lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evalboard.models import TraceRecord
from evalboard.render.fields import output_text, pick
from evalboard.render.safe import (
    MAX_FIELD_CHARS,
    esc,
    markdown_html,
    page,
    parse_json_text,
    text_block,
)

# Regexes only ever see lines up to _MAX_LINE characters (see _short), which keeps their
# backtracking cheap on hostile one-megabyte lines.
_MAX_LINE = 2_000
_HEADER_RE = re.compile(r"^[\s*_#>]*(subject|to|cc|bcc|from)[\s*_]*:[\s*_]*(.*)$", re.I)
_GREETING_RE = re.compile(
    r"^\s*(dear|hi|hello|hey|greetings|good (morning|afternoon|evening)|to whom it may concern)"
    r"\b.{0,80}$",
    re.I,
)
_SIGNOFFS = (
    r"best regards|kind regards|warm regards|warmest regards|regards|best wishes|all the best|"
    r"best|sincerely|yours sincerely|sincerely yours|yours truly|yours faithfully|"
    r"many thanks|thanks again|thanks|thank you|cheers|respectfully|with gratitude|talk soon"
)
_SIGNOFF_RE = re.compile(rf"^\s*[*_]*({_SIGNOFFS})[*_]*\s*[,.!]?\s*$", re.I)
_SIGNOFF_NAME_RE = re.compile(
    rf"^\s*({_SIGNOFFS})\s*,\s*([A-Z][\w.'-]*(?: [A-Z][\w.'-]*){{0,3}})\s*$", re.I
)
_FENCE_RE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.S)
_RECIPIENT_SPLIT_RE = re.compile(r"[;,](?![^<]*>)")

_SUBJECT_KEYS = ("subject", "title", "email_subject")
_BODY_KEYS = ("body", "email_body", "content", "text", "message", "html_body")
_NESTED_KEYS = ("email", "draft", "reply", "message", "output", "result", "response")


@dataclass
class Email:
    """An email found in a trace output; empty fields were not found."""

    subject: str | None = None
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    sender: list[str] = field(default_factory=list)
    preamble: str | None = None
    greeting: str | None = None
    paragraphs: list[str] = field(default_factory=list)
    signoff: str | None = None
    signature: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes of body text (for the truncation note)."""
        return sum(len(p.encode("utf-8", "replace")) for p in self.paragraphs)

    @property
    def signals(self) -> int:
        """How many email features were found (subject, recipients, greeting, sign-off)."""
        return sum(bool(x) for x in (self.subject, self.to or self.cc, self.greeting, self.signoff))


def _short(line: str) -> str:
    """The line itself when short enough for the heuristics, else "" (which matches nothing)."""
    return line if len(line) <= _MAX_LINE else ""


def _recipients(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, list):
        items = []
        for item in value[:100]:
            if isinstance(item, Mapping):  # {"name": ..., "email": ...}
                name, address = item.get("name"), item.get("email") or item.get("address")
                item = f"{name} <{address}>" if name and address else (address or name or "")
            items.append(str(item).strip())
        return [item for item in items if item]
    text = str(value)[:_MAX_LINE]
    return [part.strip() for part in _RECIPIENT_SPLIT_RE.split(text) if part.strip()]


def _paragraphs(lines: list[str]) -> list[str]:
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def parse_email_text(text: str) -> Email:
    """Read an email out of free text with the heuristics in the module docstring."""
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1)
    lines = text.splitlines()
    email = Email()

    # Headers: a run of header lines starting within the first 15 lines.
    start = next((i for i, line in enumerate(lines[:15]) if _HEADER_RE.match(_short(line))), None)
    body_start = 0
    if start is not None:
        preamble = "\n".join(lines[:start]).strip()
        email.preamble = preamble or None
        index = start
        while index < len(lines):
            match = _HEADER_RE.match(_short(lines[index]))
            if match is None and lines[index].strip():
                break
            if match is not None:
                name, value = match.group(1).lower(), match.group(2).strip(" \t*_")
                if name == "subject":
                    email.subject = value
                elif name == "from":
                    email.sender = _recipients(value)
                else:
                    setattr(email, name, _recipients(value))
            index += 1
        body_start = index
    body = lines[body_start:]

    # Greeting: the first non-blank body line.
    first = next((i for i, line in enumerate(body) if line.strip()), None)
    if first is not None and _GREETING_RE.match(_short(body[first])):
        email.greeting = body[first].strip()
        body = body[first + 1 :]

    # Sign-off: among the last 8 non-blank lines, the last line that is a sign-off.
    non_blank = [i for i, line in enumerate(body) if line.strip()][-8:]
    for i in reversed(non_blank):
        line = _short(body[i])
        if _SIGNOFF_RE.match(line):
            email.signoff = line.strip()
            email.signature = [rest.strip() for rest in body[i + 1 :] if rest.strip()]
            body = body[:i]
            break
        named = _SIGNOFF_NAME_RE.match(line)
        if named and i == non_blank[-1]:
            email.signoff = named.group(1) + ","
            email.signature = [named.group(2)]
            body = body[:i]
            break

    email.paragraphs = _paragraphs(body)
    return email


def _from_mapping(value: Mapping[str, Any]) -> Email | None:
    subject = pick(value, _SUBJECT_KEYS)
    body = pick(value, _BODY_KEYS)
    if subject is None and body is None:
        for key in _NESTED_KEYS:
            nested = pick(value, (key,))
            if nested is not None and nested is not value:
                found = find_email(nested, _depth=1)
                if found is not None:
                    return found
        return None
    email = parse_email_text(body) if isinstance(body, str) else Email()
    if body is not None and not isinstance(body, str):
        email.paragraphs = [str(body)]
    if subject is not None:
        email.subject = str(subject)
    for attribute, keys in (
        ("to", ("to", "recipients", "recipient", "to_recipients")),
        ("cc", ("cc",)),
        ("bcc", ("bcc",)),
        ("sender", ("from", "sender", "from_")),
    ):
        recipients = _recipients(pick(value, keys))
        if recipients:
            setattr(email, attribute, recipients)
    return email


def find_email(value: Any, _depth: int = 0) -> Email | None:
    """The email in `value` (a dict, JSON text or free text), or None if nothing looks like one."""
    if _depth > 3:
        return None
    parsed = parse_json_text(value)
    if isinstance(parsed, Mapping):
        value = parsed
    if isinstance(value, Mapping):
        return _from_mapping(value)
    if isinstance(value, str) and value.strip():
        email = parse_email_text(value)
        return email if email.signals else None
    return None


def trace_email(trace: TraceRecord) -> Email | None:
    """The email in a trace's output (or in its last assistant message)."""
    return find_email(output_text(trace, ()))


def looks_like_email(trace: TraceRecord) -> bool:
    """True when the output has at least two email features (e.g. a greeting and a sign-off)."""
    email = trace_email(trace)
    return email is not None and email.signals >= 2


def _field(label: str, people: list[str]) -> str:
    if not people:
        return ""
    chips = "".join(
        f'<span class="eb-chip"><bdi>{esc(person, 500)}</bdi></span>' for person in people
    )
    return f'<div class="eb-email-field"><span class="eb-k">{label}</span>{chips}</div>'


def render_email(trace: TraceRecord, **_: Any) -> str:
    """The drafted email as a card: subject, sender and recipients, greeting, body, signature."""
    email = trace_email(trace)
    if email is None:
        shown = output_text(trace, ())
        body = (
            '<div class="eb-note">No email found in the output; showing it as Markdown.</div>'
            + markdown_html(shown if shown is not None else "")
        )
        return page(body, "email")
    parts = []
    if email.preamble:
        parts.append(f'<div class="eb-muted eb-text">{esc(email.preamble, 5_000)}</div>')
    head = (
        f'<div class="eb-email-subject">{esc(email.subject, 2_000)}</div>'
        if email.subject
        else '<div class="eb-email-subject eb-muted">(no subject)</div>'
    )
    head += _field("From", email.sender) + _field("To", email.to)
    head += _field("Cc", email.cc) + _field("Bcc", email.bcc)
    body = ""
    if email.greeting:
        body += f'<p class="eb-email-greeting">{esc(email.greeting)}</p>'
    shown = 0
    for paragraph in email.paragraphs:
        if shown >= MAX_FIELD_CHARS:  # bound the page, like every other field
            body += f'<div class="eb-trunc">… truncated, {email.size:,} bytes in total</div>'
            break
        body += f"<p>{esc(paragraph, MAX_FIELD_CHARS - shown)}</p>"
        shown += len(paragraph)
    if email.signoff or email.signature:
        signature = "\n".join(([email.signoff] if email.signoff else []) + email.signature)
        body += f'<div class="eb-email-signature">{text_block(signature, 5_000)}</div>'
    parts.append(
        f'<div class="eb-email"><div class="eb-email-head">{head}</div>'
        f'<div class="eb-email-body">{body}</div></div>'
    )
    return page("".join(parts), "email")


render_email.label = "Email"  # type: ignore[attr-defined]
