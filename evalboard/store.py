"""The store: every read and write of evalboard's data goes through `Store`.

Pages, the CLI and integrations call these methods; none of them writes SQL. Lists come back
as pandas DataFrames (what pages display), single objects as pydantic models.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel
from sqlalchemy import JSON, String, Text, and_, cast, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from evalboard import db
from evalboard.db import (
    annotation_modes,
    annotations,
    failure_modes,
    kv_state,
    llm_calls,
    projects,
    round_traces,
    rounds,
    traces,
    utcnow,
)
from evalboard.models import Message, Project, Round, Span, TraceRecord

MIGRATIONS = __file__.rsplit("/", 1)[0] + "/migrations"
PREVIEW_CHARS = 300


class StoreError(ValueError):
    """A request the store refuses, with a message meant for the person who made it."""


@dataclass
class AddResult:
    """What `add_traces` did: rows added, rows skipped as already present, ids of all rows."""

    added: int = 0
    duplicates: int = 0
    trace_ids: list[int] = field(default_factory=list)


class TraceFilter(BaseModel):
    """Which traces a list, count or round-from-filter looks at. Empty fields filter nothing."""

    round_id: int | None = None
    text: str = ""
    tags: list[str] = []
    sources: list[str] = []
    since: datetime | None = None
    until: datetime | None = None
    errors_only: bool = False


SORTS = {
    "newest": (traces.c.timestamp.desc(), traces.c.id.desc()),
    "oldest": (traces.c.timestamp.asc(), traces.c.id.asc()),
    "slowest": (traces.c.latency_ms.desc(), traces.c.id.desc()),
    "costliest": (traces.c.cost.desc(), traces.c.id.desc()),
    "round order": (round_traces.c.position.asc(),),
}


_INSERT_COLUMNS = [c.name for c in traces.columns if c.name != "id"]
_JSON_COLUMNS = {c.name for c in traces.columns if isinstance(c.type, JSON)}
_TIME_COLUMNS = {"timestamp", "end_time"}
_JSON_INDEX = [i for i, c in enumerate(_INSERT_COLUMNS) if c in _JSON_COLUMNS]
_TIME_INDEX = [i for i, c in enumerate(_INSERT_COLUMNS) if c in _TIME_COLUMNS]
_PROJECT_INDEX = _INSERT_COLUMNS.index("project_id")
_IMPORTED_INDEX = _INSERT_COLUMNS.index("imported_at")
_SPANS_COUNT_INDEX = _INSERT_COLUMNS.index("span_count")
_TEXT_INDEX = [i for i, c in enumerate(_INSERT_COLUMNS) if isinstance(traces.c[c].type, String | Text)]


def _sqlite_time(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC), so reads parse it back."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _project(r: Any) -> Project:
    return Project(id=r.id, name=r.name, description=r.description, settings=r.settings or {})


def _round(r: Any) -> Round:
    return Round(id=r.id, project_id=r.project_id, name=r.name, description=r.description,
                 sampling=r.sampling or {}, created_at=r.created_at, trace_count=r.trace_count)


def text_of(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """Best plain-text reading of an input or output, for previews and search.

    Chat message lists give their last user (else last) message; dicts give the first common
    text field (query, question, input, content, text, answer, output, response, message).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, list) and value:
        msgs = [m for m in value if isinstance(m, dict) and "role" in m]
        if msgs:
            users = [m for m in msgs if m.get("role") == "user"]
            return text_of((users or msgs)[-1].get("content"), limit)
        parts = [text_of(v, limit) for v in value[:5]]
        return " ".join(p for p in parts if p)[:limit]
    if isinstance(value, dict):
        for key in ("query", "question", "input", "content", "text", "answer", "output",
                    "response", "message", "body", "messages"):
            if key in value and value[key] not in (None, ""):
                return text_of(value[key], limit)
    return db.json_dumps(value)[:limit]


def record_to_row(project_id: int, rec: TraceRecord) -> dict[str, Any]:
    """A TraceRecord as a `traces` row (JSON parts as plain data)."""
    data = rec.model_dump(mode="json", exclude={"id", "project_id"})
    row = {k: data[k] for k in data}
    row["timestamp"] = rec.timestamp
    row["end_time"] = rec.end_time
    row["project_id"] = project_id
    row["input_preview"] = text_of(rec.input or (data["messages"] or None))
    row["output_preview"] = text_of(rec.output)
    row["span_count"] = len(rec.spans)
    if row["latency_ms"] is None and rec.timestamp and rec.end_time:
        row["latency_ms"] = (rec.end_time - rec.timestamp).total_seconds() * 1000.0
    return row


def row_to_record(row: Any) -> TraceRecord:
    m = row._mapping
    return TraceRecord.model_construct(
        id=m["id"],
        project_id=m["project_id"],
        source=m["source"],
        source_id=m["source_id"],
        name=m["name"],
        timestamp=m["timestamp"],
        end_time=m["end_time"],
        input=m["input"],
        output=m["output"],
        messages=[Message.model_validate(x) for x in (m["messages"] or [])],
        spans=[Span.model_validate(x) for x in (m["spans"] or [])],
        tags=m["tags"] or [],
        metadata=m["metadata"] or {},
        user_id=m["user_id"],
        session_id=m["session_id"],
        environment=m["environment"],
        release=m["release"],
        latency_ms=m["latency_ms"],
        cost=m["cost"],
        input_tokens=m["input_tokens"],
        output_tokens=m["output_tokens"],
        dimensions=m["dimensions"],
        labels=m["labels"] or {},
        scores=m["scores"] or [],
        error=m["error"],
    )


class Store:
    """One database. `Store()` opens the default (see `db.default_database_url`) and brings its
    schema up to date; pass `migrate=False` to leave the schema alone (tests of migrations)."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = url or db.default_database_url()
        self.engine: Engine = db.make_engine(self.url)
        self._insert_sql: str | None = None
        if migrate:
            self.upgrade()

    # -- schema -----------------------------------------------------------------------------
    def upgrade(self, revision: str = "heads") -> None:
        """Apply Alembic migrations up to `revision` (at start and by `evalboard db upgrade`)."""
        with self.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)

    def schema_revision(self) -> str | None:
        """The applied revision(s), comma-separated when migrations branched."""
        with self.engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
        return ",".join(sorted(heads)) or None

    @staticmethod
    def head_revision() -> str | None:
        heads = ScriptDirectory.from_config(alembic_config()).get_heads()
        return ",".join(sorted(heads)) or None

    def dispose(self) -> None:
        self.engine.dispose()

    # -- projects ---------------------------------------------------------------------------
    def create_project(self, name: str, description: str = "", settings: dict | None = None) -> Project:
        name = name.strip()
        if not name:
            raise StoreError("A project needs a name.")
        if self.project_by_name(name) is not None:
            raise StoreError(f"A project named '{name}' already exists.")
        with self.engine.begin() as conn:
            pid = conn.execute(
                insert(projects).values(name=name, description=description, settings=settings or {})
            ).inserted_primary_key[0]
        return Project(id=pid, name=name, description=description, settings=settings or {})

    def list_projects(self) -> list[Project]:
        with self.engine.connect() as conn:
            return [_project(r) for r in conn.execute(select(projects).order_by(projects.c.id))]

    def get_project(self, project_id: int) -> Project | None:
        return self._one_project(projects.c.id == project_id)

    def project_by_name(self, name: str) -> Project | None:
        return self._one_project(projects.c.name == name)

    def _one_project(self, condition: Any) -> Project | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(projects).where(condition)).first()
        return None if r is None else _project(r)

    def update_project(self, project_id: int, *, description: str | None = None,
                       settings: dict | None = None) -> None:
        """Change the description, and/or merge `settings` into the project's settings."""
        values: dict[str, Any] = {}
        if description is not None:
            values["description"] = description
        if settings is not None:
            current = self.get_project(project_id)
            if current is None:
                raise StoreError(f"No project with id {project_id}.")
            values["settings"] = {**current.settings, **settings}
        if values:
            with self.engine.begin() as conn:
                conn.execute(update(projects).where(projects.c.id == project_id).values(**values))

    def delete_project(self, project_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(projects).where(projects.c.id == project_id))

    # -- traces -----------------------------------------------------------------------------
    def add_traces(self, project_id: int, records: Iterable[TraceRecord | dict[str, Any]],
                   round_id: int | None = None, batch_size: int = 2000,
                   want_ids: bool = True) -> AddResult:
        """Insert traces, skipping any whose (source, source_id) the project already has.

        Accepts TraceRecords or rows already shaped by `record_to_row` (the importers' fast
        path). Each batch is one transaction, so a killed import leaves whole batches and a
        rerun adds only what is missing. With `round_id`, every trace (new or already present)
        is also put in that round, after the ones it holds. `want_ids=False` skips looking up
        the ids of the rows (a large import that needs no round).
        """
        result = AddResult()
        batch: list[dict[str, Any]] = []
        # Rows are shaped (Python, holds the GIL) while the previous batch is written (SQLite
        # releases the GIL while it works): one writer thread, one batch in flight, in order.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalboard-writer") as writer:
            pending: Future | None = None

            def flush() -> None:
                nonlocal pending, batch
                params = self._insert_params(project_id, batch)
                if pending is not None:
                    pending.result()  # re-raises a failed write here, before going on
                pending = writer.submit(self._add_batch, project_id, batch, params, round_id,
                                        result, want_ids)
                batch = []

            for rec in records:
                batch.append(rec if isinstance(rec, dict) else record_to_row(project_id, rec))
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
            if pending is not None:
                pending.result()
        return result

    def _add_batch(self, project_id: int, batch: list[dict[str, Any]], params: list[tuple],
                   round_id: int | None, result: AddResult, want_ids: bool) -> None:
        keys = list(dict.fromkeys((r["source"], r["source_id"]) for r in batch))
        with self.engine.begin() as conn:
            # INSERT ... ON CONFLICT DO NOTHING: rowcount says how many rows were new.
            added = max(conn.exec_driver_sql(self._insert_statement(), params).rowcount, 0)
            result.added += added
            result.duplicates += len(batch) - added
            if want_ids or round_id is not None:
                ids = self._existing_ids(conn, project_id, keys)
                batch_ids = [ids[k] for k in keys]
                result.trace_ids.extend(batch_ids)
                if round_id is not None:
                    self._append_to_round(conn, round_id, batch_ids)

    def _insert_statement(self) -> str:
        if self._insert_sql is None:
            dialect = self.engine.dialect
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            json_mark = f"CAST({mark} AS JSON)" if dialect.name == "postgresql" else mark
            marks = ", ".join(json_mark if c in _JSON_COLUMNS else mark for c in _INSERT_COLUMNS)
            self._insert_sql = (f"INSERT INTO traces ({', '.join(_INSERT_COLUMNS)}) VALUES ({marks}) "
                                "ON CONFLICT (project_id, source, source_id) DO NOTHING")
        return self._insert_sql

    def _insert_params(self, project_id: int, batch: list[dict[str, Any]]) -> list[tuple]:
        """Rows as driver parameters, with JSON and times serialised here once: SQLAlchemy's
        per-value processing would cost more than parsing the whole file."""
        to_time = _sqlite_time if self.engine.dialect.name == "sqlite" else (lambda v: v)
        # Postgres text cannot hold NUL: one trace with a NUL byte in its name or preview would
        # fail its whole batch. (JSON columns keep it, escaped as \u0000.)
        no_nul = self.engine.dialect.name == "postgresql"
        dumps = db.json_dumps
        stamp = to_time(utcnow())
        params = []
        for r in batch:
            values = [r.get(c) for c in _INSERT_COLUMNS]
            for i in _JSON_INDEX:
                if values[i] is not None:
                    values[i] = dumps(values[i])
            for i in _TIME_INDEX:
                values[i] = to_time(values[i])
            values[_PROJECT_INDEX] = project_id
            values[_IMPORTED_INDEX] = stamp
            values[_SPANS_COUNT_INDEX] = values[_SPANS_COUNT_INDEX] or 0
            if no_nul:
                for i in _TEXT_INDEX:
                    if isinstance(values[i], str) and "\x00" in values[i]:
                        values[i] = values[i].replace("\x00", "\u2400")  # shown as ␀, as the views do
            params.append(tuple(values))
        return params

    @staticmethod
    def _existing_ids(conn: Connection, project_id: int,
                      keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        by_source: dict[str, list[str]] = {}
        for source, sid in keys:
            by_source.setdefault(source, []).append(sid)
        for source, sids in by_source.items():
            for i in range(0, len(sids), 900):  # stay under SQLite's bound-parameter limit
                q = select(traces.c.source_id, traces.c.id).where(
                    traces.c.project_id == project_id, traces.c.source == source,
                    traces.c.source_id.in_(sids[i:i + 900]))
                for sid, tid in conn.execute(q):
                    found[(source, sid)] = tid
        return found

    def get_trace(self, trace_id: int) -> TraceRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(traces).where(traces.c.id == trace_id)).first()
        return None if row is None else row_to_record(row)

    def _filtered(self, project_id: int, flt: TraceFilter | None):  # noqa: ANN202 - select
        flt = flt or TraceFilter()
        conds = [traces.c.project_id == project_id]
        if flt.text.strip():
            # Case-insensitive substring search over previews and full input/output text.
            pattern = f"%{flt.text.strip()}%"
            conds.append(or_(
                traces.c.input_preview.ilike(pattern), traces.c.output_preview.ilike(pattern),
                traces.c.name.ilike(pattern), traces.c.source_id.ilike(pattern),
                cast(traces.c.input, Text).ilike(pattern),
                cast(traces.c.output, Text).ilike(pattern),
                cast(traces.c.messages, Text).ilike(pattern),
            ))
        for tag in flt.tags:
            # Tags are a JSON list; match the quoted element so "bug" does not match "debug".
            conds.append(cast(traces.c.tags, Text).like(f'%{orjson.dumps(tag).decode()}%'))
        if flt.sources:
            conds.append(traces.c.source.in_(flt.sources))
        if flt.since:
            conds.append(traces.c.timestamp >= flt.since)
        if flt.until:
            conds.append(traces.c.timestamp <= flt.until)
        if flt.errors_only:
            conds.append(or_(traces.c.error.is_not(None),
                             cast(traces.c.spans, Text).like('%"level":"ERROR"%')))
        if flt.round_id is not None:
            return traces.join(round_traces, and_(round_traces.c.trace_id == traces.c.id,
                                                  round_traces.c.round_id == flt.round_id)), conds
        return traces, conds

    def count_traces(self, project_id: int, flt: TraceFilter | None = None) -> int:
        source, conds = self._filtered(project_id, flt)
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(source).where(*conds)).scalar_one()

    def list_traces(self, project_id: int, flt: TraceFilter | None = None, *, sort: str = "newest",
                    limit: int = 50, offset: int = 0) -> pd.DataFrame:
        """One page of trace summaries (never whole traces): id, time, name, previews, tags..."""
        source, conds = self._filtered(project_id, flt)
        if sort == "round order" and (flt is None or flt.round_id is None):
            sort = "newest"
        if sort not in SORTS:
            raise StoreError(f"Unknown sort '{sort}'; choose one of {', '.join(SORTS)}.")
        cols = [traces.c.id, traces.c.timestamp, traces.c.name, traces.c.input_preview,
                traces.c.output_preview, traces.c.tags, traces.c.source, traces.c.source_id,
                traces.c.latency_ms, traces.c.cost, traces.c.span_count, traces.c.error]
        q = (select(*cols).select_from(source).where(*conds).order_by(*SORTS[sort])
             .limit(limit).offset(offset))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        df = pd.DataFrame(rows, columns=[c.name for c in cols])
        df["tags"] = df["tags"].map(lambda t: ", ".join(t or []))
        return df

    def trace_ids(self, project_id: int, flt: TraceFilter | None = None) -> list[int]:
        source, conds = self._filtered(project_id, flt)
        with self.engine.connect() as conn:
            return list(conn.execute(select(traces.c.id).select_from(source).where(*conds)
                                     .order_by(traces.c.id)).scalars())

    def newest_trace_id(self) -> int:
        """The highest trace id in the database (a cheap "has anything been added?" check)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(traces.c.id))).scalar_one() or 0

    def trace_facets(self, project_id: int) -> dict[str, list[str]]:
        """Distinct tags and sources of a project, for filter widgets."""
        with self.engine.connect() as conn:
            sources = list(conn.execute(select(traces.c.source).where(traces.c.project_id == project_id)
                                        .distinct().order_by(traces.c.source)).scalars())
            # Tags: read the distinct JSON lists (few distinct combinations in practice).
            tag_lists = conn.execute(select(cast(traces.c.tags, Text)).where(
                traces.c.project_id == project_id).distinct().limit(5000)).scalars()
            tags = sorted({t for raw in tag_lists if raw for t in orjson.loads(raw)})
        return {"sources": sources, "tags": tags}

    def delete_traces(self, project_id: int, trace_ids: Sequence[int]) -> int:
        with self.engine.begin() as conn:
            gone = conn.execute(delete(traces).where(traces.c.project_id == project_id,
                                                     traces.c.id.in_(list(trace_ids)))).rowcount
            # Their round entries went with them (cascade): count the rounds again.
            sizes = (select(func.count()).where(round_traces.c.round_id == rounds.c.id)
                     .scalar_subquery())
            conn.execute(update(rounds).where(rounds.c.project_id == project_id).values(trace_count=sizes))
        return gone

    # -- rounds -----------------------------------------------------------------------------
    def create_round(self, project_id: int, name: str, trace_ids: Sequence[int] = (), *,
                     sampling: dict[str, Any] | None = None, description: str = "",
                     order_seed: int | None = None) -> Round:
        """A round of the given traces. The queue order is by time unless `order_seed` is
        given, in which case it is a random permutation with that seed (recorded)."""
        name = name.strip()
        if not name:
            raise StoreError("A round needs a name.")
        sampling = dict(sampling or {})
        if order_seed is not None:
            sampling["order"] = {"method": "random", "seed": order_seed}
        else:
            sampling.setdefault("order", {"method": "time"})
        with self.engine.begin() as conn:
            taken = conn.execute(select(rounds.c.id).where(rounds.c.project_id == project_id,
                                                           rounds.c.name == name)).first()
            if taken:
                raise StoreError(f"This project already has a round named '{name}'.")
            rid = conn.execute(insert(rounds).values(
                project_id=project_id, name=name, description=description, sampling=sampling,
            )).inserted_primary_key[0]
            ids = self._ordered(conn, list(dict.fromkeys(trace_ids)), order_seed)
            self._append_to_round(conn, rid, ids)
        return self.get_round(rid)  # type: ignore[return-value]

    @staticmethod
    def _ordered(conn: Connection, ids: list[int], seed: int | None) -> list[int]:
        if seed is not None:
            ids = sorted(ids)
            random.Random(seed).shuffle(ids)
            return ids
        times: dict[int, Any] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            times.update(conn.execute(select(traces.c.id, traces.c.timestamp)
                                      .where(traces.c.id.in_(chunk))).all())
        return sorted(ids, key=lambda t: (times.get(t) is None, times.get(t) or 0, t))

    @staticmethod
    def _append_to_round(conn: Connection, round_id: int, ids: list[int]) -> None:
        if not ids:
            return
        present: set[int] = set()
        for i in range(0, len(ids), 900):
            present.update(conn.execute(select(round_traces.c.trace_id).where(
                round_traces.c.round_id == round_id,
                round_traces.c.trace_id.in_(ids[i:i + 900]))).scalars())
        start = conn.execute(select(func.coalesce(func.max(round_traces.c.position), -1))
                             .where(round_traces.c.round_id == round_id)).scalar_one() + 1
        new = [t for t in dict.fromkeys(ids) if t not in present]
        if new:
            conn.execute(insert(round_traces), [
                {"round_id": round_id, "trace_id": t, "position": start + i} for i, t in enumerate(new)])
            conn.execute(update(rounds).where(rounds.c.id == round_id)
                         .values(trace_count=rounds.c.trace_count + len(new)))

    def create_round_from_filter(self, project_id: int, name: str, flt: TraceFilter | None = None,
                                 *, n: int | None = None, seed: int | None = None,
                                 description: str = "") -> Round:
        """A round of the traces matching `flt`: all of them, or a uniform random sample of `n`
        drawn with `seed` (recorded on the round with the filter, so it can be drawn again)."""
        flt = flt or TraceFilter()
        ids = self.trace_ids(project_id, flt)
        sampling: dict[str, Any] = {"filter": flt.model_dump(mode="json", exclude_defaults=True),
                                    "of": len(ids)}
        if n is not None and n < len(ids):
            seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
            ids = random.Random(seed).sample(ids, n)
            sampling.update(method="random", n=n, seed=seed)
        else:
            sampling.update(method="all", n=len(ids))
        if not ids:
            raise StoreError("No traces match this filter: the round would be empty.")
        return self.create_round(project_id, name, ids, sampling=sampling, description=description,
                                 order_seed=seed)

    def list_rounds(self, project_id: int) -> list[Round]:
        q = select(rounds).where(rounds.c.project_id == project_id).order_by(rounds.c.id)
        with self.engine.connect() as conn:
            return [_round(r) for r in conn.execute(q)]

    def get_round(self, round_id: int) -> Round | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(rounds).where(rounds.c.id == round_id)).first()
        return None if r is None else _round(r)

    def update_round_sampling(self, round_id: int, sampling: dict[str, Any]) -> None:
        """Replace the record of how the round was drawn (a Langfuse pull knows it only once
        it has chosen its sample, after the round it writes into exists)."""
        with self.engine.begin() as conn:
            found = conn.execute(update(rounds).where(rounds.c.id == round_id).values(sampling=sampling)).rowcount
        if not found:
            raise StoreError(f"No round with id {round_id}.")

    def round_trace_ids(self, round_id: int) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(round_traces.c.trace_id).where(
                round_traces.c.round_id == round_id).order_by(round_traces.c.position)).scalars())

    def delete_round(self, round_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(rounds).where(rounds.c.id == round_id))

    # -- overview ---------------------------------------------------------------------------
    def project_overview(self, project_id: int) -> dict[str, int]:
        """Counts the home page shows for each workflow step."""
        with self.engine.connect() as conn:
            def count(table, *conds) -> int:  # noqa: ANN001
                return conn.execute(select(func.count()).select_from(table).where(*conds)).scalar_one()

            return {
                "traces": count(traces, traces.c.project_id == project_id),
                "rounds": count(rounds, rounds.c.project_id == project_id),
                "annotations": count(annotations, annotations.c.project_id == project_id,
                                     annotations.c.verdict.is_not(None)),
                "failed": count(annotations, annotations.c.project_id == project_id,
                                annotations.c.verdict == "fail"),
                "failure_modes": count(failure_modes, failure_modes.c.project_id == project_id,
                                       failure_modes.c.status == "active"),
                "mode_assignments": conn.execute(
                    select(func.count()).select_from(annotation_modes.join(annotations))
                    .where(annotations.c.project_id == project_id)).scalar_one(),
            }

    # -- resumable work and caches ----------------------------------------------------------
    def get_state(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(select(kv_state.c.value).where(kv_state.c.key == key)).scalar_one_or_none()

    def set_state(self, key: str, value: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(kv_state).where(kv_state.c.key == key)
                                .values(value=value, updated_at=utcnow())).rowcount
            if not done:
                conn.execute(insert(kv_state).values(key=key, value=value))

    def clear_state(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(kv_state).where(kv_state.c.key == key))

    def llm_cache(self) -> LLMCache:
        return LLMCache(self.engine)


class LLMCache:
    """The persistent LLM call cache (table llm_calls): `get(key)` / `put(key, record)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(llm_calls).where(llm_calls.c.key == key)).first()
        return None if r is None else dict(r._mapping)

    def put(self, key: str, record: dict[str, Any]) -> None:
        cols = {c.name for c in llm_calls.columns}
        values = {k: v for k, v in record.items() if k in cols and k != "key"}
        with self.engine.begin() as conn:
            if conn.execute(select(llm_calls.c.key).where(llm_calls.c.key == key)).first() is None:
                conn.execute(insert(llm_calls).values(key=key, **values))

    def usage(self) -> pd.DataFrame:
        q = (select(llm_calls.c.feature, llm_calls.c.model, func.count().label("calls"),
                    func.sum(llm_calls.c.input_tokens).label("input_tokens"),
                    func.sum(llm_calls.c.output_tokens).label("output_tokens"),
                    func.sum(llm_calls.c.cost).label("cost"))
             .group_by(llm_calls.c.feature, llm_calls.c.model))
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).all(), columns=["feature", "model", "calls",
                                                                "input_tokens", "output_tokens", "cost"])


def content_hash(value: Any) -> str:
    """Stable id for a row that has none: sha256 of its canonical JSON (sorted keys)."""
    return hashlib.sha256(orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
