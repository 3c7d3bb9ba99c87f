"""The fake Langfuse server itself: paging, filters, writes, faults and recording (real SDK client)."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import httpx
import pytest

from tests.fakes.langfuse_data import generate
from tests.fakes.langfuse_server import FakeLangfuse, fake_langfuse  # noqa: F401 - fixture


def api_for(fake: FakeLangfuse, **kwargs: Any) -> Any:
    from langfuse.api.client import LangfuseAPI

    return LangfuseAPI(base_url=fake.url, username=fake.public_key, password=fake.secret_key, **kwargs)


def test_seed_is_deterministic_and_shaped_like_production() -> None:
    a, b = generate(200, seed=4), generate(200, seed=4)
    assert a.observations == b.observations and a.scores == b.scores
    assert generate(200, seed=5).trace_ids != a.trace_ids
    per_trace = len(a.observations) / 200
    assert 2.7 < per_trace < 3.4
    types = {o["type"] for o in a.observations}
    assert {"SPAN", "GENERATION", "TOOL", "RETRIEVER"} <= types
    assert any(o["level"] == "ERROR" for o in a.observations)
    assert all(o["usageDetails"]["total"] > 0 and o["totalCost"] > 0 for o in a.observations if o["type"] == "GENERATION")
    assert 0.2 < len({s["_traceId"] for s in a.scores}) / 200 < 0.4


def test_cursor_paging_returns_every_observation_once(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    api = api_for(fake_langfuse)
    seen, cursor, pages = [], None, 0
    while True:
        page = api.observations.get_many(limit=13, cursor=cursor)
        seen += [o.id for o in page.data]
        pages += 1
        cursor = page.meta.cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(fake_langfuse.index.rows)
    assert pages == -(-len(seen) // 13)
    # newest first
    starts = [o.start_time for o in api.observations.get_many(limit=50).data]
    assert starts == sorted(starts, reverse=True)


def test_limit_above_1000_and_unknown_field_groups_are_rejected(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    from langfuse.api.commons.errors.error import Error

    api = api_for(fake_langfuse)
    with pytest.raises(Error) as info:
        api.observations.get_many(limit=1001)
    assert "must be <= 1000" in info.value.body["message"]
    with pytest.raises(Error):
        api.observations.get_many(fields="core,nonsense")
    with pytest.raises(Error):
        api.scores.get_many(limit=101)


def test_field_groups_and_metadata_truncation(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    row = dict(fake_langfuse.index.rows[0])
    row.update({"id": "long-meta", "metadata": {"note": "x" * 500, "short": "y"}, "_neg": row["_neg"] - 1})
    row.pop("_json", None)
    fake_langfuse.add_observations([row])
    api = api_for(fake_langfuse)
    basic = api.observations.get_many(trace_id=row["traceId"], limit=10).data[0]
    assert basic.name is not None and basic.input is None and basic.metadata is None  # core + basic only
    full = {o.id: o for o in api.observations.get_many(trace_id=row["traceId"], fields="core,metadata,io", limit=10).data}
    assert len(full["long-meta"].metadata["note"]) == 203 and full["long-meta"].metadata["short"] == "y"
    expanded = {o.id: o for o in api.observations.get_many(trace_id=row["traceId"], fields="metadata", expand_metadata="note").data}
    assert expanded["long-meta"].metadata["note"] == "x" * 500


def test_structured_filter_takes_precedence(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    api = api_for(fake_langfuse)
    flt = json.dumps([{"type": "string", "column": "type", "operator": "=", "value": "GENERATION"},
                      {"type": "arrayOptions", "column": "tags", "operator": "any of", "value": ["web"]}])
    data = api.observations.get_many(filter=flt, type="SPAN", limit=1000, fields="core,trace_context").data
    assert data and all(o.type == "GENERATION" and "web" in o.tags for o in data)
    with pytest.raises(Exception):
        api.observations.get_many(filter=json.dumps([{"type": "string", "column": "nope", "operator": "=", "value": 1}]))


def test_auth_and_health(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    response = httpx.get(fake_langfuse.url + "/api/public/projects", auth=("pk-lf-x", "sk-lf-y"))
    assert response.status_code == 401 and response.json()["message"].startswith("Invalid credentials")
    assert httpx.get(fake_langfuse.url + "/api/public/health").json() == {"status": "OK", "version": "4.16.0"}
    assert httpx.get(fake_langfuse.url + "/api/public/nope", auth=(fake_langfuse.public_key, fake_langfuse.secret_key)).status_code == 404


def test_scores_upsert_and_partial_rejection(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    api = api_for(fake_langfuse)
    trace = fake_langfuse.trace_ids[0]
    api.scores.create(request=[{"id": "s1", "name": "judge", "value": 1, "traceId": trace}])
    api.scores.create(request=[{"id": "s1", "name": "judge", "value": 0, "traceId": trace, "comment": "second opinion"}])
    assert fake_langfuse.scores["s1"]["value"] == 0.0 and fake_langfuse.scores["s1"]["comment"] == "second opinion"
    result = api.scores.create(request=[{"name": "ok", "value": 1, "traceId": trace}, {"name": "bad", "value": 1}, {"name": "x", "value": "a", "dataType": "NUMERIC", "traceId": trace}])
    assert (result.accepted, result.rejected) == (1, 2)
    assert "scores[1]: one of 'traceId'" in result.errors[0].message
    listed = api.scores.get_many(trace_id=trace, fields="details", limit=100).data
    assert "s1" in {s.id for s in listed}


def test_datasets_prompts_evaluators_and_comments(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    from langfuse.api.commons.errors.not_found_error import NotFoundError
    from langfuse.api.core.api_error import ApiError

    api = api_for(fake_langfuse)
    first = api.datasets.create(name="golden", description="v1")
    again = api.datasets.create(name="golden", description="v2")
    assert first.id == again.id and again.description == "v2"  # upsert on name
    with pytest.raises(NotFoundError):
        api.dataset_items.create(dataset_name="missing", input={"q": 1})
    api.prompts.create(request={"name": "judge", "prompt": "v1 {{x}}", "type": "text", "labels": ["production"], "tags": ["t"]})
    api.prompts.create(request={"name": "judge", "prompt": "v2 {{x}}", "type": "text"})
    assert api.prompts.get("judge").prompt == "v1 {{x}}"  # production label stays on v1
    assert api.prompts.get("judge", label="latest").version == 2
    assert api.prompts.get("judge", label="latest").tags == ["t"]
    with pytest.raises(ApiError) as info:
        api.evaluation_rules.create(name="r", enabled=True, evaluator_assignments=[{"evaluatorId": "nope"}])
    assert info.value.status_code == 404 and info.value.body.code == "resource_not_found"
    comment = api.comments.create(project_id=fake_langfuse.project_id, object_type="TRACE", object_id="t1", content="hi")
    assert api.comments.get_by_id(comment.id).content == "hi"


def test_faults_count_fraction_latency_hang_broken(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    url = fake_langfuse.url + "/api/public/health"
    client = httpx.Client()
    fake_langfuse.inject(status=429, retry_after=3, count=2)
    first, second, third = (client.get(url) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "3" and first.json()["code"] == "rate_limited"
    fake_langfuse.clear_faults()
    fake_langfuse.inject(status=503, fraction=0.3, seed=7)
    statuses = [client.get(url).status_code for _ in range(60)]
    assert 8 <= statuses.count(503) <= 30 and set(statuses) == {200, 503}
    fake_langfuse.clear_faults()
    fake_langfuse.latency = 0.05
    started = time.perf_counter()
    httpx.get(url)
    assert time.perf_counter() - started >= 0.05
    fake_langfuse.latency = 0
    fake_langfuse.inject(hang=5, count=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=0.2)
    fake_langfuse.inject(broken=True, count=1)
    with pytest.raises(json.JSONDecodeError):
        httpx.get(url).json()
    with pytest.raises(ValueError, match="exactly one of count= or fraction="):
        fake_langfuse.inject(status=500)


def test_requests_are_recorded_and_otel_is_accepted(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    body = gzip.compress(b"\x0a\x00")  # an (empty) OTLP protobuf message, gzipped like the exporter does
    response = httpx.post(
        fake_langfuse.url + "/api/public/otel/v1/traces", content=body, auth=(fake_langfuse.public_key, fake_langfuse.secret_key),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200 and response.json() == {} and fake_langfuse.otel_batches == 1
    api_for(fake_langfuse).observations.get_many(limit=3, environment=["production", "staging"], is_root_observation=True)
    request = fake_langfuse.requests_to("/api/public/v2/observations")[0]
    assert request.query["environment"] == ["production", "staging"] and request.param("isRootObservation") == "true"
    assert request.param("limit") == "3" and request.status == 200
    assert request.headers["authorization"].startswith("Basic ")
