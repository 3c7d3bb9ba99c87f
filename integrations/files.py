"""Import traces from local files: JSONL, JSON, CSV and Parquet.

Rows are read as a stream (a JSONL file is never loaded whole), recognised by shape, turned
into `traces` rows and written in batches through the store. A bad row is reported with its
file, line and reason and skipped; the good rows are kept. Re-importing a file adds nothing
twice: each row's identity is (source = "file:<name>", source_id = its id field, or a hash of
its content when it has none).

Shapes recognised without configuration:
- OpenAI chat: a `messages` list (with `tool_calls` and `tool` results);
- Langfuse-style trace: an `observations` list (spans), with input/output on the trace;
- input/output pairs under common names (query/response, question/answer, prompt/completion);
- any of these may carry a dimension tuple (`dimensions` or `tuple`, an object or JSON text).
Anything else needs a `FieldMapping` (which field is id, input, output, ...), saved per project.
"""

from __future__ import annotations

import csv
import gc
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from evalboard.store import PREVIEW_CHARS, Store, content_hash, text_of

FORMATS = ("jsonl", "json", "csv", "parquet")
MAX_ROW_BYTES = int(os.environ.get("EVALBOARD_MAX_ROW_BYTES", 5 * 1024 * 1024))
MAX_REPORTED_ISSUES = 1000

ID_KEYS = ("id", "trace_id", "traceId", "uuid", "request_id")
TIME_KEYS = ("timestamp", "created_at", "createdAt", "start_time", "startTime", "time", "date")
IO_PAIRS = (("input", "output"), ("query", "response"), ("question", "answer"),
            ("prompt", "completion"), ("request", "response"), ("query", "answer"),
            ("user_query", "response"), ("question", "response"))
LABEL_KEYS = ("label", "verdict", "pass_fail", "passfail", "result", "judgment", "judgement",
              "human_label", "grade", "outcome", "pass")
NOTE_KEYS = ("notes", "note", "comment", "comments", "critique", "feedback", "reason",
             "open_code", "first_failure")
DIMENSION_KEYS = ("dimensions", "tuple", "dimension_tuple")
TAKEN_KEYS = {"messages", "observations", "metadata", "tags", "name", "user_id", "userId",
              "session_id", "sessionId", "environment", "release", "version", "latency",
              "latency_ms", "cost", "total_cost", "totalCost", "end_time", "endTime", "scores",
              "error", "input_tokens", "output_tokens"}


class FileImportError(ValueError):
    """The file as a whole cannot be imported (unknown format, unreadable, needs a mapping)."""


class FieldMapping(BaseModel):
    """Which source field holds each part of a trace. Empty means "not in this file"."""

    id: str = ""
    input: str = ""
    output: str = ""
    messages: str = ""
    metadata: list[str] = []
    tags: str = ""
    timestamp: str = ""
    label: str = ""
    notes: str = ""
    dimensions: str = ""
    name: str = ""

    def is_usable(self) -> bool:
        return bool(self.input or self.output or self.messages)


@dataclass
class RowIssue:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did. `skipped` counts bad rows; `issues` names them (first 1000)."""

    file: str
    shape: str = ""
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0
    issues: list[RowIssue] = field(default_factory=list)
    trace_ids: list[int] = field(default_factory=list)
    round_id: int | None = None

    def add_issue(self, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.issues) < MAX_REPORTED_ISSUES:
            self.issues.append(RowIssue(self.file, line, reason))

    def summary(self) -> str:
        parts = [f"{self.file}: {self.imported} imported", f"{self.duplicates} already present",
                 f"{self.skipped} skipped"]
        if self.skipped:
            reasons: dict[str, int] = {}
            for issue in self.issues:
                key = issue.reason.split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
            parts.append("(" + "; ".join(f"{n} x {r}" for r, n in reasons.items()) + ")")
        return ", ".join(parts[:3]) + (" " + parts[3] if len(parts) > 3 else "")


class RowError(ValueError):
    """One row cannot be imported; the message says why (it becomes a RowIssue)."""


# -- reading ---------------------------------------------------------------------------------

def detect_format(path: str | Path) -> str:
    name = str(path).lower()
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                     (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return fmt
    raise FileImportError(f"{Path(path).name}: unknown file type; use one of .jsonl, .json, .csv, "
                       ".parquet (or pass the format explicitly).")


Row = tuple[int, dict[str, Any] | None, str | None]  # (line, row or None, problem or None)


def iter_rows(path: str | Path, fmt: str | None = None) -> Iterator[Row]:
    """Yield (line number, row dict, None) or (line number, None, reason) for a bad row."""
    fmt = fmt or detect_format(path)
    path = Path(path)
    if not path.exists():
        raise FileImportError(f"{path}: no such file.")
    readers: dict[str, Callable[[Path], Iterator[Row]]] = {
        "jsonl": _iter_jsonl, "json": _iter_json, "csv": _iter_csv, "parquet": _iter_parquet}
    if fmt not in readers:
        raise FileImportError(f"Unknown format '{fmt}'; use one of {', '.join(FORMATS)}.")
    return readers[fmt](path)


def _iter_jsonl(path: Path) -> Iterator[Row]:
    loads = orjson.loads
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if len(line) > MAX_ROW_BYTES:
                yield n, None, (f"row too large: {len(line) / 1e6:.1f} MB is above the "
                                f"{MAX_ROW_BYTES / 1e6:.1f} MB limit (EVALBOARD_MAX_ROW_BYTES)")
                continue
            if not line.strip():
                continue
            try:
                row = loads(line)
            except orjson.JSONDecodeError as exc:
                yield n, None, _json_problem(line, exc)
                continue
            if not isinstance(row, dict):
                yield n, None, f"not a JSON object: expected {{...}}, got {type(row).__name__}"
                continue
            yield n, row, None


def _json_problem(raw: bytes, exc: Exception) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return (f"not valid UTF-8: byte 0x{raw[uexc.start]:02x} at position {uexc.start} "
                "(save the file as UTF-8)")
    return f"malformed JSON: {exc}"


def _iter_json(path: Path) -> Iterator[Row]:
    # A JSON document must be parsed whole; JSONL is the format for very large exports.
    raw = path.read_bytes()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FileImportError(f"{path.name}: {_json_problem(raw, exc)}") from exc
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if not lists:
            raise FileImportError(f"{path.name}: a JSON object must hold a list of rows (e.g. "
                               '{"data": [...]}); none of its fields is a list of objects.')
        preferred = [k for k in ("data", "traces", "items", "rows", "records", "examples") if k in lists]
        doc = doc[(preferred or lists)[0]]
    if not isinstance(doc, list):
        raise FileImportError(f"{path.name}: expected a JSON array of objects.")
    for n, row in enumerate(doc, start=1):
        if isinstance(row, dict):
            yield n, row, None
        else:
            yield n, None, f"item {n} is not a JSON object (got {type(row).__name__})"


def _iter_csv(path: Path) -> Iterator[Row]:
    bad_lines: set[int] = set()

    def physical_lines(fh: io.BufferedReader) -> Iterator[bytes]:
        # Files saved with classic Mac line ends (CR only) are read line by line too.
        for raw in fh:
            if b"\r" in raw.rstrip(b"\r\n"):
                yield from raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").splitlines(keepends=True)
            else:
                yield raw

    def decoded(fh: io.BufferedReader) -> Iterator[str]:
        for n, raw in enumerate(physical_lines(fh), start=1):
            try:
                yield raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                bad_lines.add(n)
                yield raw.decode("utf-8", errors="replace")

    csv.field_size_limit(MAX_ROW_BYTES)
    with path.open("rb") as fh:
        reader = csv.reader(decoded(fh))
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileImportError(f"{path.name} line 1: the header row is not readable CSV ({exc}).") from exc
        header = [h.strip() for h in header]
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, None, f"unreadable CSV: {exc}"
                continue
            line = start
            start = reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            if any(n in bad_lines for n in range(line, reader.line_num + 1)):
                yield line, None, "not valid UTF-8 (save the file as UTF-8)"
                continue
            if len(cells) != len(header):
                yield line, None, f"has {len(cells)} cells but the header has {len(header)} columns"
                continue
            yield line, {h: _cell(c) for h, c in zip(header, cells, strict=True)}, None


def _cell(text: str) -> Any:
    """CSV cells are text; cells holding JSON objects or arrays (messages, tuples) are parsed."""
    s = text.strip()
    if s and s[0] in "[{" and s[-1] in "]}":
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return text
    return text if s else None


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise FileImportError(f"{path.name}: not a readable Parquet file ({exc}).") from exc
    n = 0
    for batch in pf.iter_batches(batch_size=2000):
        for row in batch.to_pylist():
            n += 1
            yield n, {k: _cell(v) if isinstance(v, str) else v for k, v in row.items()}, None


# -- shapes ----------------------------------------------------------------------------------

def detect_shape(rows: list[dict[str, Any]]) -> str:
    """Name the shape the first rows share: 'openai_chat', 'langfuse', 'io', or '' (unknown)."""
    if not rows:
        return ""
    keys = set().union(*(r.keys() for r in rows))
    if "observations" in keys:
        return "langfuse"
    if "messages" in keys:
        return "openai_chat"
    if _io_pair(keys):
        return "io"
    return ""


def _io_pair(keys: set[str]) -> tuple[str, str] | None:
    for a, b in IO_PAIRS:
        if a in keys and b in keys:
            return a, b
    for a, _ in IO_PAIRS:
        if a in keys:
            return a, ""
    return None


def mapping_for(shape: str, keys: set[str]) -> FieldMapping:
    """The mapping a recognised shape implies (what the preview shows before importing)."""
    first = lambda options: next((k for k in options if k in keys), "")  # noqa: E731
    m = FieldMapping(id=first(ID_KEYS), timestamp=first(TIME_KEYS), label=first(LABEL_KEYS),
                     notes=first(NOTE_KEYS), dimensions=first(DIMENSION_KEYS),
                     tags="tags" if "tags" in keys else "", name="name" if "name" in keys else "")
    if shape == "openai_chat":
        m.messages = "messages"
        pair = _io_pair(keys)
        if pair:
            m.input, m.output = pair
    elif shape in ("io", "langfuse"):
        pair = _io_pair(keys) or ("", "")
        m.input, m.output = pair
    m.metadata = ["metadata"] if "metadata" in keys else []
    return m


# -- rows ------------------------------------------------------------------------------------

def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        secs = value / 1000.0 if value > 1e11 else float(value)  # epoch ms or s
        try:
            return datetime.fromtimestamp(secs, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise RowError(f"timestamp {value!r} is outside the dates a computer can hold") from None
    try:
        dt = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise RowError(f"timestamp '{str(value)[:40]}' is not an ISO date or epoch number") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _tags(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list | tuple):
        return [str(t) for t in value if t not in (None, "")]
    raise RowError(f"field 'tags' must be a list or comma-separated text, not {type(value).__name__}")


def _float(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RowError(f"field '{name}' must be a number, got '{str(value)[:40]}'") from None


def _messages(value: Any) -> list[dict[str, Any]]:
    """OpenAI-style messages, checked; tool_calls become {id, name, arguments}.

    Messages without tool calls are kept as they are (no copy): this runs once per row of
    imports of 100k traces, so it does the least work that still validates."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise RowError("field 'messages' must be a list of {role, content} objects")
    out = value
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RowError(f"messages[{i}] needs a text 'role' (system, user, assistant or tool)")
        calls = m.get("tool_calls")
        if calls:
            if out is value:
                out = list(value)
            out[i] = {**m, "tool_calls": _tool_calls(calls, i)}
    return out


def _tool_calls(calls: Any, i: int) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise RowError(f"messages[{i}].tool_calls must be a list")
    norm = []
    for c in calls:
        fn = (c.get("function") or {}) if isinstance(c, dict) else {}
        name = fn.get("name") or (c.get("name") if isinstance(c, dict) else None)
        if not name:
            raise RowError(f"messages[{i}].tool_calls: each call needs a function name")
        norm.append({"id": c.get("id"), "name": name,
                     "arguments": fn.get("arguments", c.get("arguments"))})
    return norm


def _spans(observations: Any) -> list[dict[str, Any]]:
    """Langfuse-style observations as spans."""
    if not isinstance(observations, list):
        raise RowError("field 'observations' must be a list")
    spans = []
    for i, o in enumerate(observations):
        if not isinstance(o, dict):
            raise RowError(f"observations[{i}] is not an object")
        usage = o.get("usageDetails") or o.get("usage") or {}
        start, end = _parse_time(o.get("startTime") or o.get("start_time")), _parse_time(
            o.get("endTime") or o.get("end_time"))
        spans.append({
            "id": str(o.get("id") or i), "parent_id": o.get("parentObservationId") or o.get("parent_id"),
            "type": o.get("type") or "SPAN", "name": o.get("name"),
            "input": o.get("input"), "output": o.get("output"),
            "start_time": start.isoformat() if start else None,
            "end_time": end.isoformat() if end else None,
            "model": o.get("model"),
            "input_tokens": usage.get("input") or usage.get("promptTokens"),
            "output_tokens": usage.get("output") or usage.get("completionTokens"),
            "total_tokens": usage.get("total") or usage.get("totalTokens"),
            "cost": o.get("calculatedTotalCost") or o.get("totalCost") or o.get("cost"),
            "level": o.get("level"), "status_message": o.get("statusMessage"),
            "metadata": o.get("metadata") or {},
        })
    return spans


def _dimensions(value: Any) -> dict[str, str] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise RowError("field 'dimensions' is not a JSON object") from None
    if not isinstance(value, dict):
        raise RowError("field 'dimensions' must be an object of dimension -> value")
    return {str(k): str(v) for k, v in value.items()}


class RowMapper:
    """Turns source rows into `traces` rows under one mapping (what can be worked out once per
    file is worked out here, not per row)."""

    def __init__(self, mapping: FieldMapping, source: str) -> None:
        self.m = mapping
        self.source = source
        self.used = {mapping.id, mapping.input, mapping.output, mapping.messages, mapping.tags,
                     mapping.timestamp, mapping.label, mapping.notes, mapping.dimensions,
                     mapping.name, *mapping.metadata, *TAKEN_KEYS} - {""}
        self.wanted = " or ".join(f"'{f}'" for f in (mapping.input, mapping.output,
                                                      mapping.messages) if f) or "input/output"

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        """One source row as a `traces` row, or RowError naming what is wrong."""
        m, get = self.m, raw.get
        messages = _messages(get(m.messages)) if m.messages else []
        inp = get(m.input) if m.input else None
        out = get(m.output) if m.output else None
        if messages and inp is None:
            inp, out = _io_from_messages(messages, out)
        if inp is None and out is None and not messages:
            raise RowError(f"missing required field: {self.wanted} is empty")
        observations = get("observations")
        spans = _spans(observations) if observations is not None else []
        sid = get(m.id) if m.id else None
        labels = {}
        if m.label and get(m.label) not in (None, ""):
            labels["verdict"] = get(m.label)
        if m.notes and get(m.notes) not in (None, ""):
            labels["notes"] = get(m.notes)
        metadata: dict[str, Any] = {}
        for key in m.metadata:
            value = get(key)
            if isinstance(value, dict):
                metadata.update(value)
            elif value is not None:
                metadata[key] = value
        used = self.used
        for key, value in raw.items():  # keep every field the mapping did not place
            if key not in used and value is not None:
                metadata[key] = value
        timestamp = _parse_time(get(m.timestamp)) if m.timestamp else None
        end_time = _parse_time(get("end_time") or get("endTime"))
        latency = _float(get("latency_ms"), "latency_ms")
        if latency is None and get("latency") not in (None, ""):
            latency = _float(get("latency"), "latency") * 1000.0  # Langfuse reports seconds
        if latency is None and timestamp and end_time:
            latency = (end_time - timestamp).total_seconds() * 1000.0
        cost = get("cost")
        cost = _float(cost if cost is not None else get("totalCost", get("total_cost")), "cost")
        scores = get("scores")
        return {
            "source": self.source,
            "source_id": content_hash(raw) if sid in (None, "") else str(sid),
            "name": str(get(m.name))[:300] if m.name and get(m.name) else None,
            "timestamp": timestamp, "end_time": end_time,
            "input": inp, "output": out, "messages": messages, "spans": spans,
            "tags": _tags(get(m.tags)) if m.tags else [],
            "metadata": metadata,
            "user_id": _str(get("user_id", get("userId"))),
            "session_id": _str(get("session_id", get("sessionId"))),
            "environment": _str(get("environment")),
            "release": _str(get("release", get("version"))),
            "latency_ms": latency, "cost": cost,
            "input_tokens": _int(get("input_tokens")), "output_tokens": _int(get("output_tokens")),
            "dimensions": _dimensions(get(m.dimensions)) if m.dimensions else None,
            "labels": labels, "scores": scores if isinstance(scores, list) else [],
            "error": _str(get("error")),
            "input_preview": text_of(inp if inp is not None else messages or None, PREVIEW_CHARS),
            "output_preview": text_of(out, PREVIEW_CHARS),
            "span_count": len(spans),
        }


def _io_from_messages(messages: list[dict[str, Any]], out: Any) -> tuple[Any, Any]:
    """The last user turn is the input; the last assistant turn (or its tool calls) the output."""
    inp = None
    for msg in reversed(messages):
        role = msg["role"]
        if out is None and role == "assistant":
            out = msg.get("content")
            if out is None and msg.get("tool_calls"):
                out = {"tool_calls": msg["tool_calls"]}
        elif role == "user":
            inp = msg.get("content")
            break
    return inp, out


def to_row(raw: dict[str, Any], mapping: FieldMapping, source: str) -> dict[str, Any]:
    """One source row as a `traces` row (see RowMapper; for single rows and tests)."""
    return RowMapper(mapping, source)(raw)


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)[:300]


def _int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RowError(f"token count '{str(value)[:20]}' is not a whole number") from None


# -- the import ------------------------------------------------------------------------------

def preview(path: str | Path, fmt: str | None = None, n: int = 5) -> tuple[str, list[dict[str, Any]], FieldMapping]:
    """The shape, the first `n` good rows and the mapping an import would use."""
    rows = []
    for _, row, _problem in iter_rows(path, fmt):
        if row is not None:
            rows.append(row)
            if len(rows) >= n:
                break
    shape = detect_shape(rows)
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    return shape, rows, mapping_for(shape, keys)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while rows stream through: parsed JSON holds no
    reference cycles, and collections triggered by millions of new dicts cost about a
    quarter of an import's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def import_file(store: Store, project_id: int, path: str | Path, *, fmt: str | None = None,
                mapping: FieldMapping | None = None, round_name: str | None = None,
                display_name: str | None = None, batch_size: int = 2000) -> ImportReport:
    """Import one file into a project (and, with `round_name`, into a new or existing round).

    Without a mapping the shape is recognised from the first rows; when it is not, the
    project's saved mapping is used, else FileImportError asks for one. A mapping that was used
    is saved on the project for the next import.
    """
    path = Path(path)
    name = display_name or path.name
    fmt = fmt or detect_format(name)
    report = ImportReport(file=name)
    shape, first_rows, guessed = preview(path, fmt, n=20)
    if mapping is None:
        saved = (store.get_project(project_id).settings or {}).get("import_mapping")  # type: ignore[union-attr]
        if shape:
            mapping = guessed
        elif saved:
            mapping, shape = FieldMapping.model_validate(saved), "mapped"
        elif first_rows:
            fields = ", ".join(sorted(set().union(*(r.keys() for r in first_rows))))
            raise FileImportError(f"{name}: rows are not in a shape evalboard recognises "
                               f"(fields: {fields}). Map the fields: which one is the input, "
                               "the output, the id...")
        else:
            mapping = guessed
    else:
        shape = shape or "mapped"
        if not mapping.is_usable():
            raise FileImportError("The mapping needs at least an input, an output or a messages field.")
        store.update_project(project_id, settings={"import_mapping": mapping.model_dump()})
    report.shape = shape
    round_id = None
    if round_name:
        existing = {r.name: r.id for r in store.list_rounds(project_id)}
        round_id = existing.get(round_name) or store.create_round(
            project_id, round_name, sampling={"method": "import", "file": name}).id
        report.round_id = round_id

    to_trace_row = RowMapper(mapping, f"file:{name}")  # type: ignore[arg-type]

    def rows() -> Iterator[dict[str, Any]]:
        for line, raw, problem in iter_rows(path, fmt):
            report.rows += 1
            if problem is not None:
                report.add_issue(line, problem)
                continue
            try:
                yield to_trace_row(raw)  # type: ignore[arg-type]
            except RowError as exc:
                report.add_issue(line, str(exc))
            except (RecursionError, ValueError, TypeError) as exc:
                # e.g. JSON nested deeper than can be written back; one bad row, not a failed import
                report.add_issue(line, f"cannot be stored: {type(exc).__name__}: {str(exc)[:120]}")

    with _gc_paused():
        result = store.add_traces(project_id, rows(), round_id=round_id, batch_size=batch_size,
                                  want_ids=round_id is not None)
    report.imported, report.duplicates, report.trace_ids = result.added, result.duplicates, result.trace_ids
    return report
