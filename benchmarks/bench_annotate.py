"""Open-coding figures.

save_next_100k_vs_100: server time of one "pass, save and next" on the Annotate page (AppTest
run of the real page) with 100k traces in the round / with 100.
keystrokes_pass, keystrokes_fail_known_mode: keys a person presses per label, counted while
Playwright labels traces in Chromium against the running app (the labels are then checked in
the database, so a key that did not work would show as a wrong or missing label).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.data import write_traces
from evalboard import coding
from evalboard.demo import create_demo
from evalboard.store import Store
from integrations.files import import_file

ROOT = Path(__file__).resolve().parent.parent
N_BIG = int(os.environ.get("EVALBOARD_BENCH_TRACES", 100_000))


def _round_db(folder: Path, n: int) -> str:
    url = f"sqlite:///{folder / f'annotate_{n}.db'}"
    store = Store(url)
    pid = store.create_project("bench").id
    report = import_file(store, pid, write_traces(folder / f"t{n}.jsonl", n), round_name="bench round")
    assert report.imported == n
    store.dispose()
    return url


def _save_next_time(url: str, clicks: int = 9) -> float:
    from streamlit.testing.v1 import AppTest

    os.environ["EVALBOARD_DATABASE_URL"] = url
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["app.annotator"] = "bench"
    at.run()
    at.session_state["app.round_id"] = Store(url).list_rounds(1)[0].id
    at.switch_page("app_pages/annotate.py").run()
    at.button(key="annotate.pass").click().run()  # warm caches
    times = []
    for _ in range(clicks):
        start = time.perf_counter()
        at.button(key="annotate.pass").click().run()
        times.append(time.perf_counter() - start)
        assert not at.exception, at.exception
    assert coding.progress(Store(url), at.session_state["app.round_id"], "bench")["labelled"] == clicks + 1
    return statistics.median(times)


def save_next(folder: Path) -> dict:
    small, big = _round_db(folder, 100), _round_db(folder, N_BIG)
    t_small, t_big = _save_next_time(small), _save_next_time(big)
    return {"bench": "save_next_100k_vs_100", "value": round(t_big / t_small, 2), "unit": "ratio",
            "floor": 1.0, "goal": 1.5, "save_next_100k_s": round(t_big, 4), "save_next_100_s": round(t_small, 4)}


def keystrokes(folder: Path) -> list[dict]:
    """Label with the keyboard in Chromium and count the keys pressed per label."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    url_db = f"sqlite:///{folder / 'keys.db'}"
    store = Store(url_db)
    pid = create_demo(store)
    env = {**os.environ, "EVALBOARD_DATABASE_URL": url_db, "EVALBOARD_HOME": str(folder)}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.headless", "true", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page()

            def settle() -> None:
                page.wait_for_timeout(210)
                page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")

            page.goto(f"{base}/annotate")
            settle()
            page.get_by_placeholder("e.g. Maya").fill("keys")
            page.keyboard.press("Enter")
            settle()
            page.get_by_role("button", name="Start labelling").click()
            settle()
            page.get_by_role("heading", name="Open coding").click()
            pressed = {"pass": 0, "fail": 0}
            for i in range(6):
                if i % 2 == 0:
                    page.keyboard.press("p")
                    pressed["pass"] += 1
                else:
                    page.keyboard.press("1")
                    pressed["fail"] += 1
                    settle()
                    page.keyboard.type("note")  # the note's own letters are not counted
                    page.keyboard.press("Control+Enter")
                    pressed["fail"] += 1
                settle()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    labels = coding.annotation_table(Store(url_db), pid, annotator="keys")
    mode1 = coding.list_modes(Store(url_db), pid, order="created")["name"][0]
    passes = labels[labels["verdict"] == "pass"]
    fails = labels[(labels["verdict"] == "fail") & labels["modes"].map(lambda m: m == [mode1])
                   & (labels["note"] == "note")]
    assert len(passes) == 3 and len(fails) == 3, labels[["verdict", "modes", "note"]]
    return [{"bench": "keystrokes_pass", "value": pressed["pass"] / len(passes), "unit": "keys",
             "floor": 1, "goal": 1},
            {"bench": "keystrokes_fail_known_mode", "value": pressed["fail"] / len(fails), "unit": "keys",
             "floor": 2, "goal": 2}]


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="evalboard-bench-") as tmp:
        folder = Path(tmp)
        return [save_next(folder), *keystrokes(folder)]


if __name__ == "__main__":
    import json

    for figure in run():
        print(json.dumps(figure))
