"""In Chromium: the production prevalence dashboard draws its charts as SVG, switching views
puts the view in the address (a shareable URL), and opening that address shows the same view.

The page runs inside app.py when ui/navigation.py lists it; until then it runs on its own
(`streamlit run app_pages/dashboard.py`, which picks the first project: the demo).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ROOT, RunningApp, free_port, wait_for_run
from ui.navigation import registered

PAGE = "app_pages/dashboard.py"


@pytest.fixture(scope="module")
def dashboard_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PAGE in registered():
        app: RunningApp = request.getfixturevalue("running_app")
        yield f"{app.url}/dashboard"
        return
    home = tmp_path_factory.mktemp("dashboard")
    env = {**os.environ, "EVALBOARD_DATABASE_URL": f"sqlite:///{home / 'evalboard.db'}",
           "EVALBOARD_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "cli.main", "demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    log = (home / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / PAGE), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--global.developmentMode", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"the page did not start: {(home / 'streamlit.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
