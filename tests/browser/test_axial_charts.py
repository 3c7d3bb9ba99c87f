"""In Chromium: the prevalence page draws its charts as SVG, and clicking a Pareto bar lists
that mode's traces.

The page runs inside app.py when ui/navigation.py lists it; until then it runs on its own
(`streamlit run app_pages/prevalence.py`, which picks the first project: the demo).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ROOT, RunningApp, free_port, wait_for_run
from ui.navigation import registered

PAGE = "app_pages/prevalence.py"


@pytest.fixture(scope="module")
def prevalence_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PAGE in registered():
        app: RunningApp = request.getfixturevalue("running_app")
        yield f"{app.url}/prevalence"
        return
    home = tmp_path_factory.mktemp("prevalence")
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
