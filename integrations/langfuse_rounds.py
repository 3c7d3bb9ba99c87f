"""Pull Langfuse traces into a round of the store: the one loop the Pull page and the CLI share.

`pull_into_round` drives `integrations.langfuse.pull_traces` with the store as checkpoint
(key `round:<id>:langfuse`), writes every batch into the project and the round before asking
for the next one (so a batch is marked done only once it is stored), records how the sample
was drawn on the round, and keeps a small job record beside the checkpoint
(`round:<id>:langfuse:job`: what was asked, how far it got, how it ended).

That job record is what makes "continue the interrupted pull" possible: the request is saved
with its exact filters (absolute times, even when the person chose "last 7 days"), so running
it again gives `pull_traces` the same parameters, which then continues from its checkpoint
instead of drawing a new sample. Nothing is imported twice either way: the store skips traces
the project already has (same source and Langfuse trace id).

No Streamlit here; the page runs `pull_into_round` in a background thread, the CLI in the
foreground.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from evalboard.models import Round
from evalboard.store import Store, StoreError
from integrations.langfuse import (
    LangfusePullError,
    LangfuseSettings,
    PullFilters,
    PullProgress,
    Sampling,
    StoreCheckpoint,
    pull_traces,
)

#: `sampling["method"]` of a round made for a pull whose sample is not chosen yet.
PENDING_METHOD = "langfuse pull"
#: HTTP statuses that mean the settings are wrong rather than the server being in trouble.
CONFIG_STATUSES = frozenset({401, 403, 404})


def round_pull_key(round_id: int) -> str:
    """The checkpoint key of pulls into this round (the job record adds ':job')."""
    return f"round:{round_id}:langfuse"


def _job_key(round_id: int) -> str:
    return round_pull_key(round_id) + ":job"


# ============================================================================ requests as JSON
def request_to_json(filters: PullFilters, sampling: Sampling) -> dict[str, Any]:
    """What was asked, JSON-able: filters as `PullFilters.describe()` plus the sampling asked for
    (the seed as given: None when the pull drew one, which the round's sampling record shows)."""
    return {"filters": filters.describe(), "sampling": {"method": sampling.method, "n": sampling.n, "seed": sampling.seed}}


def request_from_json(data: dict[str, Any]) -> tuple[PullFilters, Sampling]:
    """The inverse of `request_to_json`."""
    raw = dict(data.get("filters") or {})
    for name in ("since", "until"):
        if raw.get(name):
            raw[name] = datetime.fromisoformat(raw[name])
    for name in ("environment", "tags"):
        if name in raw:
            raw[name] = tuple(raw[name])
    how = data.get("sampling") or {}
    return PullFilters(**raw), Sampling(how.get("method", "latest"), how.get("n"), how.get("seed"))


# ============================================================================ rounds
def prepare_round(store: Store, project_id: int, name: str) -> tuple[Round, bool]:
    """The project's round called `name`, made (empty, sample still to choose) when missing.
    Returns (round, created)."""
    name = name.strip()
    if not name:
        raise StoreError("A round needs a name.")
    for rnd in store.list_rounds(project_id):
        if rnd.name == name:
            return rnd, False
    return store.create_round(project_id, name, sampling={"source": "langfuse", "method": PENDING_METHOD}), True


def round_sampling(current: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The round's `sampling` once a pull has drawn its sample (`record` = PullProgress.sampling).

    Every pull into the round is listed under "langfuse" (once: a resumed pull brings the same
    record again). A round made for the pull also gets the summary fields the Rounds page reads:
    method (all / latest / random), n drawn, of = how many matched, seed, filter.
    """
    pulls = [p for p in current.get("langfuse", []) if p != record] + [record]
    merged = {**current, "langfuse": pulls}
    if current.get("method") == PENDING_METHOD:
        merged.update(
            source="langfuse",
            method="all" if record.get("n") is None else record.get("method"),
            n=record.get("drawn"),
            of=record.get("matched"),
            seed=record.get("seed"),
            filter=record.get("filters") or {},
        )
    return merged


# ============================================================================ the pull
@dataclass
class RoundPull:
    """A pull into a round as it goes, and how it ended (the same object throughout).

    status: running, done, cancelled, failed. `done` counts the traces delivered so far,
    earlier runs of an interrupted pull included; `added` / `duplicates` are this run's store
    writes (a duplicate is a trace the project already had: it still joins the round).
    `done_before` is what earlier runs had delivered (equal to `planned` when the pull had
    already finished: nothing left to do). `waiting` is the current retry wait, in words.
    `http_status` is the status of the answer that stopped a failed pull, when there was one.
    """

    round_id: int
    round_name: str
    status: str = "running"
    phase: str = "starting"
    matched: int = 0
    planned: int = 0
    done: int = 0
    done_before: int = 0
    added: int = 0
    duplicates: int = 0
    requests: int = 0
    resumed: bool = False
    message: str = ""
    waiting: str | None = None
    http_status: int | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Share of the planned traces delivered, 0..1 (0 before the plan is known)."""
        return min(1.0, self.done / self.planned) if self.planned else (1.0 if self.phase == "done" else 0.0)

    @property
    def already_complete(self) -> bool:
        """The same pull had finished before: this run had nothing to do."""
        return self.resumed and self.planned == self.done_before

    @property
    def config_error(self) -> bool:
        """The pull failed because of the settings (rejected keys, wrong URL), not the server."""
        return self.status == "failed" and self.http_status in CONFIG_STATUSES

    def summary(self) -> str:
        """One plain line about the outcome."""
        if self.status == "failed":
            return f"The pull into round '{self.round_name}' failed: {self.message}"
        if self.status == "cancelled":
            return (f"Pull into round '{self.round_name}' stopped after {self.done} of {self.planned} traces; "
                    "run it again to continue where it stopped.")
        if self.already_complete:
            return (f"Nothing to do: this pull into round '{self.round_name}' had already finished "
                    f"({self.planned} traces).")
        if not self.planned:
            return f"No traces in Langfuse match these filters; round '{self.round_name}' is unchanged."
        how = f"{self.planned} of {self.matched} matching traces"
        return (f"Pulled {how} into round '{self.round_name}': {self.added} new, "
                f"{self.duplicates} already in the project.")


@dataclass(frozen=True)
class PendingPull:
    """A pull into a round that did not finish (cancelled, failed, or its process was killed)."""

    round_id: int
    filters: PullFilters
    sampling: Sampling
    status: str
    done: int
    planned: int
    message: str
    base_url: str | None

    def describe(self) -> str:
        where = f"{self.done} of {self.planned} traces" if self.planned else "before choosing its sample"
        why = {"cancelled": "was cancelled", "failed": "failed"}.get(self.status, "was interrupted")
        return f"A pull into this round {why} after {where}" + (f" ({self.message})" if self.message else "") + "."


def _round_identity(rnd: Round) -> str:
    """Tells a round from a later one given the same id (SQLite reuses the id of a deleted last row)."""
    return f"{rnd.name}|{rnd.created_at.isoformat() if rnd.created_at else ''}"


def _forget_stale(store: Store, rnd: Round) -> None:
    """Drop pull records left by a deleted round that had this round's id: its checkpoint would
    otherwise make the new round's pull believe it had already run."""
    job = store.get_state(_job_key(rnd.id))  # type: ignore[arg-type]
    left_over = job is not None or store.get_state(round_pull_key(rnd.id)) is not None  # type: ignore[arg-type]
    if left_over and (job or {}).get("round") != _round_identity(rnd):
        discard_pending(store, rnd.id)  # type: ignore[arg-type]


def pending_pull(store: Store, round_id: int) -> PendingPull | None:
    """The round's unfinished pull, or None. A job still marked running counts as interrupted:
    callers that run pulls in this process know which ones are really alive."""
    rnd = store.get_round(round_id)
    if rnd is None:
        return None
    _forget_stale(store, rnd)
    job = store.get_state(_job_key(round_id))
    if not job or job.get("status") == "done":
        return None
    try:
        filters, sampling = request_from_json(job.get("request") or {})
    except (TypeError, ValueError):
        return None  # a record we cannot read again cannot be continued
    return PendingPull(round_id, filters, sampling, job.get("status", "running"), int(job.get("done") or 0),
                       int(job.get("planned") or 0), str(job.get("message") or ""), job.get("base_url"))


def discard_pending(store: Store, round_id: int) -> None:
    """Forget the round's pull record and checkpoint: the next pull draws its sample anew.
    Traces already pulled stay in the round."""
    key = round_pull_key(round_id)
    for k in (key, key + ":plan", key + ":job"):
        store.clear_state(k)


def pull_into_round(
    store: Store,
    settings: LangfuseSettings,
    project_id: int,
    round_id: int,
    filters: PullFilters | None = None,
    sampling: Sampling | None = None,
    *,
    cancel: threading.Event | None = None,
    on_progress: Callable[[RoundPull], None] | None = None,
    **pull_kwargs: Any,
) -> RoundPull:
    """Pull the traces `filters` and `sampling` choose into the project and the round.

    Run with the same filters and sampling as an interrupted pull into this round (see
    `pending_pull`), it continues that pull; run again after it finished, it adds nothing.
    `on_progress(pull)` is called after each step (and after each batch is stored) with the
    same, updated `RoundPull`. Returns it with status done, cancelled or failed: a Langfuse
    failure (keys rejected, server down after retries) is reported in `message`, not raised.
    Other errors (e.g. the database) are raised, after the job record says the pull failed.
    `pull_kwargs` go to `pull_traces` (batch_size, concurrency, retry, pause_gc, now...).
    """
    filters = filters or PullFilters()
    sampling = sampling or Sampling()
    rnd = store.get_round(round_id)
    if rnd is None or rnd.project_id != project_id:
        raise StoreError(f"No round with id {round_id} in project {project_id}.")
    _forget_stale(store, rnd)
    result = RoundPull(round_id=round_id, round_name=rnd.name)
    job = {"status": "running", "round": _round_identity(rnd), "request": request_to_json(filters, sampling),
           "base_url": settings.base_url,
           "planned": 0, "done": 0, "message": "", "started_at": datetime.now(timezone.utc).isoformat()}

    def save_job() -> None:
        job.update(planned=result.planned, done=result.done, message=result.message if result.status != "done" else "")
        store.set_state(_job_key(round_id), job)

    def report() -> None:
        if on_progress is not None:
            on_progress(result)

    progress_iter = pull_traces(settings, filters, sampling, checkpoint=StoreCheckpoint(store),
                                key=round_pull_key(round_id), cancel=cancel, **pull_kwargs)
    save_job()
    report()
    try:
        for progress in progress_iter:
            _apply(result, progress)
            if progress.phase == "planned":
                result.done_before = progress.done
                current = store.get_round(round_id)
                store.update_round_sampling(round_id, round_sampling(current.sampling if current else {}, progress.sampling))
                save_job()
            elif progress.records:
                added = store.add_traces(project_id, progress.records, round_id=round_id)
                result.added += added.added
                result.duplicates += added.duplicates
                save_job()
            report()
    except LangfusePullError as exc:
        result.status, result.phase, result.waiting = "failed", "failed", None
        result.message, result.http_status = str(exc), exc.status
    except BaseException as exc:  # the database, or Ctrl-C: say so in the record, then let it rise
        result.status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        result.message = "stopped by the user" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        job["status"] = result.status
        save_job()
        raise
    finally:
        progress_iter.close()  # stops the pull's worker threads whichever way we leave
    if result.status == "running":  # the generator ended with 'done' or 'cancelled'
        result.status = "cancelled" if result.phase == "cancelled" else "done"
    job["status"] = result.status
    save_job()
    report()
    return result


def _apply(result: RoundPull, progress: PullProgress) -> None:
    """Copy one progress step's counts into the running result."""
    result.phase = progress.phase
    result.requests = max(result.requests, progress.requests)
    if progress.phase == "waiting":
        result.waiting = progress.message
        return
    result.waiting = None
    if progress.phase in ("planned", "batch", "done"):
        result.matched, result.planned, result.done = progress.matched, progress.planned, progress.done
        result.resumed = progress.resumed
        if progress.sampling:
            result.sampling = progress.sampling
    result.message = progress.message


__all__ = [
    "CONFIG_STATUSES", "PENDING_METHOD", "PendingPull", "RoundPull", "discard_pending", "pending_pull",
    "prepare_round", "pull_into_round", "request_from_json", "request_to_json", "round_pull_key", "round_sampling",
]
