"""In Chromium: the production prevalence dashboard draws its charts as SVG, switching views
puts the view in the address (a shareable URL), and opening that address shows the same view.
"""

from __future__ import annotations


import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import RunningApp, wait_for_run



@pytest.fixture(scope="module")
def dashboard_url(running_app: RunningApp) -> str:
    return f"{running_app.url}/dashboard"


def test_charts_render_and_the_view_travels_in_the_url(dashboard_url: str, page: Page) -> None:
    page.goto(dashboard_url)
    wait_for_run(page)
    expect(page.get_by_role("heading", name="Production prevalence")).to_be_visible()
    bars = page.locator("[data-testid='stVegaLiteChart']").first.locator("svg g.mark-rect path")
    expect(bars.first).to_be_visible(timeout=20000)
    assert bars.count() == 2  # raw and corrected for the one validated judge

    page.get_by_role("tab", name="Trend").click()
    wait_for_run(page)
    trend = page.locator("[data-testid='stVegaLiteChart']").first
    expect(trend.locator("svg g.mark-line path").first).to_be_visible(timeout=20000)
    expect(trend.locator("svg g.mark-area path").first).to_be_visible()  # the interval band
    assert "dashboard.view=Trend" in page.url

    # The address is the view: opened fresh, it shows the trend again.
    page.goto(page.url)
    wait_for_run(page)
    expect(page.locator("[data-testid='stVegaLiteChart']").first.locator("svg g.mark-line path").first
           ).to_be_visible(timeout=20000)
