"""Production runs and estimates: validated judges on a production sample, counted once, resumed
without repeated calls, through the Batch API too, and read back per mode, day, facet and window.

The interval method itself is tested in test_stats.py; here the production layer is: which
counts reach it, and what it does with refusals and empty windows.

`build_world` (also used by tests/cli/test_cli_production.py and benchmarks/bench_dashboard.py)
makes a project with a failure mode, 60 labelled traces, a split, and a judge validated on the
test split from recorded answers (one missed fail and one false alarm by default), plus
production traces over four days: every fourth is rude ("You are an idiot."), environments
alternate us/eu, every fifth is tagged vip, every third has persona admin.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from evalboard import coding
from evalboard import production as prod
from evalboard.db import production_counts, production_verdicts
from evalboard.judges import LabelPolicy, create_judge, labels_by_trace, make_split, mode_labels, part_ids, record_run, save_version
from evalboard.models import TraceRecord
from evalboard.production.counts import count_verdicts, facet_pairs
from evalboard.stats import corrected_prevalence, diff_interval, wilson_interval
from evalboard.store import Store
from tests.fakes.openai_server import FakeOpenAI, Fault

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
RUDE = "You are an idiot."


@dataclass
class World:
    pid: int
    judge_id: int
    version_id: int
    prod_ids: list[int]
    confusion: dict[str, int]
    rude: set[int] = field(default_factory=set)


def build_world(store: Store, *, n_prod: int = 40, kind: str = "llm", flip_fail: int = 1, flip_pass: int = 1,
                mode: str = "rude reply", name: str | None = None, project_id: int | None = None,
                model: str = "fake-model") -> World:
    pid = project_id or store.create_project("Shop bot", "Answers questions about the shop.").id
    lab = [TraceRecord(source=f"lab-{mode}", source_id=f"l{i}", input=f"labelled question {i}",
                       output=RUDE if i < 30 else "Happy to help with that.", timestamp=T0 - timedelta(days=20))
           for i in range(60)]
    ids = store.add_traces(pid, lab).trace_ids
    mode_id = coding.ensure_mode(store, pid, mode, definition="The reply insults the customer.")
    for i, tid in enumerate(ids):
        coding.save_annotation(store, pid, tid, "ann", verdict="fail" if i < 30 else "pass", modes=[mode] if i < 30 else [])
    split = make_split(store, pid, mode_id, seed=1, policy=LabelPolicy(), who="t")
    truth = labels_by_trace(mode_labels(store, pid, mode_id, LabelPolicy()))  # other modes' traces pass this one
    judge = create_judge(store, pid, mode_id, name or ("Rudeness" if kind == "llm" else "Rudeness rule"), kind, who="t")
    config = ({"model": model, "fail_when": "- insults", "pass_when": "- polite"} if kind == "llm" else
              {"rule": {"check": "regex", "field": "output", "pattern": "idiot", "present": True}})
    version, _ = save_version(store, judge.id, config, who="t")
    test = part_ids(store, split.id, "test")
    fails = [t for t in test if truth[t] == "fail"]
    passes = [t for t in test if truth[t] == "pass"]
    answers = {t: {"reasoning": "recorded", "verdict": truth[t]} for t in test}
    for t in fails[:flip_fail]:
        answers[t]["verdict"] = "pass"
    for t in passes[:flip_pass]:
        answers[t]["verdict"] = "fail"
    record_run(store, version.id, "test", answers, who="t")
    records = [TraceRecord(source="prod", source_id=f"p{i}", input=f"production question {i}",
                           output=RUDE if i % 4 == 0 else "Sure, here you go.",
                           timestamp=T0 + timedelta(days=i % 4, hours=i % 7),
                           environment="eu" if i % 2 else "us", release="1.0",
                           tags=["chat", "vip"] if i % 5 == 0 else ["chat"],
                           dimensions={"persona": "admin" if i % 3 == 0 else "dev"}) for i in range(n_prod)]
    prod_ids = store.add_traces(pid, records).trace_ids if records else []
    confusion = {"tp": len(fails) - flip_fail, "fn": flip_fail, "tn": len(passes) - flip_pass, "fp": flip_pass}
    return World(pid, judge.id, version.id, prod_ids, confusion, {t for i, t in enumerate(prod_ids) if i % 4 == 0})


def scripted(request: dict) -> dict:
    """The fake judge: fail exactly the rude traces."""
    text = str(request["messages"][-1]["content"])
    return {"reasoning": "insults the customer", "verdict": "fail"} if "idiot" in text else \
        {"reasoning": "polite", "verdict": "pass"}


def client_for(fake: FakeOpenAI, store: Store, **settings):  # noqa: ANN201 - an LLMClient
    from integrations.llm import LLMClient, LLMSettings

    return LLMClient(LLMSettings(base_url=fake.base_url, api_key="test", model="fake-model", **settings),
                     cache=store.llm_cache())


def new_run(store: Store, world: World, execution: str = "direct") -> int:
    judges = prod.resolve_judges(store, world.pid, ["Rudeness" if execution else "x"])
    return prod.create_run(store, world.pid, judges, prod.draw_sample(store, world.pid, trace_ids=world.prod_ids),
                           execution=execution)


def counts_table(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(production_counts).order_by(
            production_counts.c.version_id, production_counts.c.day, production_counts.c.facet,
            production_counts.c.value))]


# ----------------------------------------------------------------------------- judges and samples


def test_only_validated_judges_run_and_refusals_say_why(sqlite_store: Store) -> None:
    world = build_world(sqlite_store)
    lenient = build_world(sqlite_store, project_id=world.pid, mode="slow reply", name="Slowness", n_prod=0,
                          flip_fail=6)  # TPR 7/13 < 0.9: not validated
    choices = {c.name: c for c in prod.judge_choices(sqlite_store, world.pid)}
    assert choices["Rudeness"].validated and choices["Rudeness"].confusion == world.confusion
    assert not choices["Slowness"].validated and "TPR" in " ".join(choices["Slowness"].reasons)
    assert [c.name for c in prod.resolve_judges(sqlite_store, world.pid, ["rude reply"])] == ["Rudeness"]
    with pytest.raises(prod.ProductionError, match="Slowness.*not validated.*TPR"):
        prod.resolve_judges(sqlite_store, world.pid, ["Slowness"])
    with pytest.raises(prod.ProductionError, match="No judge named 'Nope'.*'Rudeness'"):
        prod.resolve_judges(sqlite_store, world.pid, ["Nope"])
    sample = prod.draw_sample(sqlite_store, world.pid, trace_ids=world.prod_ids)
    with pytest.raises(prod.ProductionError, match="not validated"):
        prod.create_run(sqlite_store, world.pid, [choices["Slowness"]], sample)
    assert lenient.version_id != world.version_id


def test_sample_records_window_seed_and_source(sqlite_store: Store) -> None:
    world = build_world(sqlite_store)
    rnd = sqlite_store.create_round(world.pid, "Prod", world.prod_ids)
    since, until = T0 + timedelta(days=1), T0 + timedelta(days=3)
    a = prod.draw_sample(sqlite_store, world.pid, round_id=rnd.id, since=since, until=until, n=7, seed=3)
    b = prod.draw_sample(sqlite_store, world.pid, round_id=rnd.id, since=since, until=until, n=7, seed=3)
    assert a.trace_ids == b.trace_ids and len(a.trace_ids) == 7
    in_window = [t for i, t in enumerate(world.prod_ids) if i % 4 in (1, 2) and
                 since <= T0 + timedelta(days=i % 4, hours=i % 7) < until]
    assert set(a.trace_ids) <= set(in_window)
    assert a.definition == {"source": "round", "round_id": rnd.id, "round_name": "Prod", "since": since.isoformat(),
                            "until": until.isoformat(), "of": len(in_window), "method": "random", "n": 7, "seed": 3}
    assert (a.window_start, a.window_end) == (since, until)
    drawn = prod.draw_sample(sqlite_store, world.pid, round_id=rnd.id, n=5)
    assert drawn.definition["seed"] is not None, "a drawn seed is recorded so the sample can be drawn again"
    everything = prod.draw_sample(sqlite_store, world.pid, trace_ids=world.prod_ids)
    assert everything.definition["method"] == "all" and everything.window_start == T0
    with pytest.raises(prod.ProductionError, match="empty"):
        prod.draw_sample(sqlite_store, world.pid, round_id=rnd.id, since=T0 + timedelta(days=30))
    with pytest.raises(prod.ProductionError, match="after it ends"):
        prod.draw_sample(sqlite_store, world.pid, since=until, until=since)


# ----------------------------------------------------------------------------- direct runs


def test_direct_run_counts_each_verdict_once_and_estimates_from_the_frozen_test(store: Store) -> None:
    world = build_world(store)
    run_id = new_run(store, world)
    run = prod.get_run(store, run_id)
    assert run.status == "planned" and run.trace_count == 40
    assert run.judges[0].confusion == {"tp": 12, "fn": 1, "tn": 12, "fp": 1}
    with FakeOpenAI() as fake:
        fake.respond_with(scripted)
        seen = []
        outcome = prod.run_direct(client_for(fake, store), store, run_id, on_progress=seen.append)
        assert fake.count() == 40
        assert outcome.status == "finished" and outcome.judged == 40 and outcome.calls == 40
        assert seen[-1].phase == "done" and max(p.done for p in seen) == 40
        again = prod.run_direct(client_for(fake, store), store, run_id)
        assert fake.count() == 40, "a rerun reuses every stored verdict"
        assert again.reused == 40 and again.judged == 0
    assert prod.run_counts(store, run_id) == {world.version_id: (10, 40)}
    [est] = prod.run_estimates(store, run_id)
    # Rogan-Gladen by hand: (10/40 + 12/13 - 1) / (12/13 + 12/13 - 1) = 2.25 / 11
    assert est.corrected == pytest.approx(2.25 / 11)
    assert (est.raw, est.raw_low, est.raw_high) == pytest.approx((0.25, *wilson_interval(10, 40)))
    reference = corrected_prevalence(10, 40, 12, 13, 12, 13)
    assert (est.low, est.high) == pytest.approx((reference.low, reference.high))
    assert est.refused is None and est.tpr == pytest.approx(12 / 13)
    # The dashboard's counts hold the same, and rebuilding them from the ledger changes nothing.
    [window] = prod.window_estimates(store, world.pid, prod.production_judges(store, world.pid))
    assert (window.flagged, window.judged) == (10, 40)
    before = counts_table(store)
    prod.rebuild_counts(store, world.pid)
    assert counts_table(store) == before


def test_a_cancelled_run_resumes_without_repeating_calls(sqlite_store: Store) -> None:
    world = build_world(sqlite_store, n_prod=60)
    run_id = new_run(sqlite_store, world)
    cancel = threading.Event()

    def stop_early(p: prod.RunProgress) -> None:
        if p.done >= 12:
            cancel.set()

    with FakeOpenAI(latency=0.03) as fake:
        fake.respond_with(scripted)
        client = client_for(fake, sqlite_store, max_concurrency=3)
        first = prod.run_direct(client, sqlite_store, run_id, on_progress=stop_early, cancel=cancel)
        assert first.status == "cancelled" and 12 <= first.judged < 60
        assert prod.get_run(sqlite_store, run_id).status == "cancelled"
        counted = prod.run_counts(sqlite_store, run_id)[world.version_id][1]
        assert counted == first.judged, "every stored verdict is counted at once"
        time.sleep(0.3)  # calls that were on the wire finish and fill the cache
        second = prod.run_direct(client, sqlite_store, run_id)
        assert second.status == "finished"
        assert fake.count() <= 60, "no trace was asked twice"
        asked = [str(r.json["messages"][-1]["content"]).split("production question ")[1].split()[0]
                 for r in fake.chat_requests]
        assert len(asked) == len(set(asked))
    assert prod.run_counts(sqlite_store, run_id)[world.version_id] == (15, 60)


def test_a_code_judge_runs_without_an_llm(sqlite_store: Store) -> None:
    world = build_world(sqlite_store, kind="code")
    judges = prod.resolve_judges(sqlite_store, world.pid, ["Rudeness rule"])
    run_id = prod.create_run(sqlite_store, world.pid, judges,
                             prod.draw_sample(sqlite_store, world.pid, trace_ids=world.prod_ids))
    outcome = prod.run_direct(None, sqlite_store, run_id)
    assert outcome.status == "finished" and outcome.calls == 0
    assert prod.run_counts(sqlite_store, run_id) == {world.version_id: (10, 40)}
    llm_world = build_world(sqlite_store, project_id=world.pid, mode="other", name="Other", n_prod=0)
    llm_run = prod.create_run(sqlite_store, world.pid, prod.resolve_judges(sqlite_store, world.pid, ["Other"]),
                              prod.draw_sample(sqlite_store, world.pid, trace_ids=world.prod_ids))
    with pytest.raises(prod.ProductionError, match="No LLM is configured"):
        prod.run_direct(None, sqlite_store, llm_run)
    assert llm_world.version_id


# ----------------------------------------------------------------------------- batch API


def test_batch_run_submits_polls_ingests_and_retries_only_failures(sqlite_store: Store) -> None:
    world = build_world(sqlite_store)
    run_id = new_run(sqlite_store, world, execution="batch")
    broken = "production question 5\n"

    with FakeOpenAI(batch_polls=2) as fake:
        fake.respond_with(lambda r: Fault(500) if broken in str(r["messages"][-1]["content"]) else scripted(r))
        client = client_for(fake, sqlite_store)
        submitted = prod.submit_batches(client, sqlite_store, run_id)
        assert submitted.status == "submitted" and len(submitted.batches) == 1
        assert prod.get_run(sqlite_store, run_id).status == "submitted"
        assert prod.submit_batches(client, sqlite_store, run_id).batches == [], "a waiting batch is not sent twice"
        polled = prod.poll_batches(client, sqlite_store, run_id)  # the fake needs two polls
        assert polled.batches and prod.run_counts(sqlite_store, run_id) == {}
        polled = prod.poll_batches(client, sqlite_store, run_id)
        assert polled.status == "incomplete" and polled.judged == 39 and polled.failed == 1
        assert [(e["version_id"], e["trace_id"]) for e in polled.errors] == [(world.version_id, world.prod_ids[5])]
        assert prod.run_counts(sqlite_store, run_id) == {world.version_id: (10, 39)}
        fake.respond_with(scripted)  # the provider recovers: only the failed request goes again
        outcome = prod.run_batch(client, sqlite_store, run_id, poll_every=0.01)
        assert outcome.status == "finished"
        batches = prod.get_run(sqlite_store, run_id).batches
        assert [b["requests"] for b in batches] == [40, 1] and all(b["ingested"] for b in batches)
        assert {b["version_id"] for b in batches} == {world.version_id} and batches[1]["trace_ids"] == [world.prod_ids[5]]
        assert fake.count() == 0, "batch requests never go through chat completions"
        # The answers went into the LLM cache: a direct rerun of the same version costs nothing.
        assert prod.run_batch(client, sqlite_store, run_id, poll_every=0.01).batches == []
        assert fake.count("/v1/batches") == 2
    assert prod.run_counts(sqlite_store, run_id) == {world.version_id: (10, 40)}
    assert prod.answer_from_text('Sure: {"reasoning": "r", "verdict": "fail"}').verdict == "fail"
    with pytest.raises(ValueError):
        prod.answer_from_text("I think it fails")


# ----------------------------------------------------------------------------- estimates


@pytest.fixture
def judged(sqlite_store: Store) -> tuple[Store, World, list[prod.RunJudge]]:
    world = build_world(sqlite_store)
    judges = prod.resolve_judges(sqlite_store, world.pid, ["Rudeness"])
    answers = {world.version_id: {t: {"reasoning": "r", "verdict": "fail" if t in world.rude else "pass"}
                                  for t in world.prod_ids}}
    prod.record_run(sqlite_store, world.pid, judges,
                    prod.draw_sample(sqlite_store, world.pid, trace_ids=world.prod_ids), answers)
    return sqlite_store, world, prod.production_judges(sqlite_store, world.pid)


def test_trend_breakdown_and_window_comparison_from_the_counts(judged) -> None:  # noqa: ANN001
    store, world, judges = judged
    assert prod.data_span(store, world.pid) == (date(2026, 11, 2), date(2026, 11, 5))
    days = prod.trend(store, world.pid, judges, period="day")
    assert list(days["judged"]) == [10, 10, 10, 10] and list(days["flagged"]) == [10, 0, 0, 0]
    assert days["low_n"].all()
    weeks = prod.trend(store, world.pid, judges, period="week")
    assert list(weeks["period"]) == [date(2026, 11, 2)] and list(weeks["judged"]) == [40]
    env = prod.breakdown(store, world.pid, judges, "environment").set_index("value")
    assert (env.loc["us", "flagged"], env.loc["us", "judged"]) == (10, 20)
    assert (env.loc["eu", "flagged"], env.loc["eu", "judged"]) == (0, 20)
    tags = prod.breakdown(store, world.pid, judges, "tag").set_index("value")
    assert (tags.loc["vip", "flagged"], tags.loc["vip", "judged"]) == (2, 8) and tags.loc["chat", "judged"] == 40
    assert prod.facets(store, world.pid) == ["environment", "release", "tag", "dimension:persona"]
    compared = prod.compare_windows(store, world.pid, judges, (date(2026, 11, 2), date(2026, 11, 2)),
                                    (date(2026, 11, 3), date(2026, 11, 5))).iloc[0]
    newcombe = diff_interval(0, 30, 10, 10)
    assert (compared.raw_diff, compared.raw_diff_low, compared.raw_diff_high) == pytest.approx(
        (newcombe.diff, newcombe.low, newcombe.high))
    assert compared.significant and compared.corrected_diff == pytest.approx(compared.corrected_2 - compared.corrected_1)
    empty = prod.window_estimates(store, world.pid, judges, date(2026, 12, 1), date(2026, 12, 2))[0]
    assert empty.judged == 0 and math.isnan(empty.raw) and empty.corrected is None
    assert "no production traces" in empty.refused


def test_correction_is_refused_with_the_reason_when_the_judge_is_no_better_than_chance() -> None:
    coin = prod.RunJudge(1, "Coin", 1, "rude reply", "llm", 1, "v1", None, {"tp": 5, "fn": 5, "tn": 4, "fp": 6})
    est = prod.estimate(coin, 10, 40)
    assert est.corrected is None and est.low is None
    assert "no better than chance" in est.refused and "0.50 + TNR 0.40" in est.refused
    assert est.raw == 0.25 and (est.raw_low, est.raw_high) == pytest.approx(wilson_interval(10, 40))
    blind = prod.RunJudge(1, "Blind", 1, "rude reply", "llm", 2, "v2", None, {"tp": 0, "fn": 0, "tn": 9, "fp": 1})
    assert "no human-failed traces" in prod.estimate(blind, 3, 40).refused
    assert prod.estimate(blind, 3, 40).as_dict()["corrected"] is None


def test_flagged_traces_page_through_with_the_judge_reasoning(judged) -> None:  # noqa: ANN001
    store, world, judges = judged
    version = judges[0].version_id
    assert prod.count_flagged(store, world.pid, version) == 10
    pages = [prod.flagged_traces(store, world.pid, version, limit=4, offset=o) for o in (0, 4, 8)]
    ids = [t for page in pages for t in page["trace_id"]]
    assert [len(p) for p in pages] == [4, 4, 2] and set(ids) == world.rude
    assert set(pages[0]["reasoning"]) == {"r"}
    assert prod.count_flagged(store, world.pid, version, date(2026, 11, 3), date(2026, 11, 5)) == 0


def test_a_verdict_is_counted_once_however_often_it_arrives(judged) -> None:  # noqa: ANN001
    store, world, judges = judged
    before = counts_table(store)
    run_id = prod.latest_run(store, world.pid).id
    with store.engine.begin() as conn:
        again = count_verdicts(conn, world.pid, world.version_id, run_id, [(world.prod_ids[0], "fail")], "2026-01-01")
    assert again == 0 and counts_table(store) == before
    assert prod.sync_run(store, run_id) == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(production_verdicts)).scalar_one() == 40
    assert facet_pairs(None, "1.0", [], {"persona": "dev"}) == [
        ("all", ""), ("environment", "(none)"), ("release", "1.0"), ("tag", "(none)"), ("dimension:persona", "dev")]


def test_demo_production_shows_the_fix(sqlite_store: Store) -> None:
    from evalboard.demo import create_demo
    from evalboard.demo_production import FIX_AT

    pid = create_demo(sqlite_store)
    runs = prod.list_runs(sqlite_store, pid)
    assert len(runs) == 6 and set(runs["status"]) == {"finished"} and set(runs["origin"]) == {"demo: recorded answers"}
    judges = prod.production_judges(sqlite_store, pid)
    assert [j.mode for j in judges] == ["wrong tone email"]
    fix = FIX_AT.date()
    before, after = prod.compare_windows(sqlite_store, pid, judges, (fix - timedelta(days=21), fix - timedelta(days=1)),
                                         (fix, fix + timedelta(days=20))).iloc[0][["corrected_1", "corrected_2"]]
    assert before > 0.08 and after < 0.03
    assert prod.compare_windows(sqlite_store, pid, judges, (fix - timedelta(days=21), fix - timedelta(days=1)),
                                (fix, fix + timedelta(days=20))).iloc[0]["significant"]
    assert create_demo(sqlite_store) == pid and len(prod.list_runs(sqlite_store, pid)) == 6
