"""In Chromium: the demo loads, a trace opens, and HTML inside a trace is shown, not run."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from evalboard.store import Store
from tests.browser.conftest import RunningApp, wait_for_run


def test_demo_trace_with_xss_payload_is_inert(running_app: RunningApp, page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    store = Store(running_app.db_url)
    project = store.list_projects()[0]
    hostile = store.trace_ids(project.id)[17]  # the demo user who pasted <script> into a question
    page.goto(f"{running_app.url}/traces")
    wait_for_run(page)
    expect(page.get_by_text(f"{store.count_traces(project.id):,} traces match")).to_be_visible()
    box = page.get_by_role("spinbutton", name="Open trace by id")
    box.fill(str(hostile))
    box.press("Enter")
    wait_for_run(page)
    body = page.locator("[data-testid='stHtml']").first
    expect(body).to_contain_text('<script>alert("xss")</script>')
    expect(body).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("[data-testid='stHtml'] script").count() == 0
    assert page.locator("[data-testid='stHtml'] img[onerror]").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []
    page.screenshot(path=str(running_app.home / "trace.png"), full_page=True)
