"""Production runs: validated judges applied to a sample of production traces.

A run records what it judged and how, so its figures can be read later without guessing:

- the sample: which traces (fixed in `production_run_traces` when the run is made, so a
  resumed run judges the same ones), how they were drawn (`sample`: source, filters, size,
  seed) and the time window they cover;
- the judges: each judge's validated version and the confusion counts of its frozen test
  result (`judges`), which is what TPR and TNR, and so the correction, come from.

Execution. A *direct* run (`run_direct`) calls `evalboard.judges.runs.run_judge` once per judge
version, which brings the LLM client's concurrency, retries, cache, progress and cancel, and
saves every verdict in `judge_verdicts` as it arrives (one per version and trace). A *batch* run
sends the same prompts through the provider's Batch API (`evalboard.production.batch`). Either
way a verdict, once stored, is never asked for again: running again after a crash, a cancel or
a kill reuses every stored verdict and only judges what is missing.

Counting. `sync_run` brings the run's stored verdicts into the production figures
(`evalboard.production.counts`: the ledger and the per day x facet sums), each once. It runs
after each judge, every SYNC_EVERY seconds of a long run, and after an interruption, and is
safe to call again at any time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Integer, and_, cast, exists, func, insert, select, update

from evalboard.db import (
    judge_verdicts,
    production_run_traces,
    production_runs,
    production_verdicts,
    projects,
    traces,
    utcnow,
)
from evalboard.judges.code_judge import allowed_functions as configured_functions
from evalboard.judges.core import Judge, get_version, list_judges
from evalboard.judges.labels import JudgeError, get_split
from evalboard.judges.llm_judge import JudgeAnswer
from evalboard.judges.metrics import judge_status
from evalboard.judges.runs import LIVE, RECORDED, record_verdicts, run_judge, stored_verdicts
from evalboard.production.counts import count_verdicts, day_of
from evalboard.store import Store, StoreError

EXECUTIONS = ("direct", "batch")
UNFINISHED = ("planned", "running", "submitted", "cancelled", "incomplete")
BATCH_SIZE = 10_000
"""Requests per provider batch. OpenAI accepts up to 50,000 (and 200 MB) per batch file; a
smaller batch keeps the prompts built in memory at once bounded (about 3 KB each)."""
SYNC_EVERY = 15.0
"""Seconds between counting what a long direct run has stored so far (the dashboard then shows
a running run's verdicts with at most this delay)."""
CHUNK = 2_000
MAX_ERRORS = 100


class ProductionError(StoreError):
    """A production-run request evalboard refuses, with a message meant for the person who made it."""


# ----------------------------------------------------------------------------- judges


@dataclass(frozen=True)
class JudgeChoice:
    """A judge as a candidate for production runs: validated or not (and why not), and, when it
    has one, the version whose test result is frozen with its confusion counts."""

    judge_id: int
    name: str
    mode_id: int
    mode: str
    kind: str
    validated: bool
    reasons: tuple[str, ...] = ()
    version_id: int | None = None
    version: str | None = None
    test_run_id: int | None = None
    confusion: dict[str, int] | None = None


def judge_choice(store: Store, judge: Judge) -> JudgeChoice:
    """One judge as a candidate (see `judges.metrics.judge_status` for what validated means)."""
    status = judge_status(store, judge.id)
    test = status.test
    confusion = version_id = None
    if test is not None and test.metrics is not None:
        c = test.metrics.confusion
        confusion, version_id = {"tp": c.tp, "fn": c.fn, "tn": c.tn, "fp": c.fp}, test.version_id
    split = get_split(store, judge.mode_id)
    return JudgeChoice(judge_id=judge.id, name=judge.name, mode_id=judge.mode_id, mode=judge.mode_name,
                       kind=judge.kind, validated=status.validated, reasons=tuple(status.reasons),
                       version_id=version_id, version=status.tested_version,
                       test_run_id=split.test_run_id if split else None, confusion=confusion)


def judge_choices(store: Store, project_id: int) -> list[JudgeChoice]:
    """Every judge of the project, validated ones first."""
    choices = [judge_choice(store, judge) for judge in list_judges(store, project_id)]
    return sorted(choices, key=lambda c: (not c.validated, c.judge_id))


def resolve_judges(store: Store, project_id: int, wanted: Sequence[str | int]) -> list[JudgeChoice]:
    """The validated judges named in `wanted` (judge name or failure-mode name, any case, or a
    judge id). ProductionError names any that is unknown or not validated, with the reasons."""
    choices = judge_choices(store, project_id)
    if not wanted:
        raise ProductionError("Choose at least one judge.")
    picked: list[JudgeChoice] = []
    for item in wanted:
        key = str(item).strip().lower()
        match = next((c for c in choices if c.name.lower() == key or str(c.judge_id) == key), None)
        match = match or next((c for c in choices if c.mode.lower() == key and c.validated), None)
        match = match or next((c for c in choices if c.mode.lower() == key), None)
        if match is None:
            known = ", ".join(f"'{c.name}'" for c in choices) or "none yet"
            raise ProductionError(f"No judge named '{item}' in this project (judges: {known}).")
        if not match.validated:
            why = " ".join(match.reasons) or "it has no validated test result"
            raise ProductionError(f"Judge '{match.name}' is not validated, so its verdicts cannot be corrected "
                                  f"for its errors: {why}")
        if match not in picked:
            picked.append(match)
    return picked


# ----------------------------------------------------------------------------- samples


@dataclass
class Sample:
    """The traces a run judges and how they were drawn (`definition`, stored on the run)."""

    trace_ids: list[int]
    definition: dict[str, Any]
    window_start: datetime | None = None
    window_end: datetime | None = None
    round_id: int | None = None

    def describe(self) -> str:
        return describe_sample(self.definition, len(self.trace_ids), self.window_start, self.window_end)


def describe_sample(definition: Mapping[str, Any], n: int, start: datetime | None, end: datetime | None) -> str:
    """One line: '1,000 traces, random sample (seed 7) of 5,210 from Langfuse, 2026-11-01 to 2026-11-08'."""
    source = {"langfuse": "from Langfuse", "round": f"from round '{definition.get('round_name', '?')}'",
              "file": f"from file {definition.get('path', '?')}", "traces": "chosen traces",
              "project": "from the project's traces", "demo": "demo production traffic"}.get(
        str(definition.get("source")), f"from {definition.get('source', '?')}")
    how = ""
    if definition.get("method") == "random" and definition.get("of"):
        how = f"random sample (seed {definition.get('seed')}) of {int(definition['of']):,} "
    window = ""
    if start or end:
        window = f", {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC" if start and end else (
            f", from {start:%Y-%m-%d %H:%M} UTC" if start else f", until {end:%Y-%m-%d %H:%M} UTC")
    return f"{n:,} traces, {how}{source}{window}"


def _times(store: Store, ids: Sequence[int]) -> dict[int, datetime | None]:
    found: dict[int, datetime | None] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 900):
            found.update(conn.execute(select(traces.c.id, traces.c.timestamp)
                                      .where(traces.c.id.in_(ids[i:i + 900]))).all())
    return found


def draw_sample(store: Store, project_id: int, *, round_id: int | None = None,
                trace_ids: Sequence[int] | None = None, since: datetime | None = None,
                until: datetime | None = None, n: int | None = None, seed: int | None = None,
                definition: Mapping[str, Any] | None = None) -> Sample:
    """A sample of the project's traces: those of a round, the given ones, or all of them;
    only those started in [since, until) when a window is given; then a uniform random `n` of
    them, drawn with `seed` (drawn and recorded when not given), or all.

    The window recorded on the sample is [since, until) when given, else the first and last
    start times among the chosen traces. `definition` adds to the record (e.g. the Langfuse
    filters a pull used).
    """
    record: dict[str, Any] = dict(definition or {})
    if round_id is not None:
        rnd = store.get_round(round_id)
        if rnd is None or rnd.project_id != project_id:
            raise ProductionError(f"There is no round with id {round_id} in this project.")
        candidates = store.round_trace_ids(round_id)
        record.setdefault("source", "round")
        record.update(round_id=round_id, round_name=rnd.name)
    elif trace_ids is not None:
        candidates = list(dict.fromkeys(int(t) for t in trace_ids))
        record.setdefault("source", "traces")
    else:
        candidates = store.trace_ids(project_id)
        record.setdefault("source", "project")
    if since and until and since >= until:
        raise ProductionError(f"The window starts ({since:%Y-%m-%d %H:%M}) after it ends ({until:%Y-%m-%d %H:%M}).")
    times = _times(store, candidates)
    if trace_ids is not None:
        foreign = [t for t in candidates if t not in times]
        if foreign:
            raise ProductionError(f"Traces {foreign[:10]} do not exist.")
    if since or until:
        candidates = [t for t in candidates if times.get(t) is not None
                      and (since is None or times[t] >= since) and (until is None or times[t] < until)]
    record.update(since=since.isoformat() if since else None, until=until.isoformat() if until else None,
                  of=len(candidates))
    if n is not None and n < 1:
        raise ProductionError(f"A sample needs at least one trace, got n = {n}.")
    if n is not None and n < len(candidates):
        seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
        chosen = random.Random(seed).sample(sorted(candidates), n)
        record.update(method="random", n=n, seed=seed)
    else:
        chosen = list(candidates)
        record.update(method="all", n=len(chosen))
    if not chosen:
        raise ProductionError("No traces match: the sample would be empty (check the window and the source).")
    stamps = [times[t] for t in chosen if times.get(t) is not None]
    start = since or (min(stamps) if stamps else None)
    end = until or (max(stamps) if stamps else None)
    return Sample(sorted(chosen), record, start, end, round_id)


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunJudge:
    """A judge as a run uses it: its version and the frozen test confusion counts."""

    judge_id: int
    judge: str
    mode_id: int
    mode: str
    kind: str
    version_id: int
    version: str
    test_run_id: int | None
    confusion: dict[str, int]

    @property
    def n_fail(self) -> int:
        """Human-failed traces in the test split (tp + fn)."""
        return int(self.confusion["tp"]) + int(self.confusion["fn"])

    @property
    def n_pass(self) -> int:
        """Human-passed traces in the test split (tn + fp)."""
        return int(self.confusion["tn"]) + int(self.confusion["fp"])

    @property
    def tpr(self) -> float | None:
        return self.confusion["tp"] / self.n_fail if self.n_fail else None

    @property
    def tnr(self) -> float | None:
        return self.confusion["tn"] / self.n_pass if self.n_pass else None

    def as_dict(self) -> dict[str, Any]:
        return {"judge_id": self.judge_id, "judge": self.judge, "mode_id": self.mode_id, "mode": self.mode,
                "kind": self.kind, "version_id": self.version_id, "version": self.version,
                "test_run_id": self.test_run_id, "confusion": dict(self.confusion)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunJudge:
        return cls(**{k: data[k] for k in ("judge_id", "judge", "mode_id", "mode", "kind", "version_id", "version",
                                           "test_run_id")}, confusion={k: int(v) for k, v in data["confusion"].items()})


@dataclass
class ProductionRun:
    id: int
    project_id: int
    name: str
    sample: dict[str, Any]
    round_id: int | None
    window_start: datetime | None
    window_end: datetime | None
    judges: list[RunJudge]
    execution: str
    status: str
    trace_count: int
    calls: int
    failed: int
    cost: float | None
    judge_runs: list[dict[str, int]]
    batches: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    origin: str
    created_by: str
    created_at: datetime | None
    finished_at: datetime | None

    def describe_sample(self) -> str:
        return describe_sample(self.sample, self.trace_count, self.window_start, self.window_end)

    @property
    def pending_batches(self) -> list[dict[str, Any]]:
        return [b for b in self.batches if not b.get("ingested")]


def _run(row: Any) -> ProductionRun:
    return ProductionRun(
        id=row.id, project_id=row.project_id, name=row.name, sample=dict(row.sample or {}), round_id=row.round_id,
        window_start=row.window_start, window_end=row.window_end,
        judges=[RunJudge.from_dict(j) for j in row.judges or []], execution=row.execution, status=row.status,
        trace_count=row.trace_count, calls=row.calls, failed=row.failed, cost=row.cost,
        judge_runs=list(row.judge_runs or []), batches=list(row.batches or []), errors=list(row.errors or []),
        origin=row.origin, created_by=row.created_by, created_at=row.created_at, finished_at=row.finished_at)


def default_name(sample: Sample, when: datetime | None = None) -> str:
    source = {"langfuse": "Langfuse", "round": "Round", "file": "File", "demo": "Demo"}.get(
        str(sample.definition.get("source")), "Traces")
    return f"{source} sample of {len(sample.trace_ids):,}, {(when or utcnow()):%Y-%m-%d %H:%M}"


def create_run(store: Store, project_id: int, judges: Sequence[JudgeChoice], sample: Sample, *,
               name: str | None = None, execution: str = "direct", who: str = "", origin: str = LIVE) -> int:
    """Record a run (its sample, judges and versions, window) without judging anything yet."""
    if execution not in EXECUTIONS:
        raise ProductionError(f"A run is 'direct' or 'batch', not {execution!r}.")
    if not judges:
        raise ProductionError("Choose at least one judge.")
    frozen = []
    for choice in judges:
        if not choice.validated or choice.version_id is None or choice.confusion is None:
            raise ProductionError(f"Judge '{choice.name}' is not validated: {' '.join(choice.reasons)}")
        frozen.append(RunJudge(choice.judge_id, choice.name, choice.mode_id, choice.mode, choice.kind,
                               choice.version_id, choice.version or "", choice.test_run_id, dict(choice.confusion)))
    if not sample.trace_ids:
        raise ProductionError("The sample holds no traces.")
    with store.engine.begin() as conn:
        outside = 0
        for i in range(0, len(sample.trace_ids), 900):
            chunk = sample.trace_ids[i:i + 900]
            outside += len(chunk) - conn.execute(select(func.count()).select_from(traces).where(
                traces.c.id.in_(chunk), traces.c.project_id == project_id)).scalar_one()
        if outside:
            raise ProductionError(f"{outside} traces of the sample are not in this project.")
        run_id = conn.execute(insert(production_runs).values(
            project_id=project_id, name=(name or default_name(sample)).strip()[:200], sample=sample.definition,
            round_id=sample.round_id, window_start=sample.window_start, window_end=sample.window_end,
            judges=[j.as_dict() for j in frozen], execution=execution, status="planned",
            trace_count=len(sample.trace_ids), calls=0, failed=0, cost=None, judge_runs=[], batches=[], errors=[],
            origin=origin, created_by=who)).inserted_primary_key[0]
        for i in range(0, len(sample.trace_ids), 5000):
            conn.execute(insert(production_run_traces),
                         [{"run_id": run_id, "trace_id": t} for t in sample.trace_ids[i:i + 5000]])
    return run_id


def get_run(store: Store, run_id: int) -> ProductionRun:
    with store.engine.connect() as conn:
        row = conn.execute(select(production_runs).where(production_runs.c.id == run_id)).first()
    if row is None:
        raise ProductionError(f"There is no production run with id {run_id}.")
    return _run(row)


def latest_run(store: Store, project_id: int, *, unfinished: bool = False) -> ProductionRun | None:
    q = select(production_runs).where(production_runs.c.project_id == project_id)
    if unfinished:
        q = q.where(production_runs.c.status.in_(UNFINISHED))
    with store.engine.connect() as conn:
        row = conn.execute(q.order_by(production_runs.c.id.desc()).limit(1)).first()
    return None if row is None else _run(row)


def list_runs(store: Store, project_id: int) -> pd.DataFrame:
    """The project's production runs, newest first: one row each, for tables."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(production_runs).where(production_runs.c.project_id == project_id)
                            .order_by(production_runs.c.id.desc())).all()
    out = [{"run": r.id, "name": r.name, "status": r.status, "execution": r.execution, "traces": r.trace_count,
            "judges": ", ".join(f"{j['judge']} {j['version']}" for j in r.judges or []),
            "from": r.window_start, "to": r.window_end, "calls": r.calls, "failed": r.failed, "cost": r.cost,
            "origin": r.origin, "by": r.created_by, "started": r.created_at, "finished": r.finished_at}
           for r in rows]
    return pd.DataFrame(out, columns=["run", "name", "status", "execution", "traces", "judges", "from", "to",
                                      "calls", "failed", "cost", "origin", "by", "started", "finished"])


def run_trace_ids(store: Store, run_id: int) -> list[int]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(production_run_traces.c.trace_id)
                                 .where(production_run_traces.c.run_id == run_id)
                                 .order_by(production_run_traces.c.trace_id)).scalars())


def judged_ids(store: Store, run: ProductionRun, judge: RunJudge) -> list[int]:
    """The traces `judge` must judge in this run: the sample without the version's few-shot
    examples (a judge is never asked about the traces it was shown with their answers)."""
    version = get_version(store, judge.version_id)
    examples = {int(e["trace_id"]) for e in version.config.get("examples") or []}
    return [t for t in run_trace_ids(store, run.id) if t not in examples]


def run_counts(store: Store, run_id: int) -> dict[int, tuple[int, int]]:
    """Per version of the run: (flagged, judged) among the run's traces, from the ledger."""
    pv, rt = production_verdicts, production_run_traces
    q = (select(pv.c.version_id, func.count(), func.sum(cast(pv.c.flagged, Integer)))
         .select_from(pv.join(rt, and_(rt.c.trace_id == pv.c.trace_id, rt.c.run_id == run_id)))
         .group_by(pv.c.version_id))
    with store.engine.connect() as conn:
        return {int(v): (int(k or 0), int(m)) for v, m, k in conn.execute(q)}


# ----------------------------------------------------------------------------- counting


def sync_run(store: Store, run_id: int, version_ids: Iterable[int] | None = None) -> int:
    """Count the run's stored verdicts that production figures do not hold yet; returns how
    many were added. Safe to call at any time and as often as wanted."""
    run = get_run(store, run_id)
    wanted = None if version_ids is None else set(version_ids)
    fallback = day_of(run.created_at, utcnow().date().isoformat())
    jv, rt, pv = judge_verdicts, production_run_traces, production_verdicts
    added = 0
    for judge in run.judges:
        if wanted is not None and judge.version_id not in wanted:
            continue
        q = (select(jv.c.trace_id, jv.c.verdict)
             .select_from(jv.join(rt, and_(rt.c.trace_id == jv.c.trace_id, rt.c.run_id == run.id)))
             .where(jv.c.version_id == judge.version_id,
                    ~exists().where(pv.c.version_id == judge.version_id, pv.c.trace_id == jv.c.trace_id))
             .order_by(jv.c.trace_id))
        with store.engine.connect() as conn:
            pending = [(int(t), v) for t, v in conn.execute(q)]
        for i in range(0, len(pending), CHUNK):
            with store.engine.begin() as conn:
                added += count_verdicts(conn, run.project_id, judge.version_id, run.id, pending[i:i + CHUNK], fallback)
    return added


# ----------------------------------------------------------------------------- running


@dataclass
class RunProgress:
    """Where a run is: `done` of `total` traces to judge now (all judges), the judge at work,
    and the phase: judging, counting, submitted, polling, ingesting or done."""

    run_id: int
    phase: str
    done: int = 0
    total: int = 0
    judge: str = ""
    message: str = ""


@dataclass
class RunOutcome:
    """What one call to run, resume or poll a run did. `judged` verdicts are new this time,
    `reused` were stored before; `calls` are LLM requests answered now (batch requests
    included), `cache_hits` answers from the LLM cache."""

    run_id: int
    status: str = "running"
    traces: int = 0
    judged: int = 0
    reused: int = 0
    calls: int = 0
    cache_hits: int = 0
    failed: int = 0
    cancelled: int = 0
    counted: int = 0
    cost: float | None = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"run {self.run_id} {self.status}: {self.judged} verdicts new, {self.reused} reused"]
        if self.calls or self.cache_hits:
            parts.append(f"{self.calls} LLM calls, {self.cache_hits} from the cache")
        if self.cost:
            parts.append(f"${self.cost:.4f}")
        if self.batches:
            parts.append(f"{len(self.batches)} batch(es) waiting at the provider")
        if self.failed:
            parts.append(f"{self.failed} failed (run again to retry them)")
        if self.cancelled:
            parts.append(f"{self.cancelled} not judged (stopped; run again to resume)")
        return "; ".join(parts) + "."


def update_run(store: Store, run_id: int, **values: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(production_runs).where(production_runs.c.id == run_id).values(**values))


def product_of(store: Store, project_id: int) -> str:
    with store.engine.connect() as conn:
        return conn.execute(select(projects.c.description).where(projects.c.id == project_id)).scalar() or ""


def note_error(outcome: RunOutcome, version_id: int, trace_id: int | None, message: str) -> None:
    if len(outcome.errors) < MAX_ERRORS:
        outcome.errors.append({"version_id": version_id, "trace_id": trace_id, "message": str(message)[:500]})


def finish_run(store: Store, run_id: int, outcome: RunOutcome | None = None, *, cancelled: bool = False) -> str:
    """Settle the run's status from what is counted: finished when every judge has a verdict
    for every trace it must judge; otherwise submitted (batches waiting), cancelled or
    incomplete. Adds the outcome's calls, failures, cost and errors to the run."""
    run = get_run(store, run_id)
    counts = run_counts(store, run_id)
    complete = all(counts.get(j.version_id, (0, 0))[1] >= len(judged_ids(store, run, j)) for j in run.judges)
    if complete:
        status = "finished"
    elif run.pending_batches:
        status = "submitted"
    else:
        status = "cancelled" if cancelled else "incomplete"
    values: dict[str, Any] = {"status": status, "finished_at": utcnow() if status in ("finished", "incomplete",
                                                                                     "cancelled") else None}
    if outcome is not None:
        outcome.status = status
        values["calls"] = run.calls + outcome.calls
        values["failed"] = outcome.failed if status != "finished" else 0
        if outcome.cost:
            values["cost"] = (run.cost or 0.0) + outcome.cost
        errors = [] if status == "finished" else [*outcome.errors, *run.errors]  # the newest first
        values["errors"] = errors[:MAX_ERRORS]
    update_run(store, run_id, **values)
    return status


def _record_attempt(store: Store, run_id: int, version_id: int, judge_run_id: int) -> None:
    with store.engine.begin() as conn:
        row = conn.execute(select(production_runs.c.judge_runs).where(production_runs.c.id == run_id)).scalar()
        attempts = [*(row or []), {"version_id": version_id, "run_id": judge_run_id}]
        conn.execute(update(production_runs).where(production_runs.c.id == run_id).values(judge_runs=attempts))


def judge_run_ids(client: Any, store: Store, run_id: int, *, who: str = "") -> dict[int, int]:
    """Per version of a finished run, a judge run (judges.runs) covering its sample, e.g. to push
    its verdicts as scores: the latest direct attempt, else one recorded now from the stored
    verdicts (a batch run has none of its own; every verdict is stored, so this makes no call)."""
    run = get_run(store, run_id)
    if run.status != "finished":
        raise ProductionError(f"Run {run_id} is {run.status}: finish it before using its verdicts elsewhere.")
    out = {}
    for judge in run.judges:
        attempts = [a["run_id"] for a in run.judge_runs if a["version_id"] == judge.version_id]
        if not attempts:
            report = run_judge(client if judge.kind == "llm" else None, store, judge.version_id,
                               trace_ids=judged_ids(store, run, judge), who=who, allowed_functions=configured_functions())
            if report.calls:  # cannot happen for a finished run; say so loudly if it ever does
                raise ProductionError(f"Recording run {run_id}'s verdicts made {report.calls} LLM calls.")
            _record_attempt(store, run_id, judge.version_id, report.run_id)
            attempts = [report.run_id]
        out[judge.version_id] = attempts[-1]
    return out


def run_direct(client: Any, store: Store, run_id: int, *, concurrency: int | None = None,
               on_progress: Callable[[RunProgress], None] | None = None, cancel: threading.Event | None = None,
               who: str = "", product: str | None = None, functions: Sequence[str] | None = None,
               sync_every: float = SYNC_EVERY) -> RunOutcome:
    """Judge the run's sample with each of its judges, concurrently (the client's `map`),
    resuming where an earlier attempt stopped. `client` may be None when every judge is a
    code judge. `on_progress` runs in the calling thread; setting `cancel` stops the run
    (stored verdicts stay; run again to resume). Code judges use the operator's allowed check
    functions (`functions`, default: EVALBOARD_JUDGE_FUNCTIONS)."""
    run = get_run(store, run_id)
    if any(j.kind == "llm" for j in run.judges) and client is None:
        raise ProductionError("No LLM is configured, so the LLM judges of this run cannot run.")
    product = product_of(store, run.project_id) if product is None else product
    allowed = configured_functions() if functions is None else list(functions)
    outcome = RunOutcome(run_id=run_id, traces=run.trace_count)
    plans = []
    for judge in run.judges:
        ids = judged_ids(store, run, judge)
        have = set(stored_verdicts(store, judge.version_id, ids)["trace_id"].astype(int))
        plans.append((judge, ids, len(ids) - len(have)))
    total = sum(todo for _, _, todo in plans)
    update_run(store, run_id, status="running", finished_at=None)
    done_before = 0
    interrupted = False
    spent, unpriced = 0.0, False  # cost of the calls made now; None when some model has no price
    try:
        for judge, ids, todo in plans:
            if cancel is not None and cancel.is_set():
                break
            if todo == 0:  # every verdict is stored already: nothing to ask, only to count
                outcome.reused += len(ids)
                outcome.counted += sync_run(store, run_id, [judge.version_id])
                continue
            last_sync = time.monotonic()

            def step(done: int, _total: int, judge: RunJudge = judge, base: int = done_before) -> None:
                nonlocal last_sync
                if on_progress is not None:
                    on_progress(RunProgress(run_id, "judging", base + done, total, judge.judge))
                if time.monotonic() - last_sync >= sync_every:
                    outcome.counted += sync_run(store, run_id, [judge.version_id])
                    last_sync = time.monotonic()

            try:
                report = run_judge(client if judge.kind == "llm" else None, store, judge.version_id, trace_ids=ids,
                                   who=who, product=product, concurrency=concurrency, on_progress=step,
                                   cancel=cancel, allowed_functions=allowed)
            except JudgeError as exc:  # this judge cannot run (e.g. a check function was revoked)
                note_error(outcome, judge.version_id, None, f"{judge.judge}: {exc}")
                outcome.failed += todo
                done_before += todo
                continue
            finally:
                outcome.counted += sync_run(store, run_id, [judge.version_id])
            _record_attempt(store, run_id, judge.version_id, report.run_id)
            outcome.judged += report.judged
            outcome.reused += report.reused
            outcome.calls += report.calls
            outcome.cache_hits += report.cache_hits
            outcome.failed += report.failed
            outcome.cancelled += report.cancelled
            if report.cost is None:
                unpriced = True
            else:
                spent += report.cost
            for trace_id, message in report.errors.items():
                note_error(outcome, judge.version_id, int(trace_id), message)
            done_before += todo
    except BaseException:
        interrupted = True
        raise
    finally:
        outcome.cost = None if unpriced and not spent else spent
        stopped = interrupted or bool(cancel is not None and cancel.is_set()) or outcome.cancelled > 0
        finish_run(store, run_id, outcome, cancelled=stopped)
        if on_progress is not None and not interrupted:
            on_progress(RunProgress(run_id, "done", done_before, total, message=outcome.status))
    return outcome


# ----------------------------------------------------------------------------- recorded runs


def record_run(store: Store, project_id: int, judges: Sequence[JudgeChoice], sample: Sample,
               answers: Mapping[int, Mapping[int, JudgeAnswer | Mapping[str, Any]]], *, name: str | None = None,
               who: str = "", origin: str = RECORDED, when: datetime | None = None) -> int:
    """A finished run made of answers given here (per version id, per trace id), not fetched
    now: the demo's recorded answers. Marked by `origin`, dated `when`."""
    run_id = create_run(store, project_id, judges, sample, name=name, who=who, origin=origin)
    in_sample = set(sample.trace_ids)
    for judge in get_run(store, run_id).judges:
        given = answers.get(judge.version_id) or {}
        record_verdicts(store, judge.version_id, {t: a for t, a in given.items() if t in in_sample}, origin=origin)
    sync_run(store, run_id)
    finish_run(store, run_id, RunOutcome(run_id=run_id))
    if when is not None:
        update_run(store, run_id, created_at=when, finished_at=when)
    return run_id


def production_judges(store: Store, project_id: int) -> list[RunJudge]:
    """Every judge version the project's production runs used, once each (the newest run's
    record of it), in judge order: what the dashboard shows."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(production_runs.c.judges).where(production_runs.c.project_id == project_id)
                            .order_by(production_runs.c.id.desc())).scalars().all()
    seen: dict[int, RunJudge] = {}
    for judges in rows:
        for data in judges or []:
            judge = RunJudge.from_dict(data)
            seen.setdefault(judge.version_id, judge)
    return sorted(seen.values(), key=lambda j: (j.judge_id, j.version_id))


__all__ = [
    "BATCH_SIZE", "EXECUTIONS", "JudgeChoice", "ProductionError", "ProductionRun", "RunJudge", "RunOutcome",
    "RunProgress", "Sample", "create_run", "describe_sample", "draw_sample", "finish_run", "get_run", "judge_choice",
    "judge_choices", "judge_run_ids", "judged_ids", "latest_run", "list_runs", "note_error", "product_of", "production_judges",
    "record_run", "resolve_judges", "run_counts", "run_direct", "run_trace_ids", "sync_run", "update_run",
]
