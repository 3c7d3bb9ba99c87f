"""The demo project's judges: three failure modes with splits, versions and runs.

What is added, and where it comes from (nothing here pretends to be something it is not):

- Labels per mode. The traces Maya and Li labelled keep their labels; the names they coined
  ("bad email tone", "rude email", ...) are linked to the canonical modes of
  `demo.FAILURE_MODES` (annotation_modes rows with provenance "axial:demo-judges", added only
  where missing; axial coding does the same when a team accepts a taxonomy). Every other demo
  trace gets a label from the demo's planted truth under the annotator "demo-reference"
  (origin "demo:planted truth"): the known answer the generator planted, not a person.
- "wrong tone email": an LLM judge with two versions; v2 ran dev and the test split and is
  validated.
- "outdated version": an LLM judge whose v1 ran dev and test (TPR below 0.9 on test: not
  validated) and whose v2 improved on dev but has no clean test result (test split already
  used), which is the discipline the workbench enforces.
- "tool error hidden": a code judge (a step errored and the answer does not admit it), run
  for real on dev; its test split has not been run.

The LLM judges' answers are recorded demo data, labelled as such (run and verdict origin
"demo: recorded answers"): they were written by this module from the planted truth with a
fixed, seeded error rate per version, because the demo must work without any LLM. Running
one of these versions again reuses the recorded verdicts; a new version calls the configured
LLM for real.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import insert, select

from evalboard import coding
from evalboard.db import annotation_events, annotation_modes, annotations, failure_modes, traces, utcnow
from evalboard.demo import CODED_MODES, FAILURE_MODES, demo_traces
from evalboard.judges import (
    EXAMPLE_RULE,
    RECORDED,
    JudgeAnswer,
    LabelPolicy,
    create_judge,
    list_judges,
    make_split,
    part_ids,
    record_run,
    run_judge,
    save_version,
)
from evalboard.judges.labels import labels_by_trace, mode_labels
from evalboard.store import Store

REFERENCE = "demo-reference"
REFERENCE_ORIGIN = "demo:planted truth"
PROVENANCE = "axial:demo-judges"
SPLIT_SEED = 20261127
MODEL = "gpt-4.1-mini"
WHO = "demo"


def _chance(*parts: Any) -> float:
    """A number in [0, 1) fixed by its parts (a seeded coin that does not depend on order)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def link_coined_modes(store: Store, project_id: int, mode_ids: dict[str, int]) -> int:
    """Add the canonical mode to every annotation that carries a name Maya or Li coined for it
    (skipping annotations that have it already). Returns rows added."""
    coined = {name: canonical for who in CODED_MODES.values() for canonical, name in who.items()}
    q = (select(annotation_modes.c.annotation_id, failure_modes.c.name)
         .select_from(annotation_modes.join(failure_modes))
         .join(annotations, annotations.c.id == annotation_modes.c.annotation_id)
         .where(annotations.c.project_id == project_id))
    with store.engine.begin() as conn:
        have: dict[int, set[str]] = {}
        for annotation_id, name in conn.execute(q):
            have.setdefault(annotation_id, set()).add(name)
        rows = []
        for annotation_id, names in have.items():
            for name in names:
                canonical = coined.get(name)
                if canonical and canonical not in names and canonical in mode_ids:
                    rows.append({"annotation_id": annotation_id, "mode_id": mode_ids[canonical],
                                 "provenance": PROVENANCE, "created_at": utcnow()})
        if rows:
            conn.execute(insert(annotation_modes), rows)
    return len(rows)


def add_reference_labels(store: Store, project_id: int, planted: dict[str, Any], mode_ids: dict[str, int]) -> int:
    """Label every demo trace nobody labelled from the planted truth, as "demo-reference".

    Written in one transaction in the shape `coding.save_annotation` writes (annotation, its
    modes, a history event), because 260 separate saves would make creating the demo slow."""
    with store.engine.begin() as conn:
        labelled = set(conn.execute(select(annotations.c.trace_id).where(
            annotations.c.project_id == project_id)).scalars())
        todo = [(tid, sid) for tid, sid in conn.execute(
            select(traces.c.id, traces.c.source_id).where(traces.c.project_id == project_id,
                                                          traces.c.source == "demo").order_by(traces.c.id))
            if tid not in labelled]
        now = utcnow()
        for trace_id, source_id in todo:
            truth = planted.get(source_id)
            verdict = "fail" if truth else "pass"
            note = f"planted: {truth.mode}" if truth else ""
            annotation_id = conn.execute(insert(annotations).values(
                project_id=project_id, trace_id=trace_id, annotator=REFERENCE, verdict=verdict, note=note,
                failure_step=truth.step if truth else None, origin=REFERENCE_ORIGIN, created_at=now,
                updated_at=now)).inserted_primary_key[0]
            modes = [truth.mode] if truth else []
            if truth:
                conn.execute(insert(annotation_modes).values(annotation_id=annotation_id,
                                                             mode_id=mode_ids[truth.mode], provenance=REFERENCE))
            conn.execute(insert(annotation_events).values(
                annotation_id=annotation_id, trace_id=trace_id, annotator=REFERENCE, action="demo", before=None,
                after={"verdict": verdict, "note": note, "failure_step": truth.step if truth else None,
                       "deferred": False, "discuss": False, "modes": modes}))
    return len(todo)


# ----------------------------------------------------------------------------- recorded answers

REASONS = {
    "wrong tone email": {
        "hit": "The reply blames the customer ('caused by your own configuration') and promises a refund "
               "of the whole year and that it never happens again, which support cannot promise.",
        "pass": "The reply apologises, says what was fixed and when, and offers follow-up; it blames nobody "
                "and promises nothing beyond what support can do.",
        "miss": "The reply is short and direct but answers the customer's question; I see no blame in it.",
        "false alarm": "Asking the customer to send their workspace id again pushes work onto them after an "
                       "outage, which reads as dismissive.",
        "other": "No email is drafted in this trace, so this failure mode cannot occur here.",
    },
    "outdated version": {
        "hit": "The answer tells the user to run `nimbus-v3 keys regenerate --force`, a v3 CLI command; the "
               "current release is v4.",
        "pass": "The steps and commands match the current (v4) documentation; nothing from v3 is recommended.",
        "miss": "The answer quotes the documentation page and gives steps; the command looks plausible.",
        "false alarm": "The answer mentions an older installer, which may be a previous version.",
        "other": "The trace does not describe product behaviour or commands that belong to a version.",
    },
}

# (chance a true failure is missed, chance a true pass is flagged) per version, for traces of
# the kind the mode can occur in; other traces are answered "pass" ("other").
ERROR_RATES = {("wrong tone email", 1): (0.3, 0.10), ("wrong tone email", 2): (0.0, 0.03),
               ("outdated version", 1): (0.35, 0.02), ("outdated version", 2): (0.05, 0.02)}


def recorded_answer(mode: str, version: int, source_id: str, trace_name: str | None, truth: str | None) -> JudgeAnswer:
    reasons = REASONS[mode]
    applies = trace_name == "draft-email" if mode == "wrong tone email" else trace_name == "rag-answer"
    if not applies:
        return JudgeAnswer(reasoning=reasons["other"], verdict="pass")
    miss, false_alarm = ERROR_RATES[(mode, version)]
    roll = _chance(mode, version, source_id)
    if truth == mode:
        return (JudgeAnswer(reasoning=reasons["miss"], verdict="pass") if roll < miss
                else JudgeAnswer(reasoning=reasons["hit"], verdict="fail"))
    return (JudgeAnswer(reasoning=reasons["false alarm"], verdict="fail") if roll < false_alarm
            else JudgeAnswer(reasoning=reasons["pass"], verdict="pass"))


def _answers(store: Store, mode: str, version: int, trace_ids: list[int],
             planted: dict[str, Any]) -> dict[int, JudgeAnswer]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(traces.c.id, traces.c.source_id, traces.c.name)
                            .where(traces.c.id.in_(trace_ids))).all()
    return {tid: recorded_answer(mode, version, sid, name, getattr(planted.get(sid), "mode", None))
            for tid, sid, name in rows}


# ----------------------------------------------------------------------------- the judges

EMAIL_V1 = {"fail_when": "- The email is rude.", "pass_when": "- The email is polite."}
EMAIL_V2 = {
    "fail_when": ("- The reply says or implies the customer caused the problem (e.g. 'your own "
                  "configuration', 'as the docs clearly say').\n"
                  "- The reply promises what support cannot grant: refunds, credits or guarantees that it "
                  "never happens again.\n- The reply is curt: no acknowledgement of the customer's problem."),
    "pass_when": ("- The reply acknowledges the problem, explains what was done, and offers a next step.\n"
                  "- Short replies pass when they are courteous and promise nothing beyond policy.\n"
                  "- No email in the trace: pass."),
}
VERSION_V1 = {"fail_when": "- The answer is outdated.", "pass_when": "- The answer is up to date."}
VERSION_V2 = {
    "fail_when": ("- The answer recommends a v3 command, flag or CLI (e.g. anything starting `nimbus-v3`, or "
                  "`keys regenerate`).\n- The answer describes v3 behaviour as current."),
    "pass_when": ("- Commands and behaviour match the v4 documentation quoted in the retrieved pages.\n"
                  "- Mentioning v3 only to say it is retired passes."),
}


def add_demo_judges(store: Store, project_id: int) -> dict[str, int]:
    """Add the demo's labels, splits, judges and runs (idempotent: does nothing when the
    project already has judges). Returns judge ids by mode name."""
    if list_judges(store, project_id):
        return {j.mode_name: j.id for j in list_judges(store, project_id)}
    _, planted = demo_traces()
    mode_ids = {name: coding.ensure_mode(store, project_id, name, created_by=WHO, definition=definition)
                for name, definition in FAILURE_MODES.items()}
    link_coined_modes(store, project_id, mode_ids)
    add_reference_labels(store, project_id, planted, mode_ids)
    policy = LabelPolicy(method="majority")
    made: dict[str, int] = {}

    # -- wrong tone email: LLM judge, v2 validated on test
    mode = "wrong tone email"
    split = make_split(store, project_id, mode_ids[mode], seed=SPLIT_SEED, policy=policy, who=WHO)
    judge = create_judge(store, project_id, mode_ids[mode], "Email tone", "llm", who=WHO)
    v1, _ = save_version(store, judge.id, {"model": MODEL, **EMAIL_V1}, who=WHO, note="first draft")
    record_run(store, v1.id, "dev", _answers(store, mode, 1, part_ids(store, split.id, "dev"), planted), who=WHO)
    v2, _ = save_version(store, judge.id, {"model": MODEL, **EMAIL_V2}, who=WHO,
                         note="specific criteria after reading the dev misses")
    record_run(store, v2.id, "dev", _answers(store, mode, 2, part_ids(store, split.id, "dev"), planted), who=WHO)
    record_run(store, v2.id, "test", _answers(store, mode, 2, part_ids(store, split.id, "test"), planted), who=WHO)
    made[mode] = judge.id

    # -- outdated version: LLM judge, tested too early; v2 better on dev, no clean test
    mode = "outdated version"
    split = make_split(store, project_id, mode_ids[mode], seed=SPLIT_SEED, policy=policy, who=WHO)
    judge = create_judge(store, project_id, mode_ids[mode], "Outdated version", "llm", who=WHO)
    v1, _ = save_version(store, judge.id, {"model": MODEL, **VERSION_V1}, who=WHO, note="first draft")
    record_run(store, v1.id, "dev", _answers(store, mode, 1, part_ids(store, split.id, "dev"), planted), who=WHO)
    record_run(store, v1.id, "test", _answers(store, mode, 1, part_ids(store, split.id, "test"), planted), who=WHO)
    labels = labels_by_trace(mode_labels(store, project_id, mode_ids[mode], policy))
    train = part_ids(store, split.id, "train")
    examples = []
    for wanted, reason in (("fail", REASONS[mode]["hit"]), ("pass", REASONS[mode]["pass"])):
        pick = next((t for t in train if labels.get(t) == wanted), None)
        if pick is not None:
            examples.append({"trace_id": pick, "verdict": wanted, "reasoning": reason})
    v2, _ = save_version(store, judge.id, {"model": MODEL, **VERSION_V2, "examples": examples}, who=WHO,
                         note="concrete v3 markers and two train examples")
    record_run(store, v2.id, "dev", _answers(store, mode, 2, part_ids(store, split.id, "dev"), planted), who=WHO)
    made[mode] = judge.id

    # -- tool error hidden: code judge, run for real on dev
    mode = "tool error hidden"
    make_split(store, project_id, mode_ids[mode], seed=SPLIT_SEED, policy=policy, who=WHO)
    judge = create_judge(store, project_id, mode_ids[mode], "Hidden tool error (code)", "code", who=WHO)
    v1, _ = save_version(store, judge.id, {"rule": EXAMPLE_RULE}, who=WHO,
                         note="a step errored and the answer does not admit it")
    run_judge(None, store, v1.id, part="dev", who=WHO)
    made[mode] = judge.id
    return made


__all__ = ["RECORDED", "REFERENCE", "add_demo_judges", "recorded_answer"]
