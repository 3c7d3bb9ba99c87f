"""Pushing to Langfuse with the real SDK against the fake server: payloads follow the public spec
(or SDK 5's newer models), a second push changes nothing, prompts version only on change,
failures midway (errors, and responses lost after the server acted) end, after a rerun, with
exactly one copy of everything, and an unvalidated judge needs a confirmation."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Any, Iterator

import pytest

import integrations.langfuse_push as lp
from evalboard import coding, push_log
from evalboard.axial.taxonomy import update_mode
from evalboard.store import Store
from integrations.langfuse import LangfuseSettings
from tests.evalboard.test_exports import MODE, JudgeProject, make_judge_project
from tests.fakes.langfuse_server import FakeLangfuse, RecordedRequest
from tests.fakes.test_langfuse_contract import SPEC_PATH, Spec, _check_all

CONFIG_NAME = re.compile(r"^[A-Za-z0-9_ .()\-]{1,35}$")  # the spec's rule for score config names


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    # A public key of its own: the destination (and the SDK's client cache) is per key.
    with FakeLangfuse(traces=30, seed=3, record_responses=True, public_key=f"pk-lf-{uuid.uuid4().hex[:10]}") as server:
        yield server


@pytest.fixture
def settings(fake: FakeLangfuse) -> LangfuseSettings:
    return LangfuseSettings(public_key=fake.public_key, secret_key=fake.secret_key, base_url=fake.url, timeout=5)


@pytest.fixture
def built(sqlite_store: Store, fake: FakeLangfuse) -> JudgeProject:
    return make_judge_project(sqlite_store, fake.trace_ids)


def everything(built: JudgeProject, **changes: Any) -> lp.PushRequest:
    values: dict[str, Any] = {"judge": built.judge_id, "scores_run": built.run_ids["dev"],
                              "annotations_round": built.round_id, "dataset": "evalboard queries",
                              "rule": lp.RuleOptions(sampling=0.5, environments=("production",))}
    return lp.PushRequest(**{**values, **changes})


def push(store: Store, built: JudgeProject, settings: LangfuseSettings, request: lp.PushRequest | None = None,
         **kwargs: Any) -> lp.PushReport:
    kwargs.setdefault("max_retries", 0)
    return lp.run_push(store, built.project_id, request or everything(built), settings, who="tester", **kwargs)


def ours(fake: FakeLangfuse) -> dict[str, Any]:
    """What evalboard made in the fake, counted so that any duplicate shows."""
    metas = [s for s in fake.scores.values() if isinstance(s.get("metadata"), dict) and "evalboard" in s["metadata"]]
    return {
        "configs": Counter(c["name"] for c in fake.score_configs.values()),
        "prompt_versions": {name: len(versions) for name, versions in fake.prompts.items()},
        "evaluators": Counter(e["name"] for e in fake.evaluators.values()),
        "evaluator_versions": {fake.evaluators[i]["name"]: len(v) for i, v in fake.evaluator_versions.items()},
        "rules": Counter(r["name"] for r in fake.evaluation_rules.values()),
        "scores": len(metas),
        "scores_per_trace_and_name": max(Counter((s["_traceId"], s["name"], s["metadata"]["evalboard"].get("annotator"),
                                                  s["value"] if s["name"] == lp.MODE_CONFIG else None)
                                                 for s in metas).values()),
        "comments": Counter((c["objectId"], c["content"]) for c in fake.comments.values()),
        "datasets": len(fake.datasets),
        "items": len(fake.dataset_items),
    }


def assert_one_copy(state: dict[str, Any], built: JudgeProject) -> None:
    assert set(state["configs"].values()) == {1} and len(state["configs"]) == 3
    assert state["prompt_versions"] == {"evalboard/email-tone": 1}
    assert set(state["evaluators"].values()) == {1} and set(state["rules"].values()) == {1}
    assert state["scores_per_trace_and_name"] == 1
    assert set(state["comments"].values()) == {1} and len(state["comments"]) == len(built.planted_in_langfuse)
    assert state["datasets"] == 1 and state["items"] == len(built.query_ids)


# ----------------------------------------------------------------------------- the contract


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def _sdk_keys(model: Any) -> set[str]:
    import typing

    if typing.get_origin(model) is typing.Annotated:
        return _sdk_keys(typing.get_args(model)[0])
    if typing.get_origin(model) is typing.Union:
        return set().union(*(_sdk_keys(m) for m in typing.get_args(model)))
    return {_camel(n) for n in model.model_fields}


def _spec_props(spec: Spec, schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        schema = spec.components[schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema or "oneOf" in schema:
        return set().union(*(_spec_props(spec, s) for s in schema.get("anyOf", schema.get("oneOf", []))))
    return set(schema.get("properties", {}))


def check_request(spec: Spec, rec: RecordedRequest) -> None:
    """A request body we sent is what the spec (or, where SDK 5 is newer, the SDK) expects, with
    no key either of them does not know."""
    import jsonschema
    from langfuse import api as sdk
    from langfuse.api.core.pydantic_utilities import parse_obj_as

    if rec.method not in ("POST", "PATCH", "PUT") or rec.path.startswith("/api/public/otel"):
        return
    where = f"{rec.method} {rec.path}"
    models = {("POST", "evaluators"): sdk.CreateEvaluatorRequest, ("PATCH", "evaluators"): sdk.UpdateEvaluatorRequest,
              ("POST", "evaluation-rules"): sdk.CreateEvaluationRuleRequest,
              ("PATCH", "evaluation-rules"): sdk.UpdateEvaluationRuleRequest}
    newer = next((m for (method, part), m in models.items()
                  if method == rec.method and rec.path.startswith(f"/api/public/v2/{part}")), None)
    if newer is not None:
        parse_obj_as(newer, rec.body)
        unknown = set(rec.body) - _sdk_keys(newer)
        assert not unknown, f"{where}: keys the SDK does not know: {unknown}"
        return
    for pattern, method, op in spec.operations:
        if method == rec.method and pattern.fullmatch(rec.path):
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            break
    else:
        raise AssertionError(f"the spec has no operation {where}")
    from tests.fakes.test_langfuse_contract import _openapi_to_jsonschema

    root = {**_openapi_to_jsonschema(schema), "components": {"schemas": spec.components}}
    validator = jsonschema.Draft202012Validator(root)
    # SDK 5 sends scores as an array of the spec's single-score body, plus `timestamp`.
    items = rec.body if rec.path == "/api/public/scores" and isinstance(rec.body, list) else [rec.body]
    allowed = _spec_props(spec, schema) | (_sdk_keys(sdk.CreateScoreRequest) if rec.path == "/api/public/scores" else set())
    for item in items:
        errors = list(validator.iter_errors(item))
        assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"
        assert not set(item) - allowed, f"{where}: keys the spec does not know: {set(item) - allowed}"


def check_responses(spec: Spec, records: list[RecordedRequest]) -> None:
    """Every answer the fake gave matches the spec (errors too: a prompt looked up before it
    exists is a 404 with the spec's error body)."""
    errors = [r for r in records if r.status is not None and r.status >= 300]
    for rec in errors:
        assert rec.status == 404, f"{rec.method} {rec.path} failed with {rec.status}: {rec.response}"
        spec.validate(rec.method, rec.path, rec.status, rec.response)
    _check_all(spec, [r for r in records if r not in errors])


@pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"Langfuse OpenAPI spec not found at {SPEC_PATH}")
def test_every_payload_follows_the_spec(sqlite_store: Store, built: JudgeProject, settings: LangfuseSettings,
                                        fake: FakeLangfuse) -> None:
    spec = Spec(SPEC_PATH)
    report = push(sqlite_store, built, settings)
    assert report.ok, report.objects.to_string()
    # a second push after edits exercises the update paths too (PATCH config, evaluator, rule)
    mode_id = coding.ensure_mode(sqlite_store, built.project_id, MODE)
    update_mode(sqlite_store, built.project_id, mode_id, "tester", definition="Blames the customer, or over-promises.")
    coding.save_annotation(sqlite_store, built.project_id, built.trace_ids[1], "li", verdict="fail",
                           modes=["brand new mode"], note="odd", round_id=built.round_id)
    again = push(sqlite_store, built, settings, everything(built, rule=lp.RuleOptions(enabled=False, sampling=0.2)))
    assert again.ok, again.objects.to_string()
    statuses = set(again.objects["status"])
    assert {"updated", "unchanged", "created"} <= statuses
    sent = [r for r in fake.requests if r.method in ("POST", "PATCH")]
    assert {r.path for r in sent} >= {"/api/public/score-configs", "/api/public/scores", "/api/public/v2/prompts",
                                      "/api/public/v2/evaluators", "/api/public/v2/evaluation-rules",
                                      "/api/public/comments", "/api/public/v2/datasets", "/api/public/dataset-items"}
    assert any(r.method == "PATCH" and r.path.startswith("/api/public/score-configs/") for r in sent)
    assert any(r.method == "PATCH" and r.path.startswith("/api/public/v2/evaluators/") for r in sent)
    assert any(r.method == "PATCH" and r.path.startswith("/api/public/v2/evaluation-rules/") for r in sent)
    # someone moved the label away in Langfuse: the same prompt gets its label back, no new version
    latest = fake.prompts["evalboard/email-tone"][-1]
    latest["labels"] = ["latest"]
    third = push(sqlite_store, built, settings, lp.PushRequest(judge=built.judge_id))
    row = third.objects[third.objects["kind"] == "prompt"].iloc[0]
    assert row["status"] == "updated" and "label 'evalboard-validated' added" in row["detail"]
    assert len(fake.prompts["evalboard/email-tone"]) == 2 and lp.LABEL_VALIDATED in latest["labels"]
    assert any(r.method == "PATCH" and r.path.endswith("/versions/2") for r in fake.requests)
    for rec in fake.requests:
        check_request(spec, rec)
    check_responses(spec, fake.requests)
    assert all(CONFIG_NAME.fullmatch(c["name"]) for c in fake.score_configs.values())
    assert lp.config_name("a/b: " + "x" * 60) != lp.config_name("a:b: " + "x" * 60)
    assert all(CONFIG_NAME.fullmatch(lp.config_name(n)) for n in ("a/b: c", "x" * 80, "tone — ümlaut"))


# ----------------------------------------------------------------------------- idempotence


def test_second_push_changes_nothing(sqlite_store: Store, built: JudgeProject, settings: LangfuseSettings,
                                     fake: FakeLangfuse) -> None:
    first = push(sqlite_store, built, settings)
    assert first.ok and first.push.counts.get("created", 0) > 40
    before = ours(fake)
    assert_one_copy(before, built)
    updated = {k: dict(v) for k, v in fake.scores.items()}
    fake.reset_requests()
    second = push(sqlite_store, built, settings)
    assert second.ok
    assert set(second.push.counts) <= {"unchanged", "skipped"}, second.push.counts
    writes = [(r.method, r.path) for r in fake.requests if r.method != "GET"]
    assert writes == []  # nothing new, nothing sent: only reads to check configs, prompt, evaluator, rule
    assert ours(fake) == before and {k: dict(v) for k, v in fake.scores.items()} == updated


def test_without_local_records_objects_are_found_again(sqlite_store: Store, built: JudgeProject,
                                                       settings: LangfuseSettings, fake: FakeLangfuse) -> None:
    """Configs by name, the prompt by comparing with its latest version, the evaluator and rule by
    name, comments by content: a push that remembers nothing still makes no second copy."""
    assert push(sqlite_store, built, settings).ok
    before = ours(fake)
    dest = lp.destination_for(settings)
    push_log.forget_remote(sqlite_store, built.project_id, dest,
                           push_log.remote_state(sqlite_store, built.project_id, dest))
    again = push(sqlite_store, built, settings)
    assert again.ok
    assert ours(fake) == before
    statuses = dict(zip(again.objects["object"], again.objects["status"]))
    assert statuses["prompt 'evalboard/email-tone'"] == "unchanged"
    assert statuses["evaluator 'evalboard: Email tone'"] == "unchanged"
    assert statuses["score config 'wrong tone email'"] == "unchanged"


def test_prompt_versions_only_when_the_prompt_changes(sqlite_store: Store, built: JudgeProject,
                                                      settings: LangfuseSettings, fake: FakeLangfuse) -> None:
    request = lp.PushRequest(judge=built.judge_id)
    assert push(sqlite_store, built, settings, request).ok
    assert push(sqlite_store, built, settings, request).ok
    assert len(fake.prompts["evalboard/email-tone"]) == 1
    mode_id = coding.ensure_mode(sqlite_store, built.project_id, MODE)
    update_mode(sqlite_store, built.project_id, mode_id, "tester", definition="A sharper definition.")
    changed = push(sqlite_store, built, settings, request)
    versions = fake.prompts["evalboard/email-tone"]
    assert [v["version"] for v in versions] == [1, 2]
    assert "A sharper definition." in versions[-1]["prompt"][0]["content"]
    assert versions[-1]["labels"] == [lp.LABEL_VALIDATED, "latest"] and versions[0]["labels"] == []
    assert "v1 (validated; test TPR 1.00" in versions[-1]["commitMessage"]
    config = versions[-1]["config"]["evalboard"]
    assert config["version"] == "v1" and config["validation"]["test"]["tpr"]["p"] == 1.0
    statuses = dict(zip(changed.objects["object"], changed.objects["status"]))
    assert statuses["evaluator 'evalboard: Email tone'"] == "updated"
    assert statuses["score config 'wrong tone email'"] == "updated"  # the description is the definition
    (config_row,) = [c for c in fake.score_configs.values() if c["name"] == MODE]
    assert config_row["description"].startswith("A sharper definition.") and config_row["dataType"] == "BOOLEAN"
    assert push(sqlite_store, built, settings, request).ok
    assert len(fake.prompts["evalboard/email-tone"]) == 2
    assert len(next(iter(fake.evaluator_versions.values()))) == 2


# ----------------------------------------------------------------------------- what lands where


def test_scores_annotations_comments_and_items_carry_their_content(sqlite_store: Store, built: JudgeProject,
                                                                   settings: LangfuseSettings, fake: FakeLangfuse) -> None:
    report = push(sqlite_store, built, settings)
    assert report.ok
    configs = {c["name"]: c for c in fake.score_configs.values()}
    judge_config = configs[MODE]
    lf = dict(zip(built.trace_ids, built.langfuse_ids))
    verdict_scores = [s for s in fake.scores.values() if s["name"] == MODE]
    assert verdict_scores and all(s["configId"] == judge_config["id"] for s in verdict_scores)
    for score in verdict_scores:
        meta = score["metadata"]["evalboard"]
        assert meta["judge_version"] == "v1" and meta["validated"] is True and meta["run"] == built.run_ids["dev"]
        trace = next(t for t, x in lf.items() if x == score["_traceId"])
        assert score["value"] is (trace in built.planted)  # BOOLEAN: true = shows the failure mode
        assert score["comment"].startswith(f"trace {trace}: ")  # the judge's reasoning
        assert score["id"] == lp.stable_id("evalboard", "Support mail", "Email tone", "v1", score["_traceId"])
    human = [s for s in fake.scores.values() if s["name"] == lp.VERDICT_CONFIG]
    assert len(human) == len(built.langfuse_ids) and {s["source"] for s in human} == {"ANNOTATION"}
    assert all(s["configId"] == configs[lp.VERDICT_CONFIG]["id"] for s in human)
    modes = [s for s in fake.scores.values() if s["name"] == lp.MODE_CONFIG]
    assert {s["value"] for s in modes} == {MODE} and len(modes) == len(built.planted_in_langfuse)
    assert [c["label"] for c in configs[lp.MODE_CONFIG]["categories"]] == [MODE, "outdated version"]
    comments = list(fake.comments.values())
    assert all(c["objectType"] == "TRACE" and c["content"].startswith("evalboard first-failure note by maya: blames")
               for c in comments)
    items = sorted(fake.dataset_items.values(), key=lambda i: i["metadata"]["evalboard"]["query_id"])
    assert items[0]["sourceTraceId"] == built.langfuse_ids[0] and items[1]["sourceTraceId"] is None
    assert items[0]["metadata"]["tuple"] == {"persona": "admin", "topic": "outage"}
    assert items[0]["input"]["query"].startswith("Question 0")
    skipped = report.objects[report.objects["status"] == "skipped"]
    assert "not in Langfuse" in skipped["detail"].iloc[0]  # the one local-only trace


def test_a_mode_taken_off_a_label_is_deleted_in_langfuse(sqlite_store: Store, built: JudgeProject,
                                                         settings: LangfuseSettings, fake: FakeLangfuse) -> None:
    request = lp.PushRequest(annotations_round=built.round_id)
    assert push(sqlite_store, built, settings, request).ok
    trace = sorted(built.planted)[0]
    gone = lp.stable_id("evalboard", "Support mail", "annotation", "maya", built.langfuse_ids[built.trace_ids.index(trace)],
                        "mode", MODE)
    assert gone in fake.scores
    coding.save_annotation(sqlite_store, built.project_id, trace, "maya", verdict="pass")
    report = push(sqlite_store, built, settings, request)
    assert report.ok and report.push.counts.get("deleted") == 1
    assert gone not in fake.scores
    verdict_id = lp.stable_id("evalboard", "Support mail", "annotation", "maya",
                              built.langfuse_ids[built.trace_ids.index(trace)], "verdict")
    assert fake.scores[verdict_id]["value"] == "pass"  # upserted on the same id


def test_links_back_on_the_judge_and_the_log(sqlite_store: Store, built: JudgeProject, settings: LangfuseSettings,
                                             fake: FakeLangfuse) -> None:
    report = push(sqlite_store, built, settings)
    links = push_log.judge_links(sqlite_store, built.judge_id)
    kinds = dict(zip(links["kind"], links["count"]))
    assert {"score_config", "prompt", "evaluator", "evaluation_rule", "score"} <= set(kinds)
    assert kinds["score"] == len([s for s in fake.scores.values() if s["name"] == MODE])
    evaluator = links[links["kind"] == "evaluator"].iloc[0]
    assert evaluator["remote_id"] in fake.evaluators and evaluator["link"].startswith(fake.url + "/project/")
    assert links[links["kind"] == "prompt"].iloc[0]["version"] == "v1"
    log = push_log.list_pushes(sqlite_store, built.project_id)
    assert [p.id for p in log] == [report.push.id] and log[0].created_by == "tester" and log[0].status == "done"
    frame = push_log.pushes_frame(log)
    assert "judge Email tone v1" in frame["what"].iloc[0] and "dataset evalboard queries" in frame["what"].iloc[0]


# ----------------------------------------------------------------------------- failures


def test_server_failure_midway_then_rerun_gives_one_copy(sqlite_store: Store, built: JudgeProject,
                                                         settings: LangfuseSettings, fake: FakeLangfuse,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lp, "SCORE_BATCH", 4)
    seen: list[str] = []

    def break_after_first_batch(progress: lp.PushProgress) -> None:
        seen.append(progress.current)
        if progress.current.startswith("verdict scores 1-4") and not fake.faults:
            fake.inject(status=500, fraction=1.0, path="/api/public/scores")

    first = push(sqlite_store, built, settings, on_progress=break_after_first_batch)
    assert first.push.status == "stopped" and "3 failures in a row" in first.push.message
    failed = first.objects[first.objects["status"] == "failed"]
    assert failed["object"].iloc[0].startswith("verdict scores 5-8") and "Langfuse answered 500" in failed["detail"].iloc[0]
    assert not fake.comments and not fake.dataset_items  # it stopped before them
    fake.clear_faults()
    second = push(sqlite_store, built, settings)
    assert second.ok, second.objects.to_string()
    unchanged = second.objects[(second.objects["status"] == "unchanged") & (second.objects["kind"] == "score")]
    assert int(unchanged["count"].sum()) == 4  # the first batch was not sent again
    assert_one_copy(ours(fake), built)
    assert push_log.list_pushes(sqlite_store, built.project_id)[-1].status == "stopped"


def test_lost_responses_do_not_make_second_copies(sqlite_store: Store, built: JudgeProject, fake: FakeLangfuse) -> None:
    """The server acts but the answer never arrives (the client times out first): the config,
    the evaluator and a comment exist in Langfuse, unrecorded here. The rerun finds them."""
    slow = LangfuseSettings(public_key=fake.public_key, secret_key=fake.secret_key, base_url=fake.url, timeout=1)
    for path in ("/api/public/score-configs", "/api/public/v2/evaluators", "/api/public/comments"):
        fake.inject(hang=1.3, count=1, path=path, method="POST")
    first = lp.run_push(sqlite_store, built.project_id, everything(built), slow, max_retries=0, stop_after=10)
    assert first.push.status == "failed"
    failed = set(first.objects.loc[first.objects["status"] == "failed", "kind"])
    assert {"score_config", "evaluator", "comment"} <= failed
    assert "did not answer in time" in " ".join(first.objects["detail"])
    second = lp.run_push(sqlite_store, built.project_id, everything(built), slow, max_retries=0)
    assert second.ok, second.objects.to_string()
    assert_one_copy(ours(fake), built)


def test_rejected_scores_are_named_and_sent_again(sqlite_store: Store, built: JudgeProject, settings: LangfuseSettings,
                                                  fake: FakeLangfuse, monkeypatch: pytest.MonkeyPatch) -> None:
    real_plan = lp.plan_push

    def one_bad_score(*args: Any, **kwargs: Any) -> lp.PushPlan:
        plan = real_plan(*args, **kwargs)
        plan.scores[0].body = {**plan.scores[0].body, "value": 7}  # not 0 or 1: Langfuse rejects it
        return plan

    monkeypatch.setattr(lp, "plan_push", one_bad_score)
    first = push(sqlite_store, built, settings, lp.PushRequest(judge=built.judge_id, scores_run=built.run_ids["dev"]))
    assert first.push.status == "failed"
    row = first.objects[first.objects["status"] == "failed"].iloc[0]
    assert "1 rejected" in row["detail"] and "BOOLEAN score value must be 0 or 1" in row["detail"]
    monkeypatch.setattr(lp, "plan_push", real_plan)
    second = push(sqlite_store, built, settings, lp.PushRequest(judge=built.judge_id, scores_run=built.run_ids["dev"]))
    assert second.ok
    sent = second.objects[(second.objects["kind"] == "score") & second.objects["status"].isin(["created", "updated"])]
    assert int(sent["count"].sum()) == len(first.plan.scores)  # the whole rejected batch again


def test_langfuse_down_stops_the_push_early(sqlite_store: Store, built: JudgeProject, settings: LangfuseSettings,
                                            fake: FakeLangfuse) -> None:
    fake.inject(status=503, fraction=1.0)
    report = push(sqlite_store, built, settings)
    assert report.push.status == "stopped" and "Langfuse answered 503" in report.push.message
    assert len(fake.requests) == 1  # the connection check failed: nothing else was tried


# ----------------------------------------------------------------------------- refusals


def test_unvalidated_judge_needs_confirmation_and_is_labelled(sqlite_store: Store, built: JudgeProject,
                                                              settings: LangfuseSettings, fake: FakeLangfuse) -> None:
    request = lp.PushRequest(judge=built.unvalidated_judge_id, rule=lp.RuleOptions())
    with pytest.raises(lp.PushError, match="'Tone draft' v1 is not validated: .*explicit confirmation"):
        push(sqlite_store, built, settings, request)
    assert fake.requests == [] and push_log.list_pushes(sqlite_store, built.project_id) == []
    report = push(sqlite_store, built, settings, lp.PushRequest(judge=built.unvalidated_judge_id, confirm_unvalidated=True))
    assert report.ok and report.push.unvalidated
    (prompt,) = fake.prompts["evalboard/tone-draft"]
    assert prompt["labels"] == [lp.LABEL_UNVALIDATED, "latest"] and "NOT VALIDATED" in prompt["commitMessage"]
    assert prompt["config"]["evalboard"]["validated"] is False
    (evaluator,) = fake.evaluators.values()
    assert evaluator["name"] == "evalboard: Tone draft (not validated)" and "NOT VALIDATED" in evaluator["description"]


def test_bad_requests_are_refused_with_the_reason(sqlite_store: Store, built: JudgeProject,
                                                  settings: LangfuseSettings) -> None:
    with pytest.raises(lp.PushError, match="Nothing to push"):
        push(sqlite_store, built, settings, lp.PushRequest())
    with pytest.raises(lp.PushError, match="Verdict scores belong to a judge"):
        push(sqlite_store, built, settings, lp.PushRequest(scores_run=built.run_ids["dev"]))
    with pytest.raises(lp.PushError, match="is not a run of judge 'Tone draft'"):
        push(sqlite_store, built, settings, lp.PushRequest(judge=built.unvalidated_judge_id, confirm_unvalidated=True,
                                                           scores_run=built.run_ids["dev"]))
    with pytest.raises(lp.PushError, match="There is no round 999"):
        push(sqlite_store, built, settings, lp.PushRequest(annotations_round=999))
    with pytest.raises(lp.PushError, match="sampling rate is a share in"):
        lp.RuleOptions(sampling=1.5)
    with pytest.raises(lp.PushError, match=r"No judge named 'nope' \(judges: Email tone, Tone draft\)"):
        lp.judge_by_name(sqlite_store, built.project_id, "nope")
    assert lp.round_by_name(sqlite_store, built.project_id, "Round 1") == built.round_id


def test_dry_run_counts_without_sending(sqlite_store: Store, built: JudgeProject, settings: LangfuseSettings,
                                        fake: FakeLangfuse) -> None:
    plan = lp.dry_run(sqlite_store, built.project_id, everything(built), settings)
    lines = plan.lines().set_index("object")
    assert lines.loc["verdict scores", "to send"] == len(plan.scores) > 0
    assert lines.loc["annotation scores", "to send"] == len(built.langfuse_ids) + len(built.planted_in_langfuse)
    assert lines.loc["annotations", "skipped"] == 1
    assert fake.requests == []
    push(sqlite_store, built, settings)
    again = lp.dry_run(sqlite_store, built.project_id, everything(built), settings)
    assert again.to_send == 0 and again.lines()["unchanged"].sum() > 40


def test_push_log_records_and_upserts_on_every_backend(store: Store) -> None:
    """The log and the remote state on each database backend (SQLite; Postgres when configured)."""
    pid = store.create_project("Logged").id
    dest = push_log.destination("langfuse", "https://lf.example/", "pk-lf-1234567890abcd")
    assert dest == "langfuse|https://lf.example|pk-lf-1234567890abcd"
    assert push_log.describe_destination(dest) == "Langfuse at https://lf.example (pk-lf-…abcd)"
    first = push_log.start_push(store, pid, dest, who="a")
    push_log.save_remote(store, pid, dest, [{"key": "score:1", "kind": "score", "content_hash": "h1"},
                                            {"key": "judge:J:prompt", "kind": "prompt", "content_hash": "p1"}],
                         push_id=first)
    push_log.save_remote(store, pid, dest, [{"key": "score:1", "kind": "score", "content_hash": "h2"}], push_id=first)
    state = push_log.remote_state(store, pid, dest)
    assert {k: v.content_hash for k, v in state.items()} == {"score:1": "h2", "judge:J:prompt": "p1"}
    assert set(push_log.remote_state(store, pid, dest, ["score:1", "nope"])) == {"score:1"}
    push_log.record_object(store, first, "score", "scores 1-3", "created", count=3)
    push_log.record_object(store, first, "score", "scores 4", "failed", detail="Langfuse answered 500")
    with pytest.raises(push_log.PushLogError, match="Unknown push object status 'weird'"):
        push_log.record_object(store, first, "score", "x", "weird")
    second = push_log.start_push(store, pid, dest, who="b")  # the first never finished: its process is gone
    assert push_log.get_push(store, first).status == "interrupted"
    record = push_log.finish_push(store, second, "done")
    assert record.counts == {} and record.summary() == "done: nothing to do"
    assert push_log.push_counts(store, first) == {"created": 3, "failed": 1}
    assert push_log.forget_remote(store, pid, dest, ["score:1"]) == 1
    assert set(push_log.remote_state(store, pid, dest)) == {"judge:J:prompt"}
