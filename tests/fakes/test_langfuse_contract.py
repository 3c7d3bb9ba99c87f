"""Contract test: the fake Langfuse answers the real SDK's calls the way the public spec says.

Each SDK call evalboard makes runs against the fake with response recording on; every recorded
response body is then validated against the response schema the spec gives for that path,
method and status (OpenAPI 3.0 `nullable` turned into JSON Schema, `$ref`s resolved inside the
spec document). Where SDK 5.0.4 is newer than the spec (see vendor-specs/README.md: the scores
array body answered 202/207, /v2/evaluators and /v2/evaluation-rules) the body is validated
against the SDK's own pydantic response models instead.

Skipped when ../shared/vendor-specs/langfuse-openapi.yml (next to the repo) is absent.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.langfuse_server import FakeLangfuse, RecordedRequest

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "vendor-specs" / "langfuse-openapi.yml"

pytestmark = pytest.mark.skipif(
    not SPEC_PATH.exists(), reason=f"Langfuse OpenAPI spec not found at {SPEC_PATH} (vendor specs are checked out beside the repo)"
)


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema 2020-12: `nullable: true` becomes `anyOf [..., null]`."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: (_openapi_to_jsonschema(value) if key not in ("example", "enum") else value) for key, value in node.items()}
    if isinstance(out.get("nullable"), bool):  # a bool is the keyword, not a property named "nullable"
        if out.pop("nullable"):
            return {"anyOf": [out, {"type": "null"}]}
    return out


class Spec:
    """The spec's response schemas, looked up by (method, concrete path, status)."""

    def __init__(self, path: Path):
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with path.open() as fh:
            doc = yaml.load(fh, Loader=loader)
        self.components = _openapi_to_jsonschema(doc["components"]["schemas"])
        self.operations: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for template, item in doc["paths"].items():
            pattern = re.compile(re.sub(r"\{[^/]+\}", r"[^/]+", template))
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    self.operations.append((pattern, method.upper(), op))
        # Literal paths before templated ones (e.g. /v2/datasets before /v2/datasets/{name}).
        self.operations.sort(key=lambda t: t[0].pattern.count("[^/]+"))

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        for pattern, op_method, op in self.operations:
            if op_method == method and pattern.fullmatch(path):
                response = op["responses"].get(str(status))
                if response is None:
                    raise AssertionError(f"spec has no {status} response for {method} {path}; it lists {sorted(op['responses'])}")
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                return None if schema is None else _openapi_to_jsonschema(schema)
        raise AssertionError(f"spec has no operation {method} {path}")

    def validate(self, method: str, path: str, status: int, body: Any) -> None:
        import jsonschema

        schema = self.response_schema(method, path, status)
        if schema is None:
            return
        root = {**schema, "components": {"schemas": self.components}}
        validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "<root>"
            raise AssertionError(f"{method} {path} -> {status}: response does not match the spec at {where}: {first.message}")


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec(SPEC_PATH)


# Paths and methods where SDK 5 is newer than the spec: validated with the SDK's pydantic models.
def _sdk_model_for(method: str, path: str, status: int) -> Any | None:
    from langfuse.api import (
        CreateScoreBatchResponse,
        CreateScoreBatchResults,
        DeletedEvaluationRule,
        DeletedEvaluator,
        EvaluationRule,
        EvaluationRulesPage,
        Evaluator,
        EvaluatorsPage,
        EvaluatorVersionsPage,
    )

    if path == "/api/public/scores" and method == "POST" and status in (202, 207):
        return CreateScoreBatchResponse if status == 202 else CreateScoreBatchResults
    if path.startswith("/api/public/v2/evaluators"):
        if path.endswith("/versions"):
            return EvaluatorVersionsPage
        if path == "/api/public/v2/evaluators":
            return EvaluatorsPage if method == "GET" else Evaluator
        return DeletedEvaluator if method == "DELETE" else Evaluator
    if path.startswith("/api/public/v2/evaluation-rules"):
        if path == "/api/public/v2/evaluation-rules":
            return EvaluationRulesPage if method == "GET" else EvaluationRule
        return DeletedEvaluationRule if method == "DELETE" else EvaluationRule
    return None


def _check_all(spec: Spec, records: list[RecordedRequest]) -> set[str]:
    """Validate every recorded 2xx response; returns the 'METHOD path-template' pairs covered."""
    from langfuse.api.core.pydantic_utilities import parse_obj_as

    covered = set()
    for rec in records:
        assert rec.status is not None, f"{rec.method} {rec.path} got no response"
        assert rec.status < 300, f"{rec.method} {rec.path} failed with {rec.status}: {rec.response}"
        model = _sdk_model_for(rec.method, rec.path, rec.status)
        if model is not None:
            # SDK newer than the spec: the SDK's own response model is the contract.
            parse_obj_as(model, rec.response)
        else:
            spec.validate(rec.method, rec.path, rec.status, rec.response)
        covered.add(f"{rec.method} {re.sub(r'/[0-9a-f]{16,}', '/{id}', rec.path)}")
    return covered


@pytest.fixture
def fake() -> Any:
    # A unique public key per server: the SDK keeps one client per public key process-wide.
    with FakeLangfuse(traces=30, seed=5, record_responses=True, public_key=f"pk-lf-contract-{uuid.uuid4().hex[:8]}") as server:
        yield server


def test_reads_match_spec(spec: Spec, fake: FakeLangfuse) -> None:
    from langfuse.api.client import LangfuseAPI

    api = LangfuseAPI(base_url=fake.url, username=fake.public_key, password=fake.secret_key)
    assert api.health.health().status == "OK"
    assert api.projects.get().data[0].id == fake.project_id
    all_groups = "core,basic,time,io,metadata,model,usage,prompt,metrics,trace_context"
    page = api.observations.get_many(fields=all_groups, limit=40)
    assert len(page.data) == 40 and page.meta.cursor
    last = api.observations.get_many(fields=all_groups, limit=1000, cursor=page.meta.cursor)
    assert last.meta.cursor is None  # absent on the last page
    api.observations.get_many(is_root_observation=True, fields="core,basic,trace_context", environment=["production", "staging"])
    api.observations.get_many(trace_id=fake.trace_ids[0])
    api.scores.get_many(fields="details,subject,annotation", limit=100)
    _check_all(spec, fake.requests)


def test_writes_match_spec(spec: Spec, fake: FakeLangfuse) -> None:
    from langfuse import Langfuse

    client = Langfuse(public_key=fake.public_key, secret_key=fake.secret_key, base_url=fake.url, tracing_enabled=True)
    try:
        assert client.auth_check() is True
        trace_id = fake.trace_ids[0]
        # scores: batched array body, 202
        client.create_score(name="judge_tone", value=1.0, trace_id=trace_id, score_id="score-1", data_type="NUMERIC", comment="ok")
        client.create_score(name="judge_tone", value=0.0, trace_id=trace_id, score_id="score-1", data_type="NUMERIC")
        client.flush()
        assert fake.scores["score-1"]["value"] == 0.0  # upsert on id
        # 207: one valid, one invalid item in one array
        client.api.scores.create(request=[{"name": "x", "value": 1, "traceId": trace_id}, {"name": "y", "value": 1}])
        config = client.api.score_configs.create(name="tone_ok", data_type="BOOLEAN", description="judge verdict")
        client.api.score_configs.get()
        client.api.score_configs.get_by_id(config.id)
        client.api.score_configs.update(config.id, description="judge verdict v2")
        client.create_dataset(name="evalboard/golden", description="golden set")
        client.create_dataset_item(dataset_name="evalboard/golden", id="item-1", input={"q": "hi"}, expected_output="hello")
        client.create_dataset_item(dataset_name="evalboard/golden", id="item-1", input={"q": "hi!"}, source_trace_id=trace_id)
        dataset = client.get_dataset("evalboard/golden")
        assert [item.input for item in dataset.items] == [{"q": "hi!"}]  # upsert on id
        client.api.datasets.list()
        client.api.dataset_items.get("item-1")
        client.create_prompt(name="judge-tone", prompt="Is {{output}} polite?", labels=["production"], tags=["evalboard"])
        client.create_prompt(name="judge-tone", prompt=[{"role": "system", "content": "Judge {{output}}"}], type="chat", labels=["production"])
        prompt = client.get_prompt("judge-tone", cache_ttl_seconds=0)
        assert prompt.version == 2 and prompt.tags == ["evalboard"]
        client.api.prompts.list()
        comment = client.api.comments.create(project_id=fake.project_id, object_type="TRACE", object_id=trace_id, content="first failure: tone")
        client.api.comments.get(object_type="TRACE", object_id=trace_id)
        client.api.comments.get_by_id(comment.id)
        # OTLP export: accepted and discarded
        with client.start_as_current_observation(name="contract-span"):
            pass
        client.flush()
        assert fake.otel_batches >= 1
    finally:
        client.shutdown()
    covered = _check_all(spec, fake.requests)
    for expected in ("POST /api/public/scores", "GET /api/public/projects", "POST /api/public/dataset-items", "POST /api/public/v2/prompts", "POST /api/public/otel/v1/traces"):
        assert expected in covered, f"{expected} was never called: {sorted(covered)}"
    statuses = {r.status for r in fake.requests_to("/api/public/scores", "POST")}
    assert statuses == {202, 207}


def test_evaluators_follow_sdk_models(spec: Spec, fake: FakeLangfuse) -> None:
    from langfuse.api.client import LangfuseAPI

    api = LangfuseAPI(base_url=fake.url, username=fake.public_key, password=fake.secret_key)
    evaluator = api.evaluators.create(
        request={
            "type": "llm_as_judge",
            "name": "tone-judge",
            "prompt": [{"role": "user", "content": "Is this polite? {{output}}"}],
            "modelConfig": {"provider": "openai", "model": "gpt-4.1"},
            "variableMapping": [{"variable": "output", "source": "output"}],
            "outputDefinition": {"dataType": "BOOLEAN", "scoreReasoningInstructions": "why", "scoreValueInstructions": "true if polite"},
        }
    )
    assert evaluator.variables == ["output"]
    rule = api.evaluation_rules.create(
        name="tone on production",
        enabled=True,
        sampling=0.5,
        filter=[{"type": "stringOptions", "column": "environment", "operator": "any of", "value": ["production"]}],
        evaluator_assignments=[{"evaluatorId": evaluator.id}],
    )
    assert api.evaluators.get(evaluator.id).evaluation_rule_assignments[0].evaluation_rule_id == rule.id
    api.evaluators.list()
    api.evaluators.list_versions(evaluator.id)
    api.evaluation_rules.list()
    api.evaluation_rules.get(rule.id)
    api.evaluation_rules.update(rule.id, enabled=False)
    api.evaluation_rules.delete(rule.id)
    api.evaluators.delete(evaluator.id)
    _check_all(spec, fake.requests)


def test_spec_conversion_rejects_a_wrong_body(spec: Spec) -> None:
    """The validator does reject bad bodies (so the tests above can fail)."""
    with pytest.raises(AssertionError, match="does not match the spec"):
        spec.validate("GET", "/api/public/health", 200, {"status": "OK"})  # `version` missing
    with pytest.raises(AssertionError, match="does not match the spec"):
        spec.validate("GET", "/api/public/v2/observations", 200, {"data": [{"id": 1}], "meta": {}})
    spec.validate("GET", "/api/public/v2/observations", 200, {"data": [], "meta": {}})


def test_pull_requests_get_spec_shaped_answers(spec: Spec, fake: FakeLangfuse) -> None:
    """The requests evalboard's pull sends (structured filters, field groups, id lists)."""
    from datetime import timedelta

    import integrations.langfuse as lf
    from tests.fakes.langfuse_data import BASE_TIME

    settings = lf.LangfuseSettings(public_key=fake.public_key, secret_key=fake.secret_key, base_url=fake.url)
    window = lf.PullFilters(since=BASE_TIME, until=BASE_TIME + timedelta(days=15), tags=("web",))
    for fetch in ("window", "trace"):
        records = [r for p in lf.pull_traces(settings, window, fetch=fetch) for r in p.records]
        assert records
    paths = {r.path for r in fake.requests}
    assert paths == {"/api/public/v2/observations", "/api/public/v3/scores"}
    _check_all(spec, fake.requests)
