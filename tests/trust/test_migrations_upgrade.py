"""Schema upgrades keep data: rows written at the first released schema (0001), and at the next
one (0002), survive the upgrade to the newest schema unchanged, and the store reads them.

The rows are written with plain SQL in the shape of those old schemas (not through today's
table definitions), as a database created by evalboard 0001 would hold them. Every table present
at the old revision is compared column by column before and after the upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from evalboard.coding import get_annotation, save_annotation
from evalboard.store import Store
from tests.trust.conftest import BACKENDS

N_TRACES = 200
T = "2026-10-05 08:00:00.000000"  # the text an old store wrote on SQLite, and a timestamp literal on Postgres


def _json(conn: Connection) -> Callable[[str], str]:
    """A bind marker for a JSON value, as the old store wrote it on each backend."""
    return (lambda name: f"CAST(:{name} AS JSON)") if conn.dialect.name == "postgresql" else (lambda name: f":{name}")


def write_0001(conn: Connection) -> None:
    j = _json(conn)
    conn.execute(text(f"INSERT INTO projects (id, name, description, settings, created_at) "
                      f"VALUES (1, 'Legacy', 'a product from before', {j('s')}, '{T}')"),
                 {"s": json.dumps({"default_renderer": "chat"})})
    conn.execute(text(f"INSERT INTO rounds (id, project_id, name, description, sampling, trace_count, created_at) "
                      f"VALUES (1, 1, 'Round 1', '', {j('s')}, 50, '{T}')"),
                 {"s": json.dumps({"method": "random", "seed": 3, "n": 50})})
    conn.execute(text(
        "INSERT INTO traces (id, project_id, source, source_id, name, timestamp, end_time, input, output, "
        "messages, spans, tags, metadata, user_id, session_id, environment, release, latency_ms, cost, "
        "input_tokens, output_tokens, dimensions, labels, scores, error, input_preview, output_preview, "
        f"span_count, imported_at) VALUES (:id, 1, 'file:old.jsonl', :sid, 'chat', '{T}', NULL, {j('inp')}, "
        f"{j('out')}, {j('msgs')}, {j('spans')}, {j('tags')}, {j('meta')}, 'u1', NULL, 'prod', '1.0', "
        f"12.5, 0.001, 10, 20, NULL, {j('labels')}, {j('scores')}, NULL, :prev, 'fine', 1, '{T}')"),
        [{"id": i, "sid": f"t{i}", "inp": json.dumps({"query": f"question {i} ünï <b>"}),
          "out": json.dumps(f"answer {i}"),
          "msgs": json.dumps([{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "a"}]),
          "spans": json.dumps([{"id": "s1", "name": "llm", "type": "GENERATION"}]), "tags": json.dumps(["old"]),
          "meta": json.dumps({"k": i}), "labels": json.dumps({}), "scores": json.dumps([]),
          "prev": f"question {i}"} for i in range(1, N_TRACES + 1)])
    conn.execute(text("INSERT INTO round_traces (round_id, trace_id, position) VALUES (1, :t, :p)"),
                 [{"t": t, "p": t - 1} for t in range(1, 51)])
    conn.execute(text("INSERT INTO failure_modes (id, project_id, name, definition, includes, excludes, status, "
                      f"created_by, created_at) VALUES (1, 1, 'wrong tone', 'rude', '', '', 'active', 'ana', '{T}')"))
    annotations = [{"id": n, "t": t, "who": who, "v": "fail" if t % 3 == 0 else "pass",
                    "note": f"note {t} by {who}" if t % 3 == 0 else ""}
                   for n, (t, who) in enumerate(((t, who) for t in range(1, 51) for who in ("ana", "ben")), start=1)]
    conn.execute(text("INSERT INTO annotations (id, project_id, trace_id, round_id, annotator, verdict, note, "
                      "failure_step, deferred, discuss, origin, created_at, updated_at) VALUES "
                      f"(:id, 1, :t, 1, :who, :v, :note, NULL, false, false, 'human', '{T}', '{T}')"), annotations)
    conn.execute(text(f"INSERT INTO annotation_modes (annotation_id, mode_id, provenance, created_at) "
                      f"VALUES (:id, 1, 'annotator', '{T}')"), [a for a in annotations if a["v"] == "fail"])
    conn.execute(text(f"INSERT INTO annotation_events (annotation_id, trace_id, annotator, action, before, after, at) "
                      f"VALUES (:id, :t, :who, 'save', NULL, {j('after')}, '{T}')"),
                 [{**a, "after": json.dumps({"verdict": a["v"], "note": a["note"], "modes": []})} for a in annotations])
    conn.execute(text(f"INSERT INTO kv_state (key, value, updated_at) VALUES ('pull:old', {j('v')}, '{T}')"),
                 {"v": json.dumps({"done": [1, 2]})})
    conn.execute(text(f"INSERT INTO llm_calls (key, model, feature, request, response, input_tokens, output_tokens, "
                      f"cost, created_at) VALUES ('{'a' * 64}', 'm', 'test', {j('q')}, {j('r')}, 1, 2, 0.0, '{T}')"),
                 {"q": json.dumps({"messages": []}), "r": json.dumps({"text": "hi"})})


def write_0002(conn: Connection) -> None:
    j = _json(conn)
    conn.execute(text(f"INSERT INTO dimensions (id, project_id, name, description, value_list, position, created_at) "
                      f"VALUES (1, 1, 'persona', '', {j('v')}, 0, '{T}')"),
                 {"v": json.dumps([{"name": "beginner", "description": ""}, {"name": "expert", "description": ""}])})
    conn.execute(text(f"INSERT INTO query_tuples (id, project_id, dimension_values, key, origin, seed, created_at) "
                      f"VALUES (1, 1, {j('v')}, '{'b' * 64}', 'manual', NULL, '{T}')"), {"v": json.dumps({"persona": "expert"})})
    conn.execute(text(f"INSERT INTO queries (id, project_id, tuple_id, dimensions, text, original_text, status, "
                      f"duplicate_of, similarity, model, origin, key, created_at, updated_at) VALUES "
                      f"(:id, 1, 1, {j('d')}, :q, :q, 'kept', NULL, NULL, NULL, 'manual', :k, '{T}', '{T}')"),
                 [{"id": i, "d": json.dumps({"persona": "expert"}), "q": f"query {i}", "k": f"{i:064d}"} for i in (1, 2, 3)])
    conn.execute(text(f"INSERT INTO targets (id, project_id, name, kind, config, created_at, updated_at) "
                      f"VALUES (1, 1, 'app', 'http', {j('c')}, '{T}', '{T}')"),
                 {"c": json.dumps({"url": "http://127.0.0.1:1/chat", "headers": {"Authorization": "Bearer ${ENV:T}"}})})


def snapshot(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (as reflected now), ordered by primary key."""
    meta = MetaData()
    meta.reflect(conn)
    out = {}
    for table in meta.sorted_tables:
        if table.name == "alembic_version":
            continue
        order = list(table.primary_key.columns) or list(table.columns)
        out[table.name] = [tuple(r) for r in conn.execute(table.select().order_by(*order))]
    return out


def columns(conn: Connection) -> dict[str, list[str]]:
    meta = MetaData()
    meta.reflect(conn)
    return {t.name: [c.name for c in t.columns] for t in meta.sorted_tables}


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_from_the_first_schemas_survives_every_upgrade(backend: str,
                                                            new_database: Callable[[str], str]) -> None:
    store = Store(new_database(backend), migrate=False)
    store.upgrade("0001")
    assert store.schema_revision() == "0001"
    with store.engine.begin() as conn:
        write_0001(conn)
    with store.engine.connect() as conn:
        at_0001, cols_0001 = snapshot(conn), columns(conn)

    store.upgrade("0002")
    with store.engine.begin() as conn:
        write_0002(conn)
    with store.engine.connect() as conn:
        at_0002, cols_0002 = snapshot(conn), columns(conn)
    assert {t: at_0002[t] for t in at_0001} == at_0001  # 0001 -> 0002 kept every row

    store.upgrade()
    assert store.schema_revision() == Store.head_revision()
    with store.engine.connect() as conn:
        now = snapshot(conn)
        cols_now = columns(conn)
    for table, rows in at_0002.items():
        kept = [cols_now[table].index(c) for c in cols_0002[table]]  # the old columns, in old order
        assert [tuple(r[i] for i in kept) for r in now[table]] == rows, table
    assert sum(len(r) for t, r in at_0001.items() if t in cols_0001) > 2 * N_TRACES

    # The store reads the old rows and writes next to them.
    assert store.count_traces(1) == N_TRACES
    trace = store.get_trace(3)
    assert trace.input == {"query": "question 3 ünï <b>"} and trace.tags == ["old"]
    assert trace.timestamp.isoformat() == "2026-10-05T08:00:00+00:00"
    assert store.round_trace_ids(1) == list(range(1, 51))
    old = get_annotation(store, 3, "ana")
    assert old.verdict == "fail" and old.modes == ["wrong tone"] and old.note == "note 3 by ana"
    save_annotation(store, 1, 3, "ana", note="edited after the upgrade")
    assert get_annotation(store, 3, "ana").modes == ["wrong tone"]
    assert store.project_overview(1)["annotations"] == 100
    store.dispose()
