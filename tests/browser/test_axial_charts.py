"""In Chromium: the prevalence page draws its charts as SVG, and clicking a Pareto bar lists
that mode's traces.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import RunningApp, wait_for_run



@pytest.fixture(scope="module")
def prevalence_url(running_app: RunningApp) -> str:
    return f"{running_app.url}/prevalence"


def test_pareto_renders_and_a_bar_click_lists_its_traces(prevalence_url: str, page: Page) -> None:
    page.goto(prevalence_url)
    wait_for_run(page)
    expect(page.get_by_role("heading", name="Which failure to fix first")).to_be_visible()
    pareto = page.locator("[data-testid='stVegaLiteChart']").first
    bars = pareto.locator("svg g.mark-rect path")  # SVG renderer: one path per bar
    expect(bars.first).to_be_visible(timeout=20000)
    assert bars.count() >= 3
    # Nothing is listed before a click.
    listing = page.get_by_text(re.compile(r"^.+: \d+ traces$"))
    expect(listing).to_have_count(0)
    bars.first.click()
    wait_for_run(page)
    expect(listing).to_be_visible(timeout=20000)
    heading = listing.inner_text()
    count = int(re.search(r": (\d+) traces$", heading).group(1))
    assert count >= 1
    # The listed traces are the clicked mode's: the table under the heading has that many rows.
    table = page.locator("[data-testid='stDataFrame']").first
    expect(table).to_be_visible()
    grid = table.locator("[role='grid']").first
    assert int(grid.get_attribute("aria-rowcount")) == count + 1  # + the header row
    # The other charts rendered too (heatmaps, transitions, round comparison).
    assert page.locator("[data-testid='stVegaLiteChart']").count() >= 4
