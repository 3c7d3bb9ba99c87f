"""Judge runs: a version judges a set of traces (a split part, or any traces), verdicts saved
as they arrive.

- One verdict per (version, trace) is kept. A run first reuses every verdict the version
  already has, so running the same version again costs nothing and makes no call, and a run
  that was cancelled or failed half-way is resumed by running it again.
- LLM calls go through the client's `map` (its concurrency limit, request budget, retries,
  cache and cancel apply); answers go to one writer thread that stores what has arrived in one
  transaction, so calls never wait for the database.
- The test split is run once, by an explicit action (`confirm_test=True`), for one version.
  The split records that run the moment it starts (even a stopped test run has shown its
  traces); the same version may finish it later, no other version may run it. When every test
  trace has a verdict, the result (labels, verdicts, confusion, thresholds) is frozen in the
  run: later label corrections and later versions do not change it.
- Before a run, `estimate_run` says how many calls it makes, and the tokens and cost to expect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import insert, select, update

from evalboard.batching import BatchWriter
from evalboard.db import judge_runs, judge_splits, judge_verdicts, judge_versions, traces, utcnow
from evalboard.judges.code_judge import code_verdict, functions_in, load_function, parse_rule
from evalboard.judges.core import Judge, Version, get_judge, get_version
from evalboard.judges.labels import (
    JudgeError,
    ModeInfo,
    Split,
    get_mode,
    get_split,
    labels_by_trace,
    mode_labels,
    part_ids,
    parts_of,
)
from evalboard.judges.llm_judge import (
    JUDGE_FEATURE,
    JudgeAnswer,
    LLMJudgeConfig,
    estimate_tokens,
    judge_messages,
    system_prompt,
)
from evalboard.models import TraceRecord
from evalboard.store import Store, row_to_record

DEFAULT_OUTPUT_TOKENS = 150
"""Planning figure for one answer's tokens (a few sentences of reasoning and the verdict) when
the version sets no max_tokens."""
LIVE = "live"
RECORDED = "demo: recorded answers"
PriceFn = Callable[[str, int, int], "float | None"]


def load_traces(store: Store, trace_ids: Iterable[int]) -> dict[int, TraceRecord]:
    """Traces by id, read 500 at a time (one query per chunk, not one per trace)."""
    ids = list(dict.fromkeys(int(t) for t in trace_ids))
    found: dict[int, TraceRecord] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            for row in conn.execute(select(traces).where(traces.c.id.in_(ids[i:i + 500]))):
                found[row.id] = row_to_record(row)
    return found


def stored_verdicts(store: Store, version_id: int, trace_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """The version's verdicts: trace_id, verdict, reasoning, cached, cost, origin, run_id."""
    q = select(judge_verdicts.c.trace_id, judge_verdicts.c.verdict, judge_verdicts.c.reasoning,
               judge_verdicts.c.cached, judge_verdicts.c.cost, judge_verdicts.c.origin,
               judge_verdicts.c.run_id).where(judge_verdicts.c.version_id == version_id)
    columns = ["trace_id", "verdict", "reasoning", "cached", "cost", "origin", "run_id"]
    with store.engine.connect() as conn:
        if trace_ids is None:
            rows = conn.execute(q.order_by(judge_verdicts.c.trace_id)).all()
        else:
            ids = list(dict.fromkeys(int(t) for t in trace_ids))
            rows = []
            for i in range(0, len(ids), 900):
                rows += conn.execute(q.where(judge_verdicts.c.trace_id.in_(ids[i:i + 900]))).all()
    return pd.DataFrame(rows, columns=columns)


def _insert_verdicts(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Insert, skipping (version, trace) pairs already stored (a concurrent run of the same
    version may have written them first; the verdict kept is the first)."""
    if not rows:
        return
    if conn.dialect.name in ("sqlite", "postgresql"):
        if conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        stmt = dialect_insert(judge_verdicts).on_conflict_do_nothing(index_elements=["version_id", "trace_id"])
        conn.execute(stmt, rows)
        return
    for row in rows:  # other databases: check first (slower, same result)
        present = conn.execute(select(judge_verdicts.c.id).where(
            judge_verdicts.c.version_id == row["version_id"], judge_verdicts.c.trace_id == row["trace_id"])).first()
        if present is None:
            conn.execute(insert(judge_verdicts).values(**row))


def record_verdicts(store: Store, version_id: int, answers: Mapping[int, JudgeAnswer | Mapping[str, Any]], *,
                    run_id: int | None = None, origin: str = LIVE) -> None:
    """Store verdicts given directly (the demo's recorded answers; tests)."""
    rows = []
    for trace_id, answer in answers.items():
        answer = answer if isinstance(answer, JudgeAnswer) else JudgeAnswer.model_validate(answer)
        rows.append({"version_id": version_id, "trace_id": int(trace_id), "run_id": run_id,
                     "verdict": answer.verdict, "reasoning": answer.reasoning, "cached": False,
                     "origin": origin, "created_at": utcnow()})
    with store.engine.begin() as conn:
        _insert_verdicts(conn, rows)


# ----------------------------------------------------------------------------- what a run judges


@dataclass
class Plan:
    """The traces a run judges and what it needs: resolved and checked before anything runs."""

    judge: Judge
    version: Version
    mode: ModeInfo
    split: Split | None
    part: str | None
    trace_ids: list[int]


def plan_run(store: Store, version_id: int, *, part: str | None = None,
             trace_ids: Sequence[int] | None = None) -> Plan:
    """Resolve the traces and check the few-shot leakage guard (no example among the judged
    traces, every example still in train)."""
    version = get_version(store, version_id)
    judge = get_judge(store, version.judge_id)
    mode = get_mode(store, judge.mode_id)
    split = get_split(store, judge.mode_id)
    if (part is None) == (trace_ids is None):
        raise JudgeError("Say what to judge: a split part (train, dev, test) or a list of traces.")
    if part is not None:
        if split is None:
            raise JudgeError(f"'{mode.name}' has no train/dev/test split yet: make one first.")
        ids = part_ids(store, split.id, part)
        if not ids:
            raise JudgeError(f"The {part} split of '{mode.name}' holds no traces.")
    else:
        ids = list(dict.fromkeys(int(t) for t in trace_ids or []))
        if not ids:
            raise JudgeError("No traces to judge.")
    examples = [int(e["trace_id"]) for e in version.config.get("examples") or []]
    if examples:
        judged = set(ids) & set(examples)
        if judged:
            raise JudgeError(f"Traces {sorted(judged)} are few-shot examples of {version.label}; a judge "
                             "cannot be evaluated on its own examples.")
        parts = parts_of(store, split.id, examples) if split else {}
        outside = [t for t in examples if parts.get(t) != "train"]
        if outside:
            raise JudgeError(f"Few-shot examples {outside} of {version.label} are no longer in the train "
                             "split; save a version without them.")
    return Plan(judge, version, mode, split, part, ids)


@dataclass
class RunEstimate:
    """What a run will take. `calls` is the most it can make (the LLM cache may answer some of
    them for free); tokens are estimates (about 4 characters a token); `cost` is None when the
    model has no price."""

    traces: int
    reused: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None
    model: str | None

    def summary(self) -> str:
        if self.model is None:
            return (f"{self.traces} traces: {self.reused} already judged by this version, "
                    f"{self.traces - self.reused} to check with code (no LLM calls, no cost).")
        cost = "cost unknown (no price for this model)" if self.cost is None else f"about ${self.cost:.4f}"
        return (f"{self.traces} traces: {self.reused} already judged by this version (free), {self.calls} "
                f"LLM calls at most, about {self.input_tokens:,} input and {self.output_tokens:,} output "
                f"tokens, {cost}.")


def estimate_run(store: Store, version_id: int, *, part: str | None = None,
                 trace_ids: Sequence[int] | None = None, product: str = "",
                 price: PriceFn | None = None) -> RunEstimate:
    """Calls, tokens and cost of running a version (see `RunEstimate`).

    Input tokens: `llm_judge.estimate_tokens` of each prompt that still needs a call (prompts are
    rendered exactly as the run will). Output tokens: max_tokens of the version, else
    DEFAULT_OUTPUT_TOKENS, per call. Cost: `price(model, input_tokens, output_tokens)`, e.g. the
    LLM client's `settings.cost`.
    """
    plan = plan_run(store, version_id, part=part, trace_ids=trace_ids)
    done = set(stored_verdicts(store, version_id, plan.trace_ids)["trace_id"].astype(int))
    todo = [t for t in plan.trace_ids if t not in done]
    if plan.judge.kind == "code":
        return RunEstimate(len(plan.trace_ids), len(done), 0, 0, 0, 0.0, None)
    config = LLMJudgeConfig.model_validate(plan.version.config)
    examples = load_traces(store, [e.trace_id for e in config.examples])
    system = system_prompt(config, plan.mode, product)
    found = load_traces(store, todo)
    input_tokens = sum(estimate_tokens(judge_messages(config, plan.mode, found[t], examples=examples,
                                                      system=system)) for t in todo if t in found)
    output_tokens = len(todo) * (config.max_tokens or DEFAULT_OUTPUT_TOKENS)
    cost = price(config.model, input_tokens, output_tokens) if price is not None and todo else (0.0 if not todo else None)
    return RunEstimate(len(plan.trace_ids), len(done), len(todo), input_tokens, output_tokens, cost, config.model)


# ----------------------------------------------------------------------------- running


@dataclass
class RunReport:
    """What a run did. `calls` are requests answered by the server now, `cache_hits` answers
    from the LLM cache, `reused` verdicts this version already had; `cost` is what the new
    requests cost ($, None when unpriced)."""

    run_id: int
    status: str
    traces: int
    reused: int = 0
    judged: int = 0
    calls: int = 0
    cache_hits: int = 0
    failed: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = 0.0
    errors: dict[int, str] = field(default_factory=dict)
    frozen: bool = False

    def summary(self) -> str:
        parts = [f"{self.judged} traces judged now, {self.reused} verdicts reused, of {self.traces}"]
        if self.calls or self.cache_hits:
            parts.append(f"{self.calls} LLM calls, {self.cache_hits} answered from the cache")
        if self.cost:
            parts.append(f"${self.cost:.4f}")
        if self.failed:
            parts.append(f"{self.failed} failed (run again to retry them)")
        if self.cancelled:
            parts.append(f"{self.cancelled} not judged (stopped; run again to resume)")
        if self.frozen:
            parts.append("test result frozen")
        return "; ".join(parts) + "."


def _claim_test_split(store: Store, plan: Plan, confirm_test: bool, who: str, origin: str) -> int:
    """The run id of this version's test run, creating it (and marking the split used) if new."""
    split = plan.split
    assert split is not None
    if split.test_run_id is not None:
        if split.test_version_id != plan.version.id:
            with store.engine.connect() as conn:
                row = conn.execute(select(judge_runs.c.judge_id, judge_runs.c.created_at)
                                   .where(judge_runs.c.id == split.test_run_id)).first()
            other = get_version(store, split.test_version_id) if split.test_version_id else None
            by = get_judge(store, row.judge_id).name if row is not None else "a judge"
            when = f" on {split.test_used_at:%Y-%m-%d}" if split.test_used_at else ""
            raise JudgeError(f"Test split already used: '{plan.mode.name}' was tested with {by} "
                             f"{other.label if other else ''}{when}. The test split is run once, so "
                             f"{plan.version.label} gets no clean test result; compare versions on dev.")
        return split.test_run_id
    if not confirm_test:
        raise JudgeError("Running the test split is a one-time action for one version: confirm it "
                         "explicitly. Afterwards no other version can be tested on it.")
    run_id = _new_run(store, plan, who, origin)
    with store.engine.begin() as conn:
        claimed = conn.execute(update(judge_splits).where(judge_splits.c.id == split.id,
                                                          judge_splits.c.test_run_id.is_(None))
                               .values(test_run_id=run_id, test_version_id=plan.version.id,
                                       test_used_at=utcnow())).rowcount
        if not claimed:  # someone else started a test run a moment ago
            conn.execute(update(judge_runs).where(judge_runs.c.id == run_id).values(status="refused"))
    if not claimed:
        raise JudgeError("Test split already used: another test run started just now.")
    return run_id


def _new_run(store: Store, plan: Plan, who: str, origin: str) -> int:
    with store.engine.begin() as conn:
        return conn.execute(insert(judge_runs).values(
            judge_id=plan.judge.id, version_id=plan.version.id, split_id=plan.split.id if plan.split else None,
            part=plan.part, trace_ids=plan.trace_ids, status="running", origin=origin, errors={},
            created_by=who)).inserted_primary_key[0]


def run_judge(client: Any, store: Store, version_id: int, *, part: str | None = None,
              trace_ids: Sequence[int] | None = None, who: str = "", product: str = "",
              concurrency: int | None = None, on_progress: Callable[[int, int], None] | None = None,
              cancel: threading.Event | None = None, confirm_test: bool = False,
              allowed_functions: Sequence[str] = (), run_id: int | None = None) -> RunReport:
    """Judge the traces of `part` (or `trace_ids`) with one version; see the module docstring.

    `client` is an LLM client with `structured` and `map` (integrations.llm.LLMClient); code
    judges need none. `on_progress(done, total)` counts the traces still to judge. `run_id`
    resumes that run (its traces are judged again where they have no verdict).
    """
    if run_id is not None:
        with store.engine.connect() as conn:
            row = conn.execute(select(judge_runs).where(judge_runs.c.id == run_id)).first()
        if row is None or row.version_id != version_id:
            raise JudgeError(f"Run {run_id} is not a run of this version.")
        part, trace_ids = (row.part, None) if row.part else (None, list(row.trace_ids))
    plan = plan_run(store, version_id, part=part, trace_ids=trace_ids)
    if plan.judge.kind == "llm" and client is None:
        raise JudgeError("No LLM is configured, so an LLM judge cannot run.")
    functions: dict[str, Callable] = {}
    if plan.judge.kind == "code":
        rule = parse_rule(plan.version.config["rule"], allowed_functions)  # the operator may have revoked one
        functions = {name: load_function(name, allowed_functions) for name in functions_in(rule)}
    if plan.part == "test":
        run_id = _claim_test_split(store, plan, confirm_test, who, LIVE)
    elif run_id is None:
        run_id = _new_run(store, plan, who, LIVE)

    done = set(stored_verdicts(store, version_id, plan.trace_ids)["trace_id"].astype(int))
    todo = [t for t in plan.trace_ids if t not in done]
    report = RunReport(run_id=run_id, status="running", traces=len(plan.trace_ids), reused=len(done))
    try:
        if todo and plan.judge.kind == "code":
            _run_code(store, plan, run_id, todo, functions, report, on_progress, cancel)
        elif todo:
            _run_llm(client, store, plan, run_id, todo, product, concurrency, on_progress, cancel, report)
    except BaseException:
        _finish(store, plan, report, interrupted=True)
        raise
    _finish(store, plan, report)
    return report


def _verdict_row(plan: Plan, run_id: int, trace_id: int, answer: JudgeAnswer, result: Any = None) -> dict[str, Any]:
    return {"version_id": plan.version.id, "trace_id": trace_id, "run_id": run_id, "verdict": answer.verdict,
            "reasoning": answer.reasoning, "input_tokens": getattr(result, "input_tokens", None),
            "output_tokens": getattr(result, "output_tokens", None), "cost": getattr(result, "cost", None),
            "cached": bool(getattr(result, "cached", False)), "origin": LIVE, "created_at": utcnow()}


def _run_code(store: Store, plan: Plan, run_id: int, todo: list[int], functions: Mapping[str, Callable],
              report: RunReport, on_progress: Callable[[int, int], None] | None,
              cancel: threading.Event | None) -> None:
    rule = plan.version.config["rule"]
    finished = 0
    for start in range(0, len(todo), 200):
        chunk = todo[start:start + 200]
        found = load_traces(store, chunk)
        rows = []
        for trace_id in chunk:
            if cancel is not None and cancel.is_set():
                report.cancelled = len(todo) - finished
                break
            try:
                trace = found.get(trace_id)
                if trace is None:
                    raise JudgeError(f"trace {trace_id} no longer exists")
                rows.append(_verdict_row(plan, run_id, trace_id, code_verdict(rule, trace, functions)))
                report.judged += 1
            except Exception as exc:  # noqa: BLE001 - one broken trace or check must not stop the run
                report.errors[trace_id] = f"{type(exc).__name__}: {exc}"[:500]
            finished += 1
        with store.engine.begin() as conn:
            _insert_verdicts(conn, rows)
        if on_progress is not None:
            on_progress(finished, len(todo))
        if report.cancelled:
            break
    report.failed = len(report.errors)


def _run_llm(client: Any, store: Store, plan: Plan, run_id: int, todo: list[int], product: str,
             concurrency: int | None, on_progress: Callable[[int, int], None] | None,
             cancel: threading.Event | None, report: RunReport) -> None:
    config = LLMJudgeConfig.model_validate(plan.version.config)
    examples = load_traces(store, [e.trace_id for e in config.examples])
    system = system_prompt(config, plan.mode, product)  # the same for every trace: render once
    found = load_traces(store, todo)
    def write(rows: list[dict[str, Any]]) -> None:
        # A failed write is reported after the run; the answers stay in the LLM cache.
        with store.engine.begin() as conn:
            _insert_verdicts(conn, rows)

    def judge_one(trace_id: int) -> Any:
        trace = found.get(trace_id)
        if trace is None:
            raise JudgeError(f"trace {trace_id} no longer exists")
        messages = judge_messages(config, plan.mode, trace, examples=examples, system=system)
        answer, result = client.structured(messages, JudgeAnswer, feature=JUDGE_FEATURE, model=config.model,
                                           temperature=config.temperature, **config.params())
        writer.put(_verdict_row(plan, run_id, trace_id, answer, result))
        return result

    with BatchWriter(write, name="judge-writer") as writer:
        results = client.map(todo, judge_one, concurrency=concurrency, on_progress=on_progress, cancel=cancel)
    costs: list[float] = []
    unpriced = False
    for trace_id, res in zip(todo, results):
        if res.status == "ok":
            report.judged += 1
            result = res.value
            if getattr(result, "cached", False):
                report.cache_hits += 1
                continue
            report.calls += 1
            report.input_tokens += result.input_tokens or 0
            report.output_tokens += result.output_tokens or 0
            if result.cost is None:
                unpriced = True
            else:
                costs.append(result.cost)
        elif res.status == "error":
            report.errors[trace_id] = str(res.error)[:500]
        else:
            report.cancelled += 1
    report.failed = len(report.errors)
    report.cost = None if unpriced and not costs else sum(costs)


def _finish(store: Store, plan: Plan, report: RunReport, interrupted: bool = False) -> None:
    """Write the run's counters and status; freeze a completed test run."""
    have = set(stored_verdicts(store, plan.version.id, plan.trace_ids)["trace_id"].astype(int))
    complete = all(t in have for t in plan.trace_ids)
    if complete:
        report.status = "finished"
    elif interrupted or report.cancelled:
        report.status = "cancelled"
    else:
        report.status = "incomplete"
    with store.engine.begin() as conn:
        row = conn.execute(select(judge_runs).where(judge_runs.c.id == report.run_id)).first()
        errors = {str(k): v for k, v in list(report.errors.items())[:100]}
        cost = row.cost
        if report.cost is not None and report.calls:
            cost = (cost or 0.0) + report.cost
        conn.execute(update(judge_runs).where(judge_runs.c.id == report.run_id).values(
            status=report.status, calls=row.calls + report.calls, cache_hits=row.cache_hits + report.cache_hits,
            reused=report.reused, failed=report.failed, input_tokens=row.input_tokens + report.input_tokens,
            output_tokens=row.output_tokens + report.output_tokens, cost=cost, errors=errors,
            finished_at=utcnow()))
    if complete and plan.part == "test" and row.frozen is None:
        freeze_test(store, report.run_id)
        report.frozen = True


def freeze_test(store: Store, run_id: int) -> dict[str, Any]:
    """Freeze a completed test run: the human label and judge verdict of every test trace (as
    they are now), the confusion counts and the judge's thresholds. Returns what was frozen."""
    with store.engine.connect() as conn:
        row = conn.execute(select(judge_runs).where(judge_runs.c.id == run_id)).first()
    if row is None:
        raise JudgeError(f"There is no judge run with id {run_id}.")
    if row.frozen is not None:
        return dict(row.frozen)
    judge = get_judge(store, row.judge_id)
    split = get_split(store, judge.mode_id)
    labels = labels_by_trace(mode_labels(store, judge.project_id, judge.mode_id, split.policy if split else None))
    verdicts = dict(zip(*stored_verdicts(store, row.version_id, row.trace_ids)[["trace_id", "verdict"]]
                        .to_dict("list").values()))
    pairs = [[t, labels[t], verdicts[t]] for t in row.trace_ids if t in labels and t in verdicts]
    tp = sum(h == "fail" and j == "fail" for _, h, j in pairs)
    fn = sum(h == "fail" and j == "pass" for _, h, j in pairs)
    tn = sum(h == "pass" and j == "pass" for _, h, j in pairs)
    fp = sum(h == "pass" and j == "fail" for _, h, j in pairs)
    frozen = {"at": utcnow().isoformat(), "version_id": row.version_id, "pairs": pairs,
              "confusion": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
              "unlabelled": sum(t not in labels for t in row.trace_ids),
              "thresholds": judge.thresholds,
              "policy": split.policy.model_dump() if split else None}
    with store.engine.begin() as conn:
        conn.execute(update(judge_runs).where(judge_runs.c.id == run_id, judge_runs.c.frozen.is_(None))
                     .values(frozen=frozen))
    return frozen


def list_runs(store: Store, judge_id: int) -> pd.DataFrame:
    """The judge's runs, newest first."""
    q = (select(judge_runs.c.id, judge_versions.c.number.label("version"), judge_runs.c.part, judge_runs.c.trace_ids,
                judge_runs.c.status, judge_runs.c.origin, judge_runs.c.calls, judge_runs.c.cache_hits,
                judge_runs.c.reused, judge_runs.c.failed, judge_runs.c.cost, judge_runs.c.created_by,
                judge_runs.c.created_at, judge_runs.c.finished_at, judge_runs.c.frozen.is_not(None).label("frozen"))
         .join(judge_versions, judge_versions.c.id == judge_runs.c.version_id)
         .where(judge_runs.c.judge_id == judge_id).order_by(judge_runs.c.id.desc()))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame(rows, columns=["run", "version", "part", "traces", "status", "origin", "calls",
                                     "cache_hits", "reused", "failed", "cost", "by", "started", "finished",
                                     "frozen"])
    df["traces"] = [len(t or []) for t in df["traces"]]
    return df


def interrupted_runs(store: Store, judge_id: int) -> list[dict[str, Any]]:
    """Runs that did not finish (stopped, failed calls, or the page went away mid-run)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(judge_runs.c.id, judge_runs.c.version_id, judge_runs.c.part,
                                   judge_runs.c.status, judge_runs.c.trace_ids)
                            .where(judge_runs.c.judge_id == judge_id,
                                   judge_runs.c.status.in_(["running", "cancelled", "incomplete"]))
                            .order_by(judge_runs.c.id.desc())).all()
    return [{"run": r.id, "version_id": r.version_id, "part": r.part, "status": r.status,
             "traces": len(r.trace_ids or [])} for r in rows]


def record_run(store: Store, version_id: int, part: str, answers: Mapping[int, JudgeAnswer | Mapping[str, Any]],
               *, who: str = "", origin: str = RECORDED, when: datetime | None = None) -> int:
    """A finished run made of answers given here, not fetched now (the demo's recorded LLM
    answers). Marked by `origin`; a test run claims and freezes the test split like any other."""
    plan = plan_run(store, version_id, part=part)
    missing = [t for t in plan.trace_ids if t not in answers]
    if missing:
        raise JudgeError(f"Recorded answers are missing for traces {missing[:10]}.")
    if part == "test":
        run_id = _claim_test_split(store, plan, True, who, origin)
    else:
        run_id = _new_run(store, plan, who, origin)
    with store.engine.begin() as conn:
        conn.execute(update(judge_runs).where(judge_runs.c.id == run_id).values(origin=origin))
    record_verdicts(store, version_id, {t: answers[t] for t in plan.trace_ids}, run_id=run_id, origin=origin)
    report = RunReport(run_id=run_id, status="running", traces=len(plan.trace_ids), judged=len(plan.trace_ids))
    report.cost = None
    _finish(store, plan, report)
    if when is not None:
        with store.engine.begin() as conn:
            conn.execute(update(judge_runs).where(judge_runs.c.id == run_id).values(created_at=when, finished_at=when))
    return run_id
