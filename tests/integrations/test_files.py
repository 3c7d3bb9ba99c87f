"""File import: every format and shape, bad input reported by file and line, nothing twice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from evalboard.store import Store, TraceFilter
from integrations import files
from integrations.files import FieldMapping, FileImportError, detect_shape, import_file

CHAT = {"id": "c1", "timestamp": "2026-02-01T10:00:00Z", "tags": ["prod"],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call1", "content": "4C, rain"},
            {"role": "assistant", "content": "4C and rain in Oslo."}],
        "user_id": "u1", "custom_field": "kept"}

LANGFUSE = {"id": "lf-1", "name": "qa", "timestamp": "2026-02-01T10:00:00.000Z", "input": {"q": "hi"},
            "output": {"a": "hello"}, "userId": "u9", "sessionId": "s9", "release": "1.2", "latency": 1.5,
            "totalCost": 0.002, "tags": ["x"],
            "observations": [
                {"id": "o1", "type": "SPAN", "name": "root", "startTime": "2026-02-01T10:00:00Z",
                 "endTime": "2026-02-01T10:00:01.5Z"},
                {"id": "o2", "parentObservationId": "o1", "type": "GENERATION", "name": "llm",
                 "model": "gpt-x", "usageDetails": {"input": 10, "output": 4, "total": 14},
                 "calculatedTotalCost": 0.002, "level": "ERROR", "statusMessage": "boom"}]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_openai_chat(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    report = import_file(sqlite_store, pid, write_jsonl(tmp_path / "chat.jsonl", [CHAT]))
    assert (report.shape, report.imported, report.skipped) == ("openai_chat", 1, 0)
    t = sqlite_store.get_trace(sqlite_store.trace_ids(pid)[0])
    assert t.source == "file:chat.jsonl" and t.source_id == "c1"
    assert t.input == "weather in Oslo?" and t.output == "4C and rain in Oslo."
    assert t.messages[2].tool_calls[0].name == "get_weather"
    assert t.messages[3].tool_call_id == "call1"
    assert t.metadata["custom_field"] == "kept"  # unplaced fields are never dropped
    assert t.user_id == "u1" and t.tags == ["prod"]


def test_langfuse_shape_maps_observations(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    report = import_file(sqlite_store, pid, write_jsonl(tmp_path / "lf.jsonl", [LANGFUSE]))
    assert report.shape == "langfuse"
    t = sqlite_store.get_trace(sqlite_store.trace_ids(pid)[0])
    assert t.input == {"q": "hi"} and t.session_id == "s9" and t.release == "1.2"
    assert t.latency_ms == pytest.approx(1500) and t.cost == pytest.approx(0.002)
    gen = t.spans[1]
    assert (gen.parent_id, gen.model, gen.input_tokens, gen.level) == ("o1", "gpt-x", 10, "ERROR")
    assert sqlite_store.count_traces(pid, TraceFilter(errors_only=True)) == 1


def test_json_array_and_object_holding_a_list(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"meta": {"v": 1}, "data": rows + [{"question": "q9", "answer": "a9"}]}))
    assert import_file(sqlite_store, pid, tmp_path / "a.json").imported == 3
    report = import_file(sqlite_store, pid, tmp_path / "b.json")
    assert report.shape == "io" and report.imported == 4


def test_csv_with_labels_notes_and_tuple(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    path = tmp_path / "labelled.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "query", "response", "label", "notes", "dimensions"])
        w.writerow(["1", "how do I reset?", "Click reset.", "PASS", "", '{"persona": "admin"}'])
        w.writerow(["2", "price?", "It is free,\nalways.", "FAIL", "invented price", ""])
    report = import_file(sqlite_store, pid, path)
    assert (report.imported, report.skipped) == (2, 0)
    traces = [sqlite_store.get_trace(i) for i in sqlite_store.trace_ids(pid)]
    assert traces[0].labels == {"verdict": "PASS"} and traces[0].dimensions == {"persona": "admin"}
    assert traces[1].labels == {"verdict": "FAIL", "notes": "invented price"}
    assert traces[1].output == "It is free,\nalways."  # quoted newline inside a cell


def test_parquet(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    pd.DataFrame({"input": ["a", "b"], "output": ["x", "y"], "id": ["1", "2"]}).to_parquet(tmp_path / "t.parquet")
    report = import_file(sqlite_store, pid, tmp_path / "t.parquet")
    assert (report.shape, report.imported) == ("io", 2)


def test_bad_rows_reported_good_rows_kept(sqlite_store: Store, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files, "MAX_ROW_BYTES", 2000)
    pid = sqlite_store.create_project("p").id
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"input": "ok 1", "output": "fine"}).encode(),
             b'{"input": "broken", ',  # malformed JSON
             json.dumps({"input": "ok 2", "output": "fine"}).encode(),
             b'{"input": "caf\xe9", "output": "latin-1 byte"}',  # wrong encoding
             json.dumps({"input": None, "output": None}).encode(),  # nothing to judge
             json.dumps({"input": "x" * 3000, "output": "too big"}).encode(),
             b"[1, 2]",
             json.dumps({"input": "bad time", "output": "x", "timestamp": "yesterday"}).encode(),
             json.dumps({"messages": [{"content": "no role"}]}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = import_file(sqlite_store, pid, path)
    assert (report.imported, report.skipped) == (2, 7)
    by_line = {i.line: i.reason for i in report.issues}
    assert by_line[2].startswith("malformed JSON")
    assert "not valid UTF-8" in by_line[4] and "0xe9" in by_line[4]
    assert "missing required field" in by_line[5]
    assert "row too large" in by_line[6]
    assert "not a JSON object" in by_line[7]
    assert "timestamp 'yesterday'" in by_line[8]
    assert str(report.issues[0]) == f"mixed.jsonl line 2: {by_line[2]}"
    assert "2 imported" in report.summary() and "7 skipped" in report.summary()


def test_csv_wrong_encoding_and_ragged_rows(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    path = tmp_path / "bad.csv"
    path.write_bytes(b"input,output\nhello,world\ncaf\xe9,x\na,b,c\nfine,yes\n")
    report = import_file(sqlite_store, pid, path)
    assert report.imported == 2
    assert [(i.line, i.reason.split(" ")[0]) for i in report.issues] == [(3, "not"), (4, "has")]


def test_reimport_adds_nothing(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    rows = [{"input": f"q{i}", "output": "a"} for i in range(10)]  # no ids: content hash
    path = write_jsonl(tmp_path / "noid.jsonl", rows)
    assert import_file(sqlite_store, pid, path).imported == 10
    again = import_file(sqlite_store, pid, path)
    assert (again.imported, again.duplicates) == (0, 10)


def test_unknown_shape_needs_mapping_then_remembers_it(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    path = write_jsonl(tmp_path / "odd.jsonl", [{"uuid": "u1", "ask": "hi", "reply": "yo", "who": "bob"}])
    with pytest.raises(FileImportError, match="not in a shape evalboard recognises.*ask"):
        import_file(sqlite_store, pid, path)
    mapping = FieldMapping(id="uuid", input="ask", output="reply", metadata=["who"])
    assert import_file(sqlite_store, pid, path, mapping=mapping).imported == 1
    t = sqlite_store.get_trace(sqlite_store.trace_ids(pid)[0])
    assert (t.source_id, t.input, t.output, t.metadata) == ("u1", "hi", "yo", {"who": "bob"})
    path2 = write_jsonl(tmp_path / "odd2.jsonl", [{"uuid": "u2", "ask": "again", "reply": "ok"}])
    assert import_file(sqlite_store, pid, path2).imported == 1  # the saved mapping is used


def test_import_into_round(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    path = write_jsonl(tmp_path / "r.jsonl", [{"input": f"q{i}", "output": "a"} for i in range(4)])
    report = import_file(sqlite_store, pid, path, round_name="Round A")
    rnd = sqlite_store.get_round(report.round_id)
    assert rnd.name == "Round A" and rnd.trace_count == 4 and rnd.sampling["file"] == "r.jsonl"


def test_file_level_errors(sqlite_store: Store, tmp_path: Path) -> None:
    pid = sqlite_store.create_project("p").id
    with pytest.raises(FileImportError, match="unknown file type"):
        import_file(sqlite_store, pid, tmp_path / "x.txt")
    with pytest.raises(FileImportError, match="no such file"):
        import_file(sqlite_store, pid, tmp_path / "missing.jsonl")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileImportError, match="bad.json: malformed JSON"):
        import_file(sqlite_store, pid, tmp_path / "bad.json")
    (tmp_path / "scalar.json").write_text('{"a": 1}')
    with pytest.raises(FileImportError, match="must hold a list of rows"):
        import_file(sqlite_store, pid, tmp_path / "scalar.json")
    (tmp_path / "bad.parquet").write_bytes(b"nope")
    with pytest.raises(FileImportError, match="not a readable Parquet"):
        import_file(sqlite_store, pid, tmp_path / "bad.parquet")


def test_detect_shape() -> None:
    assert detect_shape([CHAT]) == "openai_chat"
    assert detect_shape([LANGFUSE]) == "langfuse"
    assert detect_shape([{"prompt": "p", "completion": "c"}]) == "io"
    assert detect_shape([{"foo": 1}]) == ""
