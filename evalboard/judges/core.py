"""Judges and their versions.

A judge belongs to one failure mode and is an LLM judge or a code judge. Everything that can
change its verdicts (prompt, examples, model and parameters, or the rule) lives in a version;
every change is a new version, numbered 1, 2, ... with a unified diff against the previous one
(`difflib`, over a readable text form of the config), so "what changed between v3 and v4" is
always answerable. Saving an unchanged config makes no version.

Few-shot examples can only come from the mode's train split (`check_examples`): a dev or test
trace shown to the judge as an example would be judged by a judge that has seen its answer,
and the dev/test figures would overstate how well it works.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update

from evalboard.db import failure_modes, judge_versions, judges
from evalboard.judges.code_judge import CodeJudgeConfig, parse_rule
from evalboard.judges.labels import (
    JudgeError,
    get_mode,
    get_split,
    labels_by_trace,
    mode_labels,
    parts_of,
)
from evalboard.judges.llm_judge import LLMJudgeConfig, system_prompt, trace_block
from evalboard.models import TraceRecord
from evalboard.store import Store

KINDS = ("llm", "code")
DEFAULT_THRESHOLDS = {"tpr": 0.9, "tnr": 0.9}


@dataclass
class Judge:
    id: int
    project_id: int
    mode_id: int
    mode_name: str
    name: str
    kind: str
    thresholds: dict[str, float]
    created_by: str
    created_at: datetime | None


@dataclass
class Version:
    id: int
    judge_id: int
    number: int
    config: dict[str, Any]
    diff: str
    note: str
    created_by: str
    created_at: datetime | None

    @property
    def label(self) -> str:
        return f"v{self.number}"


def _judge(row: Any) -> Judge:
    return Judge(id=row.id, project_id=row.project_id, mode_id=row.mode_id, mode_name=row.mode_name,
                 name=row.name, kind=row.kind, thresholds=dict(row.thresholds),
                 created_by=row.created_by, created_at=row.created_at)


_JUDGE_SELECT = select(judges, failure_modes.c.name.label("mode_name")).join(
    failure_modes, failure_modes.c.id == judges.c.mode_id)


def check_thresholds(tpr: float, tnr: float) -> dict[str, float]:
    for name, value in (("TPR", tpr), ("TNR", tnr)):
        if not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
            raise JudgeError(f"The {name} threshold is a share in (0, 1], got {value!r}.")
    return {"tpr": float(tpr), "tnr": float(tnr)}


def create_judge(store: Store, project_id: int, mode_id: int, name: str, kind: str, *,
                 who: str = "", thresholds: Mapping[str, float] | None = None) -> Judge:
    name = " ".join(name.split())
    if not name:
        raise JudgeError("A judge needs a name.")
    if kind not in KINDS:
        raise JudgeError(f"A judge is an 'llm' or a 'code' judge, not {kind!r}.")
    mode = get_mode(store, mode_id)
    if mode.project_id != project_id:
        raise JudgeError(f"Failure mode {mode_id} is not in this project.")
    limits = check_thresholds(**{**DEFAULT_THRESHOLDS, **(thresholds or {})})
    with store.engine.begin() as conn:
        taken = conn.execute(select(judges.c.id).where(judges.c.project_id == project_id,
                                                       func.lower(judges.c.name) == name.lower())).first()
        if taken:
            raise JudgeError(f"This project already has a judge named '{name}'.")
        judge_id = conn.execute(insert(judges).values(project_id=project_id, mode_id=mode_id, name=name,
                                                      kind=kind, thresholds=limits, created_by=who)
                                ).inserted_primary_key[0]
    return get_judge(store, judge_id)


def get_judge(store: Store, judge_id: int) -> Judge:
    with store.engine.connect() as conn:
        row = conn.execute(_JUDGE_SELECT.where(judges.c.id == judge_id)).first()
    if row is None:
        raise JudgeError(f"There is no judge with id {judge_id}.")
    return _judge(row)


def list_judges(store: Store, project_id: int, mode_id: int | None = None) -> list[Judge]:
    q = _JUDGE_SELECT.where(judges.c.project_id == project_id)
    if mode_id is not None:
        q = q.where(judges.c.mode_id == mode_id)
    with store.engine.connect() as conn:
        return [_judge(r) for r in conn.execute(q.order_by(judges.c.id))]


def set_thresholds(store: Store, judge_id: int, tpr: float, tnr: float) -> None:
    limits = check_thresholds(tpr, tnr)
    with store.engine.begin() as conn:
        conn.execute(update(judges).where(judges.c.id == judge_id).values(thresholds=limits))


# ----------------------------------------------------------------------------- versions


def _version(row: Any) -> Version:
    return Version(id=row.id, judge_id=row.judge_id, number=row.number, config=dict(row.config),
                   diff=row.diff, note=row.note, created_by=row.created_by, created_at=row.created_at)


def list_versions(store: Store, judge_id: int) -> list[Version]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(judge_versions).where(judge_versions.c.judge_id == judge_id)
                            .order_by(judge_versions.c.number)).all()
    return [_version(r) for r in rows]


def get_version(store: Store, version_id: int) -> Version:
    with store.engine.connect() as conn:
        row = conn.execute(select(judge_versions).where(judge_versions.c.id == version_id)).first()
    if row is None:
        raise JudgeError(f"There is no judge version with id {version_id}.")
    return _version(row)


def parse_config(kind: str, config: Mapping[str, Any], allowed_functions: Sequence[str] = ()) -> dict[str, Any]:
    """The config validated for the judge's kind, as plain data (defaults filled in)."""
    data = {**config, "kind": kind}
    try:
        if kind == "llm":
            return LLMJudgeConfig.model_validate(data).model_dump(mode="json")
        parsed = CodeJudgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()[:5])
        raise JudgeError(f"The judge config is not valid: {problems}.") from None
    return {"kind": "code", "rule": parse_rule(parsed.rule, allowed_functions)}


def version_text(config: Mapping[str, Any]) -> str:
    """A readable text form of a config, for diffs: settings first ("model: x"), then one
    section per text or structure ("## fail_when" and its lines)."""
    lines: list[str] = []
    sections = sorted(k for k, v in config.items() if isinstance(v, (dict, list)) or
                      (isinstance(v, str) and k not in ("kind", "model")))
    for key in sorted(k for k in config if k not in sections):
        lines.append(f"{key}: {config[key]}")
    for key in sections:
        value = config[key]
        lines.append(f"## {key}")
        if key == "examples":
            lines.extend(f"- trace {ex['trace_id']} -> {ex['verdict']}: {ex.get('reasoning', '')}" for ex in value)
        elif isinstance(value, str):
            lines.extend(value.splitlines() or [""])
        else:
            lines.extend(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines())
    return "\n".join(lines) + "\n"


def version_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any], old_label: str = "previous",
                 new_label: str = "new") -> str:
    return "".join(difflib.unified_diff(
        version_text(old).splitlines(keepends=True) if old else [],
        version_text(new).splitlines(keepends=True), fromfile=old_label, tofile=new_label))


def check_examples(store: Store, judge: Judge, examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The examples with their verdicts filled from the human labels; JudgeError when one is not
    a train trace of the mode's split, or its verdict contradicts the human label."""
    if not examples:
        return []
    split = get_split(store, judge.mode_id)
    if split is None:
        raise JudgeError("Make the mode's train/dev/test split first: few-shot examples may only "
                         "come from the train split.")
    ids = [int(e["trace_id"]) for e in examples]
    parts = parts_of(store, split.id, ids)
    labels = labels_by_trace(mode_labels(store, judge.project_id, judge.mode_id, split.policy))
    out = []
    for example, trace_id in zip(examples, ids):
        part = parts.get(trace_id)
        if part != "train":
            where = f"in the {part} split" if part else "not in the split"
            raise JudgeError(f"Trace {trace_id} is {where}; few-shot examples may only come from train "
                             f"(a {part or 'unsplit'} trace shown as an example would leak its answer "
                             "into the evaluation).")
        human = labels.get(trace_id)
        verdict = example.get("verdict") or human
        if verdict is None:
            raise JudgeError(f"Train trace {trace_id} has no human label for this mode any more; "
                             "choose another example.")
        if human is not None and verdict != human:
            raise JudgeError(f"Example trace {trace_id} is given as {verdict!r} but people labelled it "
                             f"{human!r}; correct the label or drop the example.")
        out.append({**example, "trace_id": trace_id, "verdict": verdict})
    if len(set(ids)) != len(ids):
        raise JudgeError("The same trace is used twice as a few-shot example.")
    return out


def save_version(store: Store, judge_id: int, config: Mapping[str, Any], *, who: str = "",
                 note: str = "", allowed_functions: Sequence[str] = ()) -> tuple[Version, bool]:
    """Save the config as the judge's next version; (version, True) when a new one was made,
    (latest, False) when the config equals the latest version's."""
    judge = get_judge(store, judge_id)
    config = dict(config)
    if judge.kind == "llm":
        config["examples"] = check_examples(store, judge, config.get("examples") or [])
    clean = parse_config(judge.kind, config, allowed_functions)
    if judge.kind == "llm":  # template mistakes show now, not half-way through a run
        checked = LLMJudgeConfig.model_validate(clean)
        system_prompt(checked, get_mode(store, judge.mode_id))
        trace_block(checked.trace_template, TraceRecord(source="check", source_id="check"))
    existing = list_versions(store, judge_id)
    latest = existing[-1] if existing else None
    if latest is not None and latest.config == clean:
        return latest, False
    number = (latest.number if latest else 0) + 1
    diff = version_diff(latest.config if latest else None, clean,
                        latest.label if latest else "(nothing)", f"v{number}")
    with store.engine.begin() as conn:
        version_id = conn.execute(insert(judge_versions).values(
            judge_id=judge_id, number=number, config=clean, diff=diff, note=note.strip(), created_by=who,
        )).inserted_primary_key[0]
    return get_version(store, version_id), True
