"""Storage for the "Know the queries" step: dimensions, exclusions, tuples, queries, targets, runs.

Functions here take a `Store` and use its engine through SQLAlchemy Core, so they run on SQLite
and Postgres alike. Pages and integrations call them; none of them writes SQL.

- Dimensions are rows (`dimensions`) with their values as a JSON list and a `position` that
  orders them on screen and in prompts.
- Exclusion rules are the text the person typed (one rule per line, comments kept), saved in the
  project settings under `query_exclusions` once it parses.
- A tuple is stored once per project: its `key` is a hash of its values, so generating pairwise
  after a random sample adds only the combinations not already there.
- A query is stored once per (tuple, original text): generating the same batch again (answered
  from the LLM cache) adds nothing. Edits change `text`; `original_text` keeps what was written.
- Targets keep their config without secrets (header values may be `${ENV:NAME}` references,
  resolved only when a run calls the target); a target run records which queries it sends and
  which round receives their traces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from evalboard.db import dimensions, queries, query_tuples, target_runs, targets, traces, utcnow
from evalboard.store import Store, StoreError, content_hash
from evalboard.tuples import Dimension, DimensionValue, Exclusion, TupleDict, parse_exclusions

QueryStatus = Literal["new", "kept", "discarded", "unrealistic"]
QUERY_STATUSES: tuple[str, ...] = ("new", "kept", "discarded", "unrealistic")
TUPLE_ORIGINS: tuple[str, ...] = ("full", "sample", "pairwise", "manual", "import")
QUERY_ORIGINS: tuple[str, ...] = ("llm", "manual", "import")
EXCLUSIONS_SETTING = "query_exclusions"
_CHUNK = 900  # stay under SQLite's bound-parameter limit in IN (...) lists


# ------------------------------------------------------------------------------------- models


class StoredDimension(Dimension):
    """A dimension as stored: its id and position besides name, description and values."""

    id: int
    position: int = 0

    def as_dimension(self) -> Dimension:
        return Dimension(name=self.name, description=self.description, values=self.values)


class StoredTuple(BaseModel):
    id: int
    values: dict[str, str]
    origin: str
    seed: int | None = None
    created_at: datetime | None = None


class NewQuery(BaseModel):
    """A query to store: its text, the tuple it was written for (id and values) and by whom."""

    text: str
    tuple_id: int | None = None
    dimensions: dict[str, str] | None = None
    model: str | None = None
    origin: str = "llm"
    status: QueryStatus = "new"


class StoredQuery(BaseModel):
    id: int
    project_id: int
    tuple_id: int | None
    dimensions: dict[str, str] | None
    text: str
    original_text: str
    status: str
    duplicate_of: int | None = None
    similarity: float | None = None
    model: str | None = None
    origin: str = "llm"


class StoredTarget(BaseModel):
    id: int
    project_id: int
    name: str
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)


class TargetRun(BaseModel):
    id: int
    project_id: int
    target_id: int | None
    target_name: str
    round_id: int | None
    query_ids: list[int]
    config: dict[str, Any]
    status: str
    succeeded: int = 0
    failed: int = 0
    created_at: datetime | None = None
    finished_at: datetime | None = None


class AddedRows(BaseModel):
    """What an add did: rows new, rows already present, and the ids of all given rows in order."""

    added: int = 0
    existing: int = 0
    ids: list[int] = Field(default_factory=list)


# ------------------------------------------------------------------------------------- helpers


def _insert_ignore(conn: Connection, table: Any, rows: list[dict[str, Any]], unique: list[str]) -> int:
    """INSERT ... ON CONFLICT (unique) DO NOTHING on SQLite and Postgres; returns rows added."""
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING says which rows went in; rowcount is not reliable here on every driver.
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=unique).returning(table.c.id)
    return sum(len(conn.execute(stmt, row).all()) for row in rows)


def _ids_by_key(conn: Connection, table: Any, project_id: int, keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(keys), _CHUNK):
        q = select(table.c.key, table.c.id).where(table.c.project_id == project_id,
                                                  table.c.key.in_(keys[i:i + _CHUNK]))
        found.update({k: v for k, v in conn.execute(q)})
    return found


def tuple_key(values: Mapping[str, str]) -> str:
    """Order-independent identity of a tuple: a hash of its values with sorted keys."""
    return content_hash(dict(values))


def query_key(values: Mapping[str, str] | None, text: str) -> str:
    """Identity of a query: its tuple's values and its original text (whitespace-trimmed)."""
    return content_hash({"tuple": dict(values) if values else None, "text": text.strip()})


# ------------------------------------------------------------------------------------- dimensions


def _dimension(row: Any) -> StoredDimension:
    return StoredDimension(id=row.id, position=row.position, name=row.name,
                           description=row.description or "", values=row.value_list or [])


def list_dimensions(store: Store, project_id: int) -> list[StoredDimension]:
    """The project's dimensions in their order."""
    q = (select(dimensions).where(dimensions.c.project_id == project_id)
         .order_by(dimensions.c.position, dimensions.c.id))
    with store.engine.connect() as conn:
        return [_dimension(r) for r in conn.execute(q)]


def project_dimensions(store: Store, project_id: int) -> list[Dimension]:
    """The project's dimensions as plain `Dimension`s (what the tuple generators take)."""
    return [d.as_dimension() for d in list_dimensions(store, project_id)]


def get_dimension(store: Store, dimension_id: int) -> StoredDimension | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(dimensions).where(dimensions.c.id == dimension_id)).first()
    return None if row is None else _dimension(row)


def _name_taken(conn: Connection, project_id: int, name: str, other_than: int | None = None) -> bool:
    q = select(dimensions.c.id).where(dimensions.c.project_id == project_id, dimensions.c.name == name)
    if other_than is not None:
        q = q.where(dimensions.c.id != other_than)
    return conn.execute(q).first() is not None


def _values_json(dim: Dimension) -> list[dict[str, str]]:
    return [v.model_dump() for v in dim.values]


def add_dimension(store: Store, project_id: int, dim: Dimension) -> int:
    """Add a dimension after the existing ones; returns its id."""
    with store.engine.begin() as conn:
        if _name_taken(conn, project_id, dim.name):
            raise StoreError(f"This project already has a dimension named '{dim.name}'.")
        last = conn.execute(select(func.coalesce(func.max(dimensions.c.position), -1))
                            .where(dimensions.c.project_id == project_id)).scalar_one()
        return conn.execute(insert(dimensions).values(
            project_id=project_id, name=dim.name, description=dim.description,
            value_list=_values_json(dim), position=last + 1)).inserted_primary_key[0]


def update_dimension(store: Store, dimension_id: int, dim: Dimension) -> None:
    """Replace a dimension's name, description and values (its position stays).

    Tuples and exclusions that name an old value are not changed: the page lists tuples that no
    longer fit and the exclusion check reports rules that name what is gone.
    """
    with store.engine.begin() as conn:
        current = conn.execute(select(dimensions).where(dimensions.c.id == dimension_id)).first()
        if current is None:
            raise StoreError(f"No dimension with id {dimension_id}.")
        if _name_taken(conn, current.project_id, dim.name, other_than=dimension_id):
            raise StoreError(f"This project already has a dimension named '{dim.name}'.")
        conn.execute(update(dimensions).where(dimensions.c.id == dimension_id).values(
            name=dim.name, description=dim.description, value_list=_values_json(dim)))


def add_dimension_values(store: Store, dimension_id: int, values: Iterable[DimensionValue]) -> int:
    """Append values (e.g. kept LLM suggestions) whose names the dimension does not have yet
    (compared case-insensitively); returns how many were added."""
    current = get_dimension(store, dimension_id)
    if current is None:
        raise StoreError(f"No dimension with id {dimension_id}.")
    seen = {v.name.lower() for v in current.values}
    new = []
    for value in values:
        if value.name.lower() not in seen:
            seen.add(value.name.lower())
            new.append(value)
    if new:
        update_dimension(store, dimension_id, current.model_copy(update={"values": current.values + new}))
    return len(new)


def delete_dimension(store: Store, dimension_id: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(dimensions).where(dimensions.c.id == dimension_id))


def move_dimension(store: Store, dimension_id: int, offset: int) -> None:
    """Move a dimension `offset` places (-1 up, +1 down), clamped to the ends of the list."""
    with store.engine.begin() as conn:
        row = conn.execute(select(dimensions.c.project_id).where(dimensions.c.id == dimension_id)).first()
        if row is None:
            raise StoreError(f"No dimension with id {dimension_id}.")
        order = list(conn.execute(select(dimensions.c.id).where(dimensions.c.project_id == row.project_id)
                                  .order_by(dimensions.c.position, dimensions.c.id)).scalars())
        old = order.index(dimension_id)
        new = max(0, min(len(order) - 1, old + offset))
        order.insert(new, order.pop(old))
        for position, did in enumerate(order):  # renumber: positions stay 0..n-1 without gaps
            conn.execute(update(dimensions).where(dimensions.c.id == did).values(position=position))


# ------------------------------------------------------------------------------------- exclusions


def exclusions_text(store: Store, project_id: int) -> str:
    """The exclusion rules as the person typed them (one per line)."""
    project = store.get_project(project_id)
    return "" if project is None else str(project.settings.get(EXCLUSIONS_SETTING) or "")


def save_exclusions(store: Store, project_id: int, text: str) -> list[Exclusion]:
    """Check the rules against the project's dimensions and save them if they all parse.

    Raises ValueError listing every bad line ("line 2: unknown dimension ..."); nothing is saved
    then, since a silently dropped rule would let forbidden tuples through.
    """
    rules = parse_exclusions(text, project_dimensions(store, project_id))
    store.update_project(project_id, settings={EXCLUSIONS_SETTING: text})
    return rules


def project_exclusions(store: Store, project_id: int, dims: Sequence[Dimension] | None = None) -> list[Exclusion]:
    """The saved rules, parsed against the current dimensions. Raises ValueError (with line
    numbers) when a rule names a dimension or value that has since been renamed or removed."""
    dims = project_dimensions(store, project_id) if dims is None else dims
    return parse_exclusions(exclusions_text(store, project_id), dims)


# ------------------------------------------------------------------------------------- tuples


def add_tuples(store: Store, project_id: int, tuples: Iterable[TupleDict], origin: str,
               seed: int | None = None) -> AddedRows:
    """Store tuples; a combination the project already has is counted in `existing`."""
    if origin not in TUPLE_ORIGINS:
        raise StoreError(f"Unknown tuple origin '{origin}'; use one of {', '.join(TUPLE_ORIGINS)}.")
    rows, keys = [], []
    for values in tuples:
        key = tuple_key(values)
        keys.append(key)
        rows.append({"project_id": project_id, "dimension_values": dict(values), "key": key,
                     "origin": origin, "seed": seed, "created_at": utcnow()})
    with store.engine.begin() as conn:
        added = _insert_ignore(conn, query_tuples, rows, ["project_id", "key"])
        ids = _ids_by_key(conn, query_tuples, project_id, list(dict.fromkeys(keys)))
    return AddedRows(added=added, existing=len(rows) - added, ids=[ids[k] for k in keys])


def list_tuples(store: Store, project_id: int, ids: Sequence[int] | None = None) -> list[StoredTuple]:
    q = select(query_tuples).where(query_tuples.c.project_id == project_id).order_by(query_tuples.c.id)
    with store.engine.connect() as conn:
        if ids is None:
            rows = conn.execute(q).all()
        else:
            rows = [r for i in range(0, len(ids), _CHUNK)
                    for r in conn.execute(q.where(query_tuples.c.id.in_(list(ids)[i:i + _CHUNK])))]
    return [StoredTuple(id=r.id, values=r.dimension_values, origin=r.origin, seed=r.seed,
                        created_at=r.created_at) for r in rows]


def tuple_problem(values: Mapping[str, str], dims: Sequence[Dimension],
                  exclusions: Sequence[Exclusion] = ()) -> str:
    """Why a stored tuple no longer fits the dimensions or the rules ("" when it fits)."""
    by_name = {d.name: d for d in dims}
    problems = [f"unknown dimension '{k}'" for k in values if k not in by_name]
    for dim in dims:
        if dim.name not in values:
            problems.append(f"no value for '{dim.name}'")
        elif values[dim.name] not in dim.value_names:
            problems.append(f"'{values[dim.name]}' is no longer a value of '{dim.name}'")
    if not problems:
        rule = next((ex for ex in exclusions if ex.matches(dict(values))), None)
        if rule is not None:
            problems.append(f"excluded by '{rule}'")
    return "; ".join(problems)


def tuple_query_counts(store: Store, project_id: int) -> dict[int, int]:
    """tuple id -> number of queries written for it (discarded ones included)."""
    q = (select(queries.c.tuple_id, func.count()).where(queries.c.project_id == project_id,
                                                        queries.c.tuple_id.is_not(None))
         .group_by(queries.c.tuple_id))
    with store.engine.connect() as conn:
        return {tid: n for tid, n in conn.execute(q)}


def tuples_frame(store: Store, project_id: int, dims: Sequence[Dimension],
                 exclusions: Sequence[Exclusion] = ()) -> pd.DataFrame:
    """The tuples as a table: id, one column per dimension, origin, seed, queries, problem."""
    counts = tuple_query_counts(store, project_id)
    names = [d.name for d in dims]
    rows = [{"id": t.id, **{n: t.values.get(n, "") for n in names}, "origin": t.origin,
             "seed": t.seed, "queries": counts.get(t.id, 0),
             "problem": tuple_problem(t.values, dims, exclusions)}
            for t in list_tuples(store, project_id)]
    return pd.DataFrame(rows, columns=["id", *names, "origin", "seed", "queries", "problem"])


def delete_tuples(store: Store, project_id: int, ids: Sequence[int] | None = None) -> int:
    """Delete the given tuples (all when `ids` is None). Their queries stay, with their values."""
    with store.engine.begin() as conn:
        q = delete(query_tuples).where(query_tuples.c.project_id == project_id)
        if ids is None:
            return conn.execute(q).rowcount
        return sum(conn.execute(q.where(query_tuples.c.id.in_(list(ids)[i:i + _CHUNK]))).rowcount
                   for i in range(0, len(ids), _CHUNK))


# ------------------------------------------------------------------------------------- queries


def add_queries(store: Store, project_id: int, items: Iterable[NewQuery]) -> AddedRows:
    """Store queries; one whose (tuple values, text) the project already has is `existing`.
    Blank texts are refused with a StoreError."""
    rows, keys = [], []
    now = utcnow()
    for n, item in enumerate(items):
        text = item.text.strip()
        if not text:
            raise StoreError(f"Query {n + 1} is empty.")
        if item.origin not in QUERY_ORIGINS:
            raise StoreError(f"Unknown query origin '{item.origin}'; use one of {', '.join(QUERY_ORIGINS)}.")
        key = query_key(item.dimensions, text)
        keys.append(key)
        rows.append({"project_id": project_id, "tuple_id": item.tuple_id, "dimensions": item.dimensions,
                     "text": text, "original_text": text, "status": item.status, "model": item.model,
                     "origin": item.origin, "key": key, "created_at": now, "updated_at": now})
    with store.engine.begin() as conn:
        added = _insert_ignore(conn, queries, rows, ["project_id", "key"])
        ids = _ids_by_key(conn, queries, project_id, list(dict.fromkeys(keys)))
    return AddedRows(added=added, existing=len(rows) - added, ids=[ids[k] for k in keys])


def _query(row: Any) -> StoredQuery:
    return StoredQuery(id=row.id, project_id=row.project_id, tuple_id=row.tuple_id,
                       dimensions=row.dimensions, text=row.text, original_text=row.original_text,
                       status=row.status, duplicate_of=row.duplicate_of, similarity=row.similarity,
                       model=row.model, origin=row.origin)


def _status_filter(project_id: int, statuses: Sequence[str] | None, duplicates_only: bool = False) -> list:
    conds = [queries.c.project_id == project_id]
    if statuses:
        unknown = [s for s in statuses if s not in QUERY_STATUSES]
        if unknown:
            raise StoreError(f"Unknown query status {unknown[0]!r}; use {', '.join(QUERY_STATUSES)}.")
        conds.append(queries.c.status.in_(list(statuses)))
    if duplicates_only:
        conds.append(queries.c.duplicate_of.is_not(None))
    return conds


def get_queries(store: Store, project_id: int, statuses: Sequence[str] | None = None, *,
                ids: Sequence[int] | None = None, duplicates_only: bool = False,
                limit: int | None = None, offset: int = 0) -> list[StoredQuery]:
    """Queries in id order, optionally only some statuses, some ids, or near-duplicates."""
    conds = _status_filter(project_id, statuses, duplicates_only)
    q = select(queries).where(*conds).order_by(queries.c.id)
    with store.engine.connect() as conn:
        if ids is not None:
            ids = list(ids)
            rows = [r for i in range(0, len(ids), _CHUNK)
                    for r in conn.execute(q.where(queries.c.id.in_(ids[i:i + _CHUNK])))]
        else:
            rows = conn.execute(q.limit(limit).offset(offset)).all()
    return [_query(r) for r in rows]


def count_queries(store: Store, project_id: int, statuses: Sequence[str] | None = None, *,
                  duplicates_only: bool = False) -> int:
    conds = _status_filter(project_id, statuses, duplicates_only)
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(queries).where(*conds)).scalar_one()


def status_counts(store: Store, project_id: int) -> dict[str, int]:
    """status -> number of queries (every status present, 0 when none)."""
    q = select(queries.c.status, func.count()).where(queries.c.project_id == project_id).group_by(queries.c.status)
    with store.engine.connect() as conn:
        found = dict(conn.execute(q).all())
    return {s: found.get(s, 0) for s in QUERY_STATUSES}


def queries_frame(items: Sequence[StoredQuery], dims: Sequence[str] = ()) -> pd.DataFrame:
    """Queries as a table: id, status, text, one column per dimension, duplicate_of, ..."""
    names = list(dims) or list(dict.fromkeys(k for q in items for k in (q.dimensions or {})))
    rows = [{"id": q.id, "status": q.status, "text": q.text,
             **{n: (q.dimensions or {}).get(n, "") for n in names},
             "duplicate_of": q.duplicate_of, "similarity": q.similarity, "tuple_id": q.tuple_id,
             "edited": q.text != q.original_text, "original_text": q.original_text,
             "model": q.model, "origin": q.origin} for q in items]
    return pd.DataFrame(rows, columns=["id", "status", "text", *names, "duplicate_of", "similarity",
                                       "tuple_id", "edited", "original_text", "model", "origin"])


def update_query(store: Store, project_id: int, query_id: int, *, text: str | None = None,
                 status: str | None = None) -> None:
    """Edit a query's text and/or status (the original text is kept)."""
    values: dict[str, Any] = {}
    if text is not None:
        if not text.strip():
            raise StoreError(f"Query {query_id}: the text cannot be empty (discard it instead).")
        values["text"] = text.strip()
    if status is not None:
        if status not in QUERY_STATUSES:
            raise StoreError(f"Query {query_id}: unknown status {status!r}; use {', '.join(QUERY_STATUSES)}.")
        values["status"] = status
    if not values:
        return
    values["updated_at"] = utcnow()
    with store.engine.begin() as conn:
        done = conn.execute(update(queries).where(queries.c.id == query_id, queries.c.project_id == project_id)
                            .values(**values)).rowcount
    if not done:
        raise StoreError(f"No query {query_id} in this project.")


def apply_review_edits(store: Store, project_id: int, row_ids: Sequence[int],
                       edited_rows: Mapping[Any, Mapping[str, Any]]) -> list[str]:
    """Apply a review grid's `edited_rows` ({row position: {column: new value}}) to the queries
    shown in those rows (`row_ids[position]`). Only `text` and `status` are editable; other
    columns are ignored. Returns one message per edit refused (the others are applied)."""
    problems = []
    for row, change in edited_rows.items():
        position = int(row)
        if not 0 <= position < len(row_ids):
            problems.append(f"Row {position + 1} is not on screen any more; edit it again.")
            continue
        try:
            update_query(store, project_id, int(row_ids[position]), text=change.get("text"),
                         status=change.get("status"))
        except StoreError as exc:
            problems.append(str(exc))
    return problems


def set_query_status(store: Store, project_id: int, ids: Sequence[int], status: str) -> int:
    """Give many queries one status; returns how many changed rows."""
    if status not in QUERY_STATUSES:
        raise StoreError(f"Unknown status {status!r}; use {', '.join(QUERY_STATUSES)}.")
    ids = list(ids)
    with store.engine.begin() as conn:
        return sum(conn.execute(update(queries).where(
            queries.c.project_id == project_id, queries.c.id.in_(ids[i:i + _CHUNK]))
            .values(status=status, updated_at=utcnow())).rowcount for i in range(0, len(ids), _CHUNK))


def set_duplicates(store: Store, project_id: int, marks: Mapping[int, tuple[int, float] | None]) -> None:
    """Record near-duplicate marks: query id -> (id of the earlier query it repeats, cosine), or
    None to clear. Queries not named keep their mark."""
    with store.engine.begin() as conn:
        for qid, mark in marks.items():
            dup, sim = mark if mark is not None else (None, None)
            conn.execute(update(queries).where(queries.c.id == qid, queries.c.project_id == project_id)
                         .values(duplicate_of=dup, similarity=sim))


def delete_queries(store: Store, project_id: int, ids: Sequence[int]) -> int:
    ids = list(ids)
    with store.engine.begin() as conn:
        return sum(conn.execute(delete(queries).where(queries.c.project_id == project_id,
                                                      queries.c.id.in_(ids[i:i + _CHUNK]))).rowcount
                   for i in range(0, len(ids), _CHUNK))


# ------------------------------------------------------------------------------------- targets


def _target(row: Any) -> StoredTarget:
    return StoredTarget(id=row.id, project_id=row.project_id, name=row.name, kind=row.kind,
                        config=row.config or {})


def save_target(store: Store, project_id: int, name: str, kind: str, config: Mapping[str, Any]) -> int:
    """Create the target, or replace the config of the project's target of that name; returns
    its id. The caller validates `config` (integrations.target) and keeps secrets out of it."""
    name = name.strip()
    if not name:
        raise StoreError("A target needs a name.")
    if kind not in ("http", "openai"):
        raise StoreError(f"Unknown target kind '{kind}'; use http or openai.")
    with store.engine.begin() as conn:
        found = conn.execute(select(targets.c.id).where(targets.c.project_id == project_id,
                                                        targets.c.name == name)).first()
        if found is not None:
            conn.execute(update(targets).where(targets.c.id == found.id).values(
                kind=kind, config=dict(config), updated_at=utcnow()))
            return found.id
        return conn.execute(insert(targets).values(project_id=project_id, name=name, kind=kind,
                                                   config=dict(config))).inserted_primary_key[0]


def list_targets(store: Store, project_id: int) -> list[StoredTarget]:
    with store.engine.connect() as conn:
        return [_target(r) for r in conn.execute(select(targets).where(targets.c.project_id == project_id)
                                                 .order_by(targets.c.name))]


def get_target(store: Store, target_id: int) -> StoredTarget | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(targets).where(targets.c.id == target_id)).first()
    return None if row is None else _target(row)


def delete_target(store: Store, target_id: int) -> None:
    """Delete a target; its runs and their traces stay (the run keeps the target's name)."""
    with store.engine.begin() as conn:
        conn.execute(delete(targets).where(targets.c.id == target_id))


# ------------------------------------------------------------------------------------- target runs


def _run(row: Any) -> TargetRun:
    return TargetRun(id=row.id, project_id=row.project_id, target_id=row.target_id,
                     target_name=row.target_name, round_id=row.round_id, query_ids=row.query_ids or [],
                     config=row.config or {}, status=row.status, succeeded=row.succeeded,
                     failed=row.failed, created_at=row.created_at, finished_at=row.finished_at)


def create_run(store: Store, project_id: int, target: StoredTarget, query_ids: Sequence[int],
               round_id: int | None) -> int:
    """Record a run of `target` over `query_ids` (fixed now, so a resume sends the same set)."""
    if not query_ids:
        raise StoreError("There are no queries to send: keep some queries first.")
    with store.engine.begin() as conn:
        return conn.execute(insert(target_runs).values(
            project_id=project_id, target_id=target.id, target_name=target.name, round_id=round_id,
            query_ids=[int(q) for q in query_ids], config={"kind": target.kind, **target.config},
            status="pending")).inserted_primary_key[0]


def get_run(store: Store, run_id: int) -> TargetRun | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(target_runs).where(target_runs.c.id == run_id)).first()
    return None if row is None else _run(row)


def list_runs(store: Store, project_id: int) -> list[TargetRun]:
    with store.engine.connect() as conn:
        return [_run(r) for r in conn.execute(select(target_runs).where(target_runs.c.project_id == project_id)
                                              .order_by(target_runs.c.id.desc()))]


def attach_round(store: Store, run_id: int, round_id: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(target_runs).where(target_runs.c.id == run_id).values(round_id=round_id))


def delete_run(store: Store, run_id: int) -> None:
    """Forget a run (its traces and round stay)."""
    with store.engine.begin() as conn:
        conn.execute(delete(target_runs).where(target_runs.c.id == run_id))


def trace_source(target_name: str) -> str:
    """The `source` of traces a target's runs store."""
    return f"target:{target_name}"


def trace_source_id(run_id: int, query_id: int) -> str:
    """Deterministic per (run, query): a rerun of the same run never stores a query twice."""
    return f"run{run_id}-query{query_id}"


def run_traces(store: Store, run: TargetRun) -> dict[int, tuple[int, bool]]:
    """query id -> (trace id, whether the call failed) for the traces the run has stored."""
    prefix = trace_source_id(run.id, 0)[:-1]
    q = select(traces.c.id, traces.c.source_id, traces.c.error).where(
        traces.c.project_id == run.project_id, traces.c.source == trace_source(run.target_name),
        traces.c.source_id.like(f"{prefix}%"))
    with store.engine.connect() as conn:
        return {int(sid[len(prefix):]): (tid, err is not None) for tid, sid, err in conn.execute(q)}


def update_run(store: Store, run_id: int, *, status: str, succeeded: int, failed: int,
               finished: bool = False) -> None:
    values: dict[str, Any] = {"status": status, "succeeded": succeeded, "failed": failed}
    if finished:
        values["finished_at"] = utcnow()
    with store.engine.begin() as conn:
        conn.execute(update(target_runs).where(target_runs.c.id == run_id).values(**values))


# ------------------------------------------------------------------------------------- overview


def overview_counts(store: Store, project_id: int) -> dict[str, int]:
    """Counts for the home page's "Know the queries" step (keys match evalboard.workflow)."""
    with store.engine.connect() as conn:
        def count(table: Any, *conds: Any) -> int:
            return conn.execute(select(func.count()).select_from(table).where(*conds)).scalar_one()

        return {
            "dimensions": count(dimensions, dimensions.c.project_id == project_id),
            "tuples": count(query_tuples, query_tuples.c.project_id == project_id),
            "queries": count(queries, queries.c.project_id == project_id),
            "kept_queries": count(queries, and_(queries.c.project_id == project_id, queries.c.status == "kept")),
            "target_runs": count(target_runs, target_runs.c.project_id == project_id),
        }
