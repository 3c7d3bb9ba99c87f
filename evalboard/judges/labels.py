"""Human labels per failure mode, the mode's train/dev/test split, and the label audit.

A judge answers one question about one failure mode: does this trace show it? Its reference
answers come from people's open-coding labels, read per mode:

- an annotator votes **fail** for mode M when their label is fail and lists M;
- they vote **pass** when their label is pass, or fail with other modes only (the trace failed,
  but not in this way);
- a fail that lists no mode at all says nothing about M (the person did not say which failure
  it was), so it is no vote; neither is a label without a verdict (deferred).

Several people's votes become one label by a `LabelPolicy`:

- ``majority`` (default): the label with more votes; a tie is broken by the `reference`
  annotator's vote when one is named and voted, and otherwise leaves the trace out (listed as
  a tie, so someone can settle it);
- ``reference``: only the `reference` annotator's vote counts (e.g. the domain expert).

A label audit overrides both: when a person corrects the label of a trace for a mode (after
looking at a disagreement with the judge), the latest correction is the label. Corrections
are kept in `label_audits` with who, when, the reason, and what the judge said, and the
corrector's own annotation is updated through `coding.save_annotation`, so the open-coding
history records it too.

The split: labelled traces are split into train (few-shot examples come from here only), dev
(for iterating on the judge) and test (run once, for the validation result), stratified by
label so each part holds about the same share of fails. With n traces of one label and
proportions (p_train, p_dev, p_test), the ids (sorted, then shuffled by `random.Random(seed)`)
are cut at round(n p_train) and round(n (p_train + p_dev)): every part gets its proportion of
each label to within one trace. The seed is recorded, so the split can be drawn again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, field_validator
from sqlalchemy import delete, func, insert, select, update

from evalboard import coding
from evalboard.db import (
    failure_modes,
    judge_runs,
    judge_split_items,
    judge_splits,
    label_audits,
    utcnow,
)
from evalboard.store import Store, StoreError

PARTS = ("train", "dev", "test")
DEFAULT_PROPORTIONS = {"train": 0.15, "dev": 0.40, "test": 0.45}


class JudgeError(StoreError):
    """A judge request evalboard refuses, with a message meant for the person who made it."""


# ----------------------------------------------------------------------------- modes


@dataclass(frozen=True)
class ModeInfo:
    """A failure mode as judges see it: its name and what it does and does not cover."""

    id: int
    project_id: int
    name: str
    definition: str = ""
    includes: str = ""
    excludes: str = ""


def get_mode(store: Store, mode_id: int) -> ModeInfo:
    with store.engine.connect() as conn:
        row = conn.execute(select(failure_modes).where(failure_modes.c.id == mode_id)).first()
    if row is None:
        raise JudgeError(f"There is no failure mode with id {mode_id}.")
    return ModeInfo(row.id, row.project_id, row.name, row.definition or "", row.includes or "",
                    row.excludes or "")


# ----------------------------------------------------------------------------- labels


class LabelPolicy(BaseModel):
    """How several annotators' votes on a mode become one label (see the module docstring)."""

    method: Literal["majority", "reference"] = "majority"
    reference: str | None = None

    @field_validator("reference")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        return value or None

    def model_post_init(self, _context: Any) -> None:
        if self.method == "reference" and not self.reference:
            raise ValueError("the 'reference' label policy needs the name of the reference annotator")

    def describe(self) -> str:
        if self.method == "reference":
            return f"only {self.reference}'s labels count"
        tie = f"ties go to {self.reference}" if self.reference else "ties are left out"
        return f"majority of annotators ({tie})"


def vote(verdict: str | None, modes: Iterable[str], mode_name: str) -> str | None:
    """One annotator's vote on `mode_name`: "fail", "pass" or None (no vote); see module doc."""
    names = {m.strip().lower() for m in modes}
    if verdict == "pass":
        return "pass"
    if verdict == "fail":
        if mode_name.strip().lower() in names:
            return "fail"
        return "pass" if names else None
    return None


LABEL_COLUMNS = ["trace_id", "source_id", "label", "how", "fail_votes", "pass_votes", "no_votes",
                 "annotators", "notes"]


def mode_labels(store: Store, project_id: int, mode_id: int,
                policy: LabelPolicy | None = None) -> pd.DataFrame:
    """One row per trace anyone labelled: the combined label for the mode and how it came about.

    Columns: trace_id, source_id, label ("fail"/"pass"/None), how ("majority", "tie-break",
    "reference", "audit", "tie", "no vote"), fail_votes, pass_votes, no_votes, annotators
    ("name: vote" joined), notes (list of "name: note" for the non-empty notes).
    """
    policy = policy or LabelPolicy()
    mode = get_mode(store, mode_id)
    table = coding.annotation_table(store, project_id)
    audits = latest_corrections(store, mode_id)
    by_trace: dict[int, list[dict[str, Any]]] = {}
    # plain records, not DataFrame.groupby + itertuples: ~100x faster on a few thousand labels
    for rec in table[["trace_id", "source_id", "annotator", "verdict", "modes", "note"]].to_dict("records"):
        by_trace.setdefault(int(rec["trace_id"]), []).append(rec)
    rows: list[dict[str, Any]] = []
    for trace_id in sorted(by_trace):
        group = by_trace[trace_id]
        if all(pd.isna(r["verdict"]) for r in group) and trace_id not in audits:
            continue  # only deferred or empty labels: nobody has judged this trace yet
        votes = {r["annotator"]: vote(r["verdict"], r["modes"], mode.name) for r in group}
        label, how = _combine(votes, policy)
        if trace_id in audits:
            label, how = audits[trace_id], "audit"
        rows.append({
            "trace_id": trace_id, "source_id": group[0]["source_id"], "label": label, "how": how,
            "fail_votes": sum(v == "fail" for v in votes.values()),
            "pass_votes": sum(v == "pass" for v in votes.values()),
            "no_votes": sum(v is None for v in votes.values()),
            "annotators": ", ".join(f"{who}: {v or 'no vote'}" for who, v in sorted(votes.items())),
            "notes": [f"{r['annotator']}: {r['note']}" for r in group if r["note"]],
        })
    seen = {r["trace_id"] for r in rows}
    for trace_id, label in audits.items():  # corrected traces nobody else labelled
        if trace_id not in seen:
            rows.append({"trace_id": trace_id, "source_id": None, "label": label, "how": "audit",
                         "fail_votes": 0, "pass_votes": 0, "no_votes": 0, "annotators": "",
                         "notes": []})
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def _combine(votes: Mapping[str, str | None], policy: LabelPolicy) -> tuple[str | None, str]:
    if policy.method == "reference":
        mine = votes.get(policy.reference or "")
        return mine, "reference" if mine else "no vote"
    fails = sum(v == "fail" for v in votes.values())
    passes = sum(v == "pass" for v in votes.values())
    if fails == passes == 0:
        return None, "no vote"
    if fails != passes:
        return ("fail" if fails > passes else "pass"), "majority"
    tie_break = votes.get(policy.reference or "")
    return (tie_break, "tie-break") if tie_break else (None, "tie")


def labels_by_trace(labels: pd.DataFrame) -> dict[int, str]:
    """trace id -> "fail"/"pass" for the traces that have a combined label."""
    have = labels[labels["label"].notna()]
    return dict(zip(have["trace_id"].astype(int), have["label"]))


# ----------------------------------------------------------------------------- splits


@dataclass
class Split:
    id: int
    project_id: int
    mode_id: int
    seed: int
    proportions: dict[str, float]
    policy: LabelPolicy
    extensions: list[dict[str, Any]] = field(default_factory=list)
    test_run_id: int | None = None
    test_version_id: int | None = None
    test_used_at: datetime | None = None
    created_by: str = ""
    created_at: datetime | None = None
    runs: int = 0

    @property
    def locked(self) -> bool:
        """True once any judge run used the split: proportions and seed are then fixed."""
        return self.runs > 0

    @property
    def test_used(self) -> bool:
        return self.test_run_id is not None


def check_proportions(proportions: Mapping[str, float] | Sequence[float]) -> dict[str, float]:
    """{"train", "dev", "test"} shares summing to 1 (percentages summing to 100 are accepted).

    Dev and test must be above 0 (no evaluation otherwise); train may be 0 (no few-shot)."""
    if not isinstance(proportions, Mapping):
        values = list(proportions)
        if len(values) != 3:
            raise JudgeError(f"Give three split proportions (train, dev, test), got {len(values)}.")
        proportions = dict(zip(PARTS, values))
    unknown = set(proportions) - set(PARTS)
    if unknown or set(PARTS) - set(proportions):
        raise JudgeError(f"Split proportions need exactly train, dev and test; got {sorted(proportions)}.")
    try:
        shares = {p: float(proportions[p]) for p in PARTS}
    except (TypeError, ValueError):
        raise JudgeError(f"Split proportions must be numbers, got {dict(proportions)!r}.") from None
    if any(v < 0 or math.isnan(v) for v in shares.values()):
        raise JudgeError(f"Split proportions cannot be negative: {shares}.")
    total = sum(shares.values())
    if math.isclose(total, 100.0, abs_tol=1e-6):
        shares = {p: v / 100.0 for p, v in shares.items()}
    elif not math.isclose(total, 1.0, abs_tol=1e-6):
        raise JudgeError(f"Split proportions must add up to 1 (or 100%), these add up to {total:g}.")
    if shares["dev"] <= 0 or shares["test"] <= 0:
        raise JudgeError("Dev and test both need a share above 0: dev is where the judge is "
                         "improved, test where it is validated.")
    return shares


def _cuts(n: int, shares: Mapping[str, float]) -> list[int]:
    """Indices where an ordered list of n items is cut into train | dev | test (see module doc)."""
    def half_up(x: float) -> int:
        return int(math.floor(x + 0.5))
    first = half_up(n * shares["train"])
    second = max(first, half_up(n * (shares["train"] + shares["dev"])))
    return [first, min(second, n)]


def stratified_assign(labels: Mapping[int, str], proportions: Mapping[str, float],
                      seed: int) -> dict[int, str]:
    """trace id -> part: each label's ids, sorted then shuffled with `seed`, cut by proportion."""
    return _stratify(labels, check_proportions(proportions), seed)


def _stratify(labels: Mapping[int, str], shares: Mapping[str, float], seed: int) -> dict[int, str]:
    rng = random.Random(seed)
    parts: dict[int, str] = {}
    for label in ("fail", "pass"):  # a fixed order, so the same seed gives the same split
        ids = sorted(t for t, lab in labels.items() if lab == label)
        rng.shuffle(ids)
        first, second = _cuts(len(ids), shares)
        for i, trace_id in enumerate(ids):
            parts[trace_id] = "train" if i < first else "dev" if i < second else "test"
    return parts


def _split_from_row(row: Any, runs: int) -> Split:
    return Split(id=row.id, project_id=row.project_id, mode_id=row.mode_id, seed=row.seed,
                 proportions=dict(row.proportions), policy=LabelPolicy(**(row.policy or {})),
                 extensions=list(row.extensions or []), test_run_id=row.test_run_id,
                 test_version_id=row.test_version_id, test_used_at=row.test_used_at,
                 created_by=row.created_by, created_at=row.created_at, runs=runs)


def get_split(store: Store, mode_id: int) -> Split | None:
    """The mode's split, or None when none was made yet."""
    with store.engine.connect() as conn:
        row = conn.execute(select(judge_splits).where(judge_splits.c.mode_id == mode_id)).first()
        if row is None:
            return None
        runs = conn.execute(select(func.count()).select_from(judge_runs)
                            .where(judge_runs.c.split_id == row.id)).scalar_one()
    return _split_from_row(row, runs)


def make_split(store: Store, project_id: int, mode_id: int, *,
               proportions: Mapping[str, float] | Sequence[float] | None = None,
               seed: int | None = None, policy: LabelPolicy | None = None, who: str = "") -> Split:
    """Split the mode's labelled traces (or split them again, until the first run).

    `seed` None draws a random seed, which is recorded. Needs at least one fail and one pass.
    Once any run used the split it is fixed: a new split would put dev or test traces into
    train after the judge was tuned on them.
    """
    mode = get_mode(store, mode_id)
    if mode.project_id != project_id:
        raise JudgeError(f"Failure mode {mode_id} is not in this project.")
    shares = check_proportions(proportions or DEFAULT_PROPORTIONS)
    policy = policy or LabelPolicy()
    existing = get_split(store, mode_id)
    if existing is not None and existing.locked:
        raise JudgeError(f"The split of '{mode.name}' was already used by a judge run, so it is fixed "
                         "(changing it would mix traces the judge was tuned on into the others). "
                         "New labels can still be added to it.")
    labelled = labels_by_trace(mode_labels(store, project_id, mode_id, policy))
    counts = {lab: sum(v == lab for v in labelled.values()) for lab in ("fail", "pass")}
    if not counts["fail"] or not counts["pass"]:
        raise JudgeError(f"'{mode.name}' needs at least one trace labelled as showing it and one "
                         f"labelled as not showing it; there are {counts['fail']} and {counts['pass']}. "
                         "Label more traces in open coding first.")
    seed = random.SystemRandom().randrange(1, 2**31 - 1) if seed is None else int(seed)
    parts = stratified_assign(labelled, shares, seed)
    now = utcnow()
    with store.engine.begin() as conn:
        values = dict(project_id=project_id, mode_id=mode_id, seed=seed, proportions=shares,
                      policy=policy.model_dump(), extensions=[], created_by=who, created_at=now)
        if existing is None:
            split_id = conn.execute(insert(judge_splits).values(**values)).inserted_primary_key[0]
        else:
            split_id = existing.id
            conn.execute(update(judge_splits).where(judge_splits.c.id == split_id).values(**values))
            conn.execute(delete(judge_split_items).where(judge_split_items.c.split_id == split_id))
        conn.execute(insert(judge_split_items), [
            {"split_id": split_id, "trace_id": t, "part": p, "label_at_split": labelled[t], "added_at": now}
            for t, p in sorted(parts.items())])
    return get_split(store, mode_id)  # type: ignore[return-value]


def split_items(store: Store, split_id: int) -> pd.DataFrame:
    """trace_id, part, label_at_split, moved_from for every trace in the split."""
    q = (select(judge_split_items.c.trace_id, judge_split_items.c.part, judge_split_items.c.label_at_split,
                judge_split_items.c.moved_from)
         .where(judge_split_items.c.split_id == split_id).order_by(judge_split_items.c.trace_id))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["trace_id", "part", "label_at_split", "moved_from"])


def part_ids(store: Store, split_id: int, part: str) -> list[int]:
    if part not in PARTS:
        raise JudgeError(f"A split part is train, dev or test, not {part!r}.")
    with store.engine.connect() as conn:
        return list(conn.execute(select(judge_split_items.c.trace_id).where(
            judge_split_items.c.split_id == split_id, judge_split_items.c.part == part)
            .order_by(judge_split_items.c.trace_id)).scalars())


def parts_of(store: Store, split_id: int, trace_ids: Iterable[int]) -> dict[int, str]:
    """trace id -> part for the given traces that are in the split."""
    ids = list(dict.fromkeys(int(t) for t in trace_ids))
    found: dict[int, str] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 900):
            found.update(conn.execute(select(judge_split_items.c.trace_id, judge_split_items.c.part).where(
                judge_split_items.c.split_id == split_id,
                judge_split_items.c.trace_id.in_(ids[i:i + 900]))).all())
    return found


def split_summary(store: Store, split: Split, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per part: traces, human fails and passes now, traces whose label is gone (tie, removed)."""
    if labels is None:
        labels = mode_labels(store, split.project_id, split.mode_id, split.policy)
    now = labels_by_trace(labels)
    items = split_items(store, split.id)
    rows = []
    for part in PARTS:
        ids = items.loc[items["part"] == part, "trace_id"].astype(int)
        current = [now.get(t) for t in ids]
        rows.append({"part": part, "share": split.proportions[part], "traces": len(ids),
                     "fail": current.count("fail"), "pass": current.count("pass"),
                     "no label now": current.count(None)})
    return pd.DataFrame(rows)


def unsplit_labels(store: Store, split: Split, labels: pd.DataFrame | None = None) -> dict[int, str]:
    """Traces labelled since the split was made (not in it yet): trace id -> label."""
    if labels is None:
        labels = mode_labels(store, split.project_id, split.mode_id, split.policy)
    have = set(split_items(store, split.id)["trace_id"].astype(int))
    return {t: lab for t, lab in labels_by_trace(labels).items() if t not in have}


def add_new_labels(store: Store, split_id: int, who: str = "") -> dict[str, int]:
    """Put traces labelled since the split into it, stratified like the split itself.

    The seed of each addition is the split's seed plus the addition's number (recorded). After
    the test split has been used, new traces go to train and dev only (in their proportion):
    the test set whose result was frozen stays the set it was. Returns counts per part.
    """
    with store.engine.connect() as conn:
        row = conn.execute(select(judge_splits).where(judge_splits.c.id == split_id)).first()
    if row is None:
        raise JudgeError(f"There is no split with id {split_id}.")
    split = _split_from_row(row, 0)
    new = unsplit_labels(store, split)
    if not new:
        return {p: 0 for p in PARTS}
    shares = dict(split.proportions)
    if split.test_used:  # the frozen test set stays as it was: train and dev keep their ratio
        kept = shares["train"] + shares["dev"]
        shares = {"train": shares["train"] / kept, "dev": shares["dev"] / kept, "test": 0.0}
    seed = split.seed + len(split.extensions) + 1
    parts = _stratify(new, shares, seed)
    counts = {p: sum(v == p for v in parts.values()) for p in PARTS}
    now = utcnow()
    record = {"at": now.isoformat(), "seed": seed,
              "added": len(parts), "parts": counts, "by": who, "test_closed": split.test_used}
    with store.engine.begin() as conn:
        conn.execute(insert(judge_split_items), [
            {"split_id": split_id, "trace_id": t, "part": p, "label_at_split": new[t], "added_at": now}
            for t, p in sorted(parts.items())])
        conn.execute(update(judge_splits).where(judge_splits.c.id == split_id)
                     .values(extensions=[*split.extensions, record]))
    return counts


# ----------------------------------------------------------------------------- label audit


def latest_corrections(store: Store, mode_id: int) -> dict[int, str]:
    """trace id -> label of the latest "correct" audit of the mode (the label that now counts)."""
    q = (select(label_audits.c.trace_id, label_audits.c.label)
         .where(label_audits.c.mode_id == mode_id, label_audits.c.action == "correct")
         .order_by(label_audits.c.id))
    with store.engine.connect() as conn:
        return {t: lab for t, lab in conn.execute(q)}


def correct_label(store: Store, project_id: int, mode_id: int, trace_id: int, label: str, *,
                  who: str, reason: str, context: Mapping[str, Any] | None = None) -> None:
    """Record that, for this mode, the trace's label is `label` ("fail"/"pass"), and why.

    The correction is kept in `label_audits` (with the label it replaced and, in `context`,
    what the judge said) and overrides the vote from now on. The corrector's own annotation is
    updated through `coding.save_annotation` (action "label-audit", so the open-coding history
    shows it): to fail, their label becomes fail with this mode added; to pass, this mode is
    removed from their label if it was there. Their note and other modes are left alone.
    """
    who = who.strip()
    if not who:
        raise JudgeError("Say who you are (your name in the sidebar) before correcting a label.")
    if label not in ("fail", "pass"):
        raise JudgeError(f"A corrected label is 'fail' or 'pass', not {label!r}.")
    if not reason.strip():
        raise JudgeError("Give the reason for the correction: it is kept in the label history.")
    mode = get_mode(store, mode_id)
    if mode.project_id != project_id:
        raise JudgeError(f"Failure mode {mode_id} is not in this project.")
    split = get_split(store, mode_id)
    policy = split.policy if split else LabelPolicy()
    previous = labels_by_trace(mode_labels(store, project_id, mode_id, policy)).get(trace_id)
    mine = coding.get_annotation(store, trace_id, who)
    if label == "fail":
        coding.save_annotation(store, project_id, trace_id, who, verdict="fail", add_modes=[mode.name],
                               action="label-audit", origin="label-audit")
    elif mine is not None and mode.name.lower() in {m.lower() for m in mine.modes}:
        coding.save_annotation(store, project_id, trace_id, who,
                               modes=[m for m in mine.modes if m.lower() != mode.name.lower()],
                               action="label-audit")
    with store.engine.begin() as conn:
        conn.execute(insert(label_audits).values(
            project_id=project_id, mode_id=mode_id, trace_id=trace_id, action="correct", label=label,
            previous=previous, reason=reason.strip(), who=who, context=dict(context or {})))


def move_to_train(store: Store, project_id: int, mode_id: int, trace_id: int, *, who: str,
                  reason: str = "", context: Mapping[str, Any] | None = None) -> None:
    """Move a dev trace to train (so it can become a few-shot example). Test traces never move."""
    who = who.strip()
    if not who:
        raise JudgeError("Say who you are (your name in the sidebar) before moving a trace.")
    split = get_split(store, mode_id)
    if split is None or split.project_id != project_id:
        raise JudgeError("This failure mode has no split yet.")
    part = parts_of(store, split.id, [trace_id]).get(trace_id)
    if part != "dev":
        where = f"in the {part} split" if part else "not in the split"
        raise JudgeError(f"Only dev traces can be moved to train; trace {trace_id} is {where}.")
    with store.engine.begin() as conn:
        conn.execute(update(judge_split_items).where(judge_split_items.c.split_id == split.id,
                                                     judge_split_items.c.trace_id == trace_id)
                     .values(part="train", moved_from="dev"))
        conn.execute(insert(label_audits).values(
            project_id=project_id, mode_id=mode_id, trace_id=trace_id, action="to-train",
            reason=reason.strip(), who=who, context=dict(context or {})))


def label_history(store: Store, mode_id: int, trace_id: int | None = None) -> pd.DataFrame:
    """The label audit of a mode (optionally one trace), newest first."""
    q = select(label_audits.c.id, label_audits.c.trace_id, label_audits.c.action, label_audits.c.previous,
               label_audits.c.label, label_audits.c.reason, label_audits.c.who, label_audits.c.context,
               label_audits.c.created_at).where(label_audits.c.mode_id == mode_id)
    if trace_id is not None:
        q = q.where(label_audits.c.trace_id == trace_id)
    with store.engine.connect() as conn:
        rows = conn.execute(q.order_by(label_audits.c.id.desc())).all()
    return pd.DataFrame(rows, columns=["id", "trace_id", "action", "previous", "label", "reason", "who",
                                       "context", "created_at"])
