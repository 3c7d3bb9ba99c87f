"""Real-browser tests: the app runs as `streamlit run` on a free port with its own database,
and Playwright drives Debian's Chromium against it (GUIDE section 2)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not Path(CHROMIUM).exists():
        skip = pytest.mark.skip(reason="Debian's chromium is not installed (scripts/setup-tests.sh installs it)")
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    return {"executable_path": CHROMIUM, "args": [
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    def __init__(self, url: str, db_url: str, home: Path) -> None:
        self.url, self.db_url, self.home = url, db_url, home


@contextmanager
def serve_app(env: dict[str, str], home: Path, extra_args: Sequence[str] = (),
              port: int | None = None) -> Iterator[str]:
    """`streamlit run app.py` on `port` (default: a free one) with `env`; yields its URL once
    /_stcore/health answers, and stops it afterwards. Its output goes to home/streamlit.log."""
    port = port or free_port()
    log_path = home / "streamlit.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--global.developmentMode", "false", *extra_args],
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
                raise RuntimeError(f"the app did not start: {log_path.read_text()[-2000:]}")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def running_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """A fresh app per test module, with the demo project in its own SQLite database."""
    home = tmp_path_factory.mktemp("app")
    db_url = f"sqlite:///{home / 'evalboard.db'}"
    env = {**os.environ, "EVALBOARD_DATABASE_URL": db_url, "EVALBOARD_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "cli.main", "demo"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    with serve_app(env, home) as url:
        yield RunningApp(url, db_url, home)


def wait_for_run(page) -> None:  # noqa: ANN001 - playwright Page
    """Wait until Streamlit has finished the current script run (GUIDE section 2)."""
    page.wait_for_timeout(210)
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=30000)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=30000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=30000)
