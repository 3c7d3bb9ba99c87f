"""Back up one project to a single file, and restore it into any evalboard database.

What belongs to a project is found by walking the schema (`db.metadata`), not listed by hand:
a row belongs to the project when one of its references leads to the project, directly
(`project_id`) or through rows that do (a label through its trace, a verdict through its judge
version, a round's entry through its round). A table added later is covered as soon as it has
a foreign key into that tree; `project_tables()` must account for every table, so a table that
is neither reachable nor declared global (`GLOBAL_TABLES`) fails the tests.

Ids are remapped on restore, so a project can go into a database that already holds others:
every row gets a new id and every reference to it is rewritten. Foreign keys are found from
the schema; references the schema cannot see are declared here:

* `PLAIN_REFERENCES`: integer columns that hold an id without a foreign key (history that
  outlives what it names, such as a taxonomy event's mode);
* `JSON_REFERENCES`: ids inside JSON columns (a judge run's trace list, the members of a
  clustering proposal), addressed by a small path: `.key`, `[*]` (every item), `[0]` (one
  item), `{key}` (the keys of an object).

An id that points at nothing in the backup (a deleted trace named in old history) becomes
null (or, as an object key, is dropped): it would otherwise name an unrelated row after restore.

The file is JSON lines, gzip-compressed when its name ends in `.gz`: a header (format version,
evalboard version, schema revision, project, tables), one line per row (`{"t": table, "r":
row}`, tables in dependency order, rows in id order), and a trailer with the row counts. A
file without its trailer (an export that was cut short) is refused. Exports are written to a
temporary file and renamed, so an interrupted export never leaves a half file under the name
asked for; a restore is one transaction, so a failed one leaves nothing behind.

Not in a backup: global tables (`GLOBAL_TABLES`: checkpoints of running work, the LLM call
cache) and secrets. Settings-like JSON columns (`SETTINGS_COLUMNS`) lose any value under a
secret-looking key (api_key, secret, token, password, authorization, ...) unless it is a
`${ENV:...}` / `${SECRET:...}` reference; the export report lists what it left out.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import DateTime, Table, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from evalboard import db
from evalboard.store import Store, StoreError

FORMAT = "evalboard-project-backup"
FORMAT_VERSION = 1
ROOT = "projects"
BATCH = 1000

#: Tables that belong to no project: checkpoints of resumable work and the LLM call cache.
GLOBAL_TABLES = frozenset({"kv_state", "llm_calls"})

#: JSON columns holding configuration rather than data: secret-looking values are left out.
SETTINGS_COLUMNS = frozenset({("projects", "settings"), ("targets", "config"),
                              ("target_runs", "config"), ("judge_versions", "config"),
                              ("cluster_runs", "params")})
SECRET_KEY = re.compile(r"(?i)(?:^|[-_.\s])(?:api[-_]?key|apikey|secret(?:[-_]?key)?|password|"
                        r"passwd|token|authorization|cookie|credentials?|private[-_]?key)$")
SECRET_REFERENCE = re.compile(r"^\s*(?:[A-Za-z]+\s+)?\$\{(?:ENV|SECRET):[A-Za-z0-9_.\-]+\}\s*$")


@dataclass(frozen=True)
class Ref:
    """`table.column` (at `path`, for JSON) holds ids of rows of `target`."""

    table: str
    column: str
    target: str
    path: str = ""


PLAIN_REFERENCES: tuple[Ref, ...] = (
    Ref("annotation_events", "trace_id", "traces"),
    Ref("taxonomy_events", "mode_id", "failure_modes"),
    Ref("taxonomy_events", "run_id", "cluster_runs"),
    Ref("judge_splits", "test_run_id", "judge_runs"),
    Ref("judge_splits", "test_version_id", "judge_versions"),
    Ref("queries", "duplicate_of", "queries"),
)

JSON_REFERENCES: tuple[Ref, ...] = (
    Ref("rounds", "sampling", "target_runs", ".run_id"),
    Ref("rounds", "sampling", "rounds", ".filter.round_id"),
    Ref("target_runs", "query_ids", "queries", "[*]"),
    Ref("cluster_runs", "notes", "annotations", "[*].annotation_id"),
    Ref("cluster_runs", "notes", "traces", "[*].trace_id"),
    Ref("cluster_runs", "notes", "rounds", "[*].round_id"),
    Ref("cluster_runs", "proposals", "annotations", "[*].members[*]"),
    Ref("cluster_runs", "proposals", "failure_modes", "[*].mode_id"),
    Ref("cluster_runs", "unassigned", "annotations", "[*]"),
    *(Ref("taxonomy_events", side, target, path) for side in ("before", "after")
      for target, path in (("failure_modes", ".id"), ("failure_modes", ".source.id"),
                           ("failure_modes", ".target.id"), ("failure_modes", ".new.id"),
                           ("annotations", ".notes[*]"), ("annotations", ".moved[*]"),
                           ("annotations", ".already_there[*]"), ("annotations", ".assigned[*]"))),
    Ref("judge_versions", "config", "traces", ".examples[*].trace_id"),
    Ref("judge_runs", "trace_ids", "traces", "[*]"),
    Ref("judge_runs", "errors", "traces", "{key}"),
    Ref("judge_runs", "frozen", "judge_versions", ".version_id"),
    Ref("judge_runs", "frozen", "traces", ".pairs[*][0]"),
    Ref("label_audits", "context", "judge_versions", ".version_id"),
    Ref("label_audits", "context", "judge_runs", ".run_id"),
    Ref("production_runs", "judges", "judges", "[*].judge_id"),
    Ref("production_runs", "judges", "failure_modes", "[*].mode_id"),
    Ref("production_runs", "judges", "judge_versions", "[*].version_id"),
    Ref("production_runs", "judges", "judge_runs", "[*].test_run_id"),
    Ref("production_runs", "judge_runs", "judge_versions", "[*].version_id"),
    Ref("production_runs", "judge_runs", "judge_runs", "[*].run_id"),
    Ref("production_runs", "batches", "judge_versions", "[*].version_id"),
    Ref("production_runs", "batches", "traces", "[*].trace_ids[*]"),
    Ref("production_runs", "errors", "judge_versions", "[*].version_id"),
    Ref("production_runs", "errors", "traces", "[*].trace_id"),
    Ref("production_runs", "sample", "rounds", ".round_id"),
)


class BackupError(StoreError):
    """A backup file that cannot be read or restored; the message says why."""


# -- the project's tables --------------------------------------------------------------------

@dataclass
class TablePlan:
    """How one table takes part in a backup: what its rows reference, and so who owns them."""

    table: Table
    refs: list[Ref] = field(default_factory=list)  # foreign keys and plain references
    json_refs: list[Ref] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def has_id(self) -> bool:
        pk = list(self.table.primary_key.columns)
        return len(pk) == 1 and pk[0].name == "id"


def project_tables() -> list[TablePlan]:
    """Every table that belongs to projects, in an order where a row comes after the rows its
    foreign keys point at. Raises BackupError when a table is neither reachable from projects
    nor declared global (so a new table cannot be silently left out of backups)."""
    plans: dict[str, TablePlan] = {}
    for table in db.metadata.sorted_tables:
        if table.name in GLOBAL_TABLES:
            continue
        plan = TablePlan(table)
        for fk in table.foreign_key_constraints:
            if len(fk.columns) != 1:
                raise BackupError(f"{table.name}: composite foreign keys are not supported by backups")
            plan.refs.append(Ref(table.name, next(iter(fk.columns)).name, fk.referred_table.name))
        plan.refs += [r for r in PLAIN_REFERENCES if r.table == table.name]
        plan.json_refs = [r for r in JSON_REFERENCES if r.table == table.name]
        plans[table.name] = plan
    owned = {ROOT}
    changed = True
    while changed:  # a table is owned when any of its references leads to an owned table
        changed = False
        for plan in plans.values():
            if plan.name not in owned and any(r.target in owned for r in plan.refs):
                owned.add(plan.name)
                changed = True
    stray = sorted(set(plans) - owned)
    if stray:
        raise BackupError(f"tables {stray} belong to no project: give them a reference to a "
                          "project's rows, or list them in backup.GLOBAL_TABLES")
    for ref in (*PLAIN_REFERENCES, *JSON_REFERENCES):
        if ref.table not in plans or ref.target not in plans or ref.column not in plans[ref.table].table.c:
            raise BackupError(f"backup reference {ref} names a table or column that does not exist")
    return [plans[t.name] for t in db.metadata.sorted_tables if t.name in plans]


def _owned_ids(plans: dict[str, TablePlan], project_id: int) -> dict[str, Select | None]:
    """For each table with an id, a SELECT of the ids of the project's rows."""
    selects: dict[str, Select | None] = {}
    for plan in plans.values():
        if plan.name == ROOT:
            selects[ROOT] = None
            continue
        cond = _ownership(plan, selects, project_id)
        selects[plan.name] = select(plan.table.c.id).where(cond) if plan.has_id else None
    return selects


def _ownership(plan: TablePlan, owned: dict[str, Select | None], project_id: int) -> Any:
    conds = []
    for ref in plan.refs:
        column = plan.table.c[ref.column]
        if ref.target == ROOT:
            conds.append(column == project_id)
        elif owned.get(ref.target) is not None:
            conds.append(column.in_(owned[ref.target]))
    if not conds:
        raise BackupError(f"{plan.name}: every reference that makes it part of a project points "
                          "at a table restored after it; give it a foreign key to an earlier table")
    return or_(*conds)


# -- export ----------------------------------------------------------------------------------

@dataclass
class ExportReport:
    path: Path
    project: str
    counts: dict[str, int]
    left_out: list[str]  # settings values left out as secrets: "projects.settings.langfuse.secret_key"

    def summary(self) -> str:
        rows = sum(self.counts.values())
        text = f"Exported '{self.project}': {rows:,} rows in {sum(1 for n in self.counts.values() if n)} tables to {self.path}."
        if self.left_out:
            text += f" Left out as secrets: {', '.join(self.left_out)}."
        return text


def evalboard_version() -> str:
    try:
        return importlib.metadata.version("evalboard")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _open_write(path: Path, compress: bool) -> IO[bytes]:
    return gzip.open(path, "wb", compresslevel=6) if compress else path.open("wb")


def _open_read(path: Path) -> IO[bytes]:
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


def export_rows(store: Store, project_id: int, left_out: list[str] | None = None
                ) -> Iterator[tuple[str, dict[str, Any]]]:
    """The project's rows as (table, row) in restore order, secrets left out of settings."""
    plans = {p.name: p for p in project_tables()}
    owned = _owned_ids(plans, project_id)
    left_out = [] if left_out is None else left_out
    with store.engine.connect() as conn:
        for plan in plans.values():
            table = plan.table
            cond = table.c.id == project_id if plan.name == ROOT else _ownership(plan, owned, project_id)
            order = list(table.primary_key.columns)
            query = select(table).where(cond).order_by(*order).execution_options(yield_per=BATCH)
            for row in conn.execute(query):
                values = dict(row._mapping)
                for column in table.columns:
                    if (table.name, column.name) in SETTINGS_COLUMNS and values.get(column.name):
                        values[column.name] = _scrub(values[column.name], f"{table.name}.{column.name}", left_out)
                yield table.name, values


def _scrub(value: Any, where: str, left_out: list[str]) -> Any:
    """`value` without strings under secret-looking keys (references are kept)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            here = f"{where}.{key}"
            if (isinstance(item, str) and item.strip() and SECRET_KEY.search(str(key))
                    and not SECRET_REFERENCE.match(item)):
                left_out.append(here)
                continue
            out[key] = _scrub(item, here, left_out)
        return out
    if isinstance(value, list):
        return [_scrub(item, f"{where}[{i}]", left_out) for i, item in enumerate(value)]
    return value


def export_project(store: Store, project_id: int, path: str | Path) -> ExportReport:
    """Write the whole project to `path` (JSON lines; gzip when the name ends in .gz)."""
    project = store.get_project(project_id)
    if project is None:
        raise BackupError(f"No project with id {project_id}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    counts: dict[str, int] = {p.name: 0 for p in project_tables()}
    left_out: list[str] = []
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "evalboard_version": evalboard_version(), "schema_revision": store.schema_revision(),
              "exported_at": datetime.now(UTC).isoformat(), "project": project.name,
              "tables": {name: [c.name for c in db.metadata.tables[name].columns] for name in counts}}
    try:
        with _open_write(temp, compress=path.name.endswith(".gz")) as fh:
            fh.write(_dumps(header))
            for table, row in export_rows(store, project_id, left_out):
                fh.write(_dumps({"t": table, "r": row}))
                counts[table] += 1
            fh.write(_dumps({"end": True, "counts": counts, "left_out": left_out}))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return ExportReport(path=path, project=project.name, counts=counts, left_out=left_out)


# -- reading ---------------------------------------------------------------------------------

def read_backup(path: str | Path) -> tuple[dict[str, Any], Iterator[tuple[str, dict[str, Any]]]]:
    """(header, rows) of a backup file; rows are (table, row) and end with a check of the
    trailer (BackupError when it is missing or its counts disagree)."""
    path = Path(path)
    if not path.exists():
        raise BackupError(f"{path}: no such file.")
    fh = _open_read(path)
    try:
        first = fh.readline()
        header = orjson.loads(first) if first.strip() else None
    except (orjson.JSONDecodeError, OSError, EOFError) as exc:
        fh.close()
        raise BackupError(f"{path.name}: not an evalboard backup ({exc}).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fh.close()
        raise BackupError(f"{path.name}: not an evalboard project backup.")
    if header.get("format_version", 0) > FORMAT_VERSION:
        fh.close()
        raise BackupError(f"{path.name}: made by a newer evalboard ({header.get('evalboard_version')}, "
                          f"backup format {header['format_version']}); upgrade evalboard to restore it.")

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        counts: dict[str, int] = defaultdict(int)
        trailer = None
        line_no = 1
        try:
            for line in fh:
                line_no += 1
                item = orjson.loads(line)
                if item.get("end"):
                    trailer = item
                    break
                counts[item["t"]] += 1
                yield item["t"], item["r"]
        except (orjson.JSONDecodeError, KeyError, TypeError, OSError, EOFError) as exc:
            raise BackupError(f"{path.name} line {line_no}: unreadable ({exc}); the file is damaged.") from None
        finally:
            fh.close()
        if trailer is None:
            raise BackupError(f"{path.name}: the file ends early (no trailer after line {line_no}): "
                              "the export was interrupted or the file was cut; nothing was restored.")
        expected = {t: n for t, n in trailer.get("counts", {}).items() if n}
        if dict(counts) != expected:
            raise BackupError(f"{path.name}: row counts {dict(counts)} differ from the trailer's {expected}.")

    return header, rows()


# -- restore ---------------------------------------------------------------------------------

@dataclass
class RestoreReport:
    project_id: int
    project: str
    counts: dict[str, int]
    dropped_references: int  # ids that pointed at nothing in the backup (set to null)

    def summary(self) -> str:
        return (f"Restored '{self.project}' (project id {self.project_id}): "
                f"{sum(self.counts.values()):,} rows in {sum(1 for n in self.counts.values() if n)} tables.")


_PATH_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\*|\d+)\]|\{(key)\}")


def parse_path(path: str) -> list[tuple[str, Any]]:
    """'.notes[*].id' -> [("key", "notes"), ("each", None), ("key", "id")]."""
    tokens, pos = [], 0
    while pos < len(path):
        m = _PATH_TOKEN.match(path, pos)
        if m is None:
            raise ValueError(f"bad reference path {path!r} at {pos}")
        key, index, keys = m.groups()
        if key is not None:
            tokens.append(("key", key))
        elif index == "*":
            tokens.append(("each", None))
        elif index is not None:
            tokens.append(("index", int(index)))
        else:
            tokens.append(("keys", keys))
        pos = m.end()
    return tokens


def rewrite_path(value: Any, tokens: list[tuple[str, Any]], fn: Callable[[Any], Any]) -> Any:
    """A copy of `value` with every id at the path replaced by `fn(id)`; parts of the value that
    do not have the path's shape are left alone (history rows differ in shape by action)."""
    if not tokens:
        return fn(value)
    kind, arg = tokens[0]
    rest = tokens[1:]
    if kind == "key" and isinstance(value, dict) and arg in value:
        return {**value, arg: rewrite_path(value[arg], rest, fn)}
    if kind == "each" and isinstance(value, list):
        return [rewrite_path(v, rest, fn) for v in value]
    if kind == "index" and isinstance(value, list) and -len(value) <= arg < len(value):
        copy = list(value)
        copy[arg] = rewrite_path(copy[arg], rest, fn)
        return copy
    if kind == "keys" and isinstance(value, dict):
        out = {}
        for k, v in value.items():
            new = fn(k)
            if new is not None:
                out[str(new)] = v
        return out
    return value


def _as_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class _Restorer:
    def __init__(self, conn: Connection, plans: list[TablePlan], header: dict[str, Any], name: str) -> None:
        self.conn = conn
        self.plans = {p.name: p for p in plans}
        self.position = {p.name: i for i, p in enumerate(plans)}
        self.name = name
        self.ids: dict[str, dict[int, int]] = defaultdict(dict)  # table -> old id -> new id
        self.counts: dict[str, int] = defaultdict(int)
        self.dropped = 0
        # (table, new id, column, value as in the file): references to tables restored later
        self.deferred: list[tuple[str, int, str, Any]] = []
        self.paths = {r: parse_path(r.path) for r in JSON_REFERENCES}
        self._check_columns(header)

    def _check_columns(self, header: dict[str, Any]) -> None:
        for table, columns in (header.get("tables") or {}).items():
            if table not in self.plans:
                raise BackupError(f"The backup has a table '{table}' this evalboard does not know: it "
                                  f"was made by a newer version ({header.get('evalboard_version')}, schema "
                                  f"{header.get('schema_revision')}); upgrade evalboard to restore it.")
            unknown = set(columns) - set(self.plans[table].table.c.keys())
            if unknown:
                raise BackupError(f"The backup's table '{table}' has columns {sorted(unknown)} this "
                                  f"evalboard does not know (schema {header.get('schema_revision')}); "
                                  "upgrade evalboard to restore it.")

    def later(self, table: str, target: str) -> bool:
        """True when `target`'s rows are restored after (or with) `table`'s."""
        return self.position[target] >= self.position[table]

    def new_id(self, target: str, old: Any) -> int | None:
        old_id = _as_id(old)
        if old_id is None:
            return None
        new = self.ids[target].get(old_id)
        if new is None:
            self.dropped += 1
        return new

    def map_json(self, ref: Ref, value: Any) -> Any:
        def mapped(old: Any) -> Any:
            if isinstance(old, str):  # object keys are strings
                new = self.new_id(ref.target, old)
                return None if new is None else str(new)
            return self.new_id(ref.target, old) if _as_id(old) is not None else old
        return rewrite_path(value, self.paths[ref], mapped)

    def restore(self, rows: Iterator[tuple[str, dict[str, Any]]]) -> int:
        batch: list[dict[str, Any]] = []
        current: str | None = None
        for table, row in rows:
            if table not in self.plans:
                raise BackupError(f"The backup has rows of an unknown table '{table}'.")
            if table != current:
                if current is not None:
                    self.flush(current, batch)
                    if self.position[table] < self.position[current]:
                        raise BackupError(f"The backup lists '{table}' after '{current}': rows are out of order.")
                current, batch = table, []
            batch.append(row)
            if len(batch) >= BATCH:
                self.flush(current, batch)
                batch = []
        if current is not None:
            self.flush(current, batch)
        if not self.ids[ROOT]:
            raise BackupError("The backup holds no project.")
        self.apply_deferred()
        return next(iter(self.ids[ROOT].values()))

    def flush(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        plan = self.plans[table]
        if table == ROOT and (len(rows) > 1 or self.ids[ROOT]):
            raise BackupError("The backup holds more than one project.")
        olds, values, later = [], [], []
        for row in rows:
            old = row.get("id") if plan.has_id else None
            out, deferred = self.shape(plan, row)
            olds.append(old)
            values.append(out)
            later.append(deferred)
        stmt = insert(plan.table)
        if plan.has_id:
            result = self.conn.execute(stmt.returning(plan.table.c.id, sort_by_parameter_order=True), values)
            new_ids = list(result.scalars())
            for old, new, deferred in zip(olds, new_ids, later, strict=True):
                if old is not None:
                    self.ids[table][int(old)] = new
                self.deferred += [(table, new, column, value) for column, value in deferred]
        else:
            self.conn.execute(stmt, values)
        self.counts[table] += len(rows)

    def shape(self, plan: TablePlan, row: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
        """The row as it is inserted, and (column, value) pairs to set once their targets exist."""
        table = plan.table
        out: dict[str, Any] = {}
        deferred: list[tuple[str, Any]] = []
        for name, value in row.items():
            if name == "id" and plan.has_id:
                continue
            column = table.c[name]
            if value is not None and isinstance(column.type, DateTime | db.UTCDateTime) and isinstance(value, str):
                value = datetime.fromisoformat(value)
            out[name] = value
        if plan.name == ROOT:
            out["name"] = self.name
        for ref in plan.refs:
            value = out.get(ref.column)
            if value is None:
                continue
            if ref.target == ROOT:
                out[ref.column] = next(iter(self.ids[ROOT].values()))
            elif self.later(plan.name, ref.target):
                if not table.c[ref.column].nullable or not plan.has_id:
                    raise BackupError(f"{plan.name}.{ref.column} points forward to {ref.target} and "
                                      "cannot be restored in order")
                out[ref.column] = None
                deferred.append((ref.column, value))
            else:
                new = self.new_id(ref.target, value)
                if new is None and not table.c[ref.column].nullable:
                    raise BackupError(f"{plan.name}.{ref.column} = {value} points at a {ref.target} row "
                                      "that is not in the backup; the file is inconsistent.")
                out[ref.column] = new
        for column in {r.column for r in plan.json_refs}:
            refs = [r for r in plan.json_refs if r.column == column]
            if out.get(column) is None:
                continue
            if any(self.later(plan.name, r.target) for r in refs):
                deferred.append((column, out[column]))  # inserted as in the file, rewritten below
                continue
            for ref in refs:
                out[column] = self.map_json(ref, out[column])
        return out, deferred

    def apply_deferred(self) -> None:
        for table, new_id, column, value in self.deferred:
            plan = self.plans[table]
            refs = [r for r in plan.refs if r.column == column]
            if refs:
                new_value = self.new_id(refs[0].target, value)
            else:
                new_value = value
                for ref in (r for r in plan.json_refs if r.column == column):
                    new_value = self.map_json(ref, new_value)
            self.conn.execute(update(plan.table).where(plan.table.c.id == new_id).values({column: new_value}))


def restore_project(store: Store, path: str | Path, *, name: str | None = None) -> RestoreReport:
    """Restore a backup as a new project (named as in the backup, or `name`), with new ids.

    One transaction: on any error nothing is written. Raises BackupError for a damaged,
    incomplete or newer file, and StoreError when the project name is taken."""
    header, rows = read_backup(path)
    project = (name or header.get("project") or "").strip()
    if not project:
        raise BackupError("The backup names no project: pass a name.")
    if store.project_by_name(project) is not None:
        raise StoreError(f"A project named '{project}' already exists; restore under another name "
                         "(evalboard restore FILE --as NAME).")
    plans = project_tables()
    with store.engine.begin() as conn:
        restorer = _Restorer(conn, plans, header, project)
        project_id = restorer.restore(rows)
    return RestoreReport(project_id=project_id, project=project, counts=dict(restorer.counts),
                         dropped_references=restorer.dropped)
