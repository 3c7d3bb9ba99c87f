"""In Chromium: label three traces with the keyboard only, and a hostile custom template and
trace stay inert."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from evalboard import coding
from evalboard.models import TraceRecord
from evalboard.store import Store
from tests.browser.conftest import RunningApp, wait_for_run

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script><a href="javascript:alert(3)">x</a>'


def start_labelling(page: Page, url: str, name: str) -> None:
    page.goto(f"{url}/annotate")
    wait_for_run(page)
    page.get_by_placeholder("e.g. Maya").fill(name)
    page.keyboard.press("Enter")
    wait_for_run(page)
    page.get_by_role("button", name="Start labelling").click()
    wait_for_run(page)
    page.get_by_role("heading", name="Open coding").click()  # focus out of inputs


def press(page: Page, key: str) -> None:
    page.keyboard.press(key)
    wait_for_run(page)


def test_three_labels_with_keyboard_only(running_app: RunningApp, page: Page) -> None:
    store = Store(running_app.db_url)
    pid = store.list_projects()[0].id
    rnd = store.list_rounds(pid)[0]
    queue = store.round_trace_ids(rnd.id)
    start_labelling(page, running_app.url, "keys")
    first_mode = coding.list_modes(store, pid, order="created")["name"][0]

    press(page, "p")  # 1 key: pass, and on to the next trace
    press(page, "1")  # fail with quick-pick mode 1; the cursor moves to the note box
    page.keyboard.type("cites a page that does not say this")
    press(page, "Control+Enter")  # saves the note and moves on
    press(page, "f")  # fail without a known mode yet
    page.keyboard.type("answer ignores the question")
    press(page, "Control+Enter")

    labels = coding.annotation_table(store, pid, annotator="keys").set_index("trace_id")
    assert list(labels.index) == queue[:3]
    assert labels.loc[queue[0], "verdict"] == "pass"
    assert labels.loc[queue[1], "verdict"] == "fail"
    assert labels.loc[queue[1], "modes"] == [first_mode]
    assert labels.loc[queue[1], "note"] == "cites a page that does not say this"
    assert labels.loc[queue[2], "note"] == "answer ignores the question"
    expect(page.get_by_text("you labelled 3 of")).to_be_visible()

    press(page, "u")  # undo the last change: the third trace's note
    assert coding.get_annotation(store, queue[2], "keys").note == ""


def test_hostile_template_and_trace_are_inert(running_app: RunningApp, page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    store = Store(running_app.db_url)
    pid = store.list_projects()[0].id
    tid = store.add_traces(pid, [TraceRecord(source="hostile", source_id="1", input=HOSTILE,
                                             output=HOSTILE)]).trace_ids[0]
    store.update_project(pid, settings={
        "custom_template": "<div onclick=\"alert(4)\">{{ output }}</div><script>alert(5)</script>"
                           "<style>body{display:none}</style>{{ output | safe }}",
        "custom_template_mode": "html", "default_renderer": "custom"})
    page.goto(f"{running_app.url}/traces")
    wait_for_run(page)
    box = page.get_by_role("spinbutton", name="Open trace by id")
    box.fill(str(tid))
    box.press("Enter")
    wait_for_run(page)
    html = page.locator("[data-testid='stHtml']")
    expect(html.first).to_be_visible()
    assert page.locator("[data-testid='stHtml'] script").count() == 0
    assert page.locator("[data-testid='stHtml'] [onclick], [data-testid='stHtml'] [onerror]").count() == 0
    assert page.locator("[data-testid='stHtml'] a[href^='javascript']").count() == 0
    expect(page.get_by_text(f"{store.count_traces(pid):,} traces match")).to_be_visible()  # the page still shows
    expect(html.first).to_contain_text("<script>alert(2)</script>")  # escaped by {{ output }}
    for view in ["Chat transcript", "Markdown", "Raw text", "JSON"]:
        page.locator("[data-testid='stButtonGroup']").get_by_text(view, exact=True).click()
        wait_for_run(page)
        assert page.locator("[data-testid='stHtml'] script, [data-testid='stHtml'] [onerror]").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []
