"""The production verdict ledger and the counts the dashboard reads.

A stored verdict enters production figures once: `count_verdicts` adds it to
`production_verdicts` (the ledger: one row per judge version and trace, with the trace's UTC
day and whether the judge flagged it) and, in the same transaction, to `production_counts`, the
sums per version x day x facet value. Facets are "all" (value ""), "environment", "release",
"tag" and "dimension:<name>"; a missing environment, release or tag list counts as "(none)".
The ledger's unique (version, trace) key, read back with RETURNING, decides what is new, so a
verdict is never counted twice, even by two processes counting the same run at once.

`rebuild_counts` recomputes the sums from the ledger, a chunk at a time (after traces were
deleted, which removes their ledger rows but not their sums).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from evalboard.db import production_counts, production_verdicts, traces, utcnow
from evalboard.store import Store, StoreError

FACET_ALL = "all"
NONE_VALUE = "(none)"


def day_of(when: datetime | None, fallback: str) -> str:
    """The UTC day of a start time, 'YYYY-MM-DD' (`fallback` for traces without one)."""
    if when is None:
        return fallback
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.date().isoformat()


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else json.dumps(value, default=str))
    return text.strip()[:300] or NONE_VALUE


def facet_pairs(environment: str | None, release: str | None, tags: Iterable[Any] | None,
                dimensions: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The (facet, value) cells one trace counts in: ("all", ""), its environment and release
    ("(none)" when missing), each tag ("(none)" when it has none), and each dimension value."""
    pairs = [(FACET_ALL, ""), ("environment", _value(environment)), ("release", _value(release))]
    tag_values = list(dict.fromkeys(_value(t) for t in tags or []))
    pairs += [("tag", t) for t in tag_values or [NONE_VALUE]]
    pairs += [(f"dimension:{name}"[:120], _value(value)) for name, value in (dimensions or {}).items()]
    return pairs


def count_increments(rows: Iterable[tuple[str, bool, Sequence[tuple[str, str]]]]) -> dict[tuple[str, str, str], list[int]]:
    """Sum verdicts given as (day, flagged, facet pairs) into {(day, facet, value): [judged, flagged]}."""
    sums: dict[tuple[str, str, str], list[int]] = {}
    for day, flagged, pairs in rows:
        for facet, value in pairs:
            cell = sums.setdefault((day, facet, value), [0, 0])
            cell[0] += 1
            cell[1] += bool(flagged)
    return sums


def _dialect_insert(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        raise StoreError(f"Production counts need SQLite or PostgreSQL, not {conn.dialect.name}.")
    return dialect_insert(table)


def apply_counts(conn: Connection, project_id: int, version_id: int,
                 increments: Mapping[tuple[str, str, str], Sequence[int]]) -> None:
    """Add increments to production_counts (insert, or add to the cell already there)."""
    if not increments:
        return
    rows = [{"version_id": version_id, "day": day, "facet": facet, "value": value, "project_id": project_id,
             "judged": int(n[0]), "flagged": int(n[1])} for (day, facet, value), n in increments.items()]
    stmt = _dialect_insert(conn, production_counts)
    stmt = stmt.on_conflict_do_update(
        index_elements=["version_id", "day", "facet", "value"],
        set_={"judged": production_counts.c.judged + stmt.excluded.judged,
              "flagged": production_counts.c.flagged + stmt.excluded.flagged})
    conn.execute(stmt, rows)


@dataclass(frozen=True)
class _Facets:
    day: str
    pairs: list[tuple[str, str]]


def _trace_facets(conn: Connection, ids: Sequence[int], fallback_day: str) -> dict[int, _Facets]:
    q = select(traces.c.id, traces.c.timestamp, traces.c.environment, traces.c.release, traces.c.tags,
               traces.c.dimensions).where(traces.c.id.in_(list(ids)))
    return {r.id: _Facets(day_of(r.timestamp, fallback_day), facet_pairs(r.environment, r.release, r.tags, r.dimensions))
            for r in conn.execute(q)}


def count_verdicts(conn: Connection, project_id: int, version_id: int, run_id: int | None,
                   verdicts: Sequence[tuple[int, str]], fallback_day: str) -> int:
    """Add verdicts [(trace_id, "pass" | "fail")] to the ledger and the counts; returns how many
    were new (a verdict the ledger holds already is skipped, so nothing is counted twice)."""
    facets = _trace_facets(conn, [t for t, _ in verdicts], fallback_day)
    now = utcnow()
    rows = [{"project_id": project_id, "version_id": version_id, "trace_id": t, "run_id": run_id,
             "day": facets[t].day, "flagged": verdict == "fail", "created_at": now}
            for t, verdict in verdicts if t in facets]
    if not rows:
        return 0
    stmt = (_dialect_insert(conn, production_verdicts)
            .on_conflict_do_nothing(index_elements=["version_id", "trace_id"])
            .returning(production_verdicts.c.trace_id))
    new = set(conn.execute(stmt, rows).scalars())
    flagged = {t for t, verdict in verdicts if verdict == "fail"}
    apply_counts(conn, project_id, version_id,
                 count_increments((facets[t].day, t in flagged, facets[t].pairs) for t in new))
    return len(new)


def rebuild_counts(store: Store, project_id: int) -> int:
    """Recompute production_counts of a project from the ledger (e.g. after traces were
    deleted, which removes their ledger rows but not their sums). Returns the rows written."""
    pv = production_verdicts
    written = 0
    with store.engine.begin() as conn:
        conn.execute(delete(production_counts).where(production_counts.c.project_id == project_id))
        versions = list(conn.execute(select(pv.c.version_id).where(pv.c.project_id == project_id).distinct()).scalars())
        for version_id in versions:
            sums: dict[tuple[str, str, str], list[int]] = {}
            last = 0
            while True:  # the ledger in id order, a chunk at a time (never the whole table in memory)
                q = (select(pv.c.id, pv.c.day, pv.c.flagged, traces.c.environment, traces.c.release, traces.c.tags,
                            traces.c.dimensions)
                     .select_from(pv.join(traces, traces.c.id == pv.c.trace_id))
                     .where(pv.c.version_id == version_id, pv.c.id > last).order_by(pv.c.id).limit(20_000))
                rows = conn.execute(q).all()
                if not rows:
                    break
                last = rows[-1].id
                for key, (judged, flagged) in count_increments(
                        (r.day, r.flagged, facet_pairs(r.environment, r.release, r.tags, r.dimensions))
                        for r in rows).items():
                    cell = sums.setdefault(key, [0, 0])
                    cell[0] += judged
                    cell[1] += flagged
            apply_counts(conn, project_id, version_id, sums)
            written += len(sums)
    return written


__all__ = ["FACET_ALL", "NONE_VALUE", "apply_counts", "count_increments", "count_verdicts", "day_of", "facet_pairs",
           "rebuild_counts"]
