"""Backup and restore: a whole project to one file and into another database (SQLite ->
Postgres and back), with new ids, identical counts and identical content.

The project is the demo (traces, rounds, labels with history, taxonomy history, judges with
versions, runs and verdicts) plus one synthetic row in every project table whose references all
point at other synthetic rows, so a table added later is covered without editing this file.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import JSON, Integer, func, select
from typer.testing import CliRunner

from cli.main import app as cli_app
from evalboard import backup, db
from evalboard.backup import BackupError, export_project, export_rows, read_backup, restore_project
from evalboard.coding import save_annotation
from evalboard.store import Store, StoreError
from tests.trust.conftest import BACKENDS
from tests.trust.trust_helpers import build_rich_project, canonical, table_counts

ID_KEY = re.compile(r"(?:^|_)ids?$")


def _other_project(store: Store) -> int:
    """A small second project, created first so that restored rows get different ids."""
    from evalboard.models import TraceRecord

    pid = store.create_project("Someone else's project").id
    ids = store.add_traces(pid, [TraceRecord(source="x", source_id=str(i), input=f"q{i}", output="a")
                                 for i in range(25)]).trace_ids
    for t in ids[:10]:
        save_annotation(store, pid, t, "zoe", verdict="fail", note="other project", modes=["other mode"])
    return pid  # type: ignore[return-value]


# -- the schema walk ---------------------------------------------------------------------------

def test_every_table_is_in_project_backups_or_declared_global() -> None:
    names = {p.name for p in backup.project_tables()}
    assert names == set(db.metadata.tables) - backup.GLOBAL_TABLES
    assert backup.GLOBAL_TABLES <= set(db.metadata.tables)


def test_every_integer_id_column_without_foreign_key_is_declared() -> None:
    """An integer column named like an id (x_id, x_of) with no foreign key is a reference the
    schema cannot see: it must be listed in backup.PLAIN_REFERENCES, or restores would keep ids
    that name unrelated rows."""
    declared = {(r.table, r.column) for r in backup.PLAIN_REFERENCES}
    undeclared = []
    for table in db.metadata.sorted_tables:
        if table.name in backup.GLOBAL_TABLES:
            continue
        for column in table.columns:
            looks_like_id = column.name.endswith(("_id", "_of")) and isinstance(column.type, Integer)
            if looks_like_id and not column.foreign_keys and (table.name, column.name) not in declared:
                undeclared.append(f"{table.name}.{column.name}")
    assert undeclared == [], f"declare these in backup.PLAIN_REFERENCES: {undeclared}"


def _id_paths(value: Any, path: str = "") -> set[str]:
    """Paths (in backup's notation) of integers under id-like keys in a JSON value."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}"
            if ID_KEY.search(str(key)) and (isinstance(item, int) and not isinstance(item, bool)):
                found.add(here)
            elif ID_KEY.search(str(key)) and isinstance(item, list) and any(isinstance(i, int) for i in item):
                found.add(here + "[*]")
            found |= _id_paths(item, here)
    elif isinstance(value, list):
        for item in value[:50]:
            found |= _id_paths(item, path + "[*]")
    return found


def test_ids_inside_json_are_declared(sqlite_store: Store) -> None:
    """Every id-like key holding integers in a JSON column of real project data (the demo) is a
    declared JSON reference. Trace content is the user's data and is not looked at."""
    pid = build_rich_project(sqlite_store)
    declared = {(r.table, r.column, r.path) for r in backup.JSON_REFERENCES}
    json_columns = {(t.name, c.name) for t in db.metadata.sorted_tables for c in t.columns
                    if isinstance(c.type, JSON) and t.name != "traces"}
    undeclared = set()
    for table, row in export_rows(sqlite_store, pid):
        for column, value in row.items():
            if (table, column) in json_columns and value is not None:
                for path in _id_paths(value):
                    if (table, column, path) not in declared:
                        undeclared.add((table, column, path))
    assert undeclared == set(), f"declare these in backup.JSON_REFERENCES: {sorted(undeclared)}"


def test_reference_paths_rewrite_only_matching_shapes() -> None:
    tokens = backup.parse_path("[*].members[*]")
    value = [{"members": [1, 2]}, {"members": "n/a"}, 5]
    assert backup.rewrite_path(value, tokens, lambda v: v * 10) == [{"members": [10, 20]}, {"members": "n/a"}, 5]
    keys = backup.parse_path("{key}")
    assert backup.rewrite_path({"3": "boom", "9": "x"}, keys, lambda k: None if k == "9" else "30") == {"30": "boom"}
    assert backup.rewrite_path({"pairs": [[4, "pass"]]}, backup.parse_path(".pairs[*][0]"),
                               lambda v: v + 1) == {"pairs": [[5, "pass"]]}
    with pytest.raises(ValueError, match="bad reference path"):
        backup.parse_path(".a[x]")


# -- round trips -------------------------------------------------------------------------------

PAIRS = [("sqlite", "sqlite")] + ([("sqlite", "postgres"), ("postgres", "sqlite")] if "postgres" in BACKENDS else [])


@pytest.mark.parametrize("source, other", PAIRS, ids=[f"{a}->{b}->{a}" for a, b in PAIRS])
def test_round_trip_keeps_every_row_and_all_content(source: str, other: str, tmp_path: Path,
                                                    new_database: Callable[[str], str]) -> None:
    first = Store(new_database(source))
    pid = build_rich_project(first)
    counts = table_counts(first)
    assert all(n > 0 for n in counts.values()), counts  # every table takes part

    one = export_project(first, pid, tmp_path / "one.jsonl.gz")
    assert one.counts == counts  # everything in the database is this project's
    original = canonical(read_backup(one.path)[1])

    # Into another backend that already holds a project, so every id changes.
    second = Store(new_database(other))
    _other_project(second)
    before = table_counts(second)
    restored = restore_project(second, one.path)
    assert restored.project == first.get_project(pid).name and restored.project_id != pid
    after = table_counts(second)
    assert {t: after[t] - before[t] for t in after} == counts
    two = export_project(second, restored.project_id, tmp_path / "two.jsonl")
    assert two.counts == counts  # the other project's rows stayed out
    assert canonical(read_backup(two.path)[1]) == original

    # And back into the first kind of database, beside the original, under another name.
    back = restore_project(first, two.path, name="Demo, restored")
    assert canonical(export_rows(first, back.project_id)) == original
    assert first.project_overview(back.project_id) == first.project_overview(pid)
    assert back.dropped_references == restored.dropped_references == 0
    first.dispose()
    second.dispose()


def test_restored_project_works_like_the_original(sqlite_store: Store, tmp_path: Path) -> None:
    """Spot checks through the public API: the queue, a person's labels, judge verdicts."""
    from evalboard.coding import get_annotation, trace_annotations
    from evalboard.demo import create_demo

    pid = create_demo(sqlite_store)
    path = export_project(sqlite_store, pid, tmp_path / "demo.jsonl").path
    copy = restore_project(sqlite_store, path, name="copy").project_id
    rounds, copied_rounds = sqlite_store.list_rounds(pid), sqlite_store.list_rounds(copy)
    assert [(r.name, r.trace_count, r.sampling) for r in rounds] == [
        (r.name, r.trace_count, r.sampling) for r in copied_rounds]
    old_queue = [sqlite_store.get_trace(t).source_id for t in sqlite_store.round_trace_ids(rounds[0].id)]
    new_queue = [sqlite_store.get_trace(t).source_id for t in sqlite_store.round_trace_ids(copied_rounds[0].id)]
    assert old_queue == new_queue
    source_ids = {sqlite_store.get_trace(t).source_id: t for t in sqlite_store.trace_ids(copy)}
    for t in sqlite_store.round_trace_ids(rounds[0].id)[:15]:
        twin = source_ids[sqlite_store.get_trace(t).source_id]
        assert [a.model_dump(exclude={"id", "trace_id", "round_id"}) for a in trace_annotations(sqlite_store, t)] == [
            a.model_dump(exclude={"id", "trace_id", "round_id"}) for a in trace_annotations(sqlite_store, twin)]
    # A copy is independent: labelling it leaves the original alone.
    twin = source_ids[sqlite_store.get_trace(sqlite_store.trace_ids(pid)[0]).source_id]
    save_annotation(sqlite_store, copy, twin, "new person", verdict="pass")
    assert get_annotation(sqlite_store, sqlite_store.trace_ids(pid)[0], "new person") is None


# -- secrets and damaged files -----------------------------------------------------------------

def test_settings_keep_references_but_lose_secrets(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("Keys", settings={
        "langfuse": {"public_key": "pk-lf-visible", "secret_key": "sk-lf-CANARY-backup",
                     "base_url": "http://127.0.0.1:1"},
        "llm": {"api_key": "sk-CANARY-backup", "model": "m", "max_tokens": 5},
        "headers": {"Authorization": "Bearer ${ENV:APP_TOKEN}", "X-Api-Key": "literal-CANARY"},
        "default_renderer": "chat"}).id
    report = export_project(sqlite_store, pid, tmp_path / "keys.jsonl")
    text = report.path.read_text()
    assert "CANARY" not in text
    assert sorted(report.left_out) == ["projects.settings.headers.X-Api-Key",
                                       "projects.settings.langfuse.secret_key", "projects.settings.llm.api_key"]
    restored = sqlite_store.get_project(restore_project(sqlite_store, report.path, name="Keys 2").project_id)
    assert restored.settings == {
        "langfuse": {"public_key": "pk-lf-visible", "base_url": "http://127.0.0.1:1"},
        "llm": {"model": "m", "max_tokens": 5}, "headers": {"Authorization": "Bearer ${ENV:APP_TOKEN}"},
        "default_renderer": "chat"}
    assert "Left out as secrets" in report.summary()


@pytest.fixture
def small_backup(sqlite_store: Store, tmp_path: Path) -> tuple[Store, Path]:
    pid = _other_project(sqlite_store)
    return sqlite_store, export_project(sqlite_store, pid, tmp_path / "small.jsonl").path


def _projects(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(db.projects)).scalar_one()


def test_cut_file_restores_nothing(small_backup: tuple[Store, Path], tmp_path: Path) -> None:
    store, path = small_backup
    lines = path.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:-3]))  # the trailer and two rows are gone
    before = table_counts(store)
    with pytest.raises(BackupError, match="ends early"):
        restore_project(store, cut, name="cut")
    assert table_counts(store) == before and store.project_by_name("cut") is None

    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b"".join(lines[:5]) + b'{"t": "traces", "r": {"id": 1\n' + b"".join(lines[6:]))
    with pytest.raises(BackupError, match="line 6: unreadable"):
        restore_project(store, damaged, name="damaged")
    assert table_counts(store) == before

    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(b"".join(lines))[:-40])
    with pytest.raises(BackupError):
        restore_project(store, gz, name="gz")
    assert table_counts(store) == before


def test_wrong_files_and_taken_names_are_refused(small_backup: tuple[Store, Path], tmp_path: Path) -> None:
    store, path = small_backup
    with pytest.raises(StoreError, match="already exists; restore under another name"):
        restore_project(store, path)
    other = tmp_path / "notes.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(BackupError, match="not an evalboard project backup"):
        restore_project(store, other)
    with pytest.raises(BackupError, match="no such file"):
        restore_project(store, tmp_path / "missing.jsonl")

    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    newer = dict(header, tables={**header["tables"], "traces": [*header["tables"]["traces"], "sentiment"]})
    (tmp_path / "newer.jsonl").write_text(json.dumps(newer) + "\n" + "".join(lines[1:]))
    with pytest.raises(BackupError, match=r"columns \['sentiment'\] this evalboard does not know"):
        restore_project(store, tmp_path / "newer.jsonl", name="newer")
    future = dict(header, format_version=backup.FORMAT_VERSION + 1)
    (tmp_path / "future.jsonl").write_text(json.dumps(future) + "\n" + "".join(lines[1:]))
    with pytest.raises(BackupError, match="made by a newer evalboard"):
        restore_project(store, tmp_path / "future.jsonl", name="future")
    assert _projects(store) == 1


def test_backup_from_an_older_schema_gets_defaults(small_backup: tuple[Store, Path], tmp_path: Path) -> None:
    """A column added after the backup was made takes its default on restore."""
    store, path = small_backup
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    lines[0]["tables"]["rounds"] = [c for c in lines[0]["tables"]["rounds"] if c != "trace_count"]
    lines[0]["tables"]["annotations"] = [c for c in lines[0]["tables"]["annotations"] if c != "discuss"]
    for item in lines[1:]:
        if item.get("t") == "annotations":
            item["r"].pop("discuss")
    older = tmp_path / "older.jsonl"
    older.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    copy = restore_project(store, older, name="older")
    assert copy.counts["annotations"] == 10
    with store.engine.connect() as conn:
        assert set(conn.execute(select(db.annotations.c.discuss).where(
            db.annotations.c.project_id == copy.project_id)).scalars()) == {False}


def test_cli_export_and_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("EVALBOARD_DATABASE_URL", url)
    store = Store(url)
    pid = _other_project(store)
    runner = CliRunner()
    out = runner.invoke(cli_app, ["export", "Someone else's project", str(tmp_path / "b.jsonl.gz")])
    assert out.exit_code == 0, out.output
    assert "Exported 'Someone else's project'" in out.output and (tmp_path / "b.jsonl.gz").exists()
    taken = runner.invoke(cli_app, ["restore", str(tmp_path / "b.jsonl.gz")])
    assert taken.exit_code == 2 and "--as NAME" in taken.output
    ok = runner.invoke(cli_app, ["restore", str(tmp_path / "b.jsonl.gz"), "--as", "Copy"])
    assert ok.exit_code == 0 and "Restored 'Copy'" in ok.output
    copy = store.project_by_name("Copy")
    assert store.project_overview(copy.id) == store.project_overview(pid)
    missing = runner.invoke(cli_app, ["export", "Nope", str(tmp_path / "x.jsonl")])
    assert missing.exit_code == 2 and not (tmp_path / "x.jsonl").exists()
    store.dispose()


def test_interrupted_export_leaves_no_file_under_the_name(sqlite_store: Store, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pid = _other_project(sqlite_store)

    def broken(*args: Any, **kwargs: Any):  # noqa: ANN202
        yield "projects", {"id": 1}
        raise OSError("disk full")

    monkeypatch.setattr(backup, "export_rows", broken)
    with pytest.raises(OSError, match="disk full"):
        export_project(sqlite_store, pid, tmp_path / "b.jsonl")
    assert list(tmp_path.glob("*b.jsonl*")) == []


def test_gz_name_means_compressed(sqlite_store: Store, tmp_path: Path) -> None:
    pid = _other_project(sqlite_store)
    packed = export_project(sqlite_store, pid, tmp_path / "p.jsonl.gz").path
    plain = export_project(sqlite_store, pid, tmp_path / "p.jsonl").path
    assert packed.read_bytes()[:2] == b"\x1f\x8b" and plain.read_bytes()[:1] == b"{"
    assert packed.stat().st_size < plain.stat().st_size / 3
