"""Push to Langfuse: a judge as a scorer there, its verdicts as scores, people's labels, and the
kept synthetic queries as a dataset; as often as you like, without duplicates.

What one push can hold (`PushRequest`), in the order it is sent:

1. Score configs, found by name before any is created (Langfuse names are not unique and create
   is not an upsert): per judge a BOOLEAN config named after its failure mode, with the mode's
   definition as description (1 = the trace shows the failure mode, the judge's "fail"); for
   people's labels a CATEGORICAL "evalboard human verdict" (pass, fail) and a CATEGORICAL
   "evalboard failure mode" whose categories are the project's modes (the picklist; new modes
   are added, none removed, so older scores keep their category).
2. The judge's prompt as a Langfuse chat prompt ``evalboard/<judge>``: the rendered
   instructions, the few-shot turns, and the trace as ``{{input}}`` / ``{{output}}``; labelled
   ``evalboard-validated`` (or ``evalboard-unvalidated``), with the version and the test figures
   in its config and commit message. A new prompt version is made only when the messages or the
   config differ from the latest version.
3. An LLM-as-a-judge evaluator (v2 evaluators API) with the same messages, input and output
   mapped from the observation, and a BOOLEAN output with reasoning; optionally an evaluation
   rule (filter, sampling, enabled) so Langfuse judges new traces itself. Both are found again
   by the id recorded last time (else by name) and updated only when they differ.
4. Verdict scores of a judge run on their Langfuse traces: value 1 (fail) / 0 (pass), comment =
   the judge's reasoning, metadata = judge, version, config id; id = uuid5 of (project, judge,
   version, trace), so Langfuse's upsert on id makes a second push change nothing.
5. People's labels of a round: a verdict score and a failure-mode score per mode (deterministic
   ids per person, trace and mode; a mode taken off a label is deleted there), and first-failure
   notes as trace comments (comments cannot be updated or found by id, so the trace's comments
   are read first and an identical one is never added twice).
6. Kept queries as a dataset: items upserted by a deterministic id, the tuple in metadata, and
   the source trace linked when a target run's trace of the query is in Langfuse.

Which traces are in Langfuse: those pulled from it (source "langfuse"), and any whose metadata
holds ``langfuse_trace_id``. Verdicts and labels of other traces are skipped, and the push says
how many and why.

Resuming and "exactly one copy". Every object Langfuse accepted is recorded at once in
`evalboard.push_log` (remote id, link, hash of what was sent). Running the same push again
sends only what is new or changed, so a push stopped by an error, a cancel or a killed process
continues where it stopped; objects that might have been created just before a crash are found
again (configs and evaluators by name, comments by content, prompts by comparing with the latest
version) and scores and dataset items are upserts by id. A push stops after `stop_after`
failures in a row (Langfuse down) and says so; single failures name the object and the reason,
and the push goes on with what does not depend on it.

Requests go through the SDK's typed REST client (`integrations.langfuse.make_api`), which
retries 429/5xx itself (`max_retries`, honouring Retry-After). Scores are posted with
`api.scores.create` rather than `Langfuse.create_score`, because the latter queues in the
background and drops failures silently; the batch endpoint answers 202, or 207 with the rejects.

A judge that is not validated (its version did not pass the test split, or has not run it) is
pushed only with `confirm_unvalidated=True`, and is labelled as such everywhere it lands.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd
from sqlalchemy import select

from evalboard import coding, exports, push_log, query_store
from evalboard.db import judge_runs, judge_verdicts, traces
from evalboard.judges import JudgeError, get_judge
from evalboard.store import Store, StoreError
from integrations.langfuse import LangfuseSettings, make_api

VENDOR = "langfuse"
LABEL_VALIDATED = "evalboard-validated"
LABEL_UNVALIDATED = "evalboard-unvalidated"
TAG = "evalboard"
VERDICT_CONFIG = "evalboard human verdict"
MODE_CONFIG = "evalboard failure mode"
MAX_CONFIG_NAME = 35
SCORE_BATCH = 100
MAX_COMMENT = 5000
#: uuid5 namespace of evalboard's score and dataset item ids (fixed forever: ids depend on it).
NAMESPACE = uuid.UUID("6f1c0e2a-9a53-5c6e-8f0b-3d2b8c1e7a41")
LANGFUSE_ID_KEY = "langfuse_trace_id"


class PushError(StoreError):
    """A push evalboard refuses before sending anything; the message says why and what to do."""


class _Stop(Exception):
    """Too many failures in a row, or cancelled: end the push now."""


@dataclass(frozen=True)
class RuleOptions:
    """An evaluation rule: which new observations Langfuse judges itself.

    Root observations only (a trace's input and output); `environments`, `trace_names` and
    `tags` narrow it (any of each); `sampling` is the share of matches judged, in (0, 1]."""

    enabled: bool = True
    sampling: float = 1.0
    environments: tuple[str, ...] = ()
    trace_names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.sampling, (int, float)) or not 0 < float(self.sampling) <= 1:
            raise PushError(f"The evaluation rule's sampling rate is a share in (0, 1], got {self.sampling!r}.")
        for name in ("environments", "trace_names", "tags"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(v.strip() for v in ((value,) if isinstance(value, str) else value)
                                                 if v and v.strip()))

    def filters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"type": "boolean", "column": "isRootObservation", "operator": "=",
                                      "value": True}]
        if self.environments:
            out.append({"type": "stringOptions", "column": "environment", "operator": "any of",
                        "value": list(self.environments)})
        if self.trace_names:
            out.append({"type": "stringOptions", "column": "traceName", "operator": "any of",
                        "value": list(self.trace_names)})
        if self.tags:
            out.append({"type": "arrayOptions", "column": "tags", "operator": "any of", "value": list(self.tags)})
        return out


@dataclass(frozen=True)
class PushRequest:
    """What to push. `judge` is a judge id; `version` a version id (default: the validated
    version, else the latest); `scores_run` a judge run id (of that judge); `annotations_round`
    a round id; `dataset` the Langfuse dataset name for the kept queries. `provider` is the
    Langfuse LLM connection the evaluator uses with the judge's model (None: the project's
    default evaluation model)."""

    judge: int | None = None
    version: int | None = None
    confirm_unvalidated: bool = False
    evaluator: bool = True
    rule: RuleOptions | None = None
    provider: str | None = "openai"
    scores_run: int | None = None
    annotations_round: int | None = None
    dataset: str | None = None

    @property
    def empty(self) -> bool:
        return self.judge is None and self.annotations_round is None and not self.dataset


# ----------------------------------------------------------------------------- names and ids


def config_name(name: str) -> str:
    """A valid score config name: at most 35 characters of letters, digits, spaces, '_', '.',
    '(', ')' and '-' (Langfuse's rule). A name that needs changing to fit (other characters
    become '-', a long one is cut) ends in a 6-digit hash of the original, so two different
    names never meet."""
    clean = " ".join(name.split())
    safe = re.sub(r"[^A-Za-z0-9_ .()\-]", "-", clean)
    if safe == clean and len(clean) <= MAX_CONFIG_NAME:
        return clean
    digest = uuid.uuid5(NAMESPACE, clean).hex[:6]
    return f"{safe[:MAX_CONFIG_NAME - 7].rstrip()}-{digest}"


def stable_id(*parts: Any) -> str:
    """uuid5 of the parts joined by '/': the same object always gets the same Langfuse id."""
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def destination_for(settings: LangfuseSettings) -> str:
    return push_log.destination(VENDOR, settings.base_url, settings.public_key)


def langfuse_trace_ids(store: Store, trace_ids: Sequence[int]) -> dict[int, str | None]:
    """Local trace id -> its Langfuse trace id, or None when the trace is not in Langfuse."""
    ids = list(dict.fromkeys(int(t) for t in trace_ids))
    out: dict[int, str | None] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            q = select(traces.c.id, traces.c.source, traces.c.source_id, traces.c.metadata).where(
                traces.c.id.in_(ids[i:i + 500]))
            for tid, source, source_id, metadata in conn.execute(q):
                found = metadata.get(LANGFUSE_ID_KEY) if isinstance(metadata, dict) else None
                out[tid] = str(source_id) if source == VENDOR else (str(found) if found else None)
    return out


def _defused(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


# ----------------------------------------------------------------------------- the plan


@dataclass
class ConfigWant:
    name: str
    data_type: str
    description: str
    categories: list[str] = field(default_factory=list)  # CATEGORICAL labels, in order
    judge_id: int | None = None

    @property
    def key(self) -> str:
        return f"score_config:{self.name}"


@dataclass
class ScoreWant:
    key: str
    body: dict[str, Any]  # the API body without configId (filled in once the config is known)
    config: str  # the config's name
    kind: str  # "score" or "annotation_score"
    judge_id: int | None = None


@dataclass
class CommentWant:
    key: str
    trace_id: str
    content: str


@dataclass
class ItemWant:
    key: str
    body: dict[str, Any]


@dataclass
class PushPlan:
    """Everything a push will send, built from the store alone (no request to Langfuse): what a
    dry run shows, and what `run_push` sends."""

    project_id: int
    project: str
    destination: str
    request: PushRequest
    judge: Any = None
    version: Any = None
    spec: dict[str, Any] | None = None
    validated: bool = True
    configs: list[ConfigWant] = field(default_factory=list)
    prompt: dict[str, Any] | None = None
    evaluator: dict[str, Any] | None = None
    rule: dict[str, Any] | None = None
    scores: list[ScoreWant] = field(default_factory=list)
    annotation_scores: list[ScoreWant] = field(default_factory=list)
    annotation_pairs: set[str] = field(default_factory=set)  # "annotator/trace" prefixes of this round
    comments: list[CommentWant] = field(default_factory=list)
    dataset: dict[str, Any] | None = None
    items: list[ItemWant] = field(default_factory=list)
    skipped: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, reason, count)
    remote: dict[str, push_log.RemoteObject] = field(default_factory=dict)

    @property
    def judge_key(self) -> str:
        return f"judge:{self.judge.name}" if self.judge is not None else ""

    # What `remote_objects` remembers of each object: the hash of what was sent.
    def score_hash(self, want: ScoreWant, config_id: str | None) -> str:
        return push_log.hash_of({**want.body, "configId": config_id})

    @staticmethod
    def config_hash(want: ConfigWant) -> str:
        return push_log.hash_of({"name": want.name, "type": want.data_type, "description": want.description,
                                 "categories": want.categories})

    def prompt_hash(self) -> str:
        assert self.prompt is not None
        return push_log.hash_of({"prompt": self.prompt["prompt"], "config": self.prompt["config"],
                                 "labels": self.prompt["labels"]})

    def rule_body(self, evaluator_id: str | None) -> dict[str, Any]:
        assert self.rule is not None
        return {**self.rule, "evaluatorAssignments": [{"evaluatorId": evaluator_id}]}

    def _config_id(self, name: str) -> str | None:
        link = self.remote.get(f"score_config:{name}")
        return link.remote_id if link else None

    def _unchanged(self, key: str, content_hash: str) -> bool:
        link = self.remote.get(key)
        return link is not None and link.content_hash == content_hash

    def lines(self) -> pd.DataFrame:
        """The dry run: per kind of object, how many there are, how many would be sent, how many
        are already in Langfuse unchanged (as last pushed there), and how many are skipped."""
        rows: list[dict[str, Any]] = []

        def add(what: str, total: int, unchanged: int, note: str = "") -> None:
            rows.append({"object": what, "total": total, "to send": total - unchanged, "unchanged": unchanged,
                         "skipped": 0, "note": note})

        checked = "; checked against Langfuse when pushing"
        for c in self.configs:
            add(f"score config '{c.name}' ({c.data_type})", 1, int(self._unchanged(c.key, self.config_hash(c))),
                "found by name first, created only if missing" + checked)
        if self.prompt is not None:
            add(f"prompt '{self.prompt['name']}'", 1,
                int(self._unchanged(f"{self.judge_key}:prompt", self.prompt_hash())),
                "a new version only if the prompt or its config changed" + checked)
        evaluator = self.remote.get(f"{self.judge_key}:evaluator")
        if self.evaluator is not None:
            add(f"evaluator '{self.evaluator['name']}'", 1,
                int(self._unchanged(f"{self.judge_key}:evaluator", push_log.hash_of(self.evaluator))),
                "updated only if it differs" + checked)
        if self.rule is not None:
            body = self.rule_body(evaluator.remote_id if evaluator else None)
            add(f"evaluation rule '{self.rule['name']}'", 1,
                int(self._unchanged(f"{self.judge_key}:evaluation_rule", push_log.hash_of(body))),
                f"{'enabled' if self.rule['enabled'] else 'disabled'}, sampling {self.rule['sampling']:g}" + checked)
        for label, wants in (("verdict scores", self.scores), ("annotation scores", self.annotation_scores)):
            if wants:
                same = sum(self._unchanged(w.key, self.score_hash(w, self._config_id(w.config))) for w in wants)
                add(label, len(wants), same, "upserted by deterministic id")
        if self.comments:
            same = sum(self._unchanged(c.key, push_log.hash_of(c.content)) for c in self.comments)
            add("first-failure notes (trace comments)", len(self.comments), same, "an identical comment is never added twice")
        if self.dataset is not None:
            same = int(self._unchanged(f"dataset:{self.dataset['name']}", push_log.hash_of(self.dataset)))
            add(f"dataset '{self.dataset['name']}'", 1, same)
            same = sum(self._unchanged(i.key, push_log.hash_of(i.body)) for i in self.items)
            add("dataset items (kept queries)", len(self.items), same, "upserted by deterministic id")
        for kind, reason, count in self.skipped:
            rows.append({"object": kind, "total": count, "to send": 0, "unchanged": 0, "skipped": count,
                         "note": reason})
        return pd.DataFrame(rows, columns=["object", "total", "to send", "unchanged", "skipped", "note"])

    @property
    def to_send(self) -> int:
        frame = self.lines()
        return int(frame["to send"].sum()) if not frame.empty else 0


def _judge_metrics_text(spec: dict[str, Any]) -> str:
    test = spec["validation"]["test"]
    if not test:
        return "no test result"
    tpr, tnr = test["tpr"], test["tnr"]
    return (f"test TPR {tpr['p']:.2f} ({tpr['k']}/{tpr['n']}), TNR {tnr['p']:.2f} ({tnr['k']}/{tnr['n']})"
            if tpr["p"] is not None and tnr["p"] is not None else "test result incomplete")


def plan_push(store: Store, project_id: int, request: PushRequest, dest: str) -> PushPlan:
    """What `request` would push to `dest` (see `PushPlan`); PushError when it cannot be pushed."""
    project = store.get_project(project_id)
    if project is None:
        raise PushError(f"There is no project with id {project_id}.")
    if request.scores_run is not None and request.judge is None:
        raise PushError("Verdict scores belong to a judge: say which judge (its run is checked against it).")
    if request.empty:
        raise PushError("Nothing to push: choose a judge, a round of annotations, or a dataset name.")
    plan = PushPlan(project_id=project_id, project=project.name, destination=dest, request=request)
    plan.remote = push_log.remote_state(store, project_id, dest)
    if request.judge is not None:
        _plan_judge(store, plan)
    if request.annotations_round is not None:
        _plan_annotations(store, plan)
    if request.dataset:
        _plan_dataset(store, plan)
    return plan


def _plan_judge(store: Store, plan: PushPlan) -> None:
    request = plan.request
    try:
        judge = get_judge(store, int(request.judge))  # type: ignore[arg-type]
    except JudgeError as exc:
        raise PushError(str(exc)) from None
    if judge.project_id != plan.project_id:
        raise PushError(f"Judge {judge.id} is not in this project.")
    version_id = request.version
    if request.scores_run is not None:
        with store.engine.connect() as conn:
            run = conn.execute(select(judge_runs).where(judge_runs.c.id == int(request.scores_run))).first()
        if run is None or run.judge_id != judge.id:
            raise PushError(f"Run {request.scores_run} is not a run of judge '{judge.name}'.")
        if version_id is not None and version_id != run.version_id:
            raise PushError(f"Run {run.id} was made by another version than the one asked for.")
        version_id = run.version_id
    try:
        version, _, _ = exports.choose_version(store, judge.id, version_id)
        spec = exports.judge_spec(store, judge.id, version_id=version.id)
    except (exports.ExportError, JudgeError) as exc:
        raise PushError(str(exc)) from None
    plan.judge, plan.version, plan.spec = judge, version, spec
    plan.validated = bool(spec["validation"]["validated"])
    if not plan.validated and not request.confirm_unvalidated:
        why = " ".join(spec["validation"]["reasons"])
        raise PushError(f"'{judge.name}' {version.label} is not validated: {why} Pushing it needs an explicit "
                        "confirmation (it is then labelled 'not validated' in Langfuse).")
    mode = spec["judge"]["mode"]
    description = mode["definition"] or "(no definition written yet)"
    if mode["includes"]:
        description += f"\nIncludes: {mode['includes']}"
    if mode["excludes"]:
        description += f"\nDoes not include: {mode['excludes']}"
    description += (f"\n1 (true) = the trace shows the failure mode \"{mode['name']}\" (the judge's verdict "
                    "\"fail\"); 0 (false) = it does not. Written by evalboard.")
    score_config = ConfigWant(name=config_name(mode["name"]), data_type="BOOLEAN", description=description,
                              judge_id=judge.id)
    plan.configs.append(score_config)
    status_word = "validated" if plan.validated else "NOT VALIDATED"
    if spec["llm"] is not None:
        messages = _defused(exports.vendor_messages(spec))
        prompt_config = {
            "evalboard": {"project": plan.project, "judge": judge.name, "version": version.label,
                          "validated": plan.validated, "failure_mode": mode["name"],
                          "validation": {k: spec["validation"][k] for k in ("reasons", "thresholds", "test", "dev")}},
            "model": spec["llm"]["model"], "temperature": spec["llm"]["temperature"],
            "max_tokens": spec["llm"]["max_tokens"], "seed": spec["llm"]["seed"],
            "response_format": spec["llm"]["response_format"],
        }
        plan.prompt = {
            "name": f"evalboard/{exports.slug(judge.name)}", "type": "chat", "prompt": messages,
            "config": prompt_config,
            "labels": [LABEL_VALIDATED if plan.validated else LABEL_UNVALIDATED], "tags": [TAG],
            "commitMessage": f"evalboard {judge.name} {version.label} ({status_word}; {_judge_metrics_text(spec)})",
        }
        if request.evaluator:
            name = f"evalboard: {judge.name}" + ("" if plan.validated else " (not validated)")
            plan.evaluator = {
                "type": "llm_as_judge", "name": name,
                "description": " ".join(exports.validation_lines(spec)),
                "prompt": messages,
                "modelConfig": ({"provider": request.provider, "model": spec["llm"]["model"]}
                                if request.provider else None),
                "variableMapping": [{"variable": "input", "source": "input"},
                                    {"variable": "output", "source": "output"}],
                "outputDefinition": {
                    "dataType": "BOOLEAN",
                    "scoreReasoningInstructions": "What in the trace shows or rules out the failure mode, briefly.",
                    "scoreValueInstructions": f"true when the trace shows the failure mode \"{mode['name']}\" "
                                              "(the verdict \"fail\"); false when it does not (\"pass\").",
                },
            }
            if request.rule is not None:
                plan.rule = {"name": name, "enabled": request.rule.enabled, "sampling": float(request.rule.sampling),
                             "filter": request.rule.filters()}
    elif request.evaluator:
        plan.skipped.append(("prompt and evaluator", "a code judge runs in evalboard only (Langfuse evaluators are "
                                                     "LLM judges); its verdicts can still be pushed as scores", 1))
    if request.scores_run is not None:
        _plan_scores(store, plan, int(request.scores_run), score_config.name)


def _plan_scores(store: Store, plan: PushPlan, run_id: int, config: str) -> None:
    with store.engine.connect() as conn:
        run = conn.execute(select(judge_runs.c.trace_ids).where(judge_runs.c.id == run_id)).first()
        ids = [int(t) for t in run.trace_ids] if run else []
        rows = []
        for i in range(0, len(ids), 900):
            rows += conn.execute(select(judge_verdicts.c.trace_id, judge_verdicts.c.verdict, judge_verdicts.c.reasoning,
                                        judge_verdicts.c.created_at)
                                 .where(judge_verdicts.c.version_id == plan.version.id,
                                        judge_verdicts.c.trace_id.in_(ids[i:i + 900]))
                                 .order_by(judge_verdicts.c.trace_id)).all()
    missing = len(set(ids) - {r.trace_id for r in rows})
    if missing:
        plan.skipped.append(("verdict scores", "no verdict yet (the run did not finish these traces)", missing))
    remote = langfuse_trace_ids(store, [r.trace_id for r in rows])
    outside = 0
    for r in rows:
        lf_id = remote.get(r.trace_id)
        if lf_id is None:
            outside += 1
            continue
        score_id = stable_id("evalboard", plan.project, plan.judge.name, plan.version.label, lf_id)
        body = {
            "id": score_id, "traceId": lf_id, "name": config, "value": 1 if r.verdict == "fail" else 0,
            "dataType": "BOOLEAN", "comment": r.reasoning or None,
            "timestamp": r.created_at.isoformat() if r.created_at else None,
            "metadata": {"evalboard": {"project": plan.project, "judge": plan.judge.name,
                                       "judge_version": plan.version.label, "validated": plan.validated,
                                       "run": run_id, "verdict": r.verdict}},
        }
        plan.scores.append(ScoreWant(key=f"score:{score_id}", body={k: v for k, v in body.items() if v is not None},
                                     config=config, kind="score", judge_id=plan.judge.id))
    if outside:
        plan.skipped.append(("verdict scores", "the trace is not in Langfuse (not pulled from it, and no "
                                               f"'{LANGFUSE_ID_KEY}' in its metadata)", outside))


def _plan_annotations(store: Store, plan: PushPlan) -> None:
    round_id = int(plan.request.annotations_round)  # type: ignore[arg-type]
    rnd = store.get_round(round_id)
    if rnd is None or rnd.project_id != plan.project_id:
        raise PushError(f"There is no round {round_id} in this project.")
    table = coding.annotation_table(store, plan.project_id, round_id=round_id)
    if table.empty:
        raise PushError(f"Round '{rnd.name}' has no labels yet: nothing to push.")
    modes = coding.list_modes(store, plan.project_id, include_inactive=True, order="created")
    picklist = list(dict.fromkeys([*modes["name"], *(m for ms in table["modes"] for m in ms)]))
    remote = langfuse_trace_ids(store, table["trace_id"].tolist())
    outside = 0
    for rec in table.to_dict("records"):
        lf_id = remote.get(int(rec["trace_id"]))
        if lf_id is None:
            outside += 1
            continue
        who = rec["annotator"]
        prefix = f"annotation:{who}/{lf_id}"
        plan.annotation_pairs.add(prefix)
        when = rec["updated_at"].isoformat() if rec["updated_at"] is not None else None
        meta = {"evalboard": {"project": plan.project, "kind": "human annotation", "annotator": who,
                              "round": rnd.name, "failure_step": rec["failure_step"]}}
        if rec["verdict"] in ("pass", "fail"):
            score_id = stable_id("evalboard", plan.project, "annotation", who, lf_id, "verdict")
            plan.annotation_scores.append(ScoreWant(
                key=f"{prefix}/verdict", config=VERDICT_CONFIG, kind="annotation_score",
                body={"id": score_id, "traceId": lf_id, "name": VERDICT_CONFIG, "value": rec["verdict"],
                      "dataType": "CATEGORICAL", "source": "ANNOTATION", **({"timestamp": when} if when else {}),
                      "metadata": meta}))
        for mode in rec["modes"]:
            score_id = stable_id("evalboard", plan.project, "annotation", who, lf_id, "mode", mode)
            plan.annotation_scores.append(ScoreWant(
                key=f"{prefix}/mode/{mode}", config=MODE_CONFIG, kind="annotation_score",
                body={"id": score_id, "traceId": lf_id, "name": MODE_CONFIG, "value": mode,
                      "dataType": "CATEGORICAL", "source": "ANNOTATION", **({"timestamp": when} if when else {}),
                      "metadata": meta}))
        note = (rec["note"] or "").strip()
        if note:
            content = f"evalboard first-failure note by {who}: {note}"
            if len(content) > MAX_COMMENT:
                content = content[:MAX_COMMENT - 12] + " [cut]"
            plan.comments.append(CommentWant(key=f"comment:{who}/{lf_id}", trace_id=lf_id, content=content))
    if outside:
        plan.skipped.append(("annotations", "the trace is not in Langfuse (not pulled from it, and no "
                                            f"'{LANGFUSE_ID_KEY}' in its metadata)", outside))
    names = {w.config for w in plan.annotation_scores}
    if VERDICT_CONFIG in names:
        plan.configs.append(ConfigWant(
            name=VERDICT_CONFIG, data_type="CATEGORICAL", categories=["pass", "fail"],
            description="A person's verdict on the trace in evalboard's open coding: pass, or fail (the trace "
                        "shows a failure). Written by evalboard."))
    if MODE_CONFIG in names or any(k.startswith("annotation:") and "/mode/" in k for k in plan.remote):
        plan.configs.append(ConfigWant(
            name=MODE_CONFIG, data_type="CATEGORICAL", categories=picklist,
            description="A failure mode a person gave the trace in evalboard (axial coding's taxonomy). "
                        "Written by evalboard."))


def _query_traces(store: Store, project_id: int) -> dict[int, str]:
    """Query id -> the Langfuse id of a target run's trace of that query (the latest one)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(traces.c.id, traces.c.metadata).where(
            traces.c.project_id == project_id, traces.c.source.like("target:%")).order_by(traces.c.id)).all()
    by_query = {int(m["query_id"]): tid for tid, m in rows if isinstance(m, dict) and m.get("query_id") is not None}
    remote = langfuse_trace_ids(store, list(by_query.values()))
    return {q: remote[t] for q, t in by_query.items() if remote.get(t)}


def _plan_dataset(store: Store, plan: PushPlan) -> None:
    name = " ".join((plan.request.dataset or "").split())
    if not name:
        raise PushError("Give the dataset a name.")
    kept = query_store.get_queries(store, plan.project_id, ["kept"])
    if not kept:
        raise PushError("The project has no kept queries: keep some on the Queries page first.")
    plan.dataset = {"name": name, "description": f"Kept synthetic queries of the evalboard project '{plan.project}'.",
                    "metadata": {"evalboard": {"project": plan.project, "kind": "kept synthetic queries"}}}
    sources = _query_traces(store, plan.project_id)
    for q in kept:
        item_id = stable_id("evalboard", plan.project, "dataset", name, "query", q.id)
        body: dict[str, Any] = {
            "datasetName": name, "id": item_id, "input": {"query": q.text},
            "metadata": {"evalboard": {"project": plan.project, "query_id": q.id, "tuple_id": q.tuple_id,
                                       "origin": q.origin}, "tuple": q.dimensions or {}},
        }
        if q.id in sources:
            body["sourceTraceId"] = sources[q.id]
        plan.items.append(ItemWant(key=f"dataset_item:{name}/{q.id}", body=body))


# ----------------------------------------------------------------------------- running


@dataclass
class PushProgress:
    """How far a push is: `done` of `total` steps (a step is an object or a batch of 100)."""

    done: int
    total: int
    current: str
    counts: dict[str, int]

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0


@dataclass
class PushReport:
    push: push_log.PushRecord
    objects: pd.DataFrame
    plan: PushPlan

    @property
    def ok(self) -> bool:
        return self.push.status == "done"

    def summary(self) -> str:
        return f"Push {self.push.id} to {push_log.describe_destination(self.push.destination)}: {self.push.summary()}"


def reason_of(exc: BaseException) -> str:
    """Why a request failed, in words: the status and Langfuse's message, or the network error."""
    from langfuse.api.core.api_error import ApiError

    if isinstance(exc, ApiError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else (str(body)[:300] if body else "")
        hint = {401: " (check the keys)", 403: " (the keys may not write to this project)",
                429: " (rate limited)"}.get(exc.status_code or 0, "")
        return f"Langfuse answered {exc.status_code}{hint}: {message or 'no message'}"
    if isinstance(exc, httpx.TimeoutException):
        return "Langfuse did not answer in time"
    if isinstance(exc, httpx.HTTPError):
        return f"cannot reach Langfuse: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _plain(obj: Any) -> Any:
    """A typed SDK object as plain JSON data (aliases as keys, enums as their values)."""
    data = obj.dict() if hasattr(obj, "dict") else obj
    return json.loads(json.dumps(data, default=str))


def _is_not_found(exc: BaseException) -> bool:
    from langfuse.api.core.api_error import ApiError

    return isinstance(exc, ApiError) and exc.status_code == 404


class _Runner:
    """Sends a plan, recording every object in the push log and the remote state as it goes."""

    def __init__(self, store: Store, plan: PushPlan, api: Any, push_id: int, base_url: str, *,
                 on_progress: Callable[[PushProgress], None] | None, cancel: threading.Event | None,
                 max_retries: int, timeout: float, stop_after: int) -> None:
        self.store, self.plan, self.api, self.push_id = store, plan, api, push_id
        self.base_url = base_url.rstrip("/")
        self.on_progress, self.cancel = on_progress, cancel
        self.options = {"max_retries": max_retries, "timeout_in_seconds": max(1, int(timeout))}
        self.stop_after = stop_after
        self.in_a_row = 0
        self.failed = 0
        self.done = 0
        self.counts: dict[str, int] = {}
        self.project_ref = ""
        self.config_ids: dict[str, str] = {}
        self.evaluator_id: str | None = None
        self.total = self._steps()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _steps(self) -> int:
        p = self.plan
        batches = -(-len(p.scores) // SCORE_BATCH) + -(-len(p.annotation_scores) // SCORE_BATCH)
        return (1 + len(p.configs) + (p.prompt is not None) + (p.evaluator is not None) + (p.rule is not None)
                + batches + len(p.comments) + (p.dataset is not None) + len(p.items))

    def step(self, current: str, n: int = 1) -> None:
        self.done += n
        if self.on_progress is not None:
            self.on_progress(PushProgress(min(self.done, self.total), self.total, current, dict(self.counts)))
        if self.cancel is not None and self.cancel.is_set():
            raise _Stop("Cancelled: what was sent stays, and pushing again continues from here.")

    def record(self, kind: str, name: str, status: str, *, count: int = 1, remote_id: str | None = None,
               url: str | None = None, detail: str = "") -> None:
        if count <= 0:
            return
        push_log.record_object(self.store, self.push_id, kind, name, status, count=count, remote_id=remote_id,
                               url=url, detail=detail)
        self.counts[status] = self.counts.get(status, 0) + count
        if status == "failed":
            self.failed += count
            self.in_a_row += 1
            if self.in_a_row >= self.stop_after:
                raise _Stop(f"Stopped after {self.in_a_row} failures in a row (last: {name}: {detail}). What was "
                            "sent stays; push again to continue.")
        elif status != "skipped":
            self.in_a_row = 0

    def save(self, key: str, kind: str, content_hash: str, *, remote_id: str | None = None, url: str | None = None,
             judge_id: int | None = None, info: dict[str, Any] | None = None) -> None:
        push_log.save_remote(self.store, self.plan.project_id, self.plan.destination,
                             [{"key": key, "kind": kind, "content_hash": content_hash, "remote_id": remote_id,
                               "url": url, "judge_id": judge_id, "info": info or {}}], push_id=self.push_id)

    def url(self, *parts: str) -> str:
        return "/".join([self.base_url, "project", self.project_ref, *parts])

    def judge_info(self) -> dict[str, Any]:
        plan = self.plan
        return {"version": plan.version.label, "validated": plan.validated} if plan.version is not None else {}

    # -- the push --------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            projects = self.api.projects.get(request_options=self.options)
        except Exception as exc:  # noqa: BLE001 - any failure here means nothing can be pushed
            self.record("connection", "connect to Langfuse", "failed", detail=reason_of(exc))
            raise _Stop(f"Cannot push: {reason_of(exc)}") from None
        if not projects.data:
            self.record("connection", "connect to Langfuse", "failed", detail="no project belongs to these keys")
            raise _Stop("Cannot push: no Langfuse project belongs to these keys.")
        self.project_ref = projects.data[0].id
        self.step("connected")
        self.push_configs()
        if self.plan.prompt is not None:
            self.guard("prompt", f"prompt '{self.plan.prompt['name']}'", self.push_prompt)
        if self.plan.evaluator is not None:
            self.guard("evaluator", f"evaluator '{self.plan.evaluator['name']}'", self.push_evaluator)
        if self.plan.rule is not None:
            if self.evaluator_id is None:
                self.record("evaluation_rule", f"evaluation rule '{self.plan.rule['name']}'", "skipped",
                            detail="needs the evaluator, which was not pushed")
                self.step("evaluation rule")
            else:
                self.guard("evaluation_rule", f"evaluation rule '{self.plan.rule['name']}'", self.push_rule)
        self.push_scores(self.plan.scores, "verdict scores")
        self.push_scores(self.plan.annotation_scores, "annotation scores")
        if self.plan.annotation_pairs:
            self.delete_stale_modes()
        self.push_comments()
        if self.plan.dataset is not None:
            self.push_dataset()
        for kind, reason, count in self.plan.skipped:
            self.record(kind, kind, "skipped", count=count, detail=reason)

    def guard(self, kind: str, name: str, fn: Callable[[], None]) -> None:
        """Run one object's push; a failure is recorded against it and the push goes on."""
        try:
            fn()
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded with the object's name and the reason
            self.record(kind, name, "failed", detail=reason_of(exc))
        self.step(name)

    # -- score configs -----------------------------------------------------------------------------
    def existing_configs(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            result = self.api.score_configs.get(page=page, limit=100, request_options=self.options)
            found += [_plain(c) for c in result.data]
            if page >= (result.meta.total_pages or 1):
                return found
            page += 1

    def push_configs(self) -> None:
        if not self.plan.configs:
            return
        try:
            existing = self.existing_configs()
        except Exception as exc:  # noqa: BLE001 - every config fails with the same reason
            for want in self.plan.configs:
                self.record("score_config", f"score config '{want.name}'", "failed",
                            detail=f"could not list the existing score configs: {reason_of(exc)}")
                self.step(want.name)
            return
        for want in self.plan.configs:
            self.guard("score_config", f"score config '{want.name}'", lambda w=want: self.push_config(w, existing))

    def push_config(self, want: ConfigWant, existing: list[dict[str, Any]]) -> None:
        name = f"score config '{want.name}'"
        link = self.plan.remote.get(want.key)
        same_name = [c for c in existing if c.get("name") == want.name and not c.get("isArchived")]
        match = next((c for c in same_name if link is not None and c.get("id") == link.remote_id), None)
        if match is None:
            typed = [c for c in same_name if c.get("dataType") == want.data_type]
            match = min(typed, key=lambda c: str(c.get("createdAt"))) if typed else None
        if match is None and same_name:
            raise RuntimeError(f"a score config named '{want.name}' exists with data type "
                               f"{same_name[0].get('dataType')}, not {want.data_type}: rename or archive it in Langfuse")
        url = self.url("settings", "scores")
        if match is None:
            kwargs: dict[str, Any] = {"name": want.name, "data_type": want.data_type, "description": want.description}
            if want.data_type == "CATEGORICAL":
                kwargs["categories"] = [{"label": label, "value": i} for i, label in enumerate(want.categories)]
            created = _plain(self.api.score_configs.create(**kwargs, request_options=self.options))
            existing.append(created)
            status, config = "created", created
        else:
            changes: dict[str, Any] = {}
            if (match.get("description") or "") != want.description:
                changes["description"] = want.description
            if want.data_type == "CATEGORICAL":
                have = list(match.get("categories") or [])
                labels = {c.get("label") for c in have}
                extra = [label for label in want.categories if label not in labels]
                if extra:  # add the new ones, keep the old: older scores keep their category
                    top = max((int(c.get("value") or 0) for c in have), default=-1)
                    changes["categories"] = [{"label": c["label"], "value": c["value"]} for c in have] + [
                        {"label": label, "value": top + 1 + i} for i, label in enumerate(extra)]
            if changes:
                config = _plain(self.api.score_configs.update(match["id"], **changes, request_options=self.options))
                status = "updated"
            else:
                config, status = match, "unchanged"
        self.config_ids[want.name] = config["id"]
        self.save(want.key, "score_config", self.plan.config_hash(want), remote_id=config["id"], url=url, judge_id=want.judge_id,
                  info={"name": want.name, **(self.judge_info() if want.judge_id else {})})
        self.record("score_config", name, status, remote_id=config["id"], url=url,
                    detail=f"{want.data_type}" + (f": {', '.join(want.categories)}" if want.categories else ""))

    # -- prompt --------------------------------------------------------------------------------
    def push_prompt(self) -> None:
        want = self.plan.prompt
        assert want is not None
        from langfuse.api.core.api_error import ApiError

        label = want["labels"][0]
        latest = None
        try:
            # Names with "/" are folders in Langfuse: the name goes into the path encoded, as the
            # SDK's own get_prompt does it.
            latest = _plain(self.api.prompts.get(quote(want["name"], safe=""), label="latest",
                                                 request_options=self.options))
        except ApiError as exc:
            if exc.status_code != 404:
                raise
        url = self.url("prompts", quote(want["name"], safe=""))
        key = f"{self.plan.judge_key}:prompt"
        content_hash = self.plan.prompt_hash()
        same = latest is not None and latest.get("type") == "chat" and \
            [{"role": m.get("role"), "content": m.get("content")} for m in latest.get("prompt") or []] == want["prompt"] \
            and latest.get("config") == want["config"]
        if same:
            version = int(latest["version"])
            status, detail = "unchanged", f"version {version} is the same"
            if label not in (latest.get("labels") or []):
                keep = [lab for lab in latest.get("labels") or [] if lab != "latest"]
                self.api.prompt_version.update(quote(want["name"], safe=""), version, new_labels=[*keep, label],
                                               request_options=self.options)
                status, detail = "updated", f"version {version} is the same; label '{label}' added"
        else:
            created = _plain(self.api.prompts.create(request=want, request_options=self.options))
            version = int(created["version"])
            status = "created" if latest is None else "updated"
            detail = f"version {version}, label '{label}'"
        self.save(key, "prompt", content_hash, remote_id=f"{want['name']}@{version}", url=url,
                  judge_id=self.plan.judge.id, info={**self.judge_info(), "prompt_version": version})
        self.record("prompt", f"prompt '{want['name']}'", status, remote_id=f"{want['name']} v{version}", url=url,
                    detail=detail)

    # -- evaluator and rule --------------------------------------------------------------------------
    def find_by_name(self, listing: Callable[..., Any], name: str) -> dict[str, Any] | None:
        cursor = None
        while True:
            page = listing(limit=100, cursor=cursor, request_options=self.options)
            for item in page.data:
                plain = _plain(item)
                if plain.get("name") == name:
                    return plain
            cursor = getattr(page.meta, "cursor", None)
            if not cursor:
                return None

    def find(self, key: str, getter: Callable[..., Any], listing: Callable[..., Any], name: str) -> dict[str, Any] | None:
        """The remote object recorded under `key` (if it still exists), else one with this name."""
        link = self.plan.remote.get(key)
        if link is not None and link.remote_id:
            try:
                return _plain(getter(link.remote_id, request_options=self.options))
            except Exception as exc:  # noqa: BLE001 - only "gone" is expected; anything else is a failure
                if not _is_not_found(exc):
                    raise
        return self.find_by_name(listing, name)

    def push_evaluator(self) -> None:
        want = self.plan.evaluator
        assert want is not None
        key = f"{self.plan.judge_key}:evaluator"
        found = self.find(key, self.api.evaluators.get, self.api.evaluators.list, want["name"])
        if found is None:
            result = _plain(self.api.evaluators.create(request=want, request_options=self.options))
            status = "created"
        else:
            have = {
                "prompt": [{"role": m.get("role"), "content": m.get("content")} for m in found.get("prompt") or []],
                "modelConfig": ({"provider": found["modelConfig"].get("provider"), "model": found["modelConfig"].get("model")}
                                if found.get("modelConfig") else None),
                "variableMapping": [{"variable": m.get("variable"), "source": m.get("source")}
                                    for m in found.get("variableMapping") or []],
                "outputDefinition": {k: found.get("outputDefinition", {}).get(k) for k in want["outputDefinition"]},
                "description": found.get("description"),
            }
            wanted = {k: want[k] for k in have}
            if have == wanted:
                result, status = found, "unchanged"
            else:
                result = _plain(self.api.evaluators.update(found["id"], request=want, request_options=self.options))
                status = "updated"
        self.evaluator_id = result["id"]
        url = self.url("evals")
        self.save(key, "evaluator", push_log.hash_of(want), remote_id=result["id"], url=url,
                  judge_id=self.plan.judge.id, info={**self.judge_info(), "evaluator_version": result.get("version")})
        self.record("evaluator", f"evaluator '{want['name']}'", status, remote_id=result["id"], url=url,
                    detail=f"evaluator version {result.get('version')}" if result.get("version") else "")

    def push_rule(self) -> None:
        want = self.plan.rule_body(self.evaluator_id)
        key = f"{self.plan.judge_key}:evaluation_rule"
        found = self.find(key, self.api.evaluation_rules.get, self.api.evaluation_rules.list, want["name"])
        kwargs = {"name": want["name"], "enabled": want["enabled"], "sampling": want["sampling"],
                  "filter": want["filter"], "evaluator_assignments": want["evaluatorAssignments"]}
        if found is None:
            result = _plain(self.api.evaluation_rules.create(**kwargs, request_options=self.options))
            status = "created"
        else:
            have = {"name": found.get("name"), "enabled": found.get("enabled"), "sampling": found.get("sampling"),
                    "filter": [{k: f.get(k) for k in ("type", "column", "operator", "value")} for f in found.get("filter") or []],
                    "evaluatorAssignments": [{"evaluatorId": a.get("evaluatorId")}
                                             for a in found.get("evaluatorAssignments") or []]}
            wanted = {**want, "filter": [{k: f.get(k) for k in ("type", "column", "operator", "value")} for f in want["filter"]]}
            if have == wanted:
                result, status = found, "unchanged"
            else:
                result = _plain(self.api.evaluation_rules.update(found["id"], **kwargs, request_options=self.options))
                status = "updated"
        url = self.url("evals")
        self.save(key, "evaluation_rule", push_log.hash_of(want), remote_id=result["id"], url=url,
                  judge_id=self.plan.judge.id, info=self.judge_info())
        detail = f"{'enabled' if want['enabled'] else 'disabled'}, sampling {want['sampling']:g}"
        self.record("evaluation_rule", f"evaluation rule '{want['name']}'", status, remote_id=result["id"], url=url,
                    detail=detail)

    # -- scores --------------------------------------------------------------------------------------
    def push_scores(self, wants: list[ScoreWant], label: str) -> None:
        if not wants:
            return
        ready: list[tuple[ScoreWant, dict[str, Any], str, bool]] = []  # want, body, hash, new?
        unchanged = missing_config = 0
        for want in wants:
            config_id = self.config_ids.get(want.config)
            if config_id is None:
                missing_config += 1
                continue
            body = {**want.body, "configId": config_id}
            content_hash = self.plan.score_hash(want, config_id)
            link = self.plan.remote.get(want.key)
            if link is not None and link.content_hash == content_hash:
                unchanged += 1
                continue
            ready.append((want, body, content_hash, link is None))
        kind = wants[0].kind
        self.record(kind, f"{label} already in Langfuse", "unchanged", count=unchanged)
        if missing_config:
            self.record(kind, label, "skipped", count=missing_config,
                        detail="their score config could not be pushed (see above)")
        batches = -(-len(wants) // SCORE_BATCH)
        sent_batches = 0
        for start in range(0, len(ready), SCORE_BATCH):
            batch = ready[start:start + SCORE_BATCH]
            name = f"{label} {start + 1}-{start + len(batch)} of {len(ready)} to send"
            try:
                result = _plain(self.api.scores.create(request=[b for _, b, _, _ in batch], request_options=self.options))
            except _Stop:
                raise
            except Exception as exc:  # noqa: BLE001 - the batch is sent again on the next push
                self.record(kind, name, "failed", count=len(batch), detail=reason_of(exc))
                sent_batches += 1
                self.step(name)
                continue
            rejected = int(result.get("rejected") or 0) if isinstance(result, dict) else 0
            if rejected:
                errors = "; ".join(e.get("message", "") for e in (result.get("errors") or [])[:3])
                self.record(kind, name, "failed", count=len(batch),
                            detail=f"{result.get('accepted', 0)} accepted, {rejected} rejected ({errors}); the batch is "
                                   "sent again on the next push (scores upsert by id, so nothing doubles)")
            else:
                push_log.save_remote(self.store, self.plan.project_id, self.plan.destination, [
                    {"key": w.key, "kind": w.kind, "content_hash": h, "remote_id": b["id"],
                     "url": self.url("traces", b["traceId"]), "judge_id": w.judge_id,
                     "info": self.judge_info() if w.kind == "score" else {}}
                    for w, b, h, _ in batch], push_id=self.push_id)
                new = sum(is_new for *_, is_new in batch)
                self.record(kind, name, "created", count=new)
                self.record(kind, name, "updated", count=len(batch) - new)
            sent_batches += 1
            self.step(name)
        if batches > sent_batches:
            self.step(label, batches - sent_batches)

    def delete_stale_modes(self) -> None:
        """Delete failure-mode scores of this round's labels whose mode was taken off since."""
        wanted = {w.key for w in self.plan.annotation_scores}
        stale = [link for key, link in self.plan.remote.items()
                 if link.kind == "annotation_score" and "/mode/" in key and key not in wanted
                 and key.rsplit("/mode/", 1)[0] in self.plan.annotation_pairs]
        gone: list[str] = []
        for link in stale:
            try:
                self.api.scores.delete(link.remote_id, request_options=self.options)
            except Exception as exc:  # noqa: BLE001 - a score deleted in Langfuse already is fine
                if not _is_not_found(exc):
                    self.record("annotation_score", f"failure-mode score {link.key}", "failed",
                                detail=f"could not delete it: {reason_of(exc)}")
                    continue
            gone.append(link.key)
        push_log.forget_remote(self.store, self.plan.project_id, self.plan.destination, gone)
        self.record("annotation_score", "failure-mode scores taken off labels", "deleted", count=len(gone))

    # -- comments --------------------------------------------------------------------------------------
    def push_comments(self) -> None:
        unchanged = 0
        for want in self.plan.comments:
            content_hash = push_log.hash_of(want.content)
            link = self.plan.remote.get(want.key)
            if link is not None and link.content_hash == content_hash:
                unchanged += 1
                self.done += 1
                continue
            self.guard("comment", f"note on trace {want.trace_id}", lambda w=want, h=content_hash: self.push_comment(w, h))
        self.record("comment", "first-failure notes already in Langfuse", "unchanged", count=unchanged)

    def push_comment(self, want: CommentWant, content_hash: str) -> None:
        page = self.api.comments.get(object_type="TRACE", object_id=want.trace_id, limit=100,
                                     request_options=self.options)
        same = next((c for c in page.data if c.content == want.content), None)
        url = self.url("traces", want.trace_id)
        if same is not None:
            comment_id, status, detail = same.id, "unchanged", "an identical comment is already on the trace"
        else:
            created = self.api.comments.create(project_id=self.project_ref, object_type="TRACE",
                                               object_id=want.trace_id, content=want.content,
                                               request_options=self.options)
            comment_id, status = created.id, "created"
            detail = ("the earlier note's comment stays (comments cannot be edited through the API)"
                      if self.plan.remote.get(want.key) is not None else "")
        self.save(want.key, "comment", content_hash, remote_id=comment_id, url=url)
        self.record("comment", f"note on trace {want.trace_id}", status, remote_id=comment_id, url=url, detail=detail)

    # -- dataset ---------------------------------------------------------------------------------------
    def push_dataset(self) -> None:
        want = self.plan.dataset
        assert want is not None
        key = f"dataset:{want['name']}"
        name = f"dataset '{want['name']}'"
        content_hash = push_log.hash_of(want)
        link = self.plan.remote.get(key)
        try:
            if link is not None and link.content_hash == content_hash:
                dataset_id, status = link.remote_id, "unchanged"
            else:  # create is an upsert on the name
                dataset = self.api.datasets.create(name=want["name"], description=want["description"],
                                                   metadata=want["metadata"], request_options=self.options)
                dataset_id, status = dataset.id, ("created" if link is None else "updated")
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - items need the dataset: skip them with the reason
            self.record("dataset", name, "failed", detail=reason_of(exc))
            self.step(name, 1 + len(self.plan.items))
            self.record("dataset_item", "dataset items", "skipped", count=len(self.plan.items),
                        detail="their dataset could not be pushed")
            return
        url = self.url("datasets", str(dataset_id))
        self.save(key, "dataset", content_hash, remote_id=dataset_id, url=url)
        self.record("dataset", name, status, remote_id=dataset_id, url=url)
        self.step(name)
        unchanged = 0
        for item in self.plan.items:
            item_hash = push_log.hash_of(item.body)
            link = self.plan.remote.get(item.key)
            if link is not None and link.content_hash == item_hash:
                unchanged += 1
                self.done += 1
                continue
            self.guard("dataset_item", f"dataset item for query {item.body['metadata']['evalboard']['query_id']}",
                       lambda i=item, h=item_hash, d=dataset_id, new=link is None: self.push_item(i, h, d, new))
        self.record("dataset_item", "dataset items already in Langfuse", "unchanged", count=unchanged)

    def push_item(self, item: ItemWant, item_hash: str, dataset_id: str, new: bool) -> None:
        body = item.body
        self.api.dataset_items.create(dataset_name=body["datasetName"], id=body["id"], input=body["input"],
                                      metadata=body["metadata"], source_trace_id=body.get("sourceTraceId"),
                                      request_options=self.options)
        url = self.url("datasets", str(dataset_id), "items", body["id"])
        self.save(item.key, "dataset_item", item_hash, remote_id=body["id"], url=url)
        self.record("dataset_item", f"dataset item for query {body['metadata']['evalboard']['query_id']}",
                    "created" if new else "updated", remote_id=body["id"], url=url,
                    detail="linked to its source trace" if body.get("sourceTraceId") else "")


def run_push(store: Store, project_id: int, request: PushRequest, settings: LangfuseSettings, *,
             who: str = "", api: Any = None, on_progress: Callable[[PushProgress], None] | None = None,
             cancel: threading.Event | None = None, max_retries: int = 2, stop_after: int = 3) -> PushReport:
    """Push `request` to Langfuse (see the module docstring) and log it; returns the report.

    Raises PushError (nothing sent, nothing logged) when the request is refused: an unknown
    judge, run or round, or an unvalidated judge without `confirm_unvalidated`. Everything
    else (Langfuse unreachable, an object rejected) is in the report, object by object.
    `stop_after` failures in a row end the push early ("stopped"); push again to continue.
    """
    dest = destination_for(settings)
    plan = plan_push(store, project_id, request, dest)
    options = {"judge": plan.judge.name if plan.judge else None, "version": plan.version.label if plan.version else None,
               "round": (store.get_round(request.annotations_round).name  # type: ignore[union-attr]
                         if request.annotations_round is not None else None),
               "evaluator": request.evaluator and plan.evaluator is not None,
               "rule": plan.rule, "provider": request.provider}
    push_id = push_log.start_push(
        store, project_id, dest, judge_id=plan.judge.id if plan.judge else None,
        version_id=plan.version.id if plan.version else None, run_id=request.scores_run,
        round_id=request.annotations_round, dataset=plan.dataset["name"] if plan.dataset else None,
        options={k: v for k, v in options.items() if v is not None}, unvalidated=not plan.validated, who=who)
    runner = _Runner(store, plan, api if api is not None else make_api(settings), push_id, settings.base_url,
                     on_progress=on_progress, cancel=cancel, max_retries=max_retries, timeout=settings.timeout,
                     stop_after=stop_after)
    try:
        runner.run()
    except _Stop as stop:
        record = push_log.finish_push(store, push_id, "stopped", str(stop))
    except BaseException as exc:
        push_log.finish_push(store, push_id, "stopped", f"Interrupted ({type(exc).__name__}); push again to continue.")
        raise
    else:
        if runner.failed:
            record = push_log.finish_push(store, push_id, "failed",
                                          f"{runner.failed} object(s) failed (see each one's reason); push again to "
                                          "retry them: what was sent is not sent twice.")
        else:
            record = push_log.finish_push(store, push_id, "done", "")
    return PushReport(push=record, objects=push_log.push_objects_frame(store, push_id), plan=plan)


def dry_run(store: Store, project_id: int, request: PushRequest, settings: LangfuseSettings) -> PushPlan:
    """What a push would send, from the store alone (nothing is sent, nothing is logged)."""
    return plan_push(store, project_id, request, destination_for(settings))


def round_by_name(store: Store, project_id: int, name_or_id: str) -> int:
    """A round id from its name (or its id as text); PushError naming the rounds when unknown."""
    found = [r for r in store.list_rounds(project_id) if r.name == name_or_id or str(r.id) == str(name_or_id)]
    if not found:
        names = ", ".join(r.name for r in store.list_rounds(project_id)) or "none yet"
        raise PushError(f"No round named '{name_or_id}' (rounds: {names}).")
    return int(found[0].id)  # type: ignore[arg-type]


def judge_by_name(store: Store, project_id: int, name: str) -> int:
    """A judge id from its name (case-insensitive); PushError naming the judges when unknown."""
    from evalboard.judges import list_judges

    judges = list_judges(store, project_id)
    found = [j for j in judges if j.name.lower() == name.strip().lower() or str(j.id) == name.strip()]
    if not found:
        raise PushError(f"No judge named '{name}' (judges: {', '.join(j.name for j in judges) or 'none yet'}).")
    return found[0].id


__all__ = ["LABEL_UNVALIDATED", "LABEL_VALIDATED", "MODE_CONFIG", "VERDICT_CONFIG", "PushError", "PushPlan",
           "PushProgress", "PushReport", "PushRequest", "RuleOptions", "config_name", "destination_for", "dry_run",
           "judge_by_name", "langfuse_trace_ids", "plan_push", "reason_of", "round_by_name", "run_push", "stable_id"]
