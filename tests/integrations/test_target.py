"""Targets: body templates, answer paths, secret references, and runs of kept queries against a
local HTTP app (faults injected per query) and the fake OpenAI server."""

from __future__ import annotations

import json
import threading

import pytest

from evalboard import query_store as qs
from evalboard.store import Store, StoreError, TraceFilter
from integrations.target import (
    HttpTarget,
    OpenAITarget,
    TargetCaller,
    TargetError,
    check_body_template,
    extract_answer,
    parse_answer_path,
    parse_headers,
    parse_target,
    pending_query_ids,
    render_body,
    resolve_references,
    run_target,
    save_target,
    start_run,
)
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_server import fake_openai  # noqa: F401  (pytest fixture)
from tests.fakes.target_app import TargetApp
from tests.fakes.target_app import target_app  # noqa: F401  (pytest fixture)

NASTY = 'he said "refund me" \\ now\nsecond line\ttab \u00e9 {{not a placeholder}} </script>'
TOKEN = "tok-SECRET-42"


# ------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize("template, expected", [
    ('{"query": "{{query}}"}', {"query": NASTY}),
    ('{"q": {{query}}, "n": 1}', {"q": NASTY, "n": 1}),
    ('{"messages": [{"role": "user", "content": "Customer asks: {{ query }}"}]}',
     {"messages": [{"role": "user", "content": "Customer asks: " + NASTY}]}),
    ('{"a": "x \\" {{query}}", "b": "{{query}}"}', {"a": 'x " ' + NASTY, "b": NASTY}),
])
def test_render_body_is_valid_json_for_any_query(template: str, expected: dict) -> None:
    assert json.loads(render_body(template, NASTY)) == expected


def test_body_template_checks() -> None:
    with pytest.raises(ValueError, match="must contain"):
        check_body_template('{"query": "fixed"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        check_body_template('{"query": "{{query}}",}')
    with pytest.raises(TargetError, match="not valid JSON"):
        render_body("{{query}} and more", "x")


def test_answer_paths() -> None:
    data = {"choices": [{"message": {"content": "hi"}}], "data": {"items": [1, 2, 3]}}
    assert parse_answer_path("choices[0].message.content") == ["choices", 0, "message", "content"]
    assert parse_answer_path("$.data.items[-1]") == ["data", "items", -1]
    assert extract_answer(data, "choices[0].message.content") == "hi"
    assert extract_answer(data, "data.items[-1]") == 3
    assert extract_answer(data, "") == data
    with pytest.raises(TargetError, match=r"choices\[0\]\.message has no key 'text' \(keys: content\)"):
        extract_answer(data, "choices[0].message.text")
    with pytest.raises(TargetError, match="has 1 items, no \\[3\\]"):
        extract_answer(data, "choices[3]")
    with pytest.raises(TargetError, match="data is not a list"):
        extract_answer(data, "data[0]")
    with pytest.raises(TargetError, match="cannot read it"):
        parse_answer_path("a[x]")


def test_secret_references_resolve_at_run_time_only() -> None:
    env = {"APP_TOKEN": TOKEN}
    secrets = {"myapp": {"token": "from-secrets"}}
    assert resolve_references("Bearer ${ENV:APP_TOKEN}", env=env) == f"Bearer {TOKEN}"
    assert resolve_references("${SECRET:myapp.token}", env={}, secrets=secrets) == "from-secrets"
    with pytest.raises(TargetError, match=r"header 'X-Key': environment variable NOPE is not set"):
        resolve_references("${ENV:NOPE}", env=env, where="header 'X-Key'")
    with pytest.raises(TargetError, match="secret 'myapp.other' is not in"):
        resolve_references("${SECRET:myapp.other}", env={}, secrets=secrets)


def test_configs_refuse_literal_secrets_and_bad_fields() -> None:
    with pytest.raises(TargetError, match="header 'Authorization' looks like a credential"):
        parse_target({"kind": "http", "name": "app", "url": "http://h/chat",
                      "headers": {"Authorization": "Bearer abc123"}})
    ok = parse_target({"kind": "http", "name": "app", "url": "http://h/chat",
                       "headers": {"Authorization": "Bearer ${ENV:APP_TOKEN}", "X-Team": "qa"}})
    assert isinstance(ok, HttpTarget) and ok.headers["X-Team"] == "qa"
    with pytest.raises(TargetError, match="url: .*must start with http"):
        parse_target({"kind": "http", "name": "app", "url": "h/chat"})
    with pytest.raises(TargetError, match="GET target must put"):
        parse_target({"kind": "http", "name": "app", "url": "http://h/search", "method": "get"})
    with pytest.raises(TargetError, match="API key must be a reference"):
        parse_target({"kind": "openai", "name": "bot", "base_url": "http://h/v1", "model": "m",
                      "api_key": "sk-live-123"})
    with pytest.raises(TargetError, match="headers line 2"):
        parse_headers("X-A: 1\nnot a header")
    assert parse_headers("X-A: 1\n\nAuthorization: Bearer ${ENV:T}") == {"X-A": "1", "Authorization": "Bearer ${ENV:T}"}


# ------------------------------------------------------------------------------------- runs


def _project_with_kept(store: Store, texts: list[str]) -> tuple[int, list[int]]:
    pid = store.create_project("Target project").id
    tup = {"user_type": "shop owner", "intent": "refund"}
    tid = qs.add_tuples(store, pid, [tup], "manual").ids[0]
    ids = qs.add_queries(store, pid, [qs.NewQuery(text=t, tuple_id=tid, dimensions=tup, status="kept")
                                      for t in texts]).ids
    return pid, ids


def _http_target(app: TargetApp, **changes) -> HttpTarget:
    base = dict(name="my app", url=app.url("/chat"), headers={"Authorization": "Bearer ${ENV:APP_TOKEN}"},
                body_template='{"query": "{{query}}", "user": "evalboard"}', answer_path="data.answer",
                concurrency=4, max_retries=2)
    base.update(changes)
    return HttpTarget(**base)


def test_run_stores_every_query_as_a_trace_and_reruns_add_nothing(
        store: Store, target_app: TargetApp) -> None:
    target_app.token = TOKEN
    texts = ["where is my refund", NASTY, "refund [500]", "refund [429] please", "refund [flaky]",
             "refund [slow]", "refund [text]"] + [f"refund question {i}" for i in range(8)]
    pid, ids = _project_with_kept(store, texts)
    tid = save_target(store, pid, _http_target(target_app))
    # The database holds the reference, never the token.
    assert "${ENV:APP_TOKEN}" in json.dumps(qs.get_target(store, tid).config)
    run = start_run(store, pid, tid, round_name="first run")
    assert store.get_round(run.round_id).sampling["run_id"] == run.id

    env = {"APP_TOKEN": TOKEN}
    progress: list[int] = []
    report = run_target(store, run.id, env=env, retry_base_delay=0.01, flush_every=4,
                        on_progress=lambda done, total: progress.append(done))
    assert (report.sent, report.succeeded, report.failed, report.cancelled) == (15, 13, 2, 0)
    assert progress == list(range(1, 16))
    assert target_app.max_in_flight <= 4

    traces = {t.metadata["query_id"]: t for t in
              (store.get_trace(i) for i in store.round_trace_ids(run.round_id))}
    assert sorted(traces) == sorted(ids) and store.get_round(run.round_id).trace_count == 15
    by_text = {t.input["query"]: t for t in traces.values()}
    ok = by_text["where is my refund"]
    assert ok.output == "answer to: where is my refund" and ok.error is None
    assert ok.source == "target:my app" and ok.source_id == f"run{run.id}-query{ids[0]}"
    assert ok.dimensions == {"user_type": "shop owner", "intent": "refund"}
    assert ok.latency_ms is not None and ok.latency_ms > 0 and ok.timestamp is not None
    assert by_text[NASTY].output == f"answer to: {NASTY}"  # quotes and newlines went through intact
    assert by_text["refund [slow]"].latency_ms >= 250
    failed = by_text["refund [500]"]
    assert failed.error.startswith("HTTP 500") and "after 3 attempts" in failed.error
    assert failed.metadata["http_status"] == 500 and failed.metadata["attempts"] == 3
    assert by_text["refund [429] please"].error is None and by_text["refund [429] please"].metadata["attempts"] == 2
    assert by_text["refund [flaky]"].error is None
    assert "not JSON" in by_text["refund [text]"].error and by_text["refund [text]"].output == "plain text, not JSON"
    assert TOKEN not in json.dumps([t.model_dump(mode="json") for t in traces.values()])
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in target_app.requests)
    saved = qs.get_run(store, run.id)
    assert (saved.status, saved.succeeded, saved.failed) == ("finished", 13, 2)

    # Running the same run again sends nothing and stores nothing twice.
    hits = len(target_app.requests)
    again = run_target(store, run.id, env=env, retry_base_delay=0.01)
    assert (again.sent, again.skipped) == (0, 15)
    assert len(target_app.requests) == hits
    assert store.count_traces(pid) == 15
    # Retrying failures re-sends only the failed calls and replaces their traces.
    assert sorted(pending_query_ids(store, saved, retry_errors=True)) == sorted(
        [ids[2], ids[6]])
    retried = run_target(store, run.id, env=env, retry_errors=True, retry_base_delay=0.01)
    assert (retried.sent, retried.failed) == (2, 2)
    assert store.count_traces(pid) == 15 and store.count_traces(pid, TraceFilter(errors_only=True)) == 2


def test_missing_secret_fails_before_anything_is_sent(sqlite_store: Store, target_app: TargetApp) -> None:
    pid, _ = _project_with_kept(sqlite_store, ["a", "b"])
    run = start_run(sqlite_store, pid, save_target(sqlite_store, pid, _http_target(target_app)), round_name="r")
    with pytest.raises(TargetError, match="environment variable APP_TOKEN is not set"):
        run_target(sqlite_store, run.id, env={})
    assert target_app.requests == [] and sqlite_store.count_traces(pid) == 0


def test_round_names_and_empty_runs_are_checked(sqlite_store: Store, target_app: TargetApp) -> None:
    pid = sqlite_store.create_project("Empty").id
    tid = save_target(sqlite_store, pid, _http_target(target_app))
    with pytest.raises(StoreError, match="no queries to send"):
        start_run(sqlite_store, pid, tid, round_name="r")
    assert sqlite_store.list_rounds(pid) == []  # no round left behind
    sqlite_store.create_round(pid, "taken")
    with pytest.raises(StoreError, match="already has a round named 'taken'"):
        start_run(sqlite_store, pid, tid, round_name="taken", query_ids=[1])


def test_cancelled_run_resumes_without_duplicates(sqlite_store: Store, target_app: TargetApp) -> None:
    store = sqlite_store
    pid, ids = _project_with_kept(store, [f"question {i} [slow]" for i in range(12)])
    target_app.slow_seconds = 0.05
    target = _http_target(target_app, headers={}, concurrency=2)
    run = start_run(store, pid, save_target(store, pid, target), round_name="r")
    cancel = threading.Event()

    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            cancel.set()

    first = run_target(store, run.id, cancel=cancel, on_progress=stop_after_three)
    assert first.cancelled > 0 and first.sent >= 3
    assert qs.get_run(store, run.id).status == "cancelled"
    stored_first = store.count_traces(pid)
    assert stored_first == first.sent
    second = run_target(store, run.id)
    assert second.skipped == stored_first and second.sent == 12 - stored_first
    assert store.count_traces(pid) == 12 and qs.get_run(store, run.id).status == "finished"
    assert all(target_app.hits(f"question {i} [slow]") == 1 for i in range(12))


def test_cancel_during_a_retry_wait_stores_no_trace(sqlite_store: Store, target_app: TargetApp) -> None:
    pid, ids = _project_with_kept(sqlite_store, ["always fails [500]"])
    run = start_run(sqlite_store, pid, save_target(sqlite_store, pid, _http_target(target_app, headers={})),
                    round_name="r")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()  # while the run waits seconds before its first retry
    report = run_target(sqlite_store, run.id, cancel=cancel, retry_base_delay=5.0)
    assert (report.sent, report.cancelled) == (0, 1)
    assert sqlite_store.count_traces(pid) == 0  # an interrupted wait is not a failed call
    assert pending_query_ids(sqlite_store, qs.get_run(sqlite_store, run.id)) == ids
    assert qs.get_run(sqlite_store, run.id).status == "cancelled"


def test_answer_path_miss_keeps_the_body_and_get_targets_encode_the_query(target_app: TargetApp) -> None:
    miss = TargetCaller(_http_target(target_app, headers={}, answer_path="data.reply"))
    result = miss.call("hello")
    assert "has no key 'reply' (keys: answer, length)" in result.error
    assert result.output["data"]["answer"] == "answer to: hello"
    get = TargetCaller(HttpTarget(name="search", method="GET", url=target_app.url("/search?q={{query}}"),
                                  answer_path="data.answer"))
    answer = get.call("a&b=c d/é")
    assert answer.error is None and answer.output == "answer to: a&b=c d/é"
    refused = TargetCaller(_http_target(target_app, url=target_app.url("/nowhere"), headers={})).call("x")
    assert refused.error.startswith("HTTP 404") and refused.attempts == 1  # not retried


def test_openai_target_sends_the_system_prompt_and_never_uses_the_cache(
        sqlite_store: Store, fake_openai: FakeOpenAI) -> None:
    store = sqlite_store
    fake_openai.api_key = "sk-app-key-0000"
    pid, ids = _project_with_kept(store, ["refund please", "where is my money"])
    target = OpenAITarget(name="bot", base_url=fake_openai.base_url, model="fake-model",
                          system_prompt="You are AcmeBooks support.", api_key="${ENV:BOT_KEY}")
    tid = save_target(store, pid, target)
    env = {"BOT_KEY": "sk-app-key-0000"}
    for name in ("one", "two"):
        run = start_run(store, pid, tid, round_name=name)
        report = run_target(store, run.id, env=env)
        assert (report.succeeded, report.failed) == (2, 0)
    assert fake_openai.count() == 4  # the second run asked again: no cache for targets
    sent = fake_openai.chat_requests[0].json["messages"]
    assert sent[0] == {"role": "system", "content": "You are AcmeBooks support."}
    trace = store.get_trace(store.round_trace_ids(run.round_id)[0])
    assert trace.output.startswith("echo: ") and trace.metadata["model"] == "fake-model"
    assert trace.input_tokens is not None
    fake_openai.fail_next(5, 500)
    failing = TargetCaller(target.model_copy(update={"max_retries": 1}), env=env, retry_base_delay=0.01).call("x")
    assert "HTTP 500" in failing.error and "sk-app-key" not in failing.error
