"""The Langfuse pull against the fake server, driving the real SDK's HTTP client.

Ground truth comes from the fake's own rows (`fake.index.roots`), so each filter test compares
the pulled trace ids with the ids the filter should select.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest

import integrations.langfuse as lf
from evalboard.models import TraceRecord
from tests.fakes.langfuse_data import BASE_TIME, TraceSpec, observation_row, score_row, to_us
from tests.fakes.langfuse_server import FakeLangfuse

FAST_RETRY = lf.RetryPolicy(max_retries=10, base_delay=0.01, max_wait=2.0)
WINDOW = lf.PullFilters(since=BASE_TIME, until=BASE_TIME + timedelta(days=15))
NOW = BASE_TIME + timedelta(days=30)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLangfuse]:
    """300 generated traces plus one hand-built trace (user 'hand-user'); shared by read-only tests."""
    server = FakeLangfuse(traces=300, seed=11)
    server.add_observations(hand_built_trace())
    server.add_scores(hand_built_scores())
    with server:
        yield server


@pytest.fixture
def fresh_fake() -> Iterator[FakeLangfuse]:
    """A server of its own, for tests that inject faults."""
    with FakeLangfuse(traces=300, seed=11) as server:
        yield server


HAND_TRACE = "f" * 32
T0 = BASE_TIME + timedelta(days=3, hours=2)


def hand_built_trace() -> list[dict[str, Any]]:
    spec = TraceSpec(trace_id=HAND_TRACE, name="refund-agent", start_us=to_us(T0), tags=["vip", "web"], user_id="hand-user",
                     session_id="hand-session", environment="production", release="v9.9.9", version="agent-3")
    us = to_us(T0)
    chat_in = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Refund order 42?"}]
    return [
        observation_row(spec, obs_id="r" * 16, type="SPAN", name="refund-agent", start_us=us, end_us=us + 2_500_000,
                        input=chat_in, output={"role": "assistant", "content": "Refunded."}, metadata={"tenant": "acme"}),
        observation_row(spec, obs_id="g" * 16, type="GENERATION", name="plan", start_us=us + 100_000, end_us=us + 900_000,
                        parent_id="r" * 16, input=chat_in, model="gpt-4.1",
                        output={"role": "assistant", "content": None, "tool_calls": [
                            {"id": "call_1", "type": "function", "function": {"name": "refund", "arguments": "{\"order\": 42}"}}]},
                        usage={"input": 100, "output": 20, "total": 120}, cost={"input": 0.001, "output": 0.002, "total": 0.003}),
        observation_row(spec, obs_id="t" * 16, type="TOOL", name="refund", start_us=us + 1_000_000, end_us=us + 1_500_000,
                        parent_id="r" * 16, level="ERROR", status_message="payments API timed out", input={"order": 42}),
        observation_row(spec, obs_id="h" * 16, type="GENERATION", name="answer", start_us=us + 1_600_000, end_us=us + 2_400_000,
                        parent_id="r" * 16, input=chat_in, output={"role": "assistant", "content": "Refunded."}, model="gpt-4.1",
                        usage={"input": 150, "output": 5, "total": 155}, cost={"total": 0.004}),
    ]


def hand_built_scores() -> list[dict[str, Any]]:
    us = to_us(T0) + 60_000_000
    return [
        score_row(score_id="sc-1", trace_id=HAND_TRACE, name="user_feedback", value=0.0, data_type="NUMERIC", timestamp_us=us, comment="wrong refund"),
        score_row(score_id="sc-2", trace_id=HAND_TRACE, observation_id="t" * 16, name="tool_ok", value="no", data_type="CATEGORICAL",
                  timestamp_us=us + 1, source="ANNOTATION"),
    ]


def settings(fake: FakeLangfuse, **overrides: Any) -> lf.LangfuseSettings:
    values: dict[str, Any] = {"public_key": fake.public_key, "secret_key": fake.secret_key, "base_url": fake.url, "timeout": 5.0}
    values.update(overrides)
    return lf.LangfuseSettings(**values)


def pull_all(fake: FakeLangfuse, filters: lf.PullFilters = WINDOW, sampling: lf.Sampling | None = None, **kwargs: Any) -> tuple[list[TraceRecord], list[lf.PullProgress]]:
    records: list[TraceRecord] = []
    events: list[lf.PullProgress] = []
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("now", NOW)
    for progress in lf.pull_traces(settings(fake), filters, sampling, **kwargs):
        records.extend(progress.records)
        events.append(progress)
    return records, events


def roots(fake: FakeLangfuse, keep: Callable[[dict[str, Any]], bool] = lambda r: True, filters: lf.PullFilters = WINDOW) -> dict[str, dict[str, Any]]:
    lo, hi = to_us(filters.since), to_us(filters.until)
    return {r["traceId"]: r for r in fake.index.roots if lo <= -r["_neg"] < hi and keep(r)}


# ----------------------------------------------------------------------------- full pull and mapping
def test_full_pull_delivers_every_trace_once_with_all_observations(fake: FakeLangfuse) -> None:
    records, events = pull_all(fake, batch_size=40)
    ids = [r.source_id for r in records]
    assert len(ids) == len(set(ids)) == 301
    assert set(ids) == set(roots(fake))
    assert sum(len(r.spans) for r in records) == len(fake.index.rows)
    for record in records:
        assert {s.id for s in record.spans} == {row["id"] for row in fake.index.by_trace[record.source_id]}
        assert TraceRecord.model_validate(record.model_dump()) == record
    phases = [e.phase for e in events]
    assert phases[0] == "listing" and phases[1] == "planned" and phases[-1] == "done"
    assert phases.count("batch") == 8  # ceil(301 / 40)
    assert events[-1].done == events[-1].planned == events[-1].matched == 301
    # Dense pull: the batch windows are scanned, never one trace at a time.
    assert not [r for r in fake.requests if r.param("traceId") and r.path.endswith("/observations")]


def test_hand_built_trace_maps_every_field(fake: FakeLangfuse) -> None:
    records, _ = pull_all(fake, lf.PullFilters(since=WINDOW.since, until=WINDOW.until, user_id="hand-user"))
    assert len(records) == 1
    r = records[0]
    assert (r.source, r.source_id, r.name) == ("langfuse", HAND_TRACE, "refund-agent")
    assert r.timestamp == T0 and r.end_time == T0 + timedelta(seconds=2.5) and r.latency_ms == pytest.approx(2500.0)
    assert r.input == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Refund order 42?"}]
    assert r.output == {"role": "assistant", "content": "Refunded."}
    assert [(m.role, m.content) for m in r.messages] == [("system", "Be brief."), ("user", "Refund order 42?"), ("assistant", "Refunded.")]
    assert (r.tags, r.user_id, r.session_id, r.environment, r.release) == (["vip", "web"], "hand-user", "hand-session", "production", "v9.9.9")
    assert r.metadata == {"tenant": "acme", "langfuse.version": "agent-3"}
    assert r.cost == pytest.approx(0.007) and (r.input_tokens, r.output_tokens) == (250, 25)
    assert r.error == "refund: payments API timed out"
    assert [(s.id[0], s.type, s.parent_id and s.parent_id[0]) for s in r.spans] == [("r", "SPAN", None), ("g", "GENERATION", "r"), ("t", "TOOL", "r"), ("h", "GENERATION", "r")]
    plan = r.spans[1]
    assert (plan.model, plan.input_tokens, plan.output_tokens, plan.total_tokens, plan.cost) == ("gpt-4.1", 100, 20, 120, pytest.approx(0.003))
    assert plan.output["tool_calls"][0]["function"]["name"] == "refund"
    tool = r.spans[2]
    assert (tool.level, tool.status_message, tool.input) == ("ERROR", "payments API timed out", {"order": 42})
    assert [(s["id"], s["name"], s["value"], s["data_type"], s["source"], s["observation_id"]) for s in r.scores] == [
        ("sc-1", "user_feedback", 0.0, "NUMERIC", "API", None),
        ("sc-2", "tool_ok", "no", "CATEGORICAL", "ANNOTATION", "t" * 16),
    ]
    assert r.scores[0]["comment"] == "wrong refund"


def test_messages_fall_back_to_the_model_call_and_flatten_tool_calls() -> None:
    spec = TraceSpec(trace_id="a" * 32, name="qa", start_us=to_us(T0))
    us = to_us(T0)
    rows = [
        observation_row(spec, obs_id="1" * 16, type="SPAN", name="qa", start_us=us, end_us=us + 10, input="plain question", output="plain answer"),
        observation_row(spec, obs_id="2" * 16, type="GENERATION", name="llm", start_us=us + 1, end_us=us + 9, parent_id="1" * 16,
                        input={"messages": [{"role": "user", "content": "plain question"}]},
                        output={"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "c1", "function": {"name": "search", "arguments": "{}"}}]}}]}),
    ]
    record = lf.to_trace_record("a" * 32, [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows])
    assert record.input == "plain question"
    assert [m.role for m in record.messages] == ["user", "assistant"]
    assert record.messages[1].tool_calls[0].name == "search" and record.messages[1].tool_calls[0].id == "c1"


def test_values_of_the_wrong_type_are_dropped_not_fatal() -> None:
    spec = TraceSpec(trace_id="b" * 32, name="odd", start_us=to_us(T0))
    row = observation_row(spec, obs_id="1" * 16, type="SPAN", name="odd", start_us=to_us(T0), end_us=to_us(T0) + 5)
    row = {k: v for k, v in row.items() if not k.startswith("_")}
    row.update({"name": 123, "totalCost": "n/a", "level": ["ERROR"], "usageDetails": {"input": "12"}})
    record = lf.to_trace_record("b" * 32, [row])
    span = record.spans[0]
    assert (span.name, span.cost, span.level, span.input_tokens) == (None, None, None, None)
    assert record.name == "odd"  # the trace name still comes from traceName


# ----------------------------------------------------------------------------- filters
def _tags(*wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: set(wanted) <= set(r["tags"])


@pytest.mark.parametrize(
    "extra, keep",
    [
        ({"since": BASE_TIME + timedelta(days=2), "until": BASE_TIME + timedelta(days=6)}, None),
        ({"environment": ("staging",)}, lambda r: r["environment"] == "staging"),
        ({"environment": ("staging", "production")}, lambda r: r["environment"] in ("staging", "production")),
        ({"trace_name": "rag-qa"}, lambda r: r["traceName"] == "rag-qa"),
        ({"tags": ("web",)}, _tags("web")),
        ({"tags": ("web", "beta")}, _tags("web", "beta")),
        ({"user_id": "user-7"}, lambda r: r["userId"] == "user-7"),
        ({"session_id": "hand-session"}, lambda r: r["sessionId"] == "hand-session"),
        ({"release": "v1.5.0"}, lambda r: r["release"] == "v1.5.0"),
        ({"version": "app-8"}, lambda r: r["version"] == "app-8"),
        ({"environment": ("production",), "tags": ("mobile",), "release": "v1.4.0"},
         lambda r: r["environment"] == "production" and "mobile" in r["tags"] and r["release"] == "v1.4.0"),
    ],
)
def test_filters_select_exactly_the_matching_traces(fake: FakeLangfuse, extra: dict[str, Any], keep: Any) -> None:
    values = {"since": WINDOW.since, "until": WINDOW.until, **extra}
    filters = lf.PullFilters(**values)
    expected = roots(fake, keep or (lambda r: True), filters)
    records, events = pull_all(fake, filters)
    assert {r.source_id for r in records} == set(expected)
    assert len(records) == len(expected)
    assert events[-1].sampling["filters"] == filters.describe()
    if extra.get("user_id") == "user-7":
        assert 0 < len(expected) < 10  # a selective filter: the test would catch "everything"


def test_a_filter_matching_nothing_pulls_nothing(fake: FakeLangfuse) -> None:
    records, events = pull_all(fake, lf.PullFilters(since=WINDOW.since, until=WINDOW.until, trace_name="no-such-trace"))
    assert records == [] and events[-1].phase == "done" and events[-1].matched == 0


def test_naive_datetimes_are_utc_and_since_must_precede_until() -> None:
    f = lf.PullFilters(since=datetime(2026, 10, 1), until=datetime(2026, 10, 2))
    assert f.since == datetime(2026, 10, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="since .* must be before until"):
        lf.PullFilters(since=datetime(2026, 10, 2), until=datetime(2026, 10, 1))
    with pytest.raises(ValueError, match="Sampling.n must be a positive integer"):
        lf.Sampling(n=0)


def test_pull_without_since_pages_through_everything(fake: FakeLangfuse) -> None:
    records, _ = pull_all(fake, lf.PullFilters(until=WINDOW.until, environment=("staging",)))
    assert {r.source_id for r in records} == set(roots(fake, lambda r: r["environment"] == "staging"))


# ----------------------------------------------------------------------------- sampling
def test_latest_n_takes_the_newest_traces(fake: FakeLangfuse) -> None:
    records, events = pull_all(fake, sampling=lf.Sampling("latest", n=25))
    newest = sorted(roots(fake).values(), key=lambda r: r["_neg"])[:25]
    assert {r.source_id for r in records} == {r["traceId"] for r in newest}
    assert events[-1].sampling | {"filters": None} == {
        "source": "langfuse", "base_url": fake.url, "method": "latest", "n": 25, "seed": None, "filters": None,
        "until": WINDOW.until.isoformat(), "matched": 301, "drawn": 25,
    }


def test_random_sample_is_seeded_and_recorded(fake: FakeLangfuse) -> None:
    first, events = pull_all(fake, sampling=lf.Sampling("random", n=30, seed=42))
    again, _ = pull_all(fake, sampling=lf.Sampling("random", n=30, seed=42))
    other, _ = pull_all(fake, sampling=lf.Sampling("random", n=30, seed=43))
    ids = {r.source_id for r in first}
    assert len(ids) == 30 and ids == {r.source_id for r in again}
    assert ids != {r.source_id for r in other}
    assert ids <= set(roots(fake))
    assert events[-1].sampling["seed"] == 42 and events[-1].sampling["method"] == "random"
    # Without a seed, one is drawn and recorded, so the sample can be drawn again.
    _, events = pull_all(fake, sampling=lf.Sampling("random", n=5))
    seed = events[-1].sampling["seed"]
    assert isinstance(seed, int)
    replay, _ = pull_all(fake, sampling=lf.Sampling("random", n=5, seed=seed))
    assert {r.source_id for r in replay} == {r.source_id for r in _records(events)}


def _records(events: list[lf.PullProgress]) -> list[TraceRecord]:
    return [r for e in events for r in e.records]


def test_per_trace_reads_match_window_reads(fake: FakeLangfuse) -> None:
    fake.reset_requests()
    per_trace, _ = pull_all(fake, sampling=lf.Sampling("random", n=6, seed=1), fetch="trace")
    trace_requests = [r for r in fake.requests if r.path == "/api/public/v2/observations" and r.param("traceId")]
    assert sorted(r.param("traceId") for r in trace_requests) == sorted(r.source_id for r in per_trace)
    windowed, _ = pull_all(fake, sampling=lf.Sampling("random", n=6, seed=1), fetch="window")
    assert per_trace == windowed and len(per_trace) == 6


def test_auto_fetch_reads_sparse_samples_per_trace() -> None:
    """Per-trace reads when the chosen traces are few among many; window scans when dense."""
    listed = [[f"{i:032x}", 1_000_000 * i, 1_000_000 * i + 5] for i in range(20_000)]
    s = lf.LangfuseSettings(public_key="pk", secret_key="sk", base_url="http://x")
    sparse = lf._make_plan(listed, WINDOW, lf.Sampling("random", n=50, seed=1), 0, 1000, s)
    dense = lf._make_plan(listed, WINDOW, lf.Sampling("latest", n=5000), 0, 1000, s)
    assert [b["strategy"] for b in sparse["batches"]] == ["trace"]
    assert [b["strategy"] for b in dense["batches"]] == ["window"] * 5


def test_sample_larger_than_the_window_takes_everything(fake: FakeLangfuse) -> None:
    records, events = pull_all(fake, sampling=lf.Sampling("random", n=10_000, seed=3))
    assert len(records) == 301 and events[-1].sampling["drawn"] == 301


# ----------------------------------------------------------------------------- resume
class DedupSink:
    """Like the store: adds records, ignores a source_id it has already seen."""

    def __init__(self) -> None:
        self.records: dict[str, TraceRecord] = {}
        self.duplicates = 0

    def add(self, records: list[TraceRecord]) -> None:
        for record in records:
            if record.source_id in self.records:
                self.duplicates += 1
            else:
                self.records[record.source_id] = record


def test_killed_pull_resumes_where_it_stopped(fake: FakeLangfuse) -> None:
    checkpoint = lf.MemoryCheckpoint()
    sink = DedupSink()
    gen = lf.pull_traces(settings(fake), WINDOW, lf.Sampling("random", n=200, seed=9), checkpoint=checkpoint, key="round-1",
                         batch_size=30, now=NOW, retry=FAST_RETRY)
    batches = 0
    for progress in gen:
        sink.add(progress.records)
        batches += bool(progress.records)
        if batches == 3:
            break  # "killed" after storing batch 3 but before asking for more: batch 3 is not marked done
    gen.close()
    assert len(sink.records) == 90
    assert checkpoint.states["round-1"]["batches_done"] == [0, 1]
    fake.reset_requests()
    records, events = pull_all(fake, WINDOW, lf.Sampling("random", n=200, seed=9), checkpoint=checkpoint, key="round-1", batch_size=30)
    sink.add(records)
    assert events[0].phase == "planned" and events[0].resumed and "resuming" in events[0].message  # no listing
    assert len(records) == 200 - 60  # batches 3..7; batch 3 comes again and the sink ignores it
    assert sink.duplicates == 30 and len(sink.records) == 200
    # The plan was kept: no root listing on resume.
    assert not [r for r in fake.requests if "isRootObservation" in (r.param("filter") or "")]
    again, events = pull_all(fake, WINDOW, lf.Sampling("random", n=200, seed=9), checkpoint=checkpoint, key="round-1", batch_size=30)
    assert again == [] and events[-1].phase == "done" and events[-1].done == 200


def test_failing_sink_then_rerun_imports_the_rest(fake: FakeLangfuse) -> None:
    checkpoint = lf.MemoryCheckpoint()
    sink = DedupSink()
    calls = 0

    def flaky(records: list[TraceRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError("disk full")
        sink.add(records)

    with pytest.raises(OSError, match="disk full"):
        lf.run_pull(settings(fake), flaky, WINDOW, checkpoint=checkpoint, batch_size=50, now=NOW, retry=FAST_RETRY)
    assert len(sink.records) == 150
    last = lf.run_pull(settings(fake), sink.add, WINDOW, checkpoint=checkpoint, batch_size=50, now=NOW, retry=FAST_RETRY)
    assert last.phase == "done" and last.resumed
    assert len(sink.records) == 301 and sink.duplicates == 0


def test_cancel_stops_and_a_rerun_continues(fake: FakeLangfuse) -> None:
    checkpoint = lf.MemoryCheckpoint()
    cancel = threading.Event()
    sink = DedupSink()
    phases = []
    for progress in lf.pull_traces(settings(fake), WINDOW, checkpoint=checkpoint, cancel=cancel, batch_size=60, now=NOW, retry=FAST_RETRY):
        sink.add(progress.records)
        phases.append(progress.phase)
        if progress.phase == "batch":
            cancel.set()
    assert phases[-1] == "cancelled" and phases.count("batch") == 1
    records, events = pull_all(fake, WINDOW, checkpoint=checkpoint, batch_size=60)
    sink.add(records)
    assert len(sink.records) == 301 and sink.duplicates == 0


def test_changed_filters_start_a_new_plan(fake: FakeLangfuse) -> None:
    checkpoint = lf.MemoryCheckpoint()
    pull_all(fake, WINDOW, lf.Sampling("latest", n=10), checkpoint=checkpoint, key="round-2")
    records, events = pull_all(fake, WINDOW, lf.Sampling("latest", n=20), checkpoint=checkpoint, key="round-2")
    assert len(records) == 20 and events[1].phase == "planned" and not events[1].resumed


# ----------------------------------------------------------------------------- faults
def test_twenty_percent_failures_still_deliver_every_trace_once(fresh_fake: FakeLangfuse) -> None:
    fresh_fake.inject(status=429, fraction=0.1, seed=1)
    fresh_fake.inject(status=500, fraction=0.1, seed=2)
    waits: list[tuple[float, str]] = []
    records, events = pull_all(fresh_fake, batch_size=40, on_wait=lambda s, why: waits.append((s, why)))
    ids = [r.source_id for r in records]
    assert len(ids) == len(set(ids)) == 300 and set(ids) == set(roots(fresh_fake))
    failed = [r for r in fresh_fake.requests if r.status in (429, 500)]
    assert len(failed) >= 0.1 * len(fresh_fake.requests)
    reasons = {why for _, why in waits}
    assert {"rate limited by Langfuse", "Langfuse server error 500"} <= reasons
    assert len(waits) == len(failed)
    assert any(e.phase == "waiting" for e in events)


def test_retry_after_is_honoured_and_reported(fresh_fake: FakeLangfuse) -> None:
    fresh_fake.inject(status=429, retry_after=1, count=2, path="/api/public/v2/observations")
    waits: list[tuple[float, str]] = []
    started = time.perf_counter()
    records, events = pull_all(fresh_fake, on_wait=lambda s, why: waits.append((s, why)))
    assert time.perf_counter() - started >= 1.0
    assert waits == [(1.0, "rate limited by Langfuse")] * 2
    assert len(records) == 300
    assert "rate limited by Langfuse, waiting 1 s" in [e.message for e in events]


def test_hanging_request_times_out_and_is_retried(fresh_fake: FakeLangfuse) -> None:
    fresh_fake.inject(hang=2.0, count=1, path="/api/public/v2/observations")
    waits: list[tuple[float, str]] = []
    records: list[TraceRecord] = []
    for progress in lf.pull_traces(settings(fresh_fake, timeout=0.4), WINDOW, now=NOW, retry=FAST_RETRY, on_wait=lambda s, why: waits.append((s, why))):
        records.extend(progress.records)
    assert len(records) == 300
    assert [why for _, why in waits] == ["Langfuse did not answer within 0.4 s"]


def test_broken_page_is_fetched_again(fresh_fake: FakeLangfuse) -> None:
    fresh_fake.inject(broken=True, count=1, path="/api/public/v2/observations")
    waits: list[tuple[float, str]] = []
    records, _ = pull_all(fresh_fake, on_wait=lambda s, why: waits.append((s, why)))
    assert len(records) == 300 and [why for _, why in waits] == ["Langfuse sent a broken page (not valid JSON)"]


def test_bad_keys_fail_fast_with_a_clear_message(fresh_fake: FakeLangfuse) -> None:
    with pytest.raises(lf.LangfusePullError, match=r"rejected the keys \(401\)") as info:
        for _ in lf.pull_traces(settings(fresh_fake, secret_key="sk-lf-wrong"), WINDOW, now=NOW, retry=FAST_RETRY):
            pass
    assert info.value.status == 401
    assert len(fresh_fake.requests) <= 32  # one per listing slice, no retries


def test_connection_refused_gives_up_with_a_clear_message() -> None:
    server = FakeLangfuse().start()
    url = server.url
    server.stop()
    dead = lf.LangfuseSettings(public_key="pk", secret_key="sk", base_url=url, timeout=1)
    with pytest.raises(lf.LangfusePullError, match=r"Gave up after 3 attempts: connection problem"):
        for _ in lf.pull_traces(dead, WINDOW, now=NOW, retry=lf.RetryPolicy(max_retries=2, base_delay=0.01), concurrency=1):
            pass


def test_store_checkpoint_adapter_uses_get_and_set_state() -> None:
    class Store:
        def __init__(self) -> None:
            self.state: dict[str, Any] = {}

        def get_state(self, key: str) -> Any:
            return self.state.get(key)

        def set_state(self, key: str, value: Any) -> None:
            self.state[key] = value

    store = Store()
    cp = lf.StoreCheckpoint(store)
    assert cp.load("k") is None
    cp.save("k", {"a": 1})
    assert store.state == {"k": {"a": 1}} and cp.load("k") == {"a": 1}


def test_garbage_collector_is_restored_however_the_pull_ends(fake: FakeLangfuse) -> None:
    import gc

    assert gc.isenabled()
    pull_all(fake, sampling=lf.Sampling("latest", n=5))
    assert gc.isenabled()
    gen = lf.pull_traces(settings(fake), WINDOW, now=NOW, batch_size=50)
    next(gen)
    assert not gc.isenabled()  # paused while the pull runs
    gen.close()
    assert gc.isenabled()
    with pytest.raises(lf.LangfusePullError):
        for _ in lf.pull_traces(settings(fake, secret_key="wrong"), WINDOW, now=NOW):
            pass
    assert gc.isenabled()
    for _ in lf.pull_traces(settings(fake), WINDOW, now=NOW, pause_gc=False, sampling=lf.Sampling(n=3)):
        pass
    assert gc.isenabled()
