"""The safety layer every trace view goes through.

Trace content comes from production and is untrusted. It reaches the page in one of two ways:

* as escaped text (`esc`, `pre`): every HTML-special character becomes an entity, so nothing
  in it is markup;
* as sanitised HTML (`markdown_html`, `sanitize_html`): Markdown is rendered by markdown-it
  with raw HTML turned off, and the result goes through nh3 with an allowlist of tags,
  attributes and URL schemes (http, https, mailto; relative links for in-page anchors).
  Markdown images become links, so viewing a trace never fetches a URL a model wrote.

`page()` then runs one more allowlist pass over the whole assembled view (defence in depth: a
bug in one renderer cannot ship a script) and puts our own CSS in front of it. Trace content
never reaches the CSS: the `<style>` block is a constant and `style` attributes are only kept
when they are the bare geometry (`width`, `margin-left`) that the timeline writes.

Text is made safe to show before it is escaped (`clean_text`): lone surrogates and broken
UTF-8 become U+FFFD, C0 control characters become their visible "control pictures" (U+2400..),
and invisible characters that can reorder or hide text (bidi overrides and isolates, zero-width
space, BOM, Unicode tag characters used for "ASCII smuggling") are replaced by a visible
marker such as ⟨RLO⟩. Zero-width joiner and non-joiner are kept: emoji and several scripts need
them.

Every displayed value is bounded: text fields are cut at `MAX_FIELD_CHARS` with a note
("truncated, N bytes"), JSON is pretty-printed with capped depth, width and node count, and
Markdown longer than `MAX_MARKDOWN_CHARS` is shown as plain text (markdown-it is slow on
adversarial input of that size).
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel

# --- limits --------------------------------------------------------------------------------

MAX_FIELD_CHARS = 200_000
"""Longest text shown for one field; longer values are cut with a note."""
MAX_MARKDOWN_CHARS = 200_000
"""Longest text rendered as Markdown; longer text is shown escaped instead."""
MAX_JSON_DEPTH = 64
"""Pretty JSON shows this many nesting levels; deeper content becomes a note."""
MAX_JSON_ITEMS = 2_000
"""Items shown per list or dict in pretty JSON."""
MAX_JSON_NODES = 100_000
"""Values visited per pretty-printed structure (bounds cyclic or very wide data)."""
MAX_HTML_DEPTH = 256
"""HTML nested deeper than this is shown as text: nh3's parser is quadratic in nesting depth."""

# --- text cleaning -------------------------------------------------------------------------

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_C0_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Characters that are invisible but change how text reads: bidi embeddings, overrides and
# isolates, zero-width space, word joiner, invisible operators, BOM, interlinear annotation,
# C1 controls and Unicode tag characters.
_INVISIBLE_RE = re.compile(
    "[\x80-\x9f\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)
_SHORT_NAMES = {
    0x061C: "ALM",
    0x180E: "MVS",
    0x200B: "ZWSP",
    0x200E: "LRM",
    0x200F: "RLM",
    0x202A: "LRE",
    0x202B: "RLE",
    0x202C: "PDF",
    0x202D: "LRO",
    0x202E: "RLO",
    0x2060: "WJ",
    0x2066: "LRI",
    0x2067: "RLI",
    0x2068: "FSI",
    0x2069: "PDI",
    0xFEFF: "BOM",
}


def _control_picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\u2421" if code == 0x7F else chr(0x2400 + code)


def clean_text(value: str | bytes | bytearray) -> str:
    """Text that can be encoded and shown: valid UTF-8, no lone surrogates, visible C0 controls.

    Bytes are decoded as UTF-8 with U+FFFD for invalid sequences; lone surrogates (which Python
    strings can hold but UTF-8 cannot) become U+FFFD; NUL and other C0 controls except tab,
    newline and carriage return become the matching control picture (U+2400 + code).
    """
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = _SURROGATE_RE.sub("\ufffd", value)
    return _C0_RE.sub(_control_picture, value)


def _marker_label(char: str) -> str:
    code = ord(char)
    if 0xE0020 <= code <= 0xE007E:  # tag characters mirror ASCII: show the hidden letter
        return f"tag:{chr(code - 0xE0000)}"
    return _SHORT_NAMES.get(code, f"U+{code:04X}")


def _marker_title(char: str) -> str:
    code = ord(char)
    return f"U+{code:04X} {unicodedata.name(char, 'invisible character')}"


def reveal_plain(text: str) -> str:
    """Replace invisible/bidi characters with a visible plain-text marker such as ⟨RLO⟩."""
    return _INVISIBLE_RE.sub(lambda m: f"\u27e8{_marker_label(m.group())}\u27e9", text)


def _marker_span(match: re.Match[str]) -> str:
    char = match.group()
    return (
        f'<span class="eb-ctl" title="{_marker_title(char)}">'
        f"\u27e8{html.escape(_marker_label(char))}\u27e9</span>"
    )


def _cut(text: str, limit: int) -> tuple[str, str]:
    """`text` cut to `limit` characters, and the HTML note to show when it was cut."""
    if len(text) <= limit:
        return text, ""
    total = len(text.encode("utf-8"))
    note = (
        f'<span class="eb-trunc">… truncated, {total:,} bytes in total '
        f"(showing the first {limit:,} characters)</span>"
    )
    return text[:limit], note


def as_text(value: Any) -> str:
    """A value as display text: strings as they are, None as "", anything else as pretty JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return clean_text(value)
    return pretty_json(value)


# A browser lays out a 1 MB "word" (no spaces) very slowly even with overflow-wrap:anywhere
# (12-30 s measured in Chromium); a <wbr> every few dozen characters of such a run brings it to
# about a second. A private-use character marks the break points through escaping, Markdown
# and sanitising, and becomes <wbr> in text (and nothing inside tags) at the end.
_BREAK = "\ue000"
_LONG_RUN_RE = re.compile(r"[^\s\ue000]{120,}")
_BREAK_OR_TAG_RE = re.compile(r"(<[^>]*>)|\ue000")


def _breakable(text: str) -> str:
    if len(text) < 120:
        return text
    return _LONG_RUN_RE.sub(lambda m: _BREAK.join(m.group(0)[i:i + 80] for i in range(0, len(m.group(0)), 80)),
                            text.replace(_BREAK, ""))


def _with_breaks(markup: str) -> str:
    if _BREAK not in markup:
        return markup
    # Inside a tag (a link target, say) the marker may have been percent-encoded: drop it there.
    return _BREAK_OR_TAG_RE.sub(
        lambda m: m.group(1).replace("%EE%80%80", "").replace(_BREAK, "") if m.group(1) else "<wbr>",
        markup)


def esc(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """Trace content as escaped HTML text: cleaned, cut at `limit`, invisible characters marked,
    long unbroken runs given break opportunities."""
    text = clean_text(as_text(value))
    text, note = _cut(text, limit)
    return _with_breaks(_INVISIBLE_RE.sub(_marker_span, html.escape(_breakable(text), quote=True))) + note


def attr(value: Any, limit: int = 500) -> str:
    """Trace content for an attribute value: cleaned, cut, invisible characters as plain markers,
    quotes escaped (no markup, so it can never close the attribute)."""
    text = _clip(reveal_plain(clean_text(as_text(value))), limit)
    return html.escape(text, quote=True)


def pre(value: Any, limit: int = MAX_FIELD_CHARS, cls: str = "eb-pre") -> str:
    """A value in a wrapping `<pre>` block (JSON for structured values)."""
    return f'<pre class="{cls}">{esc(value, limit)}</pre>'


def text_block(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """Prose shown as escaped text that keeps its line breaks (structured values as JSON)."""
    if value is not None and not isinstance(value, (str, bytes, bytearray)):
        return pre(value, limit)
    return f'<div class="eb-text">{esc(value, limit)}</div>'


# --- JSON ----------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated, {len(text.encode('utf-8')):,} bytes]"


def to_plain(
    value: Any,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_items: int = MAX_JSON_ITEMS,
    max_str: int = MAX_FIELD_CHARS,
    max_nodes: int = MAX_JSON_NODES,
) -> Any:
    """A JSON-ready copy of `value` (dicts, lists, str, numbers, bools, None), bounded.

    Like pydantic's `model_dump(mode="json")` (datetimes become ISO strings, models become
    dicts of their fields) but it never raises: containers deeper than `max_depth` become a
    note, lists/dicts keep their first `max_items` entries plus a count of the rest, strings are
    cut at `max_str`, and after `max_nodes` values everything else becomes "…". That makes
    deeply nested, cyclic or enormous data safe to print.
    """
    remaining = [max_nodes]

    def convert(item: Any, depth: int) -> Any:
        remaining[0] -= 1
        if remaining[0] < 0:
            return "…"
        if item is None or isinstance(item, bool):
            return item
        if isinstance(item, int):
            # json can't print ints beyond Python's int->str digit limit
            return item if item.bit_length() <= 10_000 else f"<integer of {item.bit_length()} bits>"
        if isinstance(item, float):
            return item if math.isfinite(item) else str(item)
        if isinstance(item, (str, bytes, bytearray)):
            return _clip(clean_text(item), max_str)
        if isinstance(item, (datetime, date, time)):
            return item.isoformat()
        if isinstance(item, BaseModel):
            item = {name: getattr(item, name, None) for name in type(item).model_fields}
        if isinstance(item, Mapping):
            if depth >= max_depth:
                return f"… (nested deeper than {max_depth} levels)"
            out: dict[str, Any] = {}
            for index, (key, sub) in enumerate(item.items()):
                if index >= max_items:
                    out["…"] = f"{len(item) - max_items:,} more keys"
                    break
                out[_clip(clean_text(str(key)), 1_000)] = convert(sub, depth + 1)
            return out
        if isinstance(item, (list, tuple, set, frozenset)):
            if depth >= max_depth:
                return f"… (nested deeper than {max_depth} levels)"
            items = []
            for index, sub in enumerate(item):
                if index >= max_items:
                    items.append(f"… {len(item) - max_items:,} more items")
                    break
                items.append(convert(sub, depth + 1))
            return items
        try:
            text = str(item)
        except Exception:  # a broken __str__ in someone's object must not break the view
            text = object.__repr__(item)
        return _clip(clean_text(text), max_str)

    return convert(value, 0)


_ENCODER = json.JSONEncoder(indent=2, ensure_ascii=False, default=str)


def pretty_json(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """Indented JSON of `value` (bounded by `to_plain`), streamed and cut after `limit` chars.

    Streaming means a huge structure is never fully encoded just to be cut.
    """
    pieces: list[str] = []
    size = 0
    for chunk in _ENCODER.iterencode(to_plain(value, max_str=min(limit, MAX_FIELD_CHARS))):
        pieces.append(chunk)
        size += len(chunk)
        if size > limit:
            return "".join(pieces)[:limit] + f"\n… [truncated after {limit:,} characters]"
    return "".join(pieces)


def parse_json_text(text: Any) -> Any:
    """`text` parsed as JSON when it is a string holding an object or array, else `None`."""
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[" or len(stripped) > 10 * MAX_FIELD_CHARS:
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


# --- HTML sanitising -----------------------------------------------------------------------

_URL_SCHEMES = {"http", "https", "mailto"}
_CONTENT_TAGS = set(nh3.ALLOWED_TAGS)
_CONTENT_ATTRIBUTES: dict[str, set[str]] = copy.deepcopy(nh3.ALLOWED_ATTRIBUTES)
for _tag, _names in {
    "*": {"class", "title", "lang"},
    "a": {"href", "hreflang", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "details": {"open"},
}.items():
    _CONTENT_ATTRIBUTES.setdefault(_tag, set()).update(_names)

# The final pass over our own markup also keeps anchor ids and the timeline's geometry.
_PAGE_ATTRIBUTES = copy.deepcopy(_CONTENT_ATTRIBUTES)
_PAGE_ATTRIBUTES["*"].add("id")
_PAGE_ATTRIBUTES.setdefault("div", set()).add("style")
_PAGE_ATTRIBUTES.setdefault("span", set()).add("style")
_SAFE_STYLE_RE = re.compile(r"(?:(?:width|margin-left):\d{1,4}(?:\.\d{1,3})?(?:%|px);?)+")
_SAFE_ID_RE = re.compile(r"eb-[A-Za-z0-9_-]{1,80}")

_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)")
_VOID_TAGS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
}  # fmt: skip


def html_depth(markup: str) -> int:
    """Upper estimate of how deeply `markup` nests elements (one linear scan, no parsing).

    A closing tag pops back to the nearest open element of the same name; stray closing tags
    are ignored, so the estimate never undercounts real nesting.
    """
    stack: list[str] = []
    open_counts: dict[str, int] = {}
    deepest = 0
    for match in _TAG_RE.finditer(markup):
        name = match.group(2).lower()
        if match.group(1):  # closing tag
            if open_counts.get(name):
                while stack:
                    top = stack.pop()
                    open_counts[top] -= 1
                    if top == name:
                        break
        elif name not in _VOID_TAGS:
            stack.append(name)
            open_counts[name] = open_counts.get(name, 0) + 1
            deepest = max(deepest, len(stack))
    return deepest


def _too_deep(markup: str) -> str:
    return (
        f'<div class="eb-note">This HTML nests elements more than {MAX_HTML_DEPTH} levels '
        "deep; it is shown as text.</div>" + pre(markup)
    )


def sanitize_html(markup: str) -> str:
    """Untrusted HTML made safe to embed: nh3 with an allowlist.

    Kept: common text, list, table, code and media tags; `href`/`src` only with http, https,
    mailto or relative URLs; `class`, `title` and `lang` attributes. Dropped: script, style,
    iframe, object, embed, form and every other tag not on the list (script/style with their
    content), all `on*` event handlers, `style` attributes, comments. Links get
    rel="noopener noreferrer". Invisible and bidi control characters become visible markers.
    """
    markup = reveal_plain(clean_text(markup))
    if html_depth(markup) > MAX_HTML_DEPTH:
        return _too_deep(markup)
    return nh3.clean(
        markup,
        tags=_CONTENT_TAGS,
        attributes=_CONTENT_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def _page_attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return value if _SAFE_STYLE_RE.fullmatch(value.replace(" ", "")) else None
    if attribute == "id":
        return value if _SAFE_ID_RE.fullmatch(value) else None
    return value


def _final_pass(markup: str) -> str:
    markup = clean_text(markup)
    if html_depth(markup) > MAX_HTML_DEPTH:
        return _too_deep(markup)
    return nh3.clean(
        markup,
        tags=_CONTENT_TAGS,
        attributes=_PAGE_ATTRIBUTES,
        attribute_filter=_page_attribute_filter,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


# --- Markdown ------------------------------------------------------------------------------

# CommonMark with raw HTML off: a `<script>` in trace text stays visible text. markdown-it
# also refuses javascript:, vbscript:, file: and data: link targets (except data: images,
# which nh3 then drops because data: is not an allowed scheme).
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_MARKDOWN.enable(["table", "strikethrough"])


def _image_as_link(renderer: Any, tokens: list[Token], index: int, options: Any, env: Any) -> str:
    """Markdown images in trace text become links: loading them would call out to any URL
    a model was tricked into writing (a known way to exfiltrate data or track reviewers)."""
    token = tokens[index]
    alt = renderer.renderInlineAsText(token.children or [], options, env) or "image"
    src = str(token.attrGet("src") or "")
    label = f"[image: {html.escape(alt)}]"
    return f'<a href="{html.escape(src, quote=True)}">{label}</a>' if src else label


_MARKDOWN.add_render_rule("image", _image_as_link)


def markdown_html(text: Any, text_html: Callable[[str], str | None] | None = None) -> str:
    """Markdown `text` as sanitised HTML.

    `text_html`, when given, sees the content of every plain-text run (not code, not link
    targets) and may return replacement HTML for it; the renderer uses it to turn citations
    like [2] into links. It must escape what it returns; the result is sanitised anyway.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        return pre(text)
    text = _breakable(reveal_plain(clean_text(text)))
    if len(text) > MAX_MARKDOWN_CHARS:
        return (
            f'<div class="eb-note">Too long to render as Markdown '
            f"({len(text.encode('utf-8')):,} bytes); shown as plain text.</div>" + text_block(text)
        )
    tokens = _MARKDOWN.parse(text)
    if text_html is not None:
        for token in tokens:
            if token.type != "inline" or not token.children:
                continue
            for index, child in enumerate(token.children):
                if child.type == "text":
                    replacement = text_html(child.content)
                    if replacement is not None:
                        token.children[index] = Token("html_inline", "", 0, content=replacement)
    return _with_breaks(sanitize_html(_MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {})))


# --- page assembly -------------------------------------------------------------------------

STYLE = """
.eb-root{font-size:.95rem;line-height:1.45;overflow-wrap:anywhere;word-break:break-word;unicode-bidi:isolate;max-width:100%}
.eb-root *{box-sizing:border-box;max-width:100%}
.eb-root pre,.eb-root code{white-space:pre-wrap;overflow-wrap:anywhere;unicode-bidi:isolate;font-size:.85em}
.eb-root pre{background:rgba(128,128,128,.09);border-radius:6px;padding:.5em .7em;margin:.3em 0;max-height:36em;overflow:auto}
.eb-root details>summary{cursor:pointer}
.eb-root table{border-collapse:collapse}.eb-root td,.eb-root th{border:1px solid rgba(128,128,128,.35);padding:.2em .5em}
.eb-text{white-space:pre-wrap;unicode-bidi:plaintext}
.eb-muted,.eb-note,.eb-trunc{opacity:.7;font-size:.85em}
.eb-note{margin:.3em 0}.eb-trunc{display:block;font-style:italic}
.eb-ctl{border:1px solid #d9822b;border-radius:3px;color:#d9822b;font-size:.75em;padding:0 2px;unicode-bidi:isolate}
.eb-section{margin:.6em 0}.eb-section>h4{margin:.2em 0;font-size:.8em;text-transform:uppercase;letter-spacing:.04em;opacity:.7}
.eb-badge{display:inline-block;border-radius:999px;padding:0 .55em;font-size:.75em;background:rgba(128,128,128,.18);margin-right:.3em}
.eb-msg{border-radius:10px;padding:.5em .8em;margin:.5em 0;border:1px solid rgba(128,128,128,.25);max-width:92%}
.eb-msg-head{font-size:.75em;font-weight:600;text-transform:uppercase;letter-spacing:.04em;opacity:.75;margin-bottom:.2em}
.eb-role-user{margin-left:auto;background:rgba(46,134,222,.12)}
.eb-role-assistant{background:rgba(128,128,128,.07)}
.eb-role-system,.eb-role-developer{background:rgba(241,196,15,.12);max-width:100%}
.eb-role-tool,.eb-role-function{background:rgba(39,174,96,.10)}
.eb-tool-call,.eb-tool-result{margin:.3em 0;border-left:3px solid rgba(39,174,96,.6);padding-left:.5em}
.eb-email{border:1px solid rgba(128,128,128,.3);border-radius:10px;padding:.8em 1em}
.eb-email-subject{font-size:1.1em;font-weight:600;margin-bottom:.3em}
.eb-email-field{font-size:.85em;margin:.1em 0}.eb-k{opacity:.65;display:inline-block;min-width:3.5em}
.eb-chip{display:inline-block;border:1px solid rgba(128,128,128,.4);border-radius:999px;padding:0 .5em;margin:0 .2em .2em 0}
.eb-email-body{border-top:1px solid rgba(128,128,128,.25);margin-top:.6em;padding-top:.6em}
.eb-email-body p{margin:.5em 0;white-space:pre-wrap}
.eb-email-signature{margin-top:.8em;white-space:pre-wrap}
.eb-doc{border:1px solid rgba(128,128,128,.25);border-radius:8px;padding:.4em .7em;margin:.4em 0}
.eb-doc-head{font-size:.85em;margin-bottom:.2em}
.eb-doc:target{outline:2px solid #2e86de}
.eb-cite{background:rgba(46,134,222,.18);border-radius:4px;padding:0 .15em;text-decoration:none;font-weight:600}
.eb-cite-missing{background:rgba(231,76,60,.22)}
.eb-span{padding:.3em .4em;border-bottom:1px solid rgba(128,128,128,.15)}
.eb-span-head{font-size:.9em}
.eb-track{height:6px;background:rgba(128,128,128,.12);border-radius:3px;margin:.25em 0}
.eb-bar{height:6px;min-width:2px;background:#2e86de;border-radius:3px}
.eb-level-error{background:rgba(231,76,60,.10)}.eb-level-error .eb-bar{background:#e74c3c}
.eb-level-warning .eb-bar{background:#f39c12}
.eb-error{color:#e74c3c;font-weight:600}
.eb-meta{opacity:.75;font-size:.85em;margin-left:.4em}
"""


def anchor_prefix(source: str, source_id: str) -> str:
    """A short, deterministic id prefix so two traces on one page never share anchors."""
    digest = hashlib.blake2b(
        f"{source}\x00{source_id}".encode("utf-8", "surrogatepass"), digest_size=4
    ).hexdigest()
    return f"eb-{digest}"


def page(body: str, view: str) -> str:
    """A finished view: our CSS, then the body wrapped in `.eb-root` after a last allowlist pass."""
    wrapped = f'<div class="eb-root eb-view-{view}">{body}</div>'
    return f"<style>{STYLE}</style>{_final_pass(wrapped)}"


def section(title: str, body: str) -> str:
    """A titled block; `title` is our own label text, escaped anyway."""
    return f'<div class="eb-section"><h4>{html.escape(title)}</h4>{body}</div>'


def folded(summary_html: str, body: str, open_: bool = False) -> str:
    """A `<details>` block; `summary_html` must already be safe HTML."""
    return f"<details{' open' if open_ else ''}><summary>{summary_html}</summary>{body}</details>"
