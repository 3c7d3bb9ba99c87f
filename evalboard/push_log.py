"""The push log: what was pushed to a vendor, when, and how each object fared; and the remote
objects evalboard made there, linked back to their judge.

Three tables (migration 0006):

- `pushes`: one row per push (where to, what was asked, who, when, the outcome and counts);
- `push_objects`: one row per object of a push (a score config, a prompt, a batch of scores,
  a dataset, ...) with its result (created, updated, unchanged, deleted, failed, skipped), the
  remote id and link, and in words why it failed or was skipped;
- `remote_objects`: per destination, the current state of every object evalboard made there,
  under a key of ours that does not change between pushes (``score:<id>``,
  ``judge:<name>:prompt``), with the remote id, a link, and the hash of what was sent.

`remote_objects` is also the push's checkpoint: an object is recorded the moment the vendor
accepted it, so a push that stopped halfway (an error, a cancel, a killed process) continues
where it stopped when run again, and an object whose content is unchanged is not sent again.
It is what the judge's page shows as "in Langfuse": `judge_links`.

A destination names one vendor project: ``langfuse|<base url>|<public key>`` (Langfuse keys
belong to one project). It is known without asking the server, so a dry run can tell what is
already there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, insert, select, update

from evalboard.db import push_objects, pushes, remote_objects, utcnow
from evalboard.store import Store, StoreError, content_hash

OBJECT_STATUSES = ("created", "updated", "unchanged", "deleted", "failed", "skipped")
PUSH_STATUSES = ("running", "done", "failed", "stopped", "interrupted")
#: Kinds of remote object that come in bulk; `judge_links` leaves them out (counted instead).
BULK_KINDS = frozenset({"score", "annotation_score", "comment", "dataset_item"})
_CHUNK = 500


class PushLogError(StoreError):
    """A request about the push log that cannot be met; the message says why."""


def destination(vendor: str, base_url: str, account: str) -> str:
    """The destination key of a vendor project, e.g. ``langfuse|https://cloud.langfuse.com|pk-lf-1``."""
    return f"{vendor}|{base_url.rstrip('/')}|{account}"


def describe_destination(dest: str) -> str:
    """'Langfuse at https://... (pk-lf-…1234)' for display (the public key shortened)."""
    vendor, _, rest = dest.partition("|")
    url, _, account = rest.partition("|")
    short = f"{account[:6]}…{account[-4:]}" if len(account) > 12 else account
    return f"{vendor.capitalize()} at {url}" + (f" ({short})" if short else "")


def hash_of(value: Any) -> str:
    """The content hash `remote_objects` compares (sha256 of canonical JSON, 32 hex digits)."""
    return content_hash(value)


# ----------------------------------------------------------------------------- pushes


@dataclass
class PushRecord:
    id: int
    project_id: int
    destination: str
    judge_id: int | None
    version_id: int | None
    run_id: int | None
    round_id: int | None
    dataset: str | None
    options: dict[str, Any]
    unvalidated: bool
    status: str
    counts: dict[str, int]
    message: str
    created_by: str
    started_at: datetime | None
    finished_at: datetime | None

    def summary(self) -> str:
        """'done: 3 created, 120 unchanged, 2 failed' (counts that are zero left out)."""
        parts = [f"{self.counts[s]:,} {s}" for s in OBJECT_STATUSES if self.counts.get(s)]
        text = f"{self.status}: " + (", ".join(parts) if parts else "nothing to do")
        return text + (f". {self.message}" if self.message else "")


def _push(row: Any) -> PushRecord:
    return PushRecord(id=row.id, project_id=row.project_id, destination=row.destination, judge_id=row.judge_id,
                      version_id=row.version_id, run_id=row.run_id, round_id=row.round_id, dataset=row.dataset,
                      options=dict(row.options or {}), unvalidated=bool(row.unvalidated), status=row.status,
                      counts=dict(row.counts or {}), message=row.message, created_by=row.created_by,
                      started_at=row.started_at, finished_at=row.finished_at)


def start_push(store: Store, project_id: int, dest: str, *, judge_id: int | None = None,
               version_id: int | None = None, run_id: int | None = None, round_id: int | None = None,
               dataset: str | None = None, options: Mapping[str, Any] | None = None,
               unvalidated: bool = False, who: str = "") -> int:
    """Open a push in the log (status "running"). Earlier pushes to the same destination still
    marked running are marked "interrupted": their process is gone, and this push continues
    their work (the remote objects they recorded are not sent again)."""
    with store.engine.begin() as conn:
        conn.execute(update(pushes).where(pushes.c.project_id == project_id, pushes.c.destination == dest,
                                          pushes.c.status == "running")
                     .values(status="interrupted", finished_at=utcnow(),
                             message="stopped before it finished; a later push continued it"))
        return conn.execute(insert(pushes).values(
            project_id=project_id, destination=dest, judge_id=judge_id, version_id=version_id, run_id=run_id,
            round_id=round_id, dataset=dataset, options=dict(options or {}), unvalidated=unvalidated,
            status="running", counts={}, message="", created_by=who, started_at=utcnow(),
        )).inserted_primary_key[0]


def record_object(store: Store, push_id: int, kind: str, name: str, status: str, *, count: int = 1,
                  remote_id: str | None = None, url: str | None = None, detail: str = "") -> None:
    """One object's result in a push. `count` > 1 when the row stands for a batch."""
    if status not in OBJECT_STATUSES:
        raise PushLogError(f"Unknown push object status {status!r}; use one of {', '.join(OBJECT_STATUSES)}.")
    with store.engine.begin() as conn:
        conn.execute(insert(push_objects).values(
            push_id=push_id, kind=kind, name=name[:500], status=status, count=int(count),
            remote_id=remote_id, url=url, detail=detail or "", at=utcnow()))


def push_counts(store: Store, push_id: int) -> dict[str, int]:
    """Objects per status in a push (a batch row counts as its `count` objects)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(push_objects.c.status, func.sum(push_objects.c.count))
                            .where(push_objects.c.push_id == push_id).group_by(push_objects.c.status)).all()
    return {status: int(n or 0) for status, n in rows}


def finish_push(store: Store, push_id: int, status: str, message: str = "") -> PushRecord:
    """Close a push with its outcome; the counts are summed from its objects."""
    if status not in PUSH_STATUSES:
        raise PushLogError(f"Unknown push status {status!r}; use one of {', '.join(PUSH_STATUSES)}.")
    counts = push_counts(store, push_id)
    with store.engine.begin() as conn:
        conn.execute(update(pushes).where(pushes.c.id == push_id).values(
            status=status, counts=counts, message=message, finished_at=utcnow()))
    return get_push(store, push_id)


def get_push(store: Store, push_id: int) -> PushRecord:
    with store.engine.connect() as conn:
        row = conn.execute(select(pushes).where(pushes.c.id == push_id)).first()
    if row is None:
        raise PushLogError(f"There is no push with id {push_id}.")
    return _push(row)


def list_pushes(store: Store, project_id: int, *, limit: int = 50) -> list[PushRecord]:
    """The project's pushes, newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(pushes).where(pushes.c.project_id == project_id)
                            .order_by(pushes.c.id.desc()).limit(limit)).all()
    return [_push(r) for r in rows]


def pushes_frame(records: Sequence[PushRecord]) -> pd.DataFrame:
    """Pushes as a table for display: push, when, by, where, what, status, result."""
    rows = []
    for p in records:
        what = []
        if p.judge_id is not None or p.options.get("judge"):
            what.append(f"judge {p.options.get('judge', p.judge_id)}"
                        + (f" {p.options['version']}" if p.options.get("version") else ""))
        if p.run_id is not None:
            what.append(f"scores of run {p.run_id}")
        if p.options.get("round") or p.round_id:
            what.append(f"annotations of round {p.options.get('round', p.round_id)}")
        if p.dataset:
            what.append(f"dataset {p.dataset}")
        rows.append({"push": p.id, "started": p.started_at, "by": p.created_by,
                     "where": describe_destination(p.destination), "what": "; ".join(what) or "-",
                     "unvalidated": p.unvalidated, "status": p.status, "result": p.summary()})
    return pd.DataFrame(rows, columns=["push", "started", "by", "where", "what", "unvalidated", "status", "result"])


def push_objects_frame(store: Store, push_id: int) -> pd.DataFrame:
    """The objects of one push in order: kind, object, status, count, remote id, link, detail."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(push_objects.c.kind, push_objects.c.name, push_objects.c.status,
                                   push_objects.c.count, push_objects.c.remote_id, push_objects.c.url,
                                   push_objects.c.detail, push_objects.c.at)
                            .where(push_objects.c.push_id == push_id).order_by(push_objects.c.id)).all()
    return pd.DataFrame(rows, columns=["kind", "object", "status", "count", "remote_id", "link", "detail", "at"])


# ----------------------------------------------------------------------------- remote objects


@dataclass
class RemoteObject:
    """An object evalboard made at a destination, as last pushed."""

    key: str
    kind: str
    remote_id: str | None
    url: str | None
    content_hash: str
    judge_id: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None


def _remote(row: Any) -> RemoteObject:
    return RemoteObject(key=row.key, kind=row.kind, remote_id=row.remote_id, url=row.url,
                        content_hash=row.content_hash, judge_id=row.judge_id, info=dict(row.info or {}),
                        updated_at=row.updated_at)


def remote_state(store: Store, project_id: int, dest: str, keys: Iterable[str] | None = None, *,
                 kind: str | None = None) -> dict[str, RemoteObject]:
    """key -> what was last pushed there, for the given keys (or all, or one kind)."""
    base = select(remote_objects).where(remote_objects.c.project_id == project_id,
                                        remote_objects.c.destination == dest)
    if kind is not None:
        base = base.where(remote_objects.c.kind == kind)
    with store.engine.connect() as conn:
        if keys is None:
            rows = conn.execute(base).all()
        else:
            wanted = list(dict.fromkeys(keys))
            rows = [r for i in range(0, len(wanted), _CHUNK)
                    for r in conn.execute(base.where(remote_objects.c.key.in_(wanted[i:i + _CHUNK])))]
    return {r.key: _remote(r) for r in rows}


def save_remote(store: Store, project_id: int, dest: str, items: Sequence[Mapping[str, Any]], *,
                push_id: int | None = None) -> None:
    """Record objects the vendor accepted (insert or replace by key), in one transaction.

    Each item: key, kind, content_hash, and optionally remote_id, url, judge_id, info.
    """
    if not items:
        return
    now = utcnow()
    rows = [{"project_id": project_id, "destination": dest, "key": it["key"], "kind": it["kind"],
             "judge_id": it.get("judge_id"), "remote_id": it.get("remote_id"), "url": it.get("url"),
             "content_hash": it["content_hash"], "info": dict(it.get("info") or {}), "push_id": push_id,
             "updated_at": now} for it in items]
    with store.engine.begin() as conn:
        if conn.dialect.name in ("sqlite", "postgresql"):
            if conn.dialect.name == "sqlite":
                from sqlalchemy.dialects.sqlite import insert as dialect_insert
            else:
                from sqlalchemy.dialects.postgresql import insert as dialect_insert
            for i in range(0, len(rows), _CHUNK):
                stmt = dialect_insert(remote_objects)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["project_id", "destination", "key"],
                    set_={c: stmt.excluded[c] for c in ("kind", "judge_id", "remote_id", "url", "content_hash",
                                                          "info", "push_id", "updated_at")})
                conn.execute(stmt, rows[i:i + _CHUNK])
            return
        for row in rows:  # other databases: replace one by one (slower, same result)
            conn.execute(delete(remote_objects).where(remote_objects.c.project_id == project_id,
                                                      remote_objects.c.destination == dest,
                                                      remote_objects.c.key == row["key"]))
            conn.execute(insert(remote_objects).values(**row))


def forget_remote(store: Store, project_id: int, dest: str, keys: Iterable[str]) -> int:
    """Drop records of objects that no longer exist at the destination (deleted there)."""
    wanted = list(dict.fromkeys(keys))
    gone = 0
    with store.engine.begin() as conn:
        for i in range(0, len(wanted), _CHUNK):
            gone += conn.execute(delete(remote_objects).where(
                remote_objects.c.project_id == project_id, remote_objects.c.destination == dest,
                remote_objects.c.key.in_(wanted[i:i + _CHUNK]))).rowcount
    return gone


def judge_links(store: Store, judge_id: int) -> pd.DataFrame:
    """What a judge has in vendors: one row per object evalboard made for it (score config,
    prompt, evaluator, evaluation rule), and one row per destination counting its scores.

    Columns: where, kind, remote_id, link, version, pushed (time), count.
    """
    q = (select(remote_objects).where(remote_objects.c.judge_id == judge_id)
         .order_by(remote_objects.c.destination, remote_objects.c.kind, remote_objects.c.key))
    with store.engine.connect() as conn:
        rows = conn.execute(q.where(remote_objects.c.kind.not_in(sorted(BULK_KINDS)))).all()
        bulk = conn.execute(select(remote_objects.c.destination, remote_objects.c.kind, func.count(),
                                   func.max(remote_objects.c.updated_at))
                            .where(remote_objects.c.judge_id == judge_id,
                                   remote_objects.c.kind.in_(sorted(BULK_KINDS)))
                            .group_by(remote_objects.c.destination, remote_objects.c.kind)).all()
    out = [{"where": describe_destination(r.destination), "kind": r.kind, "remote_id": r.remote_id, "link": r.url,
            "version": (r.info or {}).get("version"), "pushed": r.updated_at, "count": 1} for r in rows]
    out += [{"where": describe_destination(dest), "kind": kind, "remote_id": None, "link": None, "version": None,
             "pushed": at, "count": int(n)} for dest, kind, n, at in bulk]
    return pd.DataFrame(out, columns=["where", "kind", "remote_id", "link", "version", "pushed", "count"])
