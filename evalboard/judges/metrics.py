"""How well a judge version agrees with people, whether the judge is validated, and how many
more labels would make its figures precise enough.

Positive class = fail (see `evalboard.stats.classifier`): TPR = P(judge fail | human fail),
TNR = P(judge pass | human pass), each with its Wilson interval and the counts behind it, plus
precision, accuracy, balanced accuracy (TPR + TNR) / 2 and Cohen's kappa.

- Dev and train figures are computed from the labels as they are now (so a label corrected in
  the audit counts at once).
- The test figure exists only for the version that ran the test split, and only as frozen when
  that run completed. Every other version shows "test split already used" (or "not run yet").
- A judge is *validated* when its frozen test result has TPR >= the judge's TPR threshold and
  TNR >= its TNR threshold (defaults 0.9 and 0.9; point estimates, with the intervals shown
  beside them). `judge_status` says in plain words why a judge is not validated yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from evalboard.db import judge_runs
from evalboard.judges.core import Judge, Version, get_judge, get_version, list_judges, list_versions
from evalboard.judges.labels import JudgeError, get_split, labels_by_trace, mode_labels, part_ids
from evalboard.judges.runs import stored_verdicts
from evalboard.stats import Confusion, JudgeMetrics, judge_metrics, labels_needed_for_width, wilson_width
from evalboard.store import Store

ROW_COLUMNS = ["trace_id", "human", "judge", "agree", "reasoning", "annotators", "notes"]


@dataclass
class Evaluation:
    """A version against the human labels on one part of the split.

    `rows` has one row per trace with both a label and a verdict (columns ROW_COLUMNS);
    `missing` counts labelled traces the version has not judged yet; `unlabelled` traces of the
    part whose label is gone (a tie, or a removed label). `blocked` says why there is no result
    (test split not run, or used by another version)."""

    part: str
    version_id: int
    metrics: JudgeMetrics | None = None
    rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ROW_COLUMNS))
    missing: int = 0
    unlabelled: int = 0
    frozen: bool = False
    frozen_at: str | None = None
    blocked: str | None = None

    @property
    def disagreements(self) -> pd.DataFrame:
        return self.rows[~self.rows["agree"]] if not self.rows.empty else self.rows


def metrics_from_pairs(human: list[str], judge: list[str]) -> JudgeMetrics:
    """JudgeMetrics from paired "fail"/"pass" labels (positive = fail)."""
    tp = sum(h == "fail" and j == "fail" for h, j in zip(human, judge))
    fn = sum(h == "fail" and j == "pass" for h, j in zip(human, judge))
    tn = sum(h == "pass" and j == "pass" for h, j in zip(human, judge))
    fp = sum(h == "pass" and j == "fail" for h, j in zip(human, judge))
    return judge_metrics(Confusion(tp=tp, fn=fn, tn=tn, fp=fp))


def _rows(pairs: list[tuple[int, str, str]], verdicts: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    reasoning = dict(zip(verdicts["trace_id"].astype(int), verdicts["reasoning"]))
    info = {int(r.trace_id): r for r in labels.itertuples()}
    out = []
    for trace_id, human, judge in pairs:
        lab = info.get(trace_id)
        out.append({"trace_id": trace_id, "human": human, "judge": judge, "agree": human == judge,
                    "reasoning": reasoning.get(trace_id, ""), "annotators": lab.annotators if lab else "",
                    "notes": list(lab.notes) if lab is not None else []})
    return pd.DataFrame(out, columns=ROW_COLUMNS)


def evaluate(store: Store, version_id: int, part: str) -> Evaluation:
    """The version's figures on `part` ("train", "dev" or "test"); see the module docstring."""
    version = get_version(store, version_id)
    judge = get_judge(store, version.judge_id)
    split = get_split(store, judge.mode_id)
    result = Evaluation(part=part, version_id=version_id)
    if split is None:
        result.blocked = "no split yet"
        return result
    labels_df = mode_labels(store, judge.project_id, judge.mode_id, split.policy)
    if part == "test":
        if split.test_run_id is None:
            result.blocked = "test split not run yet"
            return result
        if split.test_version_id != version_id:
            other = get_version(store, split.test_version_id) if split.test_version_id else None
            owner = get_judge(store, other.judge_id) if other else None
            by = f"{owner.name} {other.label}" if owner and other else "another version"
            result.blocked = f"test split already used (by {by})"
            return result
        with store.engine.connect() as conn:
            frozen = conn.execute(select(judge_runs.c.frozen).where(judge_runs.c.id == split.test_run_id)).scalar()
        if frozen is None:
            result.blocked = "test run not complete: resume it to get the frozen result"
            return result
        pairs = [(int(t), h, j) for t, h, j in frozen["pairs"]]
        verdicts = stored_verdicts(store, version_id, [t for t, _, _ in pairs])
        result.rows = _rows(pairs, verdicts, labels_df)
        result.metrics = metrics_from_pairs([h for _, h, _ in pairs], [j for _, _, j in pairs])
        result.unlabelled = int(frozen.get("unlabelled", 0))
        result.frozen, result.frozen_at = True, frozen.get("at")
        return result
    ids = part_ids(store, split.id, part)
    labels = labels_by_trace(labels_df)
    verdicts = stored_verdicts(store, version_id, ids)
    said = dict(zip(verdicts["trace_id"].astype(int), verdicts["verdict"]))
    pairs = [(t, labels[t], said[t]) for t in ids if t in labels and t in said]
    result.missing = sum(t in labels and t not in said for t in ids)
    result.unlabelled = sum(t not in labels for t in ids)
    result.rows = _rows(pairs, verdicts, labels_df)
    if pairs:
        result.metrics = metrics_from_pairs([h for _, h, _ in pairs], [j for _, _, j in pairs])
    return result


def rate_text(p: Any) -> str:
    """'0.83 (10/12; 95% CI 0.55-0.95)' for a Proportion; '-' when undefined."""
    if p.n == 0 or math.isnan(p.p):
        return "- (0/0)"
    return f"{p.p:.2f} ({p.k}/{p.n}; 95% CI {p.low:.2f}-{p.high:.2f})"


def metrics_row(m: JudgeMetrics | None) -> dict[str, Any]:
    if m is None:
        return {"TPR": "-", "TNR": "-", "precision": "-", "accuracy": "-", "balanced accuracy": None,
                "kappa": None, "n": 0}
    return {"TPR": rate_text(m.tpr), "TNR": rate_text(m.tnr), "precision": rate_text(m.precision),
            "accuracy": rate_text(m.accuracy),
            "balanced accuracy": None if math.isnan(m.balanced_accuracy) else round(m.balanced_accuracy, 3),
            "kappa": None if math.isnan(m.kappa) else round(m.kappa, 3), "n": m.confusion.n}


def compare_versions(store: Store, judge_id: int) -> pd.DataFrame:
    """One row per version: what it is, its dev figures and its test result or why it has none."""
    rows = []
    for version in list_versions(store, judge_id):
        dev = evaluate(store, version.id, "dev")
        test = evaluate(store, version.id, "test")
        config = version.config
        what = (f"{config.get('model')}, {len(config.get('examples') or [])} examples" if config.get("kind") == "llm"
                else "code rule")
        dev_row = metrics_row(dev.metrics)
        rows.append({
            "version": version.label, "what": what, "created": version.created_at, "by": version.created_by,
            "dev TPR": dev_row["TPR"], "dev TNR": dev_row["TNR"], "dev balanced acc.": dev_row["balanced accuracy"],
            "dev kappa": dev_row["kappa"], "dev judged": dev_row["n"], "dev not judged": dev.missing,
            "test": (f"TPR {rate_text(test.metrics.tpr)}, TNR {rate_text(test.metrics.tnr)}"
                     if test.metrics else test.blocked or "-"),
            "note": version.note,
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- validation


@dataclass
class JudgeStatus:
    """Whether a judge is validated; if not, `reasons` in plain words. `notes` are facts worth
    knowing either way (e.g. thresholds changed after the test)."""

    validated: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tested_version: str | None = None
    tested_version_id: int | None = None
    test: Evaluation | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    tested_at: datetime | str | None = None


def judge_status(store: Store, judge_id: int) -> JudgeStatus:
    judge = get_judge(store, judge_id)
    status = JudgeStatus(validated=False, thresholds=judge.thresholds)
    versions = list_versions(store, judge_id)
    split = get_split(store, judge.mode_id)
    if split is None:
        status.reasons.append(f"'{judge.mode_name}' has no train/dev/test split yet: make it from the labels.")
        return status
    if not versions:
        status.reasons.append("The judge has no version yet: write its prompt (or rule) and save it.")
        return status
    if split.test_run_id is None:
        status.reasons.append("The test split has not been run. When a version does well on dev, run the "
                              "test split once for it.")
        return status
    mine = {v.id: v for v in versions}
    if split.test_version_id not in mine:
        other = get_version(store, split.test_version_id) if split.test_version_id else None
        owner = get_judge(store, other.judge_id).name if other else "another judge"
        status.reasons.append(f"The test split of '{judge.mode_name}' was used by {owner} "
                              f"{other.label if other else ''}, so this judge has no clean test result.")
        return status
    tested = mine[split.test_version_id]
    status.tested_version, status.tested_version_id = tested.label, tested.id
    test = evaluate(store, tested.id, "test")
    status.test = test
    if test.metrics is None:
        status.reasons.append(f"The test run of {tested.label} is not complete: resume it to freeze the result.")
        return status
    status.tested_at = test.frozen_at
    m = test.metrics
    for name, rate, key, who in (("TPR", m.tpr, "tpr", "human fails caught"),
                                 ("TNR", m.tnr, "tnr", "human passes passed")):
        limit = judge.thresholds[key]
        if rate.n == 0:
            kind = "fail" if key == "tpr" else "pass"
            status.reasons.append(f"The test split holds no human {kind}s, so {name} cannot be measured: "
                                  f"label more traces.")
        elif rate.p < limit:
            status.reasons.append(f"On test, {name} of {tested.label} is {rate.p:.2f} ({rate.k} of {rate.n} "
                                  f"{who}), below the {limit:.2f} required.")
    status.validated = not status.reasons
    frozen_limits = _frozen_thresholds(store, split.test_run_id)
    if frozen_limits and frozen_limits != judge.thresholds:
        status.notes.append(f"The thresholds were changed after the test run (they were TPR >= "
                            f"{frozen_limits['tpr']:.2f}, TNR >= {frozen_limits['tnr']:.2f}).")
    later = [v.label for v in versions if v.number > tested.number]
    if later:
        status.notes.append(f"{', '.join(later)} came after the test run and have no clean test result; "
                            f"the judge in use is {tested.label}.")
    if status.validated and (m.tpr.n < 10 or m.tnr.n < 10):
        status.notes.append(f"Few test labels ({m.tpr.n} fails, {m.tnr.n} passes): the intervals are wide; "
                            "see the label budget planner.")
    return status


def _frozen_thresholds(store: Store, run_id: int) -> dict[str, float] | None:
    with store.engine.connect() as conn:
        frozen = conn.execute(select(judge_runs.c.frozen).where(judge_runs.c.id == run_id)).scalar()
    return (frozen or {}).get("thresholds")


def validated_judges(store: Store, project_id: int) -> list[tuple[Judge, Version]]:
    """Every validated judge of a project with the version that passed the test (the one to
    apply to production traces)."""
    out = []
    for judge in list_judges(store, project_id):
        status = judge_status(store, judge.id)
        if status.validated and status.tested_version_id is not None:
            out.append((judge, get_version(store, status.tested_version_id)))
    return out


# ----------------------------------------------------------------------------- label budget


@dataclass(frozen=True)
class LabelBudget:
    """How many labelled traces the test split needs for TPR and TNR intervals of a width.

    `fails_needed` = smallest n whose Wilson interval at the expected TPR is at most `width`
    wide (`labels_needed_for_width`); `more_fails` = what the test split lacks; likewise for
    passes. `traces_to_label` converts that into traces to label: new labels split like the
    rest, so only the test share of them lands in test, and only the fail share of those are
    fails: more_fails / (test_share x fail_share), and the same for passes; the larger wins.
    """

    width: float
    fails_have: int
    passes_have: int
    fails_needed: int
    passes_needed: int
    more_fails: int
    more_passes: int
    traces_to_label: int | None
    tpr_width_now: float | None
    tnr_width_now: float | None


def label_budget(fails_have: int, passes_have: int, *, expected_tpr: float = 0.9, expected_tnr: float = 0.9,
                 width: float = 0.2, fail_share: float | None = None, test_share: float = 0.45,
                 confidence: float = 0.95) -> LabelBudget:
    if not 0 < test_share <= 1:
        raise JudgeError(f"The test share is in (0, 1], got {test_share!r}.")
    if fail_share is not None and not 0 <= fail_share <= 1:
        raise JudgeError(f"The fail share is in [0, 1], got {fail_share!r}.")
    try:
        need_f = labels_needed_for_width(expected_tpr, width, confidence)
        need_p = labels_needed_for_width(expected_tnr, width, confidence)
    except ValueError as exc:
        raise JudgeError(str(exc)) from None
    more_f, more_p = max(0, need_f - fails_have), max(0, need_p - passes_have)
    traces: int | None = 0
    if more_f or more_p:
        if fail_share is None or (more_f and fail_share == 0) or (more_p and fail_share == 1):
            traces = None  # cannot say without knowing how often a labelled trace fails
        else:
            by_f = math.ceil(more_f / (test_share * fail_share)) if more_f else 0
            by_p = math.ceil(more_p / (test_share * (1 - fail_share))) if more_p else 0
            traces = max(by_f, by_p)
    return LabelBudget(width=width, fails_have=fails_have, passes_have=passes_have, fails_needed=need_f,
                       passes_needed=need_p, more_fails=more_f, more_passes=more_p, traces_to_label=traces,
                       tpr_width_now=wilson_width(expected_tpr, fails_have, confidence) if fails_have else None,
                       tnr_width_now=wilson_width(expected_tnr, passes_have, confidence) if passes_have else None)

