"""The store on every available backend: traces, dedupe, filters, rounds, state, cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evalboard.models import Message, Span, ToolCall, TraceRecord
from evalboard.store import Store, StoreError, TraceFilter

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make(i: int, **kw) -> TraceRecord:
    base = dict(source="test", source_id=f"t{i}", timestamp=T0 + timedelta(hours=i),
                input={"query": f"question number {i}"}, output=f"answer {i}", tags=["prod"])
    base.update(kw)
    return TraceRecord(**base)


def test_schema_is_at_head(store: Store) -> None:
    assert store.schema_revision() == Store.head_revision()


def test_project_names_are_unique(store: Store) -> None:
    store.create_project("A")
    with pytest.raises(StoreError, match="already exists"):
        store.create_project("A")
    with pytest.raises(StoreError, match="needs a name"):
        store.create_project("  ")


def test_update_project_merges_settings(store: Store, project_id: int) -> None:
    store.update_project(project_id, settings={"a": 1})
    store.update_project(project_id, settings={"b": 2}, description="new")
    p = store.get_project(project_id)
    assert p.settings == {"a": 1, "b": 2} and p.description == "new"


def test_add_traces_is_idempotent(store: Store, project_id: int) -> None:
    first = store.add_traces(project_id, [make(i) for i in range(5)])
    assert (first.added, first.duplicates) == (5, 0)
    again = store.add_traces(project_id, [make(i) for i in range(7)])
    assert (again.added, again.duplicates) == (2, 5)
    assert again.trace_ids[:5] == first.trace_ids
    within = store.add_traces(project_id, [make(9), make(9)])
    assert (within.added, within.duplicates) == (1, 1)
    assert store.count_traces(project_id) == 8


def test_same_source_id_in_two_projects_is_two_traces(store: Store, project_id: int) -> None:
    other = store.create_project("Other").id
    store.add_traces(project_id, [make(1)])
    assert store.add_traces(other, [make(1)]).added == 1


def test_trace_round_trip_keeps_structure(store: Store, project_id: int) -> None:
    rec = make(1, messages=[Message(role="user", content="hi"),
                            Message(role="assistant", tool_calls=[ToolCall(id="c1", name="search", arguments={"q": "x"})]),
                            Message(role="tool", tool_call_id="c1", content="found")],
               spans=[Span(id="s1", type="GENERATION", name="gen", start_time=T0, end_time=T0 + timedelta(seconds=2),
                           model="m", input_tokens=10, output_tokens=5, cost=0.01, level="ERROR")],
               metadata={"k": [1, 2]}, dimensions={"persona": "admin"}, labels={"verdict": "FAIL"})
    tid = store.add_traces(project_id, [rec]).trace_ids[0]
    got = store.get_trace(tid)
    assert got.messages[1].tool_calls[0].name == "search"
    assert got.spans[0].latency_ms == pytest.approx(2000)
    assert got.timestamp == rec.timestamp and got.timestamp.tzinfo is not None
    assert got.metadata == {"k": [1, 2]} and got.dimensions == {"persona": "admin"}
    assert got.labels == {"verdict": "FAIL"}


def test_filters(store: Store, project_id: int) -> None:
    store.add_traces(project_id, [
        make(0, tags=["bug"]), make(1, tags=["debug"]), make(2, output="Refund Policy text"),
        make(3, source="other"), make(4, error="timeout"),
        make(5, spans=[Span(id="x", level="ERROR")]),
    ])
    count = lambda **kw: store.count_traces(project_id, TraceFilter(**kw))  # noqa: E731
    assert count(tags=["bug"]) == 1  # the quoted element, so "debug" does not match
    assert count(text="refund policy") == 1  # case-insensitive
    assert count(text="question number 3") == 1
    assert count(sources=["other"]) == 1
    assert count(errors_only=True) == 2
    assert count(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=3)) == 2
    assert count() == 6


def test_list_traces_pages_and_sorts(store: Store, project_id: int) -> None:
    store.add_traces(project_id, [make(i, latency_ms=float(i)) for i in range(30)])
    first = store.list_traces(project_id, sort="newest", limit=10)
    second = store.list_traces(project_id, sort="newest", limit=10, offset=10)
    assert list(first["source_id"])[:2] == ["t29", "t28"]
    assert set(first["source_id"]).isdisjoint(second["source_id"])
    assert store.list_traces(project_id, sort="slowest", limit=1)["source_id"][0] == "t29"
    assert first["input_preview"][0] == "question number 29"
    with pytest.raises(StoreError, match="Unknown sort"):
        store.list_traces(project_id, sort="bogus")


def test_rounds_keep_order_and_sampling(store: Store, project_id: int) -> None:
    ids = store.add_traces(project_id, [make(i) for i in range(20)]).trace_ids
    by_time = store.create_round(project_id, "by time", list(reversed(ids)))
    assert store.round_trace_ids(by_time.id) == ids
    shuffled = store.create_round(project_id, "shuffled", ids, order_seed=7)
    order = store.round_trace_ids(shuffled.id)
    assert sorted(order) == ids and order != ids
    assert shuffled.sampling["order"] == {"method": "random", "seed": 7}
    with pytest.raises(StoreError, match="already has a round"):
        store.create_round(project_id, "by time", ids)
    assert store.count_traces(project_id, TraceFilter(round_id=shuffled.id)) == 20
    assert [r.name for r in store.list_rounds(project_id)] == ["by time", "shuffled"]


def test_round_from_filter_records_seed(store: Store, project_id: int) -> None:
    store.add_traces(project_id, [make(i, tags=["a" if i % 2 else "b"]) for i in range(40)])
    r1 = store.create_round_from_filter(project_id, "r1", TraceFilter(tags=["a"]), n=5, seed=3)
    r2 = store.create_round_from_filter(project_id, "r2", TraceFilter(tags=["a"]), n=5, seed=3)
    assert sorted(store.round_trace_ids(r1.id)) == sorted(store.round_trace_ids(r2.id))
    assert r1.sampling["method"] == "random" and r1.sampling["seed"] == 3 and r1.sampling["of"] == 20
    assert r1.sampling["filter"] == {"tags": ["a"]}
    everything = store.create_round_from_filter(project_id, "all a", TraceFilter(tags=["a"]))
    assert everything.trace_count == 20 and everything.sampling["method"] == "all"
    with pytest.raises(StoreError, match="No traces match"):
        store.create_round_from_filter(project_id, "none", TraceFilter(tags=["zzz"]))


def test_add_traces_into_round_appends(store: Store, project_id: int) -> None:
    rnd = store.create_round(project_id, "r", [])
    store.add_traces(project_id, [make(i) for i in range(3)], round_id=rnd.id)
    store.add_traces(project_id, [make(i) for i in range(5)], round_id=rnd.id)
    assert store.get_round(rnd.id).trace_count == 5


def test_interrupted_batches_resume_without_duplicates(store: Store, project_id: int) -> None:
    def records(stop_at: int | None):
        for i in range(25):
            if i == stop_at:
                raise RuntimeError("killed")
            yield make(i)

    with pytest.raises(RuntimeError):
        store.add_traces(project_id, records(17), batch_size=10)
    assert store.count_traces(project_id) == 10  # whole batches only
    result = store.add_traces(project_id, records(None), batch_size=10)
    assert (result.added, result.duplicates) == (15, 10)
    assert store.count_traces(project_id) == 25


def test_state_and_llm_cache(store: Store) -> None:
    assert store.get_state("pull") is None
    store.set_state("pull", {"cursor": "a"})
    store.set_state("pull", {"cursor": "b"})
    assert store.get_state("pull") == {"cursor": "b"}
    store.clear_state("pull")
    assert store.get_state("pull") is None
    cache = store.llm_cache()
    cache.put("k1", {"model": "m", "feature": "judge", "response": {"text": "x"}, "input_tokens": 3,
                     "output_tokens": 2, "cost": 0.5})
    cache.put("k1", {"model": "m", "response": {"text": "other"}})
    assert cache.get("k1")["response"] == {"text": "x"}
    assert cache.usage()["calls"].sum() == 1


def test_overview_counts(store: Store, project_id: int) -> None:
    store.add_traces(project_id, [make(i) for i in range(4)])
    store.create_round(project_id, "r", store.trace_ids(project_id)[:2])
    o = store.project_overview(project_id)
    assert (o["traces"], o["rounds"], o["annotations"]) == (4, 1, 0)


def test_round_sizes_follow_deletes(store: Store, project_id: int) -> None:
    ids = store.add_traces(project_id, [make(i) for i in range(6)]).trace_ids
    rnd = store.create_round(project_id, "r", ids)
    store.delete_traces(project_id, ids[:2])
    assert store.get_round(rnd.id).trace_count == 4 == len(store.round_trace_ids(rnd.id))
