"""Database schema (SQLAlchemy 2 Core/ORM tables) and engine set-up.

The schema is owned by Alembic migrations in evalboard/migrations; these table objects are the
single description both the migrations and the queries use. JSON columns hold the nested parts
of a trace (messages, spans, metadata) as they came; everything the UI filters or sorts on is a
plain indexed column.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url

DEFAULT_HOME = Path(os.environ.get("EVALBOARD_HOME", Path.home() / ".evalboard"))


def default_database_url() -> str:
    """`EVALBOARD_DATABASE_URL` when set (e.g. postgresql+psycopg://...), else SQLite in
    `$EVALBOARD_HOME` (default ~/.evalboard/evalboard.db)."""
    url = os.environ.get("EVALBOARD_DATABASE_URL")
    if url:
        return url
    home = Path(os.environ.get("EVALBOARD_HOME", DEFAULT_HOME))
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'evalboard.db'}"


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    # What the product does and who uses it: included in every LLM prompt later.
    Column("description", Text, nullable=False, default=""),
    Column("settings", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

traces = Table(
    "traces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(300), nullable=False),
    Column("source_id", String(300), nullable=False),
    Column("name", String(300)),
    Column("timestamp", UTCDateTime),
    Column("end_time", UTCDateTime),
    Column("input", JSON),
    Column("output", JSON),
    Column("messages", JSON),
    Column("spans", JSON),
    Column("tags", JSON),
    Column("metadata", JSON),
    Column("user_id", String(300)),
    Column("session_id", String(300)),
    Column("environment", String(100)),
    Column("release", String(100)),
    Column("latency_ms", Float),
    Column("cost", Float),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("dimensions", JSON),
    Column("labels", JSON),
    Column("scores", JSON),
    Column("error", Text),
    # Short plain-text previews for the list view, so a page of rows never loads whole traces.
    Column("input_preview", String(400)),
    Column("output_preview", String(400)),
    Column("span_count", Integer, nullable=False, default=0),
    Column("imported_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "source", "source_id"),
    Index("ix_traces_project_time", "project_id", "timestamp", "id"),
)

rounds = Table(
    "rounds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    # How the sample was drawn: {"method": "random", "seed": 7, "n": 100, "filter": {...}}.
    Column("sampling", JSON, nullable=False, default=dict),
    # Kept in step with round_traces, so pages never count a 100k-trace round on each rerun.
    Column("trace_count", Integer, nullable=False, default=0, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "name"),
)

round_traces = Table(
    "round_traces",
    metadata,
    Column("round_id", Integer, ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True),
    Column("trace_id", Integer, ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True),
    # Stable queue order of the round (random with the round's seed, or by time).
    Column("position", Integer, nullable=False),
    Index("ix_round_traces_order", "round_id", "position"),
)

failure_modes = Table(
    "failure_modes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("definition", Text, nullable=False, default=""),
    Column("includes", Text, nullable=False, default=""),
    Column("excludes", Text, nullable=False, default=""),
    Column("status", String(20), nullable=False, default="active"),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "name"),
)

annotations = Table(
    "annotations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("trace_id", Integer, ForeignKey("traces.id", ondelete="CASCADE"), nullable=False),
    Column("round_id", Integer, ForeignKey("rounds.id", ondelete="SET NULL")),
    # One row per (trace, annotator): a person's label is never overwritten by another person.
    Column("annotator", String(200), nullable=False),
    Column("verdict", String(10)),
    Column("note", Text, nullable=False, default=""),
    Column("failure_step", String(300)),
    Column("deferred", Boolean, nullable=False, default=False),
    Column("discuss", Boolean, nullable=False, default=False),
    # "human" or "import:<file>" when the label came with an imported file.
    Column("origin", String(300), nullable=False, default="human"),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("trace_id", "annotator"),
    Index("ix_annotations_project_annotator", "project_id", "annotator"),
    Index("ix_annotations_round_annotator", "round_id", "annotator"),
)

annotation_modes = Table(
    "annotation_modes",
    metadata,
    Column(
        "annotation_id", Integer, ForeignKey("annotations.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("mode_id", Integer, ForeignKey("failure_modes.id", ondelete="CASCADE"), primary_key=True),
    # Who or what put this mode on the annotation: "annotator", "axial:<run>", a person's name.
    Column("provenance", String(300), nullable=False, default="annotator"),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

annotation_events = Table(
    "annotation_events",
    metadata,
    Column("id", Integer, primary_key=True),
    # History outlives the annotation it describes (undo of a first label deletes the row).
    Column("annotation_id", Integer, ForeignKey("annotations.id", ondelete="SET NULL")),
    Column("trace_id", Integer, nullable=False),
    Column("annotator", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("before", JSON),
    Column("after", JSON),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_annotation_events_annotator", "annotator", "id"),
)

kv_state = Table(
    "kv_state",
    metadata,
    # Checkpoints of resumable work (pull cursors, run progress), keyed by a caller-chosen name.
    Column("key", String(300), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    # sha256 of (model, messages, parameters): the same call twice costs one request.
    Column("key", String(64), primary_key=True),
    Column("model", String(200)),
    Column("feature", String(100)),
    Column("request", JSON),
    Column("response", JSON),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cost", Float),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)


def json_dumps(value: Any) -> str:
    """JSON text for a column. orjson writes at most 254 levels of nesting; deeper values (which
    orjson can still read, up to 1024) fall back to the standard library, which goes as deep as
    Python's recursion limit and raises RecursionError past it."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str, ensure_ascii=False)


def json_loads(value: Any) -> Any:
    """Read a JSON column. SQLite gives JSON columns numeric affinity, so a bare number (an
    output of 42) comes back as an int or float rather than text: pass those through."""
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


def make_engine(url: str) -> Engine:
    """Engine with fast JSON (orjson) and, on SQLite, WAL + a busy timeout so that a reader
    never blocks the annotator writing and concurrent writers wait instead of failing."""
    kwargs: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": json_loads}
    sqlite_file = make_url(url).database if url.startswith("sqlite") else None
    if sqlite_file and sqlite_file != ":memory:":
        Path(sqlite_file).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if url not in ("sqlite://", "sqlite:///:memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


# ------------------------------------------------------------------------- know the queries
# Dimensions, tuples, synthetic queries and the targets they are sent to (migration 0002).

dimensions = Table(
    "dimensions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    # [{"name": "beginner", "description": "..."}, ...] in the order the person gave them.
    Column("value_list", JSON, nullable=False, default=list),
    # Display and prompt order; reordering swaps positions.
    Column("position", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "name"),
)

query_tuples = Table(
    "query_tuples",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # {"dimension": "value", ...}; `key` is a hash of it, so one combination is stored once.
    Column("dimension_values", JSON, nullable=False),
    Column("key", String(64), nullable=False),
    # full, sample, pairwise, manual or import; `seed` for the seeded generators.
    Column("origin", String(20), nullable=False),
    Column("seed", Integer),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "key"),
)

queries = Table(
    "queries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("tuple_id", Integer, ForeignKey("query_tuples.id", ondelete="SET NULL")),
    # The tuple's values as they were when the query was written: kept if the tuple goes.
    Column("dimensions", JSON),
    Column("text", Text, nullable=False),
    Column("original_text", Text, nullable=False),
    # new, kept, discarded or unrealistic (flagged as something no real user would write).
    Column("status", String(20), nullable=False, default="new"),
    Column("duplicate_of", Integer),
    Column("similarity", Float),
    Column("model", String(200)),
    # llm, manual or import.
    Column("origin", String(20), nullable=False, default="llm"),
    # Hash of (tuple values, original text): the same generated query is stored once.
    Column("key", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "key"),
    Index("ix_queries_project_status", "project_id", "status", "id"),
)

targets = Table(
    "targets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),  # http or openai
    # Everything needed to call it except secrets: those are ${ENV:NAME} / ${SECRET:a.b} references.
    Column("config", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "name"),
)

target_runs = Table(
    "target_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("target_id", Integer, ForeignKey("targets.id", ondelete="SET NULL")),
    Column("target_name", String(200), nullable=False),
    # The round the run's traces go into.
    Column("round_id", Integer, ForeignKey("rounds.id", ondelete="SET NULL")),
    # The queries to send, fixed when the run starts so that resuming sends the same set.
    Column("query_ids", JSON, nullable=False),
    # The target's config as run (references only, never resolved secrets).
    Column("config", JSON, nullable=False),
    Column("status", String(20), nullable=False, default="pending"),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("finished_at", UTCDateTime),
)


# ------------------------------------------------------------------------------ axial coding
# Clustering runs (proposed failure modes, kept so a review survives reloads) and the history of
# every taxonomy change (migration 0003).

cluster_runs = Table(
    "cluster_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # The round whose notes were clustered (None: every round of the project).
    Column("round_id", Integer, ForeignKey("rounds.id", ondelete="SET NULL")),
    # llm, offline or manual.
    Column("method", String(20), nullable=False),
    # How it ran: model, vectoriser, k range, chosen k, silhouette per k, batches, ...
    Column("params", JSON, nullable=False, default=dict),
    # The notes as they were clustered: [{annotation_id, trace_id, annotator, note}, ...].
    Column("notes", JSON, nullable=False, default=list),
    # The proposals under review: [{key, name, definition, includes, excludes, members,
    # status, top_terms, typical, mode_id}, ...]; members are annotation ids.
    Column("proposals", JSON, nullable=False, default=list),
    # Annotation ids no proposal holds (notes the method could not place, or moved out).
    Column("unassigned", JSON, nullable=False, default=list),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_cluster_runs_project", "project_id", "id"),
)

taxonomy_events = Table(
    "taxonomy_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # The mode the change is about (kept as a plain id: history outlives merged modes).
    Column("mode_id", Integer),
    Column("run_id", Integer),
    Column("actor", String(200), nullable=False),
    # create, edit, merge, split, move, retire, accept, assign, proposal-* ...
    Column("action", String(40), nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("before", JSON),
    Column("after", JSON),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_taxonomy_events_project", "project_id", "id"),
)


# ------------------------------------------------------------------------- judges
# One judge per failure mode, its versions, the mode's train/dev/test split, runs, verdicts and
# the label audit trail (migration 0004).

judge_splits = Table(
    "judge_splits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("mode_id", Integer, ForeignKey("failure_modes.id", ondelete="CASCADE"), nullable=False),
    Column("seed", Integer, nullable=False),
    # {"train": 0.15, "dev": 0.40, "test": 0.45}
    Column("proportions", JSON, nullable=False),
    # How several people's labels become one: {"method": "majority", "reference": null}.
    Column("policy", JSON, nullable=False),
    # Later additions of newly labelled traces: [{"at", "seed", "added", "parts"}].
    Column("extensions", JSON, nullable=False, default=list),
    # The test split is run once: the run (and version) that used it.
    Column("test_run_id", Integer),
    Column("test_version_id", Integer),
    Column("test_used_at", UTCDateTime),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("mode_id"),
)

judge_split_items = Table(
    "judge_split_items",
    metadata,
    Column("split_id", Integer, ForeignKey("judge_splits.id", ondelete="CASCADE"), primary_key=True),
    Column("trace_id", Integer, ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True),
    Column("part", String(10), nullable=False),  # train, dev or test
    # The combined human label when the trace entered the split (what stratification used).
    Column("label_at_split", String(10), nullable=False),
    # "dev" when a label audit moved the trace from dev to train.
    Column("moved_from", String(10)),
    Column("added_at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_judge_split_items_part", "split_id", "part"),
)

judges = Table(
    "judges",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("mode_id", Integer, ForeignKey("failure_modes.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(10), nullable=False),  # llm or code
    # What "validated" requires: {"tpr": 0.9, "tnr": 0.9} on the test split.
    Column("thresholds", JSON, nullable=False),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "name"),
)

judge_versions = Table(
    "judge_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("judge_id", Integer, ForeignKey("judges.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    # Everything that decides a verdict: prompt, examples, model and parameters, or the rule.
    Column("config", JSON, nullable=False),
    # Unified diff of the readable config against the previous version.
    Column("diff", Text, nullable=False, default=""),
    Column("note", Text, nullable=False, default=""),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("judge_id", "number"),
)

judge_runs = Table(
    "judge_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("judge_id", Integer, ForeignKey("judges.id", ondelete="CASCADE"), nullable=False),
    Column("version_id", Integer, ForeignKey("judge_versions.id", ondelete="CASCADE"), nullable=False),
    Column("split_id", Integer, ForeignKey("judge_splits.id", ondelete="SET NULL")),
    Column("part", String(10)),  # train, dev, test, or None for other traces
    # The traces to judge, fixed at the start so a resumed run judges the same set.
    Column("trace_ids", JSON, nullable=False),
    Column("status", String(20), nullable=False, default="running"),
    # "live", or "demo: recorded answers" for the demo project's stored answers.
    Column("origin", String(100), nullable=False, default="live"),
    Column("calls", Integer, nullable=False, default=0),
    Column("cache_hits", Integer, nullable=False, default=0),
    Column("reused", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cost", Float),
    # {trace_id: message} for items that failed (first 100).
    Column("errors", JSON, nullable=False, default=dict),
    # Test runs only: the result frozen when the run completed (pairs, confusion, thresholds).
    Column("frozen", JSON),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("finished_at", UTCDateTime),
)

judge_verdicts = Table(
    "judge_verdicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version_id", Integer, ForeignKey("judge_versions.id", ondelete="CASCADE"), nullable=False),
    Column("trace_id", Integer, ForeignKey("traces.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Integer, ForeignKey("judge_runs.id", ondelete="SET NULL")),
    Column("verdict", String(10), nullable=False),
    Column("reasoning", Text, nullable=False, default=""),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cost", Float),
    Column("cached", Boolean, nullable=False, default=False),
    Column("origin", String(100), nullable=False, default="live"),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # One verdict per (version, trace): a rerun of the same version reuses it at no cost.
    UniqueConstraint("version_id", "trace_id"),
)

label_audits = Table(
    "label_audits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("mode_id", Integer, ForeignKey("failure_modes.id", ondelete="CASCADE"), nullable=False),
    Column("trace_id", Integer, ForeignKey("traces.id", ondelete="CASCADE"), nullable=False),
    # "correct" (the label for this mode is now `label`) or "to-train" (moved from dev).
    Column("action", String(20), nullable=False),
    Column("label", String(10)),
    Column("previous", String(10)),
    Column("reason", Text, nullable=False, default=""),
    Column("who", String(200), nullable=False),
    # What the judge said when the person looked (version and verdict), for the record.
    Column("context", JSON),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_label_audits_mode_trace", "mode_id", "trace_id", "id"),
)


# ------------------------------------------------------------------------- pushes to vendors
# What was pushed to Langfuse (or another vendor), when, and how each object fared; and the
# remote objects evalboard made, linked back to the judge (migration 0006).

pushes = Table(
    "pushes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # Where to: "langfuse|<base url>|<public key>" (a Langfuse project is named by its keys).
    Column("destination", String(500), nullable=False),
    Column("judge_id", Integer, ForeignKey("judges.id", ondelete="SET NULL")),
    Column("version_id", Integer, ForeignKey("judge_versions.id", ondelete="SET NULL")),
    Column("run_id", Integer, ForeignKey("judge_runs.id", ondelete="SET NULL")),
    Column("round_id", Integer, ForeignKey("rounds.id", ondelete="SET NULL")),
    Column("dataset", String(300)),
    # What was asked besides the above (evaluator, rule, provider): plain values, no local ids.
    Column("options", JSON, nullable=False, default=dict),
    # Pushed although the judge version is not validated (confirmed by the person who pushed).
    Column("unvalidated", Boolean, nullable=False, default=False),
    Column("status", String(20), nullable=False, default="running"),  # running, done, failed, stopped
    # {"created": n, "updated": n, "unchanged": n, "deleted": n, "failed": n, "skipped": n}
    Column("counts", JSON, nullable=False, default=dict),
    Column("message", Text, nullable=False, default=""),
    Column("created_by", String(200), nullable=False, default=""),
    Column("started_at", UTCDateTime, nullable=False, default=utcnow),
    Column("finished_at", UTCDateTime),
    Index("ix_pushes_project", "project_id", "id"),
)

push_objects = Table(
    "push_objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("push_id", Integer, ForeignKey("pushes.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(40), nullable=False),
    # The object in words, e.g. "score config 'wrong tone email'" or "verdict scores 1-100".
    Column("name", String(500), nullable=False),
    Column("status", String(20), nullable=False),  # created, updated, unchanged, deleted, failed, skipped
    Column("count", Integer, nullable=False, default=1),  # objects this row stands for (a batch)
    Column("remote_id", String(300)),
    Column("url", String(1000)),
    Column("detail", Text, nullable=False, default=""),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_push_objects_push", "push_id", "id"),
)

remote_objects = Table(
    "remote_objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("destination", String(500), nullable=False),
    # Our name for the object, stable across pushes ("score:<id>", "judge:Email tone:prompt").
    Column("key", String(300), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("judge_id", Integer, ForeignKey("judges.id", ondelete="SET NULL")),
    Column("remote_id", String(300)),
    Column("url", String(1000)),
    # sha256 of what was sent: the same content again is "unchanged" and is not sent.
    Column("content_hash", String(64), nullable=False),
    Column("info", JSON, nullable=False, default=dict),
    Column("push_id", Integer, ForeignKey("pushes.id", ondelete="SET NULL")),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    UniqueConstraint("project_id", "destination", "key"),
    Index("ix_remote_objects_judge", "judge_id", "kind"),
)


# ------------------------------------------------------------------------- production prevalence
# Validated judges applied to production samples (migration 0005). A production run records its
# sample, judge versions and time window; the verdicts themselves live in judge_verdicts (one per
# version and trace, written as they arrive). production_verdicts lists the verdicts that count
# for production prevalence, and production_counts keeps them summed per version, day and facet,
# so the dashboard reads a few hundred rows whether a million verdicts are stored or a thousand.

production_runs = Table(
    "production_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    # How the sample was drawn: {"source": "langfuse" | "round" | "file" | "traces", "filters",
    # "sampling", "round_id", "path", "n", "of", "seed", ...}.
    Column("sample", JSON, nullable=False),
    # The round holding the sample, when it came from one (Langfuse pulls and files land in one).
    Column("round_id", Integer, ForeignKey("rounds.id", ondelete="SET NULL")),
    # The time window the sample covers (trace start times).
    Column("window_start", UTCDateTime),
    Column("window_end", UTCDateTime),
    # The judges as run, frozen at the start: [{judge_id, judge, mode_id, mode, kind, version_id,
    # version, test_run_id, confusion: {tp, fn, tn, fp}}]; TPR and TNR come from that confusion.
    Column("judges", JSON, nullable=False),
    # "direct" (concurrent calls) or "batch" (the provider's Batch API).
    Column("execution", String(10), nullable=False, default="direct"),
    # planned, running, submitted (batch waiting), finished, incomplete, cancelled.
    Column("status", String(20), nullable=False, default="planned"),
    Column("trace_count", Integer, nullable=False, default=0),
    Column("calls", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("cost", Float),
    # Direct runs: [{"version_id", "run_id"}], the judge run of each attempt (a resume adds one).
    Column("judge_runs", JSON, nullable=False, default=list),
    # Batch runs: [{"id", "version_id", "requests", "trace_ids", "submitted_at", "status", "ingested", ...}].
    Column("batches", JSON, nullable=False, default=list),
    # [{"version_id", "trace_id", "message"}] for items that failed (the newest 100).
    Column("errors", JSON, nullable=False, default=list),
    # "live", or "demo: recorded answers" for the demo project's stored answers.
    Column("origin", String(100), nullable=False, default="live"),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("finished_at", UTCDateTime),
    Index("ix_production_runs_project", "project_id", "id"),
)

production_run_traces = Table(
    "production_run_traces",
    metadata,
    # The sample, fixed when the run is made so that a resumed run judges the same traces.
    Column("run_id", Integer, ForeignKey("production_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("trace_id", Integer, ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True),
)

production_verdicts = Table(
    "production_verdicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("version_id", Integer, ForeignKey("judge_versions.id", ondelete="CASCADE"), nullable=False),
    Column("trace_id", Integer, ForeignKey("traces.id", ondelete="CASCADE"), nullable=False),
    # The run that first brought this verdict into production figures.
    Column("run_id", Integer, ForeignKey("production_runs.id", ondelete="SET NULL")),
    # The trace's UTC start day, "YYYY-MM-DD" (sorts and compares as text on every backend).
    Column("day", String(10), nullable=False),
    Column("flagged", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # A trace counts once per version, however many runs sampled it.
    UniqueConstraint("version_id", "trace_id"),
    Index("ix_production_verdicts_flagged", "version_id", "flagged", "day"),
)

production_counts = Table(
    "production_counts",
    metadata,
    # Verdicts summed per version, day and facet value: facet "all" (value ""), "environment",
    # "release", "tag" or "dimension:<name>". Kept in step with production_verdicts.
    Column("version_id", Integer, ForeignKey("judge_versions.id", ondelete="CASCADE"), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("facet", String(120), primary_key=True),
    Column("value", String(300), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("judged", Integer, nullable=False, default=0),
    Column("flagged", Integer, nullable=False, default=0),
    Index("ix_production_counts_project", "project_id", "facet", "day"),
)
