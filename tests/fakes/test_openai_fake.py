"""The fake OpenAI server answers the real SDK the way an OpenAI-compatible server does."""

from __future__ import annotations

import io
import json
import math
import threading

import jsonschema
import openai
import pytest

from tests.fakes.openai_server import (
    CHAT_PATH,
    MALFORMED,
    FakeOpenAI,
    Fault,
    fake_openai,  # noqa: F401  (pytest fixture)
)


def sdk(fake: FakeOpenAI, key: str = "test-key", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=key, max_retries=0, **kwargs)


def ask(client: openai.OpenAI, text: str, **params):
    return client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": text}], **params)


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["pass", "fail"]},
        "reasons": {"type": "array", "items": {"$ref": "#/$defs/Reason"}, "minItems": 2},
        "score": {"type": "integer", "minimum": 3},
        "note": {"anyOf": [{"type": "string", "minLength": 5}, {"type": "null"}]},
    },
    "required": ["label", "reasons", "score", "note"],
    "$defs": {"Reason": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
}


def test_plain_chat_has_openai_shape_and_usage(fake_openai):
    answer = ask(sdk(fake_openai), "hello there friend")
    assert answer.choices[0].message.content == "echo: hello there friend"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "fake-model"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (3, 4, 7)
    assert fake_openai.count() == 1


def test_default_json_schema_answer_is_valid_for_the_schema(fake_openai):
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}
    content = ask(sdk(fake_openai), "judge this", response_format=fmt).choices[0].message.content
    value = json.loads(content)
    jsonschema.validate(value, SCHEMA)
    assert value["label"] == "pass" and len(value["reasons"]) == 2 and value["score"] == 3


def test_json_object_default_is_an_object(fake_openai):
    content = ask(sdk(fake_openai), "json please", response_format={"type": "json_object"}).choices[0].message.content
    assert json.loads(content) == {}


def test_scripting_order_queue_then_responder_then_rules_then_default(fake_openai):
    client = sdk(fake_openai)
    fake_openai.add_rule(r"refund", "rule answer")
    fake_openai.respond_with(lambda req: "responder answer" if "vip" in req["messages"][-1]["content"] else None)
    fake_openai.queue({"queued": 1}, "second queued")
    assert ask(client, "refund vip").choices[0].message.content == '{"queued": 1}'
    assert ask(client, "refund vip").choices[0].message.content == "second queued"
    assert ask(client, "refund vip").choices[0].message.content == "responder answer"
    assert ask(client, "refund please").choices[0].message.content == "rule answer"
    assert ask(client, "something else").choices[0].message.content == "echo: something else"


def test_embeddings_are_deterministic_normalised_and_similar_for_similar_texts(fake_openai):
    client = sdk(fake_openai)
    texts = ["the refund was late", "my refund was late again", "weather in paris tomorrow"]
    first = [d.embedding for d in client.embeddings.create(model="fake-embedding", input=texts).data]
    floats = [d.embedding for d in client.embeddings.create(model="fake-embedding", input=texts,
                                                            encoding_format="float").data]
    assert len(first[0]) == 256
    for a, b in zip(first, floats):  # base64 (the SDK default) and float agree
        assert a == pytest.approx(b, abs=1e-6)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in first)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(first[0], first[1]) > cos(first[0], first[2]) + 0.3


def test_models_list(fake_openai):
    assert [m.id for m in sdk(fake_openai).models.list()] == ["fake-model", "fake-embedding"]


def test_files_and_batch_progress_to_completed_with_scripted_answers():
    with FakeOpenAI(batch_polls=3) as fake:
        client = sdk(fake)
        fake.add_rule("explode", Fault(400, "bad request line"))
        lines = [
            {"custom_id": "a", "method": "POST", "url": CHAT_PATH,
             "body": {"model": "fake-model", "messages": [{"role": "user", "content": "one"}]}},
            {"custom_id": "b", "method": "POST", "url": CHAT_PATH,
             "body": {"model": "fake-model", "messages": [{"role": "user", "content": "explode"}]}},
        ]
        data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        upload = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        assert client.files.content(upload.id).content == data
        assert client.files.retrieve(upload.id).bytes == len(data)

        batch = client.batches.create(input_file_id=upload.id, endpoint=CHAT_PATH, completion_window="24h")
        assert batch.status == "validating"
        seen = [client.batches.retrieve(batch.id).status for _ in range(4)]
        assert seen == ["in_progress", "in_progress", "completed", "completed"]
        done = client.batches.retrieve(batch.id)
        assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (2, 1, 1)
        out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        err = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert out[0]["custom_id"] == "a"
        assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo: one"
        assert err[0]["custom_id"] == "b" and err[0]["response"]["status_code"] == 400


def test_batch_cancel(fake_openai):
    client = sdk(fake_openai)
    line = {"custom_id": "a", "method": "POST", "url": CHAT_PATH,
            "body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}
    upload = client.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint=CHAT_PATH, completion_window="24h")
    assert client.batches.cancel(batch.id).status == "cancelling"
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.output_file_id is None


def test_fail_next_sends_status_and_retry_after_then_recovers(fake_openai):
    client = sdk(fake_openai)
    fake_openai.fail_next(2, 429, retry_after=3, retry_after_ms=2500)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            ask(client, "hi")
        assert info.value.response.headers["retry-after"] == "3"
        assert info.value.response.headers["retry-after-ms"] == "2500"
    assert ask(client, "hi").choices[0].message.content == "echo: hi"
    assert [r.status for r in fake_openai.chat_requests] == [429, 429, 200]


def test_fail_fraction_is_seeded(fake_openai):
    client = sdk(fake_openai)

    def statuses():
        fake_openai.fail_fraction(0.3, 503, seed=7)
        out = []
        for _ in range(40):
            try:
                ask(client, "x")
                out.append(200)
            except openai.InternalServerError:
                out.append(503)
        return out

    first, second = statuses(), statuses()
    assert first == second
    assert 4 <= first.count(503) <= 20


def test_malformed_and_rejected_response_format(fake_openai):
    client = sdk(fake_openai)
    fake_openai.malformed_next(1)
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    assert ask(client, "a", response_format=fmt).choices[0].message.content == MALFORMED
    json.loads(ask(client, "a", response_format=fmt).choices[0].message.content)  # valid again
    assert ask(client, "plain is never broken").choices[0].message.content.startswith("echo")

    fake_openai.reject_response_format(("json_schema",))
    with pytest.raises(openai.BadRequestError, match="json_schema"):
        ask(client, "a", response_format=fmt)
    ask(client, "a", response_format={"type": "json_object"})  # still accepted


def test_hanging_request_times_out_then_release(fake_openai):
    client = sdk(fake_openai, timeout=0.3)
    fake_openai.hang_next(1)
    with pytest.raises(openai.APITimeoutError):
        ask(client, "hang")
    fake_openai.release_hangs()
    assert ask(client, "fine").choices[0].message.content == "echo: fine"


def test_wrong_key_gets_401_quoting_the_key():
    with FakeOpenAI(api_key="right-key") as fake:
        with pytest.raises(openai.AuthenticationError, match="wrong-key"):
            ask(sdk(fake, key="wrong-key"), "hi")
        assert ask(sdk(fake, key="right-key"), "hi").choices[0].message.content == "echo: hi"


def test_serves_64_concurrent_requests_without_serialising():
    with FakeOpenAI(latency=0.2) as fake:
        client = sdk(fake)
        barrier = threading.Barrier(64)
        errors = []

        def call():
            barrier.wait()
            try:
                ask(client, "parallel")
            except Exception as exc:  # pragma: no cover - shown by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert errors == []
        assert fake.count() == 64
        assert fake.max_in_flight >= 48  # serialised handling would show 1


def test_per_request_latency_function():
    with FakeOpenAI(latency=lambda req: 0.3 if "slow" in json.dumps(req) else 0.0) as fake:
        client = sdk(fake)
        ask(client, "slow one")
        ask(client, "fast one")
        slow, fast = fake.chat_requests
        assert slow.finished - slow.started >= 0.3
        assert fast.finished - fast.started < 0.3
