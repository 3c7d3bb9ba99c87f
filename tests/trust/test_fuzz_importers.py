"""Property-based fuzzing of the file importer, for every format: JSONL, JSON, CSV, Parquet.

Hypothesis writes small files mixing rows that are certainly good, rows that are certainly bad
(no input or output, a latency that is not a number, a token count that is not whole, and in
JSONL and CSV lines that are not even JSON or UTF-8, or rows with the wrong number of cells),
and wild rows: arbitrary keys and values, including the field names the importer reads, whose
fate the test does not predict. For every file:

- the import never raises (a file-level problem would be a FileImportError with a message);
- every row is accounted for: imported + already present + skipped == rows in the file;
- every good row is stored with its text intact; every bad row is reported with its line;
- the database holds exactly the rows reported imported.

EVALBOARD_FUZZ_EXAMPLES sets the number of files per format (default 2,000). Each file has a
few rows, so a run covers well over 2,000 x 4 files and 20,000 rows.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Text, cast, select

from evalboard.db import traces
from evalboard.store import Store
from integrations.files import FieldMapping, import_file

EXAMPLES = int(os.environ.get("EVALBOARD_FUZZ_EXAMPLES", "2000"))
FORMATS = ["jsonl", "json", "csv", "parquet"]

pytestmark = pytest.mark.slow

# Keys the importer gives a meaning to, so wild rows hit its parsing paths.
KNOWN_KEYS = ["id", "input", "output", "timestamp", "created_at", "end_time", "tags", "metadata", "latency",
              "latency_ms", "cost", "totalCost", "input_tokens", "output_tokens", "user_id", "session_id",
              "name", "dimensions", "tuple", "scores", "error", "label", "verdict", "notes", "messages",
              "observations", "query", "response", "release", "environment"]

text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\r\x00"), max_size=40)
wild_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                 st.floats(allow_nan=False, allow_infinity=False), wild_text)
json_value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(wild_text, inner, max_size=3)),
                          max_leaves=5)


@st.composite
def good_row(draw: st.DrawFn, n: int) -> dict[str, Any]:
    row: dict[str, Any] = {"id": f"good-{n}", "input": "q: " + draw(text) + "?", "output": draw(text)}
    if draw(st.booleans()):
        row["tags"] = draw(st.lists(st.text(alphabet="abcxyz-_", min_size=1, max_size=8), max_size=3))
    if draw(st.booleans()):
        row["latency_ms"] = draw(st.floats(0, 1e6, allow_nan=False))
    if draw(st.booleans()):
        row["metadata"] = draw(st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=6), text, max_size=3))
    return row


@st.composite
def bad_row(draw: st.DrawFn, n: int, fmt: str) -> dict[str, Any]:
    defect = draw(st.sampled_from(["no content", "latency", "tokens"]))
    if defect == "no content":
        return {"id": f"bad-{n}", "note": draw(text)}
    if defect == "latency":
        return {"id": f"bad-{n}", "input": "q", "output": "a", "latency_ms": "slow " + draw(text)}
    return {"id": f"bad-{n}", "input": "q", "output": "a", "input_tokens": "many " + draw(text)}


@st.composite
def wild_row(draw: st.DrawFn) -> dict[str, Any]:
    keys = st.one_of(st.sampled_from(KNOWN_KEYS), wild_text)
    row = draw(st.dictionaries(keys, json_value, max_size=5))
    return row


@dataclass
class Planned:
    """A file and what the test knows about its rows."""

    rows: list[tuple[str, Any]] = field(default_factory=list)  # (kind, row) in file order


@st.composite
def plans(draw: st.DrawFn, fmt: str) -> Planned:
    counter = itertools.count()
    plan = Planned(rows=[("good", draw(good_row(next(counter))))])  # the shape is read from the first rows
    kinds = ["good", "bad", "wild"] + (["junk"] if fmt in ("jsonl", "json", "csv") else [])
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=8)):
        if kind == "good":
            plan.rows.append(("good", draw(good_row(next(counter)))))
        elif kind == "bad":
            plan.rows.append(("bad", draw(bad_row(next(counter), fmt))))
        elif kind == "wild":
            plan.rows.append(("wild", draw(wild_row())))
        else:
            plan.rows.append(("junk", draw(st.sampled_from(JUNK[fmt]))))
    return plan


JUNK = {
    "jsonl": [b'{"id": "broken", "input": ', b"[1, 2, 3]", b"42", b'"just a string"', b"null",
              b'{"input": "caf\xe9"}', b"\xff\xfe\x00garbage", b"{'single': 'quotes'}", b"NaN"],
    "json": [[1, 2], "text", 42, None, True],
    "csv": ["extra,cells,beyond,the,header,count,here,and,more,more,more,more,more,more,more,more,more,more",
            "\xff-not-utf8"],
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def write(plan: Planned, fmt: str, path: Path) -> int:
    """Write the planned rows; returns how many rows the file holds (what `report.rows` counts)."""
    if fmt == "jsonl":
        lines = []
        for kind, row in plan.rows:
            lines.append(row if kind == "junk" else json.dumps(row).encode())
        path.write_bytes(b"\n".join(lines) + b"\n\n")  # a blank line at the end is not a row
        return len(lines)
    if fmt == "json":
        path.write_text(json.dumps([row for _, row in plan.rows]))
        return len(plan.rows)
    objects = [row for kind, row in plan.rows if kind != "junk"]
    header = list(dict.fromkeys(k for row in objects for k in row))
    if fmt == "parquet":
        columns = {k: pa.array([None if row.get(k) is None else _cell(row[k]) for row in objects], pa.string())
                   for k in header}
        pq.write_table(pa.table(columns), path)
        return len(objects)
    buf = io.StringIO()
    # Quote every cell: with QUOTE_MINIMAL a lone CR goes unquoted, and readers rightly take it as a line end.
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    n = 0
    for kind, row in plan.rows:
        if kind == "junk":
            buf.write(row + "\n")
        elif any(_cell(row.get(k)).strip() for k in header):
            writer.writerow([_cell(row.get(k)) for k in header])
        else:
            continue  # a row of empty cells is not a row
        n += 1
    path.write_bytes(buf.getvalue().encode("utf-8", errors="surrogateescape").replace(
        "\xff-not-utf8".encode(), b"\xff-not-utf8"))
    return n


@dataclass
class Seen:
    files: int = 0
    rows: int = 0
    imported: int = 0
    skipped: int = 0


SEEN: dict[str, Seen] = {fmt: Seen() for fmt in FORMATS}


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path_factory.mktemp("fuzz")
    folder = tmp_path_factory.mktemp("fuzz") if base != Path("/dev/shm") else base / f"evalboard-fuzz-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    store = Store(f"sqlite:///{folder / 'fuzz.db'}")
    store.fuzz_folder = folder  # type: ignore[attr-defined]
    yield store
    store.dispose()
    for p in folder.glob("*"):
        p.unlink()
    folder.rmdir()


MAPPING = FieldMapping(id="id", input="input", output="output", timestamp="timestamp", tags="tags",
                       metadata=["metadata"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_importer_survives_anything_and_accounts_for_every_row(fmt: str, fuzz_store: Store) -> None:
    project = fuzz_store.create_project(f"fuzz {fmt}").id
    names = itertools.count()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(plan=plans(fmt), explicit=st.booleans())
    def check(plan: Planned, explicit: bool) -> None:
        name = f"f{next(names)}.{fmt}"
        path = fuzz_store.fuzz_folder / name  # type: ignore[attr-defined]
        expected_rows = write(plan, fmt, path)
        report = import_file(fuzz_store, project, path, mapping=MAPPING if explicit else None)
        path.unlink()

        assert report.rows == expected_rows
        assert report.imported + report.duplicates + report.skipped == report.rows
        assert len(report.issues) == report.skipped
        assert all(issue.line >= 1 and issue.reason for issue in report.issues)
        with fuzz_store.engine.connect() as conn:
            # Read as text: compared with what the file said, not with what the store makes of it.
            stored = {sid: None if raw is None else json.loads(raw) for sid, raw in conn.execute(
                select(traces.c.source_id, cast(traces.c.input, Text)).where(
                    traces.c.project_id == project, traces.c.source == f"file:{name}"))}
        assert len(stored) == report.imported  # a new file: nothing of it was there before

        lines = _lines(plan, fmt)
        bad_lines = {issue.line for issue in report.issues}
        for (kind, row), line in zip(plan.rows, lines, strict=True):
            if kind == "good":
                assert stored.get(row["id"]) == row["input"], (row, report.issues)
            elif kind in ("bad", "junk") and line is not None:
                assert line in bad_lines, (kind, row, line, report.issues)
        seen = SEEN[fmt]
        seen.files += 1
        seen.rows += report.rows
        seen.imported += report.imported
        seen.skipped += report.skipped

    check()
    seen = SEEN[fmt]
    print(f"\nfuzz {fmt}: {seen.files} files, {seen.rows} rows, {seen.imported} imported, {seen.skipped} reported")
    assert seen.files >= EXAMPLES * 0.9 and seen.skipped > 0 and seen.imported > seen.files


def _lines(plan: Planned, fmt: str) -> list[int | None]:
    """The line (JSONL, CSV: first physical line of the record; JSON, Parquet: item number) each
    planned row is reported under; None where the test cannot tell (CSV rows of empty cells)."""
    out: list[int | None] = []
    if fmt in ("json", "jsonl"):
        return list(range(1, len(plan.rows) + 1))
    if fmt == "parquet":
        return list(range(1, len(plan.rows) + 1))
    objects = [row for kind, row in plan.rows if kind != "junk"]
    header = list(dict.fromkeys(k for row in objects for k in row))
    head = io.StringIO()
    csv.writer(head, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(header)
    line = 1 + _breaks(head.getvalue())  # a header cell may hold a line break
    for kind, row in plan.rows:
        if kind == "junk":
            out.append(line)
            line += 1
            continue
        cells = [_cell(row.get(k)) for k in header]
        if not any(c.strip() for c in cells):
            out.append(None)
            continue
        out.append(line)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(cells)
        line += _breaks(buf.getvalue())
    return out


def _breaks(written: str) -> int:
    """Line breaks as the importer counts them: LF, CRLF, and a lone CR (old Mac files)."""
    return written.replace("\r\n", "\n").replace("\r", "\n").count("\n")


# -- bugs the fuzzing found (fixed; kept as regression tests) -------------------------------------

@pytest.mark.parametrize("value", [10**20, -(10**15), 1e300])
def test_out_of_range_epoch_timestamp_is_a_bad_row(value: float, fuzz_store: Store, tmp_path: Path) -> None:
    """datetime.fromtimestamp raised OverflowError/OSError past its range and stopped the import."""
    path = tmp_path / "epoch.jsonl"
    path.write_text(json.dumps({"id": "ok", "input": "q", "output": "a", "timestamp": 1_700_000_000}) + "\n"
                    + json.dumps({"id": "far", "input": "q", "output": "a", "timestamp": value}) + "\n")
    pid = fuzz_store.create_project(f"epoch {value}").id
    report = import_file(fuzz_store, pid, path)
    assert (report.imported, report.skipped) == (1, 1)


def test_csv_row_with_empty_input_and_output_is_reported(fuzz_store: Store, tmp_path: Path) -> None:
    """Empty CSV cells were kept as "" (not "no value"): such a row became an empty trace, and an
    empty `observations` cell made every other row fail."""
    path = tmp_path / "empty.csv"
    path.write_text("id,input,output,note\nok,question,answer,\nempty,,,just a note\n")
    pid = fuzz_store.create_project("empty cells").id
    report = import_file(fuzz_store, pid, path)
    assert (report.imported, report.skipped) == (1, 1)


def test_trace_whose_output_is_a_number_can_be_read_back(fuzz_store: Store) -> None:
    """SQLite stores a bare-number JSON value as a number (numeric affinity); reading it crashed."""
    from evalboard.models import TraceRecord

    pid = fuzz_store.create_project("numbers").id
    ids = fuzz_store.add_traces(pid, [TraceRecord(source="s", source_id="1", input="6*7?", output=42),
                                      TraceRecord(source="s", source_id="2", input=3.5, output="x")]).trace_ids
    assert fuzz_store.get_trace(ids[0]).output == 42 and fuzz_store.get_trace(ids[1]).input == 3.5


def test_csv_with_carriage_return_line_ends_is_imported_or_refused_clearly(fuzz_store: Store, tmp_path: Path) -> None:
    """A CSV with classic Mac line ends (CR only) raised _csv.Error from the header row."""
    from integrations.files import FileImportError

    path = tmp_path / "mac.csv"
    path.write_bytes(b"id,input,output\rA,q,a\rB,q2,a2\r")
    pid = fuzz_store.create_project("cr line ends").id
    try:
        report = import_file(fuzz_store, pid, path)
    except FileImportError:
        return
    assert report.imported == 2
