"""The demo project is deterministic, varied, and carries what the workflow needs."""

from __future__ import annotations

from collections import Counter

from evalboard import coding, query_store
from evalboard.demo import DEMO_NAME, FAILURE_MODES, create_demo, demo_traces
from evalboard.render import detect_renderer
from evalboard.store import Store
from evalboard.workflow import STEPS, next_step, project_status


def test_same_traces_every_time() -> None:
    first, planted1 = demo_traces()
    second, planted2 = demo_traces()
    assert [t.model_dump() for t in first] == [t.model_dump() for t in second]
    assert planted1 == planted2


def test_traces_are_varied_and_some_fail() -> None:
    records, planted = demo_traces()
    assert len(records) == 300
    kinds = Counter(r.name for r in records)
    assert set(kinds) == {"rag-answer", "tool-agent", "draft-email"} and min(kinds.values()) >= 40
    views = Counter(detect_renderer(r) for r in records)
    assert {"rag", "chat", "email"} <= set(views)
    assert {p.mode for p in planted.values()} == set(FAILURE_MODES)
    assert 0.15 < len(planted) / len(records) < 0.5


def test_create_demo_is_idempotent(sqlite_store: Store) -> None:
    pid = create_demo(sqlite_store)
    assert create_demo(sqlite_store) == pid
    traces = sqlite_store.project_overview(pid)["traces"]
    assert traces >= 360  # 300 in the first weeks, 60 after the fix, then production samples
    assert len(query_store.project_dimensions(sqlite_store, pid)) == 4
    labels = coding.annotation_table(sqlite_store, pid)
    assert set(labels["annotator"]) >= {"maya", "li"}
    report = coding.agreement_report(labels)
    assert report.shared_traces >= 30 and report.disagreements, "two annotators who partly disagree"
    sqlite_store.update_project(pid, description="edited")
    again = create_demo(sqlite_store, replace=True)
    fresh = sqlite_store.get_project(again)
    assert fresh.name == DEMO_NAME and fresh.description != "edited"
    assert sqlite_store.project_overview(again)["traces"] == traces


def test_home_counts_cover_every_step_of_the_demo(sqlite_store: Store) -> None:
    status = project_status(sqlite_store, create_demo(sqlite_store))
    assert status["judges"] >= 2 and status["validated_judges"] >= 1
    assert status["production_runs"] >= 6 and status["failure_modes"] >= 6
    key, _ = next_step(status, {s.page for s in STEPS})
    assert key == "vendor"  # judges validated and production measured: push is what is left
