"""integrations/llm.py against the fake OpenAI server, through the real openai SDK."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from pydantic import BaseModel, Field

from integrations.retry_after import retry_after_seconds
from integrations.llm import (
    DictCache,
    LLMCallError,
    LLMClient,
    LLMNotConfigured,
    LLMOutputError,
    LLMResult,
    LLMSettings,
    _TokenBucket,
    extract_json,
    parse_json_answer,
    response_format_for,
)
from tests.fakes.openai_server import MALFORMED, FakeOpenAI, Fault
from tests.fakes.openai_server import fake_openai  # noqa: F401  (pytest fixture)

KEY = "sk-test-SECRET-0123456789"


class Verdict(BaseModel):
    label: str = Field(pattern="^(pass|fail)$")
    reason: str


class Queries(BaseModel):
    queries: list[str] = Field(min_length=1)


def make_client(fake: FakeOpenAI, cache=None, **changes) -> LLMClient:
    settings = LLMSettings(base_url=fake.base_url, api_key=KEY, model="fake-model", retry_base_delay=0.02)
    return LLMClient(settings.replace(**changes), cache)


# ------------------------------------------------------------------ settings


def test_settings_precedence_explicit_then_env_then_secrets():
    secrets = {"llm": {"base_url": "http://secrets/v1", "model": "secret-model", "api_key": "k1",
                       "models": {"judge": "judge-from-secrets", "querygen": "qg"},
                       "prices": {"secret-model": [1, 2]}}}
    env = {"EVALBOARD_LLM_MODEL": "env-model", "EVALBOARD_LLM_MODEL_JUDGE": "env-judge",
           "EVALBOARD_LLM_TEMPERATURE": "0.3", "EVALBOARD_LLM_PRICES": '{"env-model": [0.5, 1.5]}'}
    s = LLMSettings.resolve({"base_url": "http://explicit/v1", "model": "", "api_key": None},
                            env=env, secrets=secrets)
    assert s.base_url == "http://explicit/v1"  # explicit wins
    assert s.model == "env-model"  # "" in explicit is ignored; env beats secrets
    assert s.api_key == "k1"
    assert s.temperature == 0.3
    assert s.model_for("judge") == "env-judge" and s.model_for("querygen") == "qg"
    assert s.model_for("other") == "env-model"
    assert s.prices == {"secret-model": (1.0, 2.0), "env-model": (0.5, 1.5)}
    assert s.configured


def test_settings_from_openai_env_names():
    s = LLMSettings.resolve(env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://h/v1",
                                 "EVALBOARD_LLM_MODEL": "m"})
    assert (s.api_key, s.base_url, s.model) == ("sk-x", "http://h/v1", "m")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"EVALBOARD_LLM_MAX_CONCURRENCY": "lots"}, "'max_concurrency' in environment must be a whole number"),
        ({"EVALBOARD_LLM_TEMPERATURE": "warm"}, "'temperature' in environment must be a number"),
        ({"EVALBOARD_LLM_PRICES": "{oops"}, "EVALBOARD_LLM_PRICES must be a JSON object"),
        ({"EVALBOARD_LLM_PRICES": '{"m": [1]}'}, "price for 'm' must be"),
        ({"EVALBOARD_LLM_BASE_URL": "ftp://x"}, "must start with http"),
    ],
)
def test_bad_settings_say_what_and_where(env, message):
    with pytest.raises(ValueError, match=message):
        LLMSettings.resolve(env=env)


def test_unknown_secret_key_is_named():
    with pytest.raises(ValueError, match="unknown LLM setting 'modle' in secrets"):
        LLMSettings.resolve(env={}, secrets={"llm": {"modle": "x"}})


def test_not_configured_says_how_in_one_line():
    nothing = LLMSettings.resolve(env={})
    assert not nothing.configured
    line = nothing.why_not_configured()
    assert "\n" not in line and "EVALBOARD_LLM_MODEL" in line and "[llm]" in line
    assert "EVALBOARD_LLM_MODEL" in LLMSettings(base_url="http://h/v1").why_not_configured()
    assert "EVALBOARD_LLM_BASE_URL" in LLMSettings(model="m").why_not_configured()
    assert LLMSettings(api_key="k", model="m").why_not_configured() is None

    client = LLMClient(nothing)
    with pytest.raises(LLMNotConfigured) as info:
        client.complete("hi")
    assert str(info.value) == line
    with pytest.raises(LLMNotConfigured):
        client.map(["a"], "complete")


def test_secrets_never_in_repr():
    s = LLMSettings(base_url="https://user:pw-secret@host/v1", api_key=KEY, model="m")
    for text in (repr(s), str(s), repr(LLMClient(s))):
        assert KEY not in text and "pw-secret" not in text


# ------------------------------------------------------------------ plain calls, cache, cost


def test_same_call_twice_costs_one_request(fake_openai):
    cache = DictCache()
    client = make_client(fake_openai, cache)
    first = client.complete([{"role": "user", "content": "hello there"}], feature="querygen")
    second = client.complete([{"role": "user", "content": "hello there"}], feature="querygen")
    assert fake_openai.count() == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text == "echo: hello there"
    record = next(iter(cache.records.values()))
    assert set(record) == {"model", "feature", "request", "response", "input_tokens", "output_tokens", "cost"}
    assert record["feature"] == "querygen" and record["request"]["messages"][0]["content"] == "hello there"

    # A different parameter is a different call; use_cache=False asks again.
    client.complete("hello there", temperature=0.9)
    client.complete("hello there", use_cache=False)
    assert fake_openai.count() == 3
    summary = client.usage_summary()["querygen"]
    assert (summary["calls"], summary["cache_hits"]) == (1, 1)


def test_cost_is_exact_from_price_table_and_unknown_model_is_none(fake_openai):
    client = make_client(fake_openai, prices={"fake-model": (2.5, 10.0)})
    result = client.complete("one two three four", feature="judge")
    usage = fake_openai.chat_requests[-1].response["usage"]
    assert (result.input_tokens, result.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    expected = (usage["prompt_tokens"] * 2.5 + usage["completion_tokens"] * 10.0) / 1_000_000
    assert result.cost == pytest.approx(expected, rel=1e-12)

    unknown = client.complete("hi", model="other-model", feature="judge")
    assert unknown.cost is None and unknown.model == "other-model"
    summary = client.usage_summary()["judge"]
    assert summary["calls"] == 2 and summary["unpriced_calls"] == 1
    assert summary["cost"] == pytest.approx(expected, rel=1e-12)
    assert summary["input_tokens"] == usage["prompt_tokens"] + unknown.input_tokens


def test_feature_model_override_is_sent(fake_openai):
    client = make_client(fake_openai, feature_models={"judge": "judge-model"})
    client.complete("x", feature="judge")
    client.complete("x", feature="querygen")
    assert [r.json["model"] for r in fake_openai.chat_requests] == ["judge-model", "fake-model"]


def test_unknown_params_go_in_the_body(fake_openai):
    make_client(fake_openai).complete("x", max_tokens=5, top_k=3)
    body = fake_openai.chat_requests[0].json
    assert body["max_tokens"] == 5 and body["top_k"] == 3


# ------------------------------------------------------------------ structured output


def test_structured_uses_strict_json_schema(fake_openai):
    fake_openai.queue({"label": "fail", "reason": "wrong city"})
    obj, result = make_client(fake_openai).structured("judge this", Verdict)
    assert obj == Verdict(label="fail", reason="wrong city")
    fmt = fake_openai.chat_requests[0].json["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    assert isinstance(result, LLMResult) and not result.cached


def test_structured_falls_back_to_json_mode_then_plain_and_remembers(fake_openai):
    client = make_client(fake_openai)
    fake_openai.reject_response_format(("json_schema",))
    fake_openai.queue({"label": "pass", "reason": "ok"}, {"label": "pass", "reason": "ok again"})
    assert client.structured("first", Verdict)[0].reason == "ok"
    kinds = [(r.status, (r.json.get("response_format") or {}).get("type")) for r in fake_openai.chat_requests]
    assert kinds == [(400, "json_schema"), (200, "json_object")]
    assert "JSON Schema" in fake_openai.chat_requests[1].json["messages"][0]["content"]
    client.structured("second", Verdict)  # goes straight to JSON mode
    assert fake_openai.count() == 3

    fake_openai.reject_response_format(("json_schema", "json_object"))
    fake_openai.queue('Sure! Here it is:\n```json\n{"label": "fail", "reason": "plain"}\n```')
    plain_client = make_client(fake_openai)
    assert plain_client.structured("third", Verdict)[0].reason == "plain"
    last = fake_openai.chat_requests[-1].json
    assert "response_format" not in last and "JSON Schema" in last["messages"][0]["content"]


def test_malformed_answer_is_retried_once_with_the_error(fake_openai):
    fake_openai.queue(MALFORMED, {"label": "pass", "reason": "fine"})
    obj, result = make_client(fake_openai).structured("judge", Verdict)
    assert obj.reason == "fine" and fake_openai.count() == 2
    retry = fake_openai.chat_requests[1].json["messages"]
    assert retry[-2] == {"role": "assistant", "content": MALFORMED}
    assert "not valid" in retry[-1]["content"]
    first_usage = fake_openai.chat_requests[0].response["usage"]["prompt_tokens"]
    assert result.input_tokens > first_usage  # both requests are counted


def test_always_invalid_raises_output_error_naming_the_problem(fake_openai):
    fake_openai.respond_with(lambda req: {"label": "maybe", "reason": "unsure"})
    with pytest.raises(LLMOutputError) as info:
        make_client(fake_openai, output_retries=2).structured("judge", Verdict)
    assert fake_openai.count() == 3
    assert "Verdict" in str(info.value) and "label" in str(info.value)
    assert len(info.value.problems) == 3

    fake_openai.respond_with(lambda req: MALFORMED)
    with pytest.raises(LLMOutputError, match="no JSON object"):
        make_client(fake_openai, output_retries=0).structured("judge", Verdict)


def test_structured_cache_hit_and_invalid_answers_not_cached(fake_openai):
    cache = DictCache()
    client = make_client(fake_openai, cache)
    fake_openai.queue(MALFORMED, {"label": "pass", "reason": "r"})
    client.structured("judge", Verdict)
    obj, result = client.structured("judge", Verdict)
    assert fake_openai.count() == 2 and result.cached and obj.label == "pass"
    assert len(cache) == 1


def test_json_helpers():
    assert extract_json('noise {"a": {"b": 1}} trailing {"c": 2}') == {"a": {"b": 1}}
    assert extract_json("```json\n{\"a\": 1}\n```") == {"a": 1}
    with pytest.raises(ValueError):
        extract_json("no json here")
    with pytest.raises(LLMOutputError, match="reason: Field required"):
        parse_json_answer('{"label": "pass"}', Verdict)

    class Free(BaseModel):
        counts: dict[str, int]

    assert response_format_for(Free)["json_schema"]["strict"] is False  # open maps cannot be strict


# ------------------------------------------------------------------ many calls


def test_map_runs_in_parallel_up_to_the_limit():
    with FakeOpenAI(latency=0.2) as fake:
        client = make_client(fake)
        results = client.map([f"q{i}" for i in range(32)], "complete", concurrency=16)
        assert all(r.ok for r in results)
        assert [r.value.text for r in results] == [f"echo: q{i}" for i in range(32)]
        assert 12 <= fake.max_in_flight <= 16

        fake.reset()
        capped = make_client(fake, max_concurrency=4)
        capped.map([f"c{i}" for i in range(12)], "complete", concurrency=16)
        assert fake.max_in_flight <= 4


def test_map_structured_with_common_arguments(fake_openai):
    fake_openai.respond_with(lambda req: {"queries": [req["messages"][-1]["content"].upper()]})
    results = make_client(fake_openai).map(["a", {"messages": "b", "temperature": 0.5}], "structured",
                                           schema=Queries, feature="querygen")
    assert [r.value[0].queries for r in results] == [["A"], ["B"]]
    assert fake_openai.chat_requests[-1].json.get("temperature") in (None, 0.5)
    assert any(r.json.get("temperature") == 0.5 for r in fake_openai.chat_requests)


def test_429_retry_after_is_honoured(fake_openai):
    client = make_client(fake_openai)
    fake_openai.fail_next(1, 429, retry_after=1)
    assert client.complete("x").text == "echo: x"
    (event,) = client.retry_events
    assert event.status == 429 and event.retry_after == 1 and event.wait >= 1.0
    first, second = fake_openai.chat_requests
    assert second.started - first.finished >= 0.95  # measured at the server

    fake_openai.fail_next(1, 429, retry_after_ms=300)
    client.complete("y")
    assert client.retry_events[-1].wait >= 0.3


def test_500_retried_then_success(fake_openai):
    fake_openai.fail_next(2, 500)
    result = make_client(fake_openai).complete("x")
    assert result.text == "echo: x"
    assert [r.status for r in fake_openai.chat_requests] == [500, 500, 200]


def test_timeout_is_retried(fake_openai):
    fake_openai.hang_next(1)
    client = make_client(fake_openai, timeout=0.3)
    assert client.complete("x").text == "echo: x"
    assert client.retry_events[0].status is None
    fake_openai.release_hangs()


def test_failures_are_captured_per_item(fake_openai):
    fake_openai.add_rule("poison", Fault(400, "this input is not allowed"))
    fake_openai.add_rule("flaky", Fault(503, "overloaded"))
    client = make_client(fake_openai, max_retries=2)
    results = client.map(["fine 1", "poison", "flaky", "fine 2"], "complete", concurrency=2)
    assert [r.status for r in results] == ["ok", "error", "error", "ok"]
    poison, flaky = results[1].error, results[2].error
    assert isinstance(poison, LLMCallError) and poison.status == 400 and poison.attempts == 1
    assert "not allowed" in str(poison)
    assert flaky.status == 503 and flaky.attempts == 3 and "after 3 attempts" in str(flaky)
    assert client.usage_summary()["default"]["failures"] == 2


def test_cancel_stops_launching_and_returns_promptly():
    with FakeOpenAI(latency=0.2) as fake:
        client = make_client(fake)
        cancel = threading.Event()
        seen = []

        def progress(done, total):
            seen.append((done, threading.get_ident()))
            if done == 4:
                cancel.set()

        started = time.monotonic()
        results = client.map([f"q{i}" for i in range(60)], "complete", concurrency=4,
                             on_progress=progress, cancel=cancel)
        elapsed = time.monotonic() - started
        time.sleep(0.3)  # let calls already on the wire land
        assert len(results) == 60
        assert sum(r.ok for r in results) >= 4
        assert sum(r.status == "cancelled" for r in results) >= 48
        assert fake.count() <= 12  # 60 would mean cancel was ignored
        assert elapsed < 0.2 * 60 / 4  # well before the whole run would have finished
        assert {ident for _, ident in seen} == {threading.get_ident()}  # progress in the caller's thread


def test_cancel_interrupts_a_retry_wait(fake_openai):
    fake_openai.fail_next(1, 429, retry_after=30)
    client = make_client(fake_openai)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    (result,) = client.map(["x"], "complete", cancel=cancel)
    assert result.status == "cancelled"
    assert time.monotonic() - started < 5


def test_requests_per_minute_budget_spaces_requests(fake_openai):
    client = make_client(fake_openai, requests_per_minute=1200)  # 20/s, bursts of 20
    client.map([f"q{i}" for i in range(30)], "complete", concurrency=8)
    starts = sorted(r.started for r in fake_openai.chat_requests)
    assert starts[-1] - starts[0] >= 0.4  # the last 10 wait 0.05 s each


def test_token_bucket_math():
    bucket = _TokenBucket(per_minute=600)  # 10/s, holds 10
    assert bucket.reserve(10) == 0.0
    assert bucket.reserve(5) == pytest.approx(0.5, abs=0.05)
    bucket.give_back(5)
    assert bucket.reserve(1) == pytest.approx(0.1, abs=0.05)


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds({"retry-after": date}) <= 31
    assert retry_after_seconds({"retry-after": "soon"}) is None


# ------------------------------------------------------------------ keys stay secret


def test_key_never_in_errors_or_logs(caplog):
    with FakeOpenAI(api_key="the-right-key") as fake:
        client = make_client(fake)
        caplog.set_level(logging.DEBUG, logger="evalboard.llm")
        with pytest.raises(LLMCallError) as info:
            client.complete("x")
        error = info.value
        assert error.status == 401 and "Incorrect API key" in str(error)
        for text in (str(error), repr(error), error.server_message, caplog.text, repr(client)):
            assert KEY not in text
        assert error.__cause__ is None  # the SDK exception (and its request headers) is not attached

        fake.fail_next(1, 503, message=f"upstream said Bearer {KEY}")
        good = make_client(fake, api_key="the-right-key")
        good.complete("y")
        assert KEY not in caplog.text


# ------------------------------------------------------------------ batch API


def test_batch_round_trip_fills_the_cache():
    with FakeOpenAI(batch_polls=2) as fake:
        cache = DictCache()
        client = make_client(fake, cache, prices={"fake-model": (1.0, 1.0)})
        fake.add_rule("explode", Fault(400, "cannot judge this"))
        fake.add_rule("judge", {"label": "fail", "reason": "batch"})
        batch_id = client.submit_batch([
            ("t1", "hello", {}),
            ("t2", "judge me", {"schema": Verdict}),
            ("t3", "explode", None),
        ], feature="judge")
        statuses = []
        while True:
            status = client.poll_batch(batch_id)
            statuses.append(status.status)
            if status.done:
                break
        assert statuses == ["in_progress", "completed"]
        results = client.fetch_batch_results(batch_id)
        assert results["t1"].text == "echo: hello" and results["t1"].cost is not None
        assert parse_json_answer(results["t2"].text, Verdict).reason == "batch"
        assert isinstance(results["t3"], LLMCallError) and results["t3"].status == 400
        assert "cannot judge" in str(results["t3"])

        before = fake.count()
        again = client.complete("hello", feature="judge")
        obj, _ = client.structured("judge me", Verdict, feature="judge")
        assert again.cached and obj.reason == "batch" and fake.count() == before
        assert client.usage_summary()["judge"]["calls"] == 2


def test_batch_input_errors_are_named(fake_openai):
    client = make_client(fake_openai)
    with pytest.raises(ValueError, match="custom_id 'a' is used twice"):
        client.submit_batch([("a", "x", {}), ("a", "y", {})])
    with pytest.raises(ValueError, match="batch item 0 must be"):
        client.submit_batch([("only-id",)])
