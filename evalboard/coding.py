"""Open coding: people's labels of traces, the failure modes they pick, the queue they work.

An annotation is one person's label of one trace: verdict (pass/fail, binary on purpose), the
first-failure note (the open code), the step where it happened, failure modes, and the defer
and discuss flags. Each annotator's label is its own row, so nobody overwrites anybody. Every
change is also written to `annotation_events` (before/after), which is what undo replays and
what an audit reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field
from sqlalchemy import Text, and_, delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from evalboard.db import (
    annotation_events,
    annotation_modes,
    annotations,
    failure_modes,
    round_traces,
    rounds,
    traces,
    utcnow,
)
from evalboard.store import Store, StoreError

FIELDS = ("verdict", "note", "failure_step", "deferred", "discuss")
PASS_WORDS = {"pass", "passed", "ok", "good", "yes", "true", "1", "correct", "✓", "👍"}
FAIL_WORDS = {"fail", "failed", "bad", "no", "false", "0", "incorrect", "wrong", "✗", "👎"}


class Annotation(BaseModel):
    id: int | None = None
    trace_id: int
    round_id: int | None = None
    annotator: str
    verdict: str | None = None
    note: str = ""
    failure_step: str | None = None
    deferred: bool = False
    discuss: bool = False
    modes: list[str] = Field(default_factory=list)
    origin: str = "human"
    updated_at: datetime | None = None

    def state(self) -> dict[str, Any]:
        """What undo restores: the label's fields and modes."""
        return {**{f: getattr(self, f) for f in FIELDS}, "modes": list(self.modes)}


class QueueFilter(BaseModel):
    """Which of a round's traces the annotation queue walks through."""

    unlabelled_by: str | None = None  # only traces this person has not labelled yet
    verdict: str | None = None  # "pass"/"fail": traces anyone labelled so
    mode: str | None = None
    tag: str | None = None
    dimension: tuple[str, str] | None = None  # (name, value)
    deferred_by: str | None = None  # only traces this person deferred


_UNSET: Any = object()


def normalise_verdict(value: Any) -> str | None:
    """'PASS', 'Fail', 1, True, 'good'... -> 'pass' / 'fail'; anything else None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in PASS_WORDS:
        return "pass"
    if text in FAIL_WORDS:
        return "fail"
    return None


# -- failure modes ---------------------------------------------------------------------------

def list_modes(store: Store, project_id: int, *, include_inactive: bool = False,
               order: str = "usage") -> pd.DataFrame:
    """Modes of a project with how many annotations use each: most used first, or in the
    order they were created (`order="created"`, what the quick-pick numbers follow)."""
    usage = (select(annotation_modes.c.mode_id, func.count().label("uses"))
             .group_by(annotation_modes.c.mode_id).subquery())
    q = (select(failure_modes.c.id, failure_modes.c.name, failure_modes.c.definition,
                failure_modes.c.status, func.coalesce(usage.c.uses, 0).label("uses"))
         .select_from(failure_modes.outerjoin(usage, usage.c.mode_id == failure_modes.c.id))
         .where(failure_modes.c.project_id == project_id)
         .order_by(*((failure_modes.c.id,) if order == "created"
                     else (func.coalesce(usage.c.uses, 0).desc(), failure_modes.c.id))))
    if not include_inactive:
        q = q.where(failure_modes.c.status == "active")
    with store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).all(), columns=["id", "name", "definition", "status", "uses"])


def ensure_mode(store: Store, project_id: int, name: str, *, created_by: str = "",
                definition: str = "", conn: Connection | None = None) -> int:
    """The id of the mode with this name, creating it when new (names compare trimmed and
    case-insensitively, so 'Wrong tone' and 'wrong tone ' are one mode)."""
    clean = " ".join(name.split())
    if not clean:
        raise StoreError("A failure mode needs a name.")
    if len(clean) > 200:
        raise StoreError("A failure mode name is at most 200 characters.")

    def find(c: Connection) -> Any:
        return c.execute(select(failure_modes.c.id, failure_modes.c.status).where(
            failure_modes.c.project_id == project_id,
            func.lower(failure_modes.c.name) == clean.lower()).order_by(failure_modes.c.id)).first()

    def run(c: Connection) -> int:
        found = find(c)
        if found is None:
            # Two people may coin the same mode at once: ON CONFLICT DO NOTHING makes the second
            # insert wait for the first and then step aside, and the re-read finds the winner.
            dialect_insert = pg_insert if c.dialect.name == "postgresql" else sqlite_insert
            c.execute(dialect_insert(failure_modes).values(
                project_id=project_id, name=clean, definition=definition, created_by=created_by,
            ).on_conflict_do_nothing(index_elements=["project_id", "name"]))
            found = find(c)
        if found.status != "active":
            c.execute(update(failure_modes).where(failure_modes.c.id == found.id).values(status="active"))
        return found.id

    if conn is not None:
        return run(conn)
    with store.engine.begin() as c:
        return run(c)


# -- annotations -----------------------------------------------------------------------------

def _load(conn: Connection, trace_id: int, annotator: str) -> Annotation | None:
    row = conn.execute(select(annotations).where(annotations.c.trace_id == trace_id,
                                                 annotations.c.annotator == annotator)).first()
    if row is None:
        return None
    modes = list(conn.execute(
        select(failure_modes.c.name).select_from(annotation_modes.join(failure_modes))
        .where(annotation_modes.c.annotation_id == row.id).order_by(failure_modes.c.name)).scalars())
    return Annotation(id=row.id, trace_id=row.trace_id, round_id=row.round_id, annotator=row.annotator,
                      verdict=row.verdict, note=row.note, failure_step=row.failure_step,
                      deferred=row.deferred, discuss=row.discuss, modes=modes, origin=row.origin,
                      updated_at=row.updated_at)


def get_annotation(store: Store, trace_id: int, annotator: str) -> Annotation | None:
    with store.engine.connect() as conn:
        return _load(conn, trace_id, annotator)


def trace_annotations(store: Store, trace_id: int) -> list[Annotation]:
    """Every person's label of one trace."""
    with store.engine.connect() as conn:
        names = conn.execute(select(annotations.c.annotator).where(annotations.c.trace_id == trace_id)
                             .order_by(annotations.c.annotator)).scalars().all()
        return [a for a in (_load(conn, trace_id, n) for n in names) if a is not None]


def save_annotation(store: Store, project_id: int, trace_id: int, annotator: str, *,
                    verdict: Any = _UNSET, note: Any = _UNSET, failure_step: Any = _UNSET,
                    deferred: Any = _UNSET, discuss: Any = _UNSET, modes: Any = _UNSET,
                    add_modes: Sequence[str] = (), round_id: int | None = None,
                    origin: str = "human", action: str = "save") -> Annotation:
    """Create or change this person's label of a trace; fields left out keep their value.

    Saved at once in one transaction, with an event holding the state before and after (for
    undo and audit). A verdict of "pass" clears the failure modes and step: a passing trace
    has no first failure. Marking a verdict clears "deferred".
    """
    annotator = annotator.strip()
    if not annotator:
        raise StoreError("Say who you are (your name in the sidebar) before labelling.")
    if verdict is not _UNSET and verdict not in (None, "pass", "fail"):
        raise StoreError(f"A verdict is 'pass' or 'fail', not {verdict!r}.")
    with store.engine.begin() as conn:
        owner = conn.execute(select(traces.c.project_id).where(traces.c.id == trace_id)).scalar_one_or_none()
        if owner != project_id:
            raise StoreError(f"Trace {trace_id} is not in this project.")
        before = _load(conn, trace_id, annotator)
        current = before.model_copy(deep=True) if before else Annotation(
            trace_id=trace_id, round_id=round_id, annotator=annotator, origin=origin)
        for name, value in (("verdict", verdict), ("note", note), ("failure_step", failure_step),
                            ("deferred", deferred), ("discuss", discuss)):
            if value is not _UNSET:
                setattr(current, name, value if name != "note" else (value or ""))
        if modes is not _UNSET:
            current.modes = sorted({" ".join(m.split()) for m in modes if m.strip()})
        for m in add_modes:
            clean = " ".join(m.split())
            if clean and clean.lower() not in {x.lower() for x in current.modes}:
                current.modes = sorted([*current.modes, clean])
        if current.verdict == "pass":
            current.modes, current.failure_step = [], None
        if current.modes and current.verdict is None:
            current.verdict = "fail"  # picking a failure mode is a fail
        if current.verdict is not None and (before is None or before.verdict is None):
            current.deferred = False  # deciding a deferred trace ends the deferral
        if before is not None and before.state() == current.state():
            return before  # nothing changed: no write, and no history entry for undo to replay
        _write(conn, store, project_id, current, before)
        conn.execute(insert(annotation_events).values(
            annotation_id=current.id, trace_id=trace_id, annotator=annotator, action=action,
            before=before.state() if before else None, after=current.state()))
    return current


def _write(conn: Connection, store: Store, project_id: int, a: Annotation,
           before: Annotation | None) -> None:
    values = {f: getattr(a, f) for f in FIELDS}
    now = utcnow()
    if before is None:
        a.id = conn.execute(insert(annotations).values(
            project_id=project_id, trace_id=a.trace_id, round_id=a.round_id, annotator=a.annotator,
            origin=a.origin, created_at=now, updated_at=now, **values)).inserted_primary_key[0]
    else:
        conn.execute(update(annotations).where(annotations.c.id == a.id).values(updated_at=now, **values))
    if before is None or before.modes != a.modes:
        conn.execute(delete(annotation_modes).where(annotation_modes.c.annotation_id == a.id))
        for name in a.modes:
            mode_id = ensure_mode(store, project_id, name, created_by=a.annotator, conn=conn)
            conn.execute(insert(annotation_modes).values(annotation_id=a.id, mode_id=mode_id,
                                                         provenance=a.annotator))
    a.updated_at = now


def undo_last(store: Store, project_id: int, annotator: str) -> Annotation | None:
    """Undo this person's last change in the project; returns the trace's label as restored
    (None when the undone change had created the label, which is then removed)."""
    with store.engine.begin() as conn:
        event = conn.execute(
            select(annotation_events).join(traces, traces.c.id == annotation_events.c.trace_id)
            .where(annotation_events.c.annotator == annotator, traces.c.project_id == project_id,
                   annotation_events.c.action.not_in(["undo", "undone"]))
            .order_by(annotation_events.c.id.desc()).limit(1)).first()
        if event is None:
            return None
        # The event is consumed: mark it so the next undo goes one step further back.
        conn.execute(update(annotation_events).where(annotation_events.c.id == event.id)
                     .values(action="undone"))
        current = _load(conn, event.trace_id, annotator)
        if event.before is None:
            if current is not None:
                conn.execute(delete(annotations).where(annotations.c.id == current.id))
            restored = None
        else:
            restored = current.model_copy(update={**event.before}) if current else Annotation(
                trace_id=event.trace_id, annotator=annotator, **event.before)
            _write(conn, store, project_id, restored, current)
        conn.execute(insert(annotation_events).values(
            annotation_id=restored.id if restored else None, trace_id=event.trace_id,
            annotator=annotator, action="undo", before=current.state() if current else None,
            after=restored.state() if restored else None))
    return restored


def last_event_trace(store: Store, project_id: int, annotator: str) -> int | None:
    """The trace this person changed last (where undo will act)."""
    with store.engine.connect() as conn:
        return conn.execute(
            select(annotation_events.c.trace_id).join(traces, traces.c.id == annotation_events.c.trace_id)
            .where(annotation_events.c.annotator == annotator, traces.c.project_id == project_id,
                   annotation_events.c.action.not_in(["undo", "undone"]))
            .order_by(annotation_events.c.id.desc()).limit(1)).scalar_one_or_none()


# -- the queue -------------------------------------------------------------------------------

def _queue_conditions(flt: QueueFilter | None) -> list[Any]:
    flt = flt or QueueFilter()
    conds: list[Any] = []
    a = annotations.alias("a")
    if flt.unlabelled_by:
        conds.append(~exists().where(a.c.trace_id == round_traces.c.trace_id,
                                     a.c.annotator == flt.unlabelled_by, a.c.verdict.is_not(None)))
    if flt.deferred_by:
        conds.append(exists().where(a.c.trace_id == round_traces.c.trace_id,
                                    a.c.annotator == flt.deferred_by, a.c.deferred.is_(True)))
    if flt.verdict:
        conds.append(exists().where(a.c.trace_id == round_traces.c.trace_id, a.c.verdict == flt.verdict))
    if flt.mode:
        am = annotation_modes.alias("am")
        fm = failure_modes.alias("fm")
        conds.append(exists().where(a.c.trace_id == round_traces.c.trace_id, am.c.annotation_id == a.c.id,
                                    fm.c.id == am.c.mode_id, fm.c.name == flt.mode))
    if flt.tag or flt.dimension:
        t = traces.alias("t")
        inner = [t.c.id == round_traces.c.trace_id]
        if flt.tag:
            inner.append(t.c.tags.cast(Text()).like(f'%"{flt.tag}"%'))
        if flt.dimension:
            name, value = flt.dimension
            inner.append(t.c.dimensions.cast(Text()).like(f'%"{name}":"{value}"%'))
        conds.append(exists().where(*inner))
    return conds


def queue_neighbour(store: Store, round_id: int, position: int, *, direction: int = 1,
                    flt: QueueFilter | None = None) -> tuple[int, int] | None:
    """(trace id, position) of the next (direction 1) or previous (-1) trace in the round's
    queue order that passes the filter, or None at the end. Uses the (round, position) index,
    so its cost does not grow with the size of the round."""
    conds = [round_traces.c.round_id == round_id, *_queue_conditions(flt)]
    if direction > 0:
        q = select(round_traces.c.trace_id, round_traces.c.position).where(
            round_traces.c.position > position, *conds).order_by(round_traces.c.position.asc())
    else:
        q = select(round_traces.c.trace_id, round_traces.c.position).where(
            round_traces.c.position < position, *conds).order_by(round_traces.c.position.desc())
    with store.engine.connect() as conn:
        row = conn.execute(q.limit(1)).first()
    return None if row is None else (row.trace_id, row.position)


def queue_position(store: Store, round_id: int, trace_id: int) -> int | None:
    with store.engine.connect() as conn:
        return conn.execute(select(round_traces.c.position).where(
            round_traces.c.round_id == round_id, round_traces.c.trace_id == trace_id)).scalar_one_or_none()


def queue_count(store: Store, round_id: int, flt: QueueFilter | None = None) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(round_traces).where(
            round_traces.c.round_id == round_id, *_queue_conditions(flt))).scalar_one()


def progress(store: Store, round_id: int, annotator: str) -> dict[str, int]:
    """Counts for the progress bar: the round's size and this person's labels in it."""
    with store.engine.connect() as conn:
        total = conn.execute(select(rounds.c.trace_count).where(rounds.c.id == round_id)).scalar_one()
        rows = conn.execute(
            select(annotations.c.verdict, func.count()).select_from(
                annotations.join(round_traces, and_(round_traces.c.trace_id == annotations.c.trace_id,
                                                    round_traces.c.round_id == round_id)))
            .where(annotations.c.annotator == annotator).group_by(annotations.c.verdict)).all()
    counts = {v: n for v, n in rows}
    return {"total": total, "labelled": counts.get("pass", 0) + counts.get("fail", 0),
            "passed": counts.get("pass", 0), "failed": counts.get("fail", 0),
            "pending": counts.get(None, 0)}


# -- reading labels in bulk ------------------------------------------------------------------

def annotation_table(store: Store, project_id: int, *, round_id: int | None = None,
                     annotator: str | None = None) -> pd.DataFrame:
    """All labels (one row per trace x annotator) with modes joined as a list, oldest first.

    Columns: annotation_id, trace_id, source_id, round_id, annotator, verdict, note,
    failure_step, deferred, discuss, origin, created_at, updated_at, modes, tags, dimensions.
    """
    conds = [annotations.c.project_id == project_id]
    if annotator:
        conds.append(annotations.c.annotator == annotator)
    base = annotations.join(traces, traces.c.id == annotations.c.trace_id)
    if round_id is not None:
        base = base.join(round_traces, and_(round_traces.c.trace_id == annotations.c.trace_id,
                                            round_traces.c.round_id == round_id))
    q = (select(annotations.c.id.label("annotation_id"), annotations.c.trace_id, traces.c.source_id,
                annotations.c.round_id, annotations.c.annotator, annotations.c.verdict, annotations.c.note,
                annotations.c.failure_step, annotations.c.deferred, annotations.c.discuss,
                annotations.c.origin, annotations.c.created_at, annotations.c.updated_at,
                traces.c.tags, traces.c.dimensions)
         .select_from(base).where(*conds).order_by(annotations.c.created_at, annotations.c.id))
    mq = (select(annotation_modes.c.annotation_id, failure_modes.c.name)
          .select_from(annotation_modes.join(failure_modes))
          .join(annotations, annotations.c.id == annotation_modes.c.annotation_id).where(*conds))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
        modes: dict[int, list[str]] = {}
        for aid, name in conn.execute(mq):
            modes.setdefault(aid, []).append(name)
    df = pd.DataFrame(rows, columns=["annotation_id", "trace_id", "source_id", "round_id", "annotator",
                                     "verdict", "note", "failure_step", "deferred", "discuss", "origin",
                                     "created_at", "updated_at", "tags", "dimensions"])
    df["modes"] = [sorted(modes.get(a, [])) for a in df["annotation_id"]]
    return df


def export_annotations(df: pd.DataFrame, fmt: str) -> bytes:
    """Annotations as CSV (modes joined with '; ') or JSONL (modes as a list)."""
    cols = ["trace_id", "source_id", "round_id", "annotator", "verdict", "note", "failure_step",
            "modes", "deferred", "discuss", "origin", "created_at", "updated_at"]
    out = df[cols].copy()
    out["created_at"] = out["created_at"].astype(str)
    out["updated_at"] = out["updated_at"].astype(str)
    if fmt == "csv":
        out["modes"] = out["modes"].map("; ".join)
        return out.to_csv(index=False).encode()
    if fmt == "jsonl":
        return out.to_json(orient="records", lines=True, force_ascii=False).encode()
    raise ValueError(f"Unknown export format {fmt!r}; use csv or jsonl.")


class ImportedLabels(BaseModel):
    created: int = 0
    unrecognised: list[tuple[str, str]] = Field(default_factory=list)  # (source id, raw value)


def labels_from_imports(store: Store, project_id: int, *, round_id: int | None = None) -> ImportedLabels:
    """Turn labels that came inside imported files (a PASS/FAIL column, a notes column) into
    annotations, one per trace, under the annotator "import:<source>". Idempotent. A label
    value that is neither a pass nor a fail word is reported, and its note (if any) kept."""
    q = select(traces.c.id, traces.c.source, traces.c.source_id, traces.c.labels).where(
        traces.c.project_id == project_id)
    if round_id is not None:
        q = q.join(round_traces, and_(round_traces.c.trace_id == traces.c.id,
                                      round_traces.c.round_id == round_id))
    with store.engine.connect() as conn:
        rows = [r for r in conn.execute(q) if r.labels]
    result = ImportedLabels()
    for tid, source, source_id, labels in rows:
        verdict = normalise_verdict(labels.get("verdict"))
        note = str(labels.get("notes") or "")
        if verdict is None and labels.get("verdict") not in (None, ""):
            result.unrecognised.append((source_id, str(labels["verdict"])[:50]))
        if verdict is None and not note:
            continue
        who = f"import:{source.removeprefix('file:')}"
        if get_annotation(store, tid, who) is not None:
            continue
        save_annotation(store, project_id, tid, who, verdict=verdict, note=note,
                        round_id=round_id, origin=f"import:{source}", action="import")
        result.created += 1
    return result


# -- agreement and saturation ----------------------------------------------------------------

class AgreementReport(BaseModel):
    """How far people agree on the traces two or more of them labelled.

    Cohen's kappa for each pair of annotators on the verdict; Krippendorff's alpha (nominal)
    over all annotators, which allows missing labels; per-mode kappa for the pair with the
    most shared traces ("did both pick this mode?" on traces both labelled). Kappa and alpha
    correct raw agreement for chance; they do not say who is right.
    """

    shared_traces: int = 0
    annotators: list[str] = Field(default_factory=list)
    pairs: list[dict[str, Any]] = Field(default_factory=list)  # a, b, items, agreement, kappa
    alpha: float | None = None
    per_mode: list[dict[str, Any]] = Field(default_factory=list)
    disagreements: list[dict[str, Any]] = Field(default_factory=list)


def agreement_report(labels: pd.DataFrame) -> AgreementReport:
    """From `annotation_table` rows: agreement on traces with a verdict from >= 2 people."""
    import math
    from itertools import combinations

    from evalboard.stats import cohen_kappa, krippendorff_alpha, per_mode_agreement

    done = labels[labels["verdict"].notna()]
    by_trace = done.groupby("trace_id")
    shared = [t for t, g in by_trace if g["annotator"].nunique() >= 2]
    report = AgreementReport(shared_traces=len(shared))
    if not shared:
        return report
    rows = done[done["trace_id"].isin(shared)]
    people = sorted(rows["annotator"].unique())
    report.annotators = people
    verdict = {(r.trace_id, r.annotator): r.verdict for r in rows.itertuples()}
    modes = {(r.trace_id, r.annotator): set(r.modes) for r in rows.itertuples()}
    units = [[verdict.get((t, p)) for p in people] for t in shared]
    alpha = krippendorff_alpha(units)
    report.alpha = None if math.isnan(alpha) else alpha
    best: tuple[str, str] | None = None
    best_n = 0
    for a, b in combinations(people, 2):
        both = [t for t in shared if (t, a) in verdict and (t, b) in verdict]
        if not both:
            continue
        va = [verdict[(t, a)] for t in both]
        vb = [verdict[(t, b)] for t in both]
        kappa = cohen_kappa(va, vb)
        report.pairs.append({"a": a, "b": b, "items": len(both),
                             "agreement": sum(x == y for x, y in zip(va, vb, strict=True)) / len(both),
                             "kappa": None if math.isnan(kappa) else kappa})
        if len(both) > best_n:
            best, best_n = (a, b), len(both)
    if best:
        a, b = best
        both = [t for t in shared if (t, a) in verdict and (t, b) in verdict]
        per_mode = per_mode_agreement({str(t): modes[(t, a)] for t in both},
                                      {str(t): modes[(t, b)] for t in both})
        report.per_mode = [{"mode": m.mode, "both": m.both, f"only {a}": m.only_a, f"only {b}": m.only_b,
                            "kappa": None if math.isnan(m.kappa) else m.kappa} for m in per_mode.values()]
    for t in shared:
        g = rows[rows["trace_id"] == t]
        verdicts = set(g["verdict"])
        mode_sets = {frozenset(m) for m in g["modes"]}
        if len(verdicts) > 1 or len(mode_sets) > 1:
            report.disagreements.append({
                "trace_id": int(t), "source_id": g["source_id"].iloc[0],
                **{f"{r.annotator}": f"{r.verdict}" + (f" ({', '.join(r.modes)})" if r.modes else "")
                   + (f": {r.note}" if r.note else "") for r in g.itertuples()}})
    return report


def mode_sequence(labels: pd.DataFrame) -> list[list[str]]:
    """The failure modes of each labelled trace in the order the labels were made (first
    label of each trace), the input of the saturation measure."""
    done = labels[labels["verdict"].notna()].sort_values(["created_at", "annotation_id"])
    first = done.drop_duplicates("trace_id", keep="first")
    seen: dict[int, list[str]] = {}
    for r in done.itertuples():
        seen.setdefault(r.trace_id, [])
        seen[r.trace_id] = sorted(set(seen[r.trace_id]) | set(r.modes))
    return [seen[t] for t in first["trace_id"]]
