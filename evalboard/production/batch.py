"""Production runs through the provider's Batch API: cheaper, slower (up to 24 h).

`submit_batches` sends the prompts a run still needs (the same prompts a direct run sends, so
answers land in the same LLM cache) and records each batch id the moment the provider gives
it; `poll_batches` asks about the waiting batches once and ingests those that are done (their
answers become verdicts, then are counted); `run_batch` does both, polling until done. A
batch is never submitted twice for the same traces, and an ingested answer is stored once, so
any of these can be interrupted and called again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, update

from evalboard.db import production_runs, utcnow
from evalboard.judges.code_judge import allowed_functions as configured_functions
from evalboard.judges.core import get_version
from evalboard.judges.labels import get_mode
from evalboard.judges.llm_judge import JUDGE_FEATURE, JudgeAnswer, LLMJudgeConfig, judge_messages, system_prompt
from evalboard.judges.runs import LIVE, load_traces, record_verdicts, run_judge, stored_verdicts
from evalboard.production.runs import (
    BATCH_SIZE,
    ProductionError,
    RunOutcome,
    RunProgress,
    note_error,
    product_of,
    update_run,
    finish_run,
    get_run,
    judged_ids,
    sync_run,
)
from evalboard.store import Store


def _batch_list(store: Store, run_id: int) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(production_runs.c.batches).where(production_runs.c.id == run_id)).scalar() or [])


def _save_batch(store: Store, run_id: int, entry: Mapping[str, Any]) -> None:
    """Add or replace one batch record (by its id), in one transaction. A record:
    {id, version_id, requests, trace_ids, submitted_at, status, ingested, ...}."""
    with store.engine.begin() as conn:
        current = list(conn.execute(select(production_runs.c.batches)
                                    .where(production_runs.c.id == run_id)).scalar() or [])
        items = [b for b in current if b["id"] != entry["id"]] + [dict(entry)]
        conn.execute(update(production_runs).where(production_runs.c.id == run_id)
                     .values(batches=sorted(items, key=lambda b: b["submitted_at"])))


def submit_batches(client: Any, store: Store, run_id: int, *, batch_size: int = BATCH_SIZE, who: str = "",
                   product: str | None = None, functions: Sequence[str] | None = None) -> RunOutcome:
    """Send what the run still needs to the provider's Batch API: one or more batches per LLM
    judge, for the traces with no stored verdict and not already in a waiting batch. Code
    judges need no LLM and run at once. Each batch id is recorded the moment it is created,
    so a crash later never makes the same requests twice; poll with `poll_batches`."""
    run = get_run(store, run_id)
    if run.execution != "batch":
        raise ProductionError(f"Run {run_id} is a direct run; resume it with run_direct.")
    if batch_size < 1:
        raise ProductionError(f"A batch holds at least one request, got batch_size = {batch_size}.")
    product = product_of(store, run.project_id) if product is None else product
    outcome = RunOutcome(run_id=run_id, traces=run.trace_count)
    code = [j for j in run.judges if j.kind == "code"]
    if code:
        allowed = configured_functions() if functions is None else list(functions)
        for judge in code:
            report = run_judge(None, store, judge.version_id, trace_ids=judged_ids(store, run, judge), who=who,
                               allowed_functions=allowed)
            outcome.judged += report.judged
            outcome.reused += report.reused
            outcome.failed += report.failed
            sync_run(store, run_id, [judge.version_id])
    if any(j.kind == "llm" for j in run.judges) and client is None:
        raise ProductionError("No LLM is configured, so the LLM judges of this run cannot be batched.")
    waiting = {(b["version_id"], int(t)) for b in run.pending_batches for t in b.get("trace_ids", [])}
    for judge in run.judges:
        if judge.kind != "llm":
            continue
        ids = judged_ids(store, run, judge)
        have = set(stored_verdicts(store, judge.version_id, ids)["trace_id"].astype(int))
        outcome.reused += len(have)
        todo = [t for t in ids if t not in have and (judge.version_id, t) not in waiting]
        if not todo:
            continue
        version = get_version(store, judge.version_id)
        config = LLMJudgeConfig.model_validate(version.config)
        mode = get_mode(store, judge.mode_id)
        examples = load_traces(store, [e.trace_id for e in config.examples])
        system = system_prompt(config, mode, product)
        params = {"schema": JudgeAnswer, "temperature": config.temperature, **config.params()}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            found = load_traces(store, chunk)
            items = [(f"{judge.version_id}:{t}", judge_messages(config, mode, found[t], examples=examples,
                                                                system=system), params)
                     for t in chunk if t in found]
            for t in chunk:
                if t not in found:
                    note_error(outcome, judge.version_id, t, "trace no longer exists")
            if not items:
                continue
            batch_id = client.submit_batch(items, feature=JUDGE_FEATURE, model=config.model,
                                           metadata={"evalboard_run": str(run_id), "judge_version": str(judge.version_id)})
            _save_batch(store, run_id, {
                "id": batch_id, "version_id": judge.version_id, "requests": len(items), "trace_ids": [int(i[0].split(":")[1]) for i in items],
                "submitted_at": utcnow().isoformat(), "status": "submitted", "ingested": False})
            outcome.batches.append(batch_id)
    update_run(store, run_id, status="submitted" if _any_pending(store, run_id) else "running")
    if not _any_pending(store, run_id):
        finish_run(store, run_id, outcome)
    else:
        outcome.status = "submitted"
    return outcome


def _any_pending(store: Store, run_id: int) -> bool:
    return any(not b.get("ingested") for b in _batch_list(store, run_id))


def answer_from_text(text: str) -> JudgeAnswer:
    """A JudgeAnswer from a model's text: the JSON object itself, or the first {...} in it."""
    try:
        return JudgeAnswer.model_validate_json(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise ValueError(f"no JSON object in the answer {text[:120]!r}") from None
        return JudgeAnswer.model_validate_json(text[start:end + 1])


def poll_batches(client: Any, store: Store, run_id: int,
                 on_progress: Callable[[RunProgress], None] | None = None) -> RunOutcome:
    """Ask the provider about every waiting batch of the run once; ingest each that is done
    (its answers become verdicts and are counted). Requests that failed are left without a
    verdict: submit again (or resume directly) to retry them."""
    run = get_run(store, run_id)
    outcome = RunOutcome(run_id=run_id, traces=run.trace_count)
    for entry in run.pending_batches:
        version_id = int(entry["version_id"])
        status = client.poll_batch(entry["id"])
        entry = {**entry, "status": status.status, "completed": status.completed, "failed": status.failed,
                 "total": status.total}
        if on_progress is not None:
            on_progress(RunProgress(run_id, "polling", status.completed + status.failed, status.total,
                                    message=f"batch {entry['id']}: {status.status}"))
        if not status.done:
            _save_batch(store, run_id, entry)
            outcome.batches.append(entry["id"])
            continue
        results = client.fetch_batch_results(entry["id"])
        answers: dict[int, JudgeAnswer] = {}
        failures = 0
        for custom_id, result in results.items():
            trace_id = int(str(custom_id).split(":")[-1])
            text = getattr(result, "text", None)
            if isinstance(result, BaseException) or text is None:
                failures += 1
                note_error(outcome, version_id, trace_id, str(result))
                continue
            outcome.calls += 1
            if getattr(result, "cost", None) is not None:
                outcome.cost = (outcome.cost or 0.0) + result.cost
            try:
                answers[trace_id] = answer_from_text(text)
            except ValueError as exc:  # an answer that is not a verdict is an error, never a default
                failures += 1
                note_error(outcome, version_id, trace_id, f"unreadable answer: {exc}")
        record_verdicts(store, version_id, answers, origin=LIVE)
        outcome.judged += len(answers)
        outcome.failed += failures
        if on_progress is not None:
            on_progress(RunProgress(run_id, "ingesting", len(answers), len(results), message=entry["id"]))
        outcome.counted += sync_run(store, run_id, [version_id])
        _save_batch(store, run_id, {**entry, "ingested": True, "verdicts": len(answers), "failures": failures,
                                    "ingested_at": utcnow().isoformat()})
    finish_run(store, run_id, outcome)
    return outcome


def run_batch(client: Any, store: Store, run_id: int, *, poll_every: float = 30.0, wait: bool = True,
              on_progress: Callable[[RunProgress], None] | None = None, cancel: threading.Event | None = None,
              sleep: Callable[[float], Any] | None = None, **submit_options: Any) -> RunOutcome:
    """Submit what the run needs (unless batches are already waiting), then, with `wait`, poll
    every `poll_every` seconds until every batch is ingested or `cancel` is set (the batches go
    on at the provider: poll again later)."""
    run = get_run(store, run_id)
    outcome = RunOutcome(run_id=run_id, traces=run.trace_count)
    if not run.pending_batches:
        outcome = submit_batches(client, store, run_id, **submit_options)
        if on_progress is not None:
            on_progress(RunProgress(run_id, "submitted", 0, len(outcome.batches),
                                    message=f"{len(outcome.batches)} batch(es) submitted"))
    pause = sleep or (cancel.wait if cancel is not None else time.sleep)
    while wait and _any_pending(store, run_id):
        if cancel is not None and cancel.is_set():
            break
        polled = poll_batches(client, store, run_id, on_progress)
        outcome.judged += polled.judged
        outcome.calls += polled.calls
        outcome.failed += polled.failed
        outcome.cost = (outcome.cost or 0.0) + (polled.cost or 0.0)
        outcome.errors += polled.errors
        outcome.batches = polled.batches
        if polled.batches:
            pause(poll_every)
    outcome.status = get_run(store, run_id).status
    if not _any_pending(store, run_id):
        outcome.batches = []
    return outcome


__all__ = ["answer_from_text", "poll_batches", "run_batch", "submit_batches"]
