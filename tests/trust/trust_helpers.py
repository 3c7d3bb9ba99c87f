"""Helpers of the trust suite: fill every project table, and compare projects across databases.

`add_synthetic_rows` walks the schema like the backup does and adds one row to every table of
a project, each reference (foreign key, plain id column, id inside JSON) pointing at the new row
of its target table. A table added later gets its row without anyone editing this file.

`canonical(rows)` turns a project's rows (as `backup.export_rows` or `backup.read_backup`
yield them) into a form without database ids: each id becomes the row's rank in its table, and
each reference the rank of the row it points at. Two databases hold the same project exactly
when their canonical forms are equal, whatever ids each database handed out.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, insert, select, update

from evalboard import backup, db
from evalboard.coding import save_annotation, undo_last
from evalboard.store import Store

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _value(column: Any) -> Any:
    kind = column.type
    if isinstance(kind, db.UTCDateTime | DateTime):
        return WHEN
    if isinstance(kind, Boolean):
        return True
    if isinstance(kind, Integer):
        return 7
    if isinstance(kind, Float):
        return 0.25
    if isinstance(kind, JSON):
        return {"synthetic": True}
    if isinstance(kind, String) and kind.length:
        return ("s" + uuid.uuid4().hex)[:kind.length]
    if isinstance(kind, Text | String):
        return f"synthetic {uuid.uuid4().hex} <b>text</b> ünïcode"
    raise TypeError(f"{column.table.name}.{column.name}: no synthetic value for {kind!r}")


def _build(tokens: list[tuple[str, Any]], leaf: int) -> Any:
    """The smallest JSON value holding `leaf` at the path."""
    if not tokens:
        return leaf
    kind, arg = tokens[0]
    inner = _build(tokens[1:], leaf)
    if kind == "key":
        return {arg: inner}
    if kind == "each":
        return [inner]
    if kind == "index":
        return [None] * arg + [inner]
    return {str(leaf): "synthetic"}  # "keys"


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        longer = max(len(a), len(b))
        return [_merge(a[i], b[i]) if i < len(a) and i < len(b) else (a[i] if i < len(a) else b[i])
                for i in range(longer)]
    return a if a is not None else b


def add_synthetic_rows(store: Store, project_id: int) -> dict[str, int]:
    """Add one row to every table of the project; returns the new id per table (0 for tables
    without an id column)."""
    plans = backup.project_tables()
    position = {p.name: i for i, p in enumerate(plans)}
    new: dict[str, int] = {backup.ROOT: project_id}
    fix_later: list[tuple[backup.TablePlan, int, dict[str, Any]]] = []
    with store.engine.begin() as conn:
        for plan in plans[1:]:
            row = {c.name: _value(c) for c in plan.table.columns if not (plan.has_id and c.name == "id")}
            later: dict[str, Any] = {}
            for ref in plan.refs:
                if position[ref.target] < position[plan.name]:
                    row[ref.column] = new[ref.target]
                else:
                    row[ref.column] = None
                    later[ref.column] = ref
            for column in {r.column for r in plan.json_refs}:
                refs = [r for r in plan.json_refs if r.column == column]
                if all(position[r.target] < position[plan.name] for r in refs):
                    row[column] = _json_for(refs, new)
                else:
                    later[column] = refs
            if plan.has_id:
                new[plan.name] = conn.execute(insert(plan.table).values(row)).inserted_primary_key[0]
            else:
                conn.execute(insert(plan.table).values(row))
                new[plan.name] = 0
            if later:
                fix_later.append((plan, new[plan.name], later))
        for plan, row_id, later in fix_later:
            values = {col: (new[ref.target] if isinstance(ref, backup.Ref) else _json_for(ref, new))
                      for col, ref in later.items()}
            conn.execute(update(plan.table).where(plan.table.c.id == row_id).values(values))
    return new


def _json_for(refs: list[backup.Ref], new: dict[str, int]) -> Any:
    value: Any = None
    for ref in refs:
        value = _merge(value, _build(backup.parse_path(ref.path), new[ref.target]))
    return value


def build_rich_project(store: Store) -> int:
    """The demo project (traces, rounds, labels, taxonomy history, judges with runs), plus one
    synthetic row in every table and a label whose first save was undone (its history row
    outlives it, pointing at the trace only)."""
    from evalboard.demo import create_demo

    pid = create_demo(store)
    trace = store.trace_ids(pid)[3]
    save_annotation(store, pid, trace, "undo-person", verdict="fail", note="first thought")
    assert undo_last(store, pid, "undo-person") is None
    add_synthetic_rows(store, pid)
    return pid


def table_counts(store: Store) -> dict[str, int]:
    """Rows in every project table of the database (global tables left out)."""
    from sqlalchemy import func

    with store.engine.connect() as conn:
        return {p.name: conn.execute(select(func.count()).select_from(p.table)).scalar_one()
                for p in backup.project_tables()}


def canonical(rows: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows keyed by table, ids replaced by ranks (see the module docstring)."""
    plans = {p.name: p for p in backup.project_tables()}
    by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for table, row in rows:
        by_table[table].append(dict(row))
    rank: dict[str, dict[int, int]] = {}
    for name, items in by_table.items():
        if plans[name].has_id:
            items.sort(key=lambda r: r["id"])
            rank[name] = {r["id"]: i for i, r in enumerate(items)}

    def ranked(target: str, value: Any) -> Any:
        as_id = backup._as_id(value)
        if as_id is None:
            return value
        found = rank.get(target, {}).get(as_id)
        return None if found is None else ("#", found)  # a dangling id restores as null

    out: dict[str, list[dict[str, Any]]] = {}
    for name, items in by_table.items():
        plan = plans[name]
        rows_out = []
        for row in items:
            row = {k: (v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
            if plan.has_id:
                row["id"] = rank[name][row["id"]]
            if name == backup.ROOT:
                row["name"] = "<project>"
            for ref in plan.refs:
                if row.get(ref.column) is not None:
                    row[ref.column] = ranked(ref.target, row[ref.column])
            for ref in plan.json_refs:
                if row.get(ref.column) is not None:
                    row[ref.column] = backup.rewrite_path(
                        row[ref.column], backup.parse_path(ref.path),
                        lambda v, t=ref.target: _ranked_json(ranked(t, v), v))
            rows_out.append(_normal(row))
        rows_out.sort(key=lambda r: repr(sorted(r.items(), key=lambda kv: kv[0])))
        out[name] = rows_out
    return out


def _ranked_json(found: Any, original: Any) -> Any:
    if isinstance(original, str):  # an object key: stays a string, or is dropped when dangling
        return None if found is None else f"#{found[1]}"
    return found


def _normal(value: Any) -> Any:
    """Times as ISO text in UTC (the backends return them differently); lists and tuples alike."""
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in "T ":
        try:  # a time that went through a backup file as text
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return value
