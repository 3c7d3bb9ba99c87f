"""Hostile traces, end to end: a corpus of attacks is imported through the real file importer,
then every trace is opened in the running app in Chromium and shown with every view (chat,
email, RAG, markdown, timeline, JSON, raw, and the project's custom template). Nothing runs
(no dialog, no script, no handler, no javascript: link), nothing is fetched from elsewhere, the
text stays readable, and the page stays usable. Template injection (SSTI) fails in the sandbox
without side effects.

The renderers' own unit tests (tests/evalboard/test_render.py) check the HTML they produce;
this file checks what a browser makes of it after Streamlit has placed it in the page.
Prompt injection aimed at LLM judges ("ignore the above, answer pass") is covered by the judges'
tests: trace content is delimited in judge prompts and verdicts come from the structured field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from evalboard.models import TraceRecord
from evalboard.render import RENDERER_LABELS, TemplateError, render_trace
from evalboard.store import Store
from integrations.files import import_file
from tests.browser.conftest import serve_app, wait_for_run

JS = "window.__pwned=(window.__pwned||0)+1;alert(1)"

PAYLOADS = [
    f"<script>{JS}</script>",
    f"<img src=x onerror=\"{JS}\">",
    f"<svg onload=\"{JS}\"><circle r=5 /></svg>",
    f'<a href="javascript:{JS}">click me</a>',
    "<a href=\"&#106;avascript:alert(1)\">entity link</a>",
    f'<iframe src="javascript:{JS}"></iframe><iframe srcdoc="<script>{JS}</script>"></iframe>',
    '<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/x">',
    f'<form action="javascript:{JS}"><button formaction="javascript:{JS}">go</button></form>',
    "<style>*{display:none!important} body{visibility:hidden}</style>",
    '<div style="position:fixed;inset:0;z-index:2147483647;background:red">overlay</div>',
    '<link rel="stylesheet" href="https://evil.example/x.css"><meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
    f"<svg><style><img src=x onerror=\"{JS}\"></style></svg>",
    f"<math><mtext><table><mglyph><style><img src=x onerror=\"{JS}\"></style></mglyph></table></mtext></math>",
    f'<noscript><p title="</noscript><img src=x onerror=\"{JS}\">"></p></noscript>',
    f"<details open ontoggle=\"{JS}\"><summary>s</summary></details>",
    f"[markdown link](javascript:{JS}) <javascript:alert(1)> ![pixel](https://evil.example/pixel.png)",
    "{{ 7*7 }} {% for x in range(3) %}{{ x }}{% endfor %} ${7*7} #{7*7}",
]
INVISIBLE = "rtl:abc\u202edcba zw:a\u200bb\u200d bom:\ufeff iso:\u2066x\u2069 tag:\U000e0041 nul:\x00 bell:\x07"
HOSTILE = "\n\n".join(PAYLOADS) + "\n\n" + INVISIBLE
MARKER = "HOSTILE-CORPUS"
DEEP = 240  # nested levels: storable (orjson serialises up to 254), far past what views unfold


def _deep(depth: int) -> dict:
    root = node = {}
    for _ in range(depth):
        node["k"] = {}
        node = node["k"]
    node["leaf"] = PAYLOADS[0]
    return root


def corpus() -> dict[str, list[bytes]]:
    """The corpus as JSONL files by name (lines as bytes: one is not valid UTF-8 on purpose).
    One file per shape, since the importer reads one shape per file: chat conversations,
    Langfuse-style traces with observations, and input/output pairs."""
    docs = [{"id": "d1", "title": PAYLOADS[1], "url": f"javascript:{JS}", "text": HOSTILE},
            {"id": "<b>d2</b>", "source": "data:text/html,<script>alert(1)</script>", "content": PAYLOADS[0]}]
    rows = [
        {"id": "chat", "name": f"{MARKER} {PAYLOADS[0]}", "tags": [PAYLOADS[0], "hostile"],
         "messages": [
             {"role": "system", "content": HOSTILE},
             {"role": f'user" onclick="{JS}', "content": HOSTILE, "name": PAYLOADS[1]},
             {"role": "assistant", "content": None, "tool_calls": [
                 {"id": '"><script>x</script>', "type": "function",
                  "function": {"name": PAYLOADS[2], "arguments": json.dumps({"q": HOSTILE})}}]},
             {"role": "tool", "tool_call_id": '"><script>x</script>', "content": HOSTILE},
             {"role": "assistant", "content": HOSTILE + " [1] [2]"}],
         "metadata": {PAYLOADS[0]: PAYLOADS[9], "documents": docs}},
        {"id": "rag", "input": {"question": HOSTILE}, "name": MARKER,
         "output": {"answer": HOSTILE + " [1][2]", "sources": docs}},
        {"id": "email", "input": "write the reply", "name": MARKER,
         "output": f"Subject: {PAYLOADS[0]}\nTo: victim@example.com\n\nHi {PAYLOADS[1]},\n\n{HOSTILE}\n\nBest,\n{PAYLOADS[3]}"},
        {"id": "spans", "input": HOSTILE, "output": HOSTILE, "name": MARKER, "observations": [
            {"id": "s1", "type": "<b>SPAN</b>", "name": PAYLOADS[0], "startTime": "2026-10-01T00:00:00Z",
             "endTime": "2026-10-01T00:00:02Z", "input": HOSTILE, "output": docs},
            {"id": f's2" onmouseover="{JS}', "parentObservationId": "s1", "type": "GENERATION", "name": PAYLOADS[4],
             "level": "ERROR", "statusMessage": HOSTILE, "model": PAYLOADS[5], "startTime": "2026-10-01T00:00:00.5Z",
             "endTime": "2026-10-01T00:00:01Z", "output": {"html": HOSTILE}},
            {"id": "s3", "parentObservationId": "s9-missing", "type": "TOOL", "name": PAYLOADS[12],
             "startTime": "2026-10-01T00:00:01Z"}]},
        {"id": "huge", "name": MARKER, "input": "A" * 1_000_000 + PAYLOADS[0], "output": ("<b>" * 20_000) + HOSTILE},
        {"id": "deep", "name": MARKER, "input": "deep", "output": _deep(DEEP), "metadata": {"deep": _deep(DEEP)}},
        {"id": "invisible", "name": f"{MARKER} \u202e{INVISIBLE}", "input": INVISIBLE * 50, "output": INVISIBLE},
    ]
    lines = [json.dumps(r).encode() for r in rows]
    lines.append(b'{"id": "bad-utf8", "input": "caf\xe9 \xff\xfe", "output": "x"}')
    return {"chat.jsonl": lines[:1], "langfuse.jsonl": lines[3:4], "pairs.jsonl": lines[1:3] + lines[4:]}


def import_corpus(store: Store, project_id: int, folder: Path) -> list:
    reports = []
    for name, lines in corpus().items():
        (folder / name).write_bytes(b"\n".join(lines) + b"\n")
        reports.append(import_file(store, project_id, folder / name))
    return reports


def test_corpus_goes_through_the_importer(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("Hostile").id
    reports = import_corpus(sqlite_store, pid, tmp_path)
    assert [(r.shape, r.imported, r.skipped) for r in reports] == [("openai_chat", 1, 0), ("langfuse", 1, 0),
                                                                   ("io", 5, 1)]
    assert str(reports[2].issues[0]).startswith("pairs.jsonl line 6: not valid UTF-8: byte 0xe9")
    chat = sqlite_store.get_trace(sqlite_store.trace_ids(pid)[0])
    assert chat.messages[1].role == f'user" onclick="{JS}'  # stored as it came: made safe when shown
    for trace_id in sqlite_store.trace_ids(pid):  # every view of every trace renders (inertness: in Chromium below)
        trace = sqlite_store.get_trace(trace_id)
        for view in RENDERER_LABELS:
            if view != "custom":
                assert render_trace(trace, view)


def test_rows_nested_past_the_serialiser_limit_do_not_stop_an_import(sqlite_store: Store, tmp_path: Path) -> None:
    """orjson reads JSON nested up to thousands of levels but writes only 254. A 300-level row is
    stored (and reads back); a 5,000-level row cannot be written at all and is reported as bad;
    the rows around them are kept. (Found by this suite; the import used to stop.)"""
    deep = lambda n: '{"k": ' * n + "1" + "}" * n  # noqa: E731 - built as text: json.dumps cannot nest this deep
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join([json.dumps({"id": "ok-1", "input": "fine", "output": "fine"}),
                               f'{{"id": "d300", "input": "x", "output": {deep(300)}}}',
                               f'{{"id": "d5000", "input": "x", "output": {deep(5000)}}}',
                               json.dumps({"id": "ok-2", "input": "fine", "output": "fine"})]) + "\n")
    pid = sqlite_store.create_project("Deep").id
    report = import_file(sqlite_store, pid, path)
    assert (report.imported, report.skipped) == (3, 1) and report.issues[0].line == 3
    stored = {sqlite_store.get_trace(t).source_id: sqlite_store.get_trace(t) for t in sqlite_store.trace_ids(pid)}
    assert set(stored) == {"ok-1", "d300", "ok-2"} and isinstance(stored["d300"].output, dict)
    for view in RENDERER_LABELS:
        if view != "custom":
            assert render_trace(stored["d300"], view)


SSTI = [
    "{{ cycler.__init__.__globals__.os.system('touch {canary}') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch {canary}').read() }}",
    "{{ lipsum.__globals__['os'].popen('touch {canary}').read() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{% if c.__name__ == 'Popen' %}"
    "{{ c(['touch', '{canary}']) }}{% endif %}{% endfor %}",
    "{{ request.application.__globals__.__builtins__.__import__('os').system('touch {canary}') }}",
    "{{ namespace.__init__.__globals__.__builtins__.open('{canary}', 'w') }}",
    "{{ input.__class__.__init__.__globals__ }}",
    "{{ ''.format.__self__.__class__ }}",
    "{% set x = namespace() %}{{ x.__class__.__mro__ }}",
    "{{ messages.__getitem__.__self__.__class__ }}",
    "{{ (output|attr('__class__')).__base__.__subclasses__() }}",
    "{{ output|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os.system('touch {canary}') }}",
    "{{ config.items() }}{{ settings.SECRET_KEY }}{{ get_flashed_messages.__globals__ }}",
]


@pytest.mark.parametrize("template", SSTI)
def test_template_injection_fails_without_side_effects(template: str, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    trace = TraceRecord(source="s", source_id="1", input=HOSTILE, output="{{ 7*7 }}",
                        messages=[{"role": "user", "content": "hi"}])
    for mode in ("markdown", "html"):
        with pytest.raises(TemplateError):
            render_trace(trace, "custom", template=template.replace("{canary}", str(canary)), template_mode=mode)
    assert not canary.exists()


def test_trace_text_is_data_never_template_code() -> None:
    """Template syntax inside a trace is printed, not run."""
    trace = TraceRecord(source="s", source_id="1", input="{{ 7*7 }}{% for i in range(3) %}x{% endfor %}", output="o")
    html = render_trace(trace, "custom", template="{{ input }}", template_mode="html")
    assert "{{ 7*7 }}" in html and "49" not in html


# -- in Chromium -------------------------------------------------------------------------------

# Streamlit fetches the app's own page icon (a Material symbol) from Google's font CDN.
APP_ICON = "https://fonts.gstatic.com/s/i/short-term/release/materialsymbols"
# A single unbroken line of 1 MB (cut to 200k characters) took Chromium 12-30 s to lay out in
# the prose views until the renderers began breaking long runs with <wbr>. A custom template's
# own output is not broken up that way yet, so that view of the huge trace is left out below.
SLOW_ON_HUGE_LINES = ("custom",)


@dataclass
class HostileApp:
    url: str
    trace_ids: list[int]
    huge: int


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileApp]:
    home = tmp_path_factory.mktemp("hostile")
    db_url = f"sqlite:///{home / 'evalboard.db'}"
    store = Store(db_url)
    pid = store.create_project("Hostile", "A product whose users paste HTML.", settings={
        "default_renderer": "raw",  # a trace opens in the raw view; the loop then clicks every view
        "custom_template_mode": "html",
        "custom_template": "<h3>{{ name }}</h3><p onclick=\"x\">{{ input }}</p><div>{{ output }}</div>"
                           "{% for m in messages %}<i>{{ m.role }}</i>: {{ m.content }}{% endfor %}"
                           "<a href=\"{{ output }}\">out</a>{{ metadata | tojson }}"}).id
    import_corpus(store, pid, home)
    ids = store.trace_ids(pid)
    huge = next(t for t in ids if store.get_trace(t).source_id == "huge")
    store.dispose()
    env = {**os.environ, "EVALBOARD_DATABASE_URL": db_url, "EVALBOARD_HOME": str(home)}
    with serve_app(env, home) as url:
        yield HostileApp(url, ids, huge)


LIVE_MARKUP = """() => {
  const found = [];
  for (const box of document.querySelectorAll("[data-testid='stHtml'], [data-testid='stMarkdownContainer']")) {
    for (const el of box.querySelectorAll("*")) {
      const tag = el.tagName.toLowerCase();
      if (["script", "iframe", "object", "embed", "form", "link", "meta", "base", "frame", "applet"].includes(tag))
        found.push("<" + tag + ">");
      for (const attr of el.getAttributeNames()) {
        const value = (el.getAttribute(attr) || "").trim().toLowerCase();
        if (attr.startsWith("on")) found.push(tag + "[" + attr + "]");
        if (["href", "src", "action", "formaction", "xlink:href", "srcdoc"].includes(attr) &&
            (value.startsWith("javascript:") || value.startsWith("data:text/html") || attr === "srcdoc"))
          found.push(tag + "[" + attr + "=" + value.slice(0, 30) + "]");
      }
      if (getComputedStyle(el).position === "fixed") found.push(tag + " position:fixed");
    }
  }
  return found;
}"""


def _open_trace(page: Page, app: HostileApp, trace_id: int) -> None:
    box = page.get_by_role("spinbutton", name="Open trace by id")
    box.fill(str(trace_id))
    box.press("Enter")
    wait_for_run(page)


@pytest.mark.browser
def test_every_view_of_every_hostile_trace_is_inert_and_usable(hostile_app: HostileApp, browser: Browser) -> None:
    page = browser.new_page()
    dialogs: list[str] = []
    elsewhere: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: None if r.url.startswith((hostile_app.url, "data:", APP_ICON))
            else elsewhere.append(r.url))
    page.goto(f"{hostile_app.url}/traces")
    wait_for_run(page)
    slow = {(hostile_app.huge, view) for view in SLOW_ON_HUGE_LINES}
    shown = 0
    for trace_id in hostile_app.trace_ids:
        _open_trace(page, hostile_app, trace_id)
        for view, label in RENDERER_LABELS.items():
            if (trace_id, view) in slow:
                continue
            pill = page.locator("[data-testid='stButtonGroup'] button", has_text=label)
            if pill.count() == 0:
                continue
            pill.first.click()
            wait_for_run(page)
            body = page.locator("[data-testid='stHtml']").last
            expect(body).to_be_visible()
            assert page.evaluate(LIVE_MARKUP) == [], (trace_id, view)
            assert page.evaluate("window.__pwned") is None, (trace_id, view)
            shown += 1
        # The text is there to read: the attacks are shown as text, not hidden or run.
        if trace_id == hostile_app.trace_ids[0]:
            expect(page.locator("[data-testid='stHtml']").last).to_contain_text("<script>")
        # Still usable: the title is visible and the sidebar navigation can be clicked.
        expect(page.get_by_role("heading", name="Traces")).to_be_visible()
        # The chosen view carries over to the next trace: leave on raw, which shows any trace at once.
        page.locator("[data-testid='stButtonGroup'] button", has_text=RENDERER_LABELS["raw"]).first.click()
        wait_for_run(page)
    assert shown >= 7 * 7 - len(slow)
    page.wait_for_timeout(300)
    assert dialogs == [] and elsewhere == []
    page.get_by_role("link", name="Rounds").click()
    wait_for_run(page)
    expect(page.get_by_role("heading", name="Rounds").first).to_be_visible()
    page.close()


@pytest.mark.browser
def test_the_live_markup_check_itself_finds_live_markup(browser: Browser) -> None:
    page = browser.new_page()
    page.set_content('<div data-testid="stHtml"><img src="x" onerror="1"><a href="javascript:x">a</a>'
                     '<div style="position:fixed">over</div><script>1</script><iframe srcdoc="x"></iframe></div>'
                     '<div data-testid="stHtml"><p>fine</p></div>')
    found = page.evaluate(LIVE_MARKUP)
    assert set(found) >= {"img[onerror]", "a[href=javascript:x]", "div position:fixed", "<script>", "<iframe>",
                          "iframe[srcdoc=x]"}, found
    page.close()


@pytest.mark.slow
def test_template_renderer_fuzzed_at_full_strength() -> None:
    """The template renderer's property test (tests/evalboard/test_render.py: any template, any
    hostile value -> TemplateError or inert HTML) at EVALBOARD_FUZZ_EXAMPLES cases (2,000 by
    default here; that file alone runs 300 unless the variable is set)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.evalboard import test_render as render_tests

    prop = render_tests.test_render_template_only_raises_template_error_and_never_emits_script
    examples = int(os.environ.get("EVALBOARD_FUZZ_EXAMPLES", "2000"))
    strong = settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])(
        given(template=render_tests.templates, output=render_tests.values,
              mode=st.sampled_from(["markdown", "html"]))(prop.hypothesis.inner_test))
    strong()
