"""Trace store figures: file import vs parsing, and the trace list page at 100k vs 100 traces.

import_vs_parse: importing 100k generated JSONL traces into SQLite (parse, recognise the shape,
normalise, write in batches) divided by orjson parsing the same file alone.
list_page_100k_vs_100: server time of the Traces page (AppTest run of the real page: count,
facets, one page of rows) with 100k traces in the project / with 100.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.data import write_traces
from evalboard.store import Store
from integrations.files import import_file

N_IMPORT = int(os.environ.get("EVALBOARD_BENCH_TRACES", 100_000))
ROOT = Path(__file__).resolve().parent.parent


def _parse_only(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - start


def import_vs_parse(folder: Path) -> tuple[dict, Store, int]:
    path = write_traces(folder / "traces.jsonl", N_IMPORT)
    parse = min(_parse_only(path) for _ in range(2))
    store = Store(f"sqlite:///{folder / 'import.db'}")
    pid = store.create_project("bench").id
    start = time.perf_counter()
    report = import_file(store, pid, path)
    elapsed = time.perf_counter() - start
    assert report.imported == N_IMPORT, report.summary()
    return ({"bench": "import_vs_parse", "value": round(elapsed / parse, 2), "unit": "ratio",
             "floor": 1.0, "goal": 3.0, "import_s": round(elapsed, 2), "parse_s": round(parse, 3),
             "traces": N_IMPORT}, store, pid)


def _page_time(db_url: str, runs: int = 7) -> float:
    from streamlit.testing.v1 import AppTest

    os.environ["EVALBOARD_DATABASE_URL"] = db_url
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/traces.py").run()  # warm: migrations checked, caches filled
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
        assert not at.exception, at.exception
    return statistics.median(times)


def list_page(big_url: str, folder: Path) -> dict:
    small = write_traces(folder / "small.jsonl", 100)
    small_url = f"sqlite:///{folder / 'small.db'}"
    store = Store(small_url)
    import_file(store, store.create_project("bench").id, small)
    t_small, t_big = _page_time(small_url), _page_time(big_url)
    return {"bench": "list_page_100k_vs_100", "value": round(t_big / t_small, 2), "unit": "ratio",
            "floor": 1.0, "goal": 1.5, "page_100k_s": round(t_big, 4), "page_100_s": round(t_small, 4)}


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="evalboard-bench-") as tmp:
        folder = Path(tmp)
        first, store, _ = import_vs_parse(folder)
        second = list_page(store.url, folder)
        store.dispose()
        return [first, second]


if __name__ == "__main__":
    for figure in run():
        print(orjson.dumps(figure).decode())
