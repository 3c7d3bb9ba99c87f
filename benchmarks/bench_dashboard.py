"""Production prevalence dashboard figure.

dashboard_1m_vs_1k: server time of the production prevalence page (AppTest runs of the real
page, once per view: prevalence, trend per day, breakdown by persona, compare windows, flagged
traces; summed) with 1,000,000 stored production verdicts / with 1,000. Same shape both times:
five validated judges over 90 days of production traces (200,000 traces at 1M, 200 at 1k),
three production runs, every verdict in judge_verdicts, the ledger and the counts.

The memo of Monte Carlo intervals is cleared before every timed run, so each run computes its
intervals (their cost does not depend on how many verdicts are stored, only on how many cells
the charts show). The verdicts are written with executemany, the counts with the same
`count_increments` / `apply_counts` the runs use.

EVALBOARD_BENCH_VERDICTS sets the big size (default 1,000,000).
Run: python -m benchmarks.bench_dashboard
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from evalboard import production as prod  # noqa: E402
from evalboard.db import judge_verdicts, production_verdicts  # noqa: E402
from evalboard.production.counts import apply_counts, count_increments, facet_pairs  # noqa: E402
from evalboard.production.estimates import clear_cache  # noqa: E402
from evalboard.store import Store  # noqa: E402
from tests.evalboard.test_production import build_world  # noqa: E402

N_BIG = int(os.environ.get("EVALBOARD_BENCH_VERDICTS", 1_000_000))
N_SMALL = 1_000
JUDGES = 5
DAYS = 90
FIRST_DAY = datetime(2026, 8, 1, tzinfo=UTC)
VIEWS = ["Prevalence", "Trend", "Breakdown", "Compare windows", "Flagged traces"]
PERSONAS = ["developer", "workspace admin", "non-technical manager"]


def _database(folder: Path, verdicts: int) -> tuple[str, int]:
    """A database with `verdicts` production verdicts (JUDGES per trace); returns (url, project id)."""
    url = f"sqlite:///{folder / f'dashboard_{verdicts}.db'}"
    store = Store(url)
    pid = store.create_project("bench", "A support assistant.").id
    for k in range(JUDGES):
        build_world(store, project_id=pid, mode=f"mode {k}", name=f"Judge {k}", n_prod=0)
    judges = [c for c in prod.judge_choices(store, pid) if c.validated]
    assert len(judges) == JUDGES, [c.reasons for c in prod.judge_choices(store, pid)]
    rng = random.Random(7)
    n_traces = verdicts // JUDGES
    rows = []
    for i in range(n_traces):
        when = FIRST_DAY + timedelta(seconds=int(i * DAYS * 86400 / n_traces))
        rows.append({"source": "bench", "source_id": f"b{i}", "name": "answer", "timestamp": when,
                     "environment": rng.choice(["production-eu", "production-us"]), "release": "2.0",
                     "tags": ["chat", "vip"] if i % 7 == 0 else ["chat"],
                     "dimensions": {"persona": rng.choice(PERSONAS)}, "input_preview": f"question {i}",
                     "output_preview": f"answer {i}", "span_count": 0})
    ids = store.add_traces(pid, rows).trace_ids
    facets = [(row["timestamp"].date().isoformat(),
               facet_pairs(row["environment"], row["release"], row["tags"], row["dimensions"])) for row in rows]
    # Three production runs of 30 days each.
    per_run = len(ids) // 3 or len(ids)
    runs = []
    for start in range(0, len(ids), per_run):
        part = ids[start:start + per_run]
        sample = prod.Sample(part, {"source": "bench", "method": "all", "n": len(part)},
                             rows[start]["timestamp"], rows[start + len(part) - 1]["timestamp"])
        runs.append((prod.create_run(store, pid, judges, sample, origin="bench"), start, start + len(part)))
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    with store.engine.begin() as conn:
        for k, judge in enumerate(judges):
            rate = 0.04 * (k + 1)
            flags = [rng.random() < rate for _ in ids]
            conn.execute(judge_verdicts.insert(), [
                {"version_id": judge.version_id, "trace_id": t, "run_id": None, "verdict": "fail" if f else "pass",
                 "reasoning": "bench", "cached": False, "origin": "bench", "created_at": datetime.now(UTC)}
                for t, f in zip(ids, flags, strict=True)])
            ledger = []
            for run_id, lo, hi in runs:
                ledger += [(pid, judge.version_id, ids[i], run_id, facets[i][0], flags[i], now) for i in range(lo, hi)]
            conn.exec_driver_sql(
                "INSERT INTO production_verdicts (project_id, version_id, trace_id, run_id, day, flagged, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", ledger)
            apply_counts(conn, pid, judge.version_id,
                         count_increments((day, f, pairs) for (day, pairs), f in zip(facets, flags, strict=True)))
    for run_id, _, _ in runs:
        assert prod.finish_run(store, run_id) == "finished"
    with store.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(production_verdicts)).scalar_one()
    assert stored == len(ids) * JUDGES, stored
    store.dispose()
    return url, pid


def _page_time(url: str, pid: int, repeats: int = 3) -> float:
    """Summed over the views: median server time of one run of the page."""
    from streamlit.testing.v1 import AppTest

    os.environ["EVALBOARD_DATABASE_URL"] = url
    at = AppTest.from_file(str(ROOT / "app_pages" / "dashboard.py"), default_timeout=600)
    at.session_state["app.project_id"] = pid
    at.query_params["dashboard.period"] = "day"
    at.query_params["dashboard.facet"] = "persona"
    at.run()
    total = 0.0
    for view in VIEWS:
        at.session_state["dashboard.view"] = view
        at.run()  # warm: the store, the page's imports
        assert not at.exception, at.exception
        times = []
        for _ in range(repeats):
            clear_cache()
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
            assert not at.exception, at.exception
        total += statistics.median(times)
        print(f"# dashboard {url.rsplit('_', 1)[-1]} {view}: {statistics.median(times):.3f} s", file=sys.stderr)
    return total


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small = _database(folder, N_SMALL)
        big = _database(folder, N_BIG)
        t_small = _page_time(*small)
        t_big = _page_time(*big)
    return [{"bench": "dashboard_1m_vs_1k", "value": round(t_big / t_small, 3), "unit": "ratio", "floor": 1.0,
             "goal": 3.0, "big_s": round(t_big, 3), "small_s": round(t_small, 3), "verdicts": N_BIG}]


if __name__ == "__main__":
    import json

    for figure in run():
        print(json.dumps(figure))
