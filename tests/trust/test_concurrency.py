"""Four annotators label the same 500 traces at the same time, as threads of one process (one
app server, four browser sessions) and as four processes (four app servers on one database),
on SQLite and on Postgres: all 2,000 labels arrive, each exactly as its author wrote it, and
every save is in the history.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from evalboard.coding import ensure_mode, get_annotation, save_annotation
from evalboard.db import annotation_events, annotation_modes, annotations, failure_modes
from evalboard.models import TraceRecord
from evalboard.store import Store
from tests.trust.conftest import BACKENDS
from tests.trust.trust_workers import label, planned_label

ROOT = Path(__file__).resolve().parents[2]
ANNOTATORS = ["ana", "ben", "chloé", "dev"]
LABELS = int(os.environ.get("EVALBOARD_CONCURRENCY_LABELS", "500"))

pytestmark = pytest.mark.slow


def _project(store: Store) -> tuple[int, int]:
    pid = store.create_project("Busy team").id  # the 5 modes are coined by whoever needs one first
    ids = store.add_traces(pid, [TraceRecord(source="s", source_id=f"t{i}", input=f"question {i}", output="answer")
                                 for i in range(LABELS)]).trace_ids
    rnd = store.create_round(pid, "everyone labels everything", ids)
    return pid, rnd.id  # type: ignore[return-value]


def _check(store: Store, pid: int) -> None:
    with store.engine.connect() as conn:
        rows = conn.execute(select(annotations.c.id, annotations.c.trace_id, annotations.c.annotator,
                                   annotations.c.verdict, annotations.c.note)
                            .where(annotations.c.project_id == pid)).all()
        modes = dict(conn.execute(
            select(annotation_modes.c.annotation_id, failure_modes.c.name)
            .join(failure_modes, failure_modes.c.id == annotation_modes.c.mode_id)).all())
        events = conn.execute(select(func.count()).select_from(annotation_events)).scalar_one()
        mode_names = list(conn.execute(select(failure_modes.c.name).where(failure_modes.c.project_id == pid)).scalars())
    assert len(rows) == len(ANNOTATORS) * LABELS
    assert len({(r.trace_id, r.annotator) for r in rows}) == len(rows)  # one label per person per trace
    for r in rows:  # nobody's label was overwritten by anyone else's
        want = planned_label(r.annotator, r.trace_id)
        assert (r.verdict, r.note, [modes[r.id]] if r.id in modes else []) == (
            want["verdict"], want["note"], want["modes"]), r
    assert events == len(rows)  # every save left its history entry
    assert sorted(mode_names) == [f"mode {i}" for i in range(5)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_annotators_as_threads(backend: str, new_database: Callable[[str], str]) -> None:
    store = Store(new_database(backend))
    pid, rid = _project(store)
    errors: list[BaseException] = []
    start = threading.Barrier(len(ANNOTATORS))

    def work(who: str) -> None:
        try:
            start.wait()
            label(store.url, pid, rid, who, LABELS)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(who,)) for who in ANNOTATORS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    _check(store, pid)
    store.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_annotators_as_processes(backend: str, new_database: Callable[[str], str], tmp_path: Path) -> None:
    store = Store(new_database(backend))
    pid, rid = _project(store)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.trust.trust_workers", "label", store.url, str(pid),
                               str(rid), who, str(LABELS), str(go)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ANNOTATORS]
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert out.strip() == str(LABELS)
    _check(store, pid)
    store.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_people_creating_the_same_new_mode_at_once(backend: str, new_database: Callable[[str], str]) -> None:
    """Ana's label introduces the mode "tone"; while her save is in flight, Ben saves a label
    with the same new mode. Ben's save must wait and use Ana's mode, not fail. On Postgres (read
    committed) Ben's transaction cannot see Ana's uncommitted mode; it used to insert its own, hit
    the unique constraint and lose Ben's label (found by this suite; ensure_mode now inserts with
    ON CONFLICT DO NOTHING and reads the winner)."""
    store = Store(new_database(backend))
    pid = store.create_project("Race").id
    trace = store.add_traces(pid, [TraceRecord(source="s", source_id="1", input="q", output="a")]).trace_ids[0]
    errors: list[Exception] = []

    def ben() -> None:
        try:
            save_annotation(store, pid, trace, "ben", verdict="fail", modes=["tone"])
        except Exception as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    with store.engine.begin() as conn:  # Ana's save, caught between creating the mode and committing
        conn.execute(annotations.update().where(annotations.c.id == -1).values(note=""))
        ana_mode = ensure_mode(store, pid, "tone", conn=conn)
        thread = threading.Thread(target=ben)
        thread.start()
        thread.join(1.0)  # Ben is now waiting on Ana's transaction
    thread.join(30)
    assert errors == []
    ben_label = get_annotation(store, trace, "ben")
    assert ben_label is not None and ben_label.modes == ["tone"]
    with store.engine.connect() as conn:
        assert conn.execute(select(annotation_modes.c.mode_id)).scalars().all() == [ana_mode]
    store.dispose()
