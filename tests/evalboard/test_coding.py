"""Open coding: per-person labels, modes, undo, the queue, bulk reads, imported labels."""

from __future__ import annotations

import pytest

from evalboard import coding
from evalboard.coding import QueueFilter, save_annotation, undo_last
from evalboard.models import TraceRecord
from evalboard.store import Store, StoreError


@pytest.fixture
def setup(store: Store, project_id: int):
    ids = store.add_traces(project_id, [
        TraceRecord(source="t", source_id=str(i), input=f"q{i}", output="a",
                    tags=["vip"] if i % 3 == 0 else [], dimensions={"persona": "admin" if i % 2 else "dev"})
        for i in range(10)]).trace_ids
    rnd = store.create_round(project_id, "r", ids)
    return store, project_id, ids, rnd.id


def test_each_person_keeps_their_own_label(setup) -> None:
    store, pid, ids, rid = setup
    save_annotation(store, pid, ids[0], "ana", verdict="fail", note="made up a price", modes=["invented pricing"])
    save_annotation(store, pid, ids[0], "ben", verdict="pass")
    labels = {a.annotator: a for a in coding.trace_annotations(store, ids[0])}
    assert labels["ana"].verdict == "fail" and labels["ana"].modes == ["invented pricing"]
    assert labels["ben"].verdict == "pass" and labels["ben"].modes == []


def test_partial_updates_keep_other_fields(setup) -> None:
    store, pid, ids, _ = setup
    save_annotation(store, pid, ids[1], "ana", verdict="fail", note="first note")
    a = save_annotation(store, pid, ids[1], "ana", add_modes=["Wrong  tone"])
    assert (a.verdict, a.note, a.modes) == ("fail", "first note", ["Wrong tone"])
    a = save_annotation(store, pid, ids[1], "ana", add_modes=["wrong tone"])  # same mode, other case
    assert a.modes == ["Wrong tone"]
    a = save_annotation(store, pid, ids[1], "ana", verdict="pass")
    assert a.modes == [] and a.note == "first note"  # a pass has no failure modes


def test_saving_the_same_state_twice_leaves_no_history(setup) -> None:
    store, pid, ids, _ = setup
    save_annotation(store, pid, ids[0], "ana", verdict="fail", note="n")
    save_annotation(store, pid, ids[0], "ana", note="n")  # e.g. a widget firing twice
    assert undo_last(store, pid, "ana") is None  # one step back is the state before the label


def test_mode_pick_implies_fail_and_verdict_clears_defer(setup) -> None:
    store, pid, ids, _ = setup
    a = save_annotation(store, pid, ids[2], "ana", deferred=True)
    assert a.deferred and a.verdict is None
    a = save_annotation(store, pid, ids[2], "ana", add_modes=["tool error hidden"])
    assert a.verdict == "fail" and a.deferred is False


def test_invalid_inputs(setup) -> None:
    store, pid, ids, _ = setup
    with pytest.raises(StoreError, match="Say who you are"):
        save_annotation(store, pid, ids[0], "  ", verdict="pass")
    with pytest.raises(StoreError, match="'pass' or 'fail'"):
        save_annotation(store, pid, ids[0], "ana", verdict="maybe")
    other = store.create_project("other").id
    with pytest.raises(StoreError, match="not in this project"):
        save_annotation(store, other, ids[0], "ana", verdict="pass")


def test_undo_steps_back_through_changes(setup) -> None:
    store, pid, ids, _ = setup
    save_annotation(store, pid, ids[0], "ana", verdict="fail", note="n1")
    save_annotation(store, pid, ids[0], "ana", add_modes=["m1"])
    save_annotation(store, pid, ids[1], "ana", verdict="pass")
    save_annotation(store, pid, ids[1], "ben", verdict="fail")  # another person's: not undone
    assert coding.last_event_trace(store, pid, "ana") == ids[1]
    assert undo_last(store, pid, "ana") is None  # the label of ids[1] had not existed
    assert coding.get_annotation(store, ids[1], "ana") is None
    assert coding.get_annotation(store, ids[1], "ben").verdict == "fail"
    restored = undo_last(store, pid, "ana")
    assert (restored.verdict, restored.note, restored.modes) == ("fail", "n1", [])
    assert undo_last(store, pid, "ana") is None
    assert coding.get_annotation(store, ids[0], "ana") is None
    assert undo_last(store, pid, "ana") is None  # nothing left


def test_modes_quick_pick_order_by_use(setup) -> None:
    store, pid, ids, _ = setup
    for i in range(3):
        save_annotation(store, pid, ids[i], "ana", modes=["common"])
    save_annotation(store, pid, ids[3], "ana", modes=["rare"])
    coding.ensure_mode(store, pid, "unused")
    modes = coding.list_modes(store, pid)
    assert list(modes["name"]) == ["common", "rare", "unused"]
    assert list(modes["uses"]) == [3, 1, 0]
    with pytest.raises(StoreError):
        coding.ensure_mode(store, pid, "   ")


def test_queue_walks_round_order_with_filters(setup) -> None:
    store, pid, ids, rid = setup
    save_annotation(store, pid, ids[0], "ana", verdict="pass")
    save_annotation(store, pid, ids[2], "ana", verdict="fail", modes=["m"])
    mine = QueueFilter(unlabelled_by="ana")
    first = coding.queue_neighbour(store, rid, -1, flt=mine)
    assert first == (ids[1], 1)
    assert coding.queue_neighbour(store, rid, 1, flt=mine) == (ids[3], 3)
    assert coding.queue_neighbour(store, rid, 3, direction=-1) == (ids[2], 2)
    assert coding.queue_count(store, rid, mine) == 8
    assert coding.queue_count(store, rid, QueueFilter(verdict="fail")) == 1
    assert coding.queue_count(store, rid, QueueFilter(mode="m")) == 1
    assert coding.queue_count(store, rid, QueueFilter(tag="vip")) == 4
    assert coding.queue_count(store, rid, QueueFilter(dimension=("persona", "admin"))) == 5
    assert coding.queue_neighbour(store, rid, 9) is None
    assert coding.queue_position(store, rid, ids[4]) == 4
    assert coding.progress(store, rid, "ana") == {"total": 10, "labelled": 2, "passed": 1,
                                                 "failed": 1, "pending": 0}


def test_annotation_table_and_export(setup) -> None:
    store, pid, ids, rid = setup
    save_annotation(store, pid, ids[0], "ana", verdict="fail", note='says "free"', modes=["b", "a"], round_id=rid)
    save_annotation(store, pid, ids[1], "ben", verdict="pass", round_id=rid)
    df = coding.annotation_table(store, pid, round_id=rid)
    assert list(df["annotator"]) == ["ana", "ben"] and df["modes"][0] == ["a", "b"]
    assert len(coding.annotation_table(store, pid, annotator="ben")) == 1
    csv_text = coding.export_annotations(df, "csv").decode()
    assert "a; b" in csv_text and '"says ""free"""' in csv_text
    jsonl = coding.export_annotations(df, "jsonl").decode().splitlines()
    assert len(jsonl) == 2 and '"modes":["a","b"]' in jsonl[0]
    with pytest.raises(ValueError):
        coding.export_annotations(df, "xml")


def test_labels_from_imports(store: Store, project_id: int) -> None:
    store.add_traces(project_id, [
        TraceRecord(source="file:x.csv", source_id="1", input="q", labels={"verdict": "FAIL", "notes": "wrong"}),
        TraceRecord(source="file:x.csv", source_id="2", input="q", labels={"verdict": "Pass"}),
        TraceRecord(source="file:x.csv", source_id="3", input="q", labels={"verdict": "??"}),
        TraceRecord(source="file:x.csv", source_id="4", input="q")])
    result = coding.labels_from_imports(store, project_id)
    assert result.created == 2 and result.unrecognised == [("3", "??")]
    assert coding.labels_from_imports(store, project_id).created == 0  # idempotent
    df = coding.annotation_table(store, project_id)
    assert sorted(zip(df["source_id"], df["verdict"], df["note"], strict=True)) == [
        ("1", "fail", "wrong"), ("2", "pass", "")]
    assert set(df["annotator"]) == {"import:x.csv"} and set(df["origin"]) == {"import:file:x.csv"}


@pytest.mark.parametrize(("raw", "want"), [("PASS", "pass"), (" fail ", "fail"), (1, "pass"), (0, "fail"),
                                           (True, "pass"), ("good", "pass"), ("meh", None), (None, None)])
def test_normalise_verdict(raw, want) -> None:
    assert coding.normalise_verdict(raw) == want
