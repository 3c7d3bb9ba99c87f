"""Exporting a judge for other tools: the JSON spec, the Python module (run against the fake
OpenAI server, same verdicts and the same messages as evalboard), the Braintrust scorer file
(imported when `braintrust` is installed, else checked with `ast`) and the promptfoo YAML.

`make_judge_project` builds the project the push, page and CLI tests use too: traces shaped
like Langfuse's (source "langfuse"), a failure mode with labels, a split, a validated LLM judge
and an unvalidated one, a round, and kept queries, all through the public functions.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalboard import coding, exports, query_store
from evalboard.judges import (
    LabelPolicy,
    create_judge,
    judge_messages,
    judge_status,
    make_split,
    part_ids,
    record_run,
    run_judge,
    save_version,
)
from evalboard.judges.labels import get_mode, labels_by_trace, mode_labels
from evalboard.judges.llm_judge import trace_block
from evalboard.models import TraceRecord
from evalboard.store import Store
from tests.fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
MODE = "wrong tone email"
DEFINITION = "The drafted email blames the customer or promises what support cannot grant."
PRODUCT = "An assistant that drafts support emails for a SaaS company."
FAIL_WHEN = ("- The reply blames the customer.\n- The reply promises a refund or a guarantee.\n"
             "- Literal braces {{like this}} stay text.")
PASS_WHEN = "- The reply is courteous and promises nothing beyond policy."


@dataclass
class JudgeProject:
    project_id: int
    judge_id: int  # validated
    version_id: int
    unvalidated_judge_id: int
    run_ids: dict[str, int]  # dev and test runs of the validated judge
    round_id: int
    trace_ids: list[int]
    langfuse_ids: list[str]
    planted: set[int]  # trace ids that show the failure mode
    query_ids: list[int]

    @property
    def planted_in_langfuse(self) -> set[int]:
        """Planted traces that are in Langfuse (the last trace is a local-only one)."""
        return self.planted & set(self.trace_ids[:len(self.langfuse_ids)])


def _answer(i: int, bad: bool) -> str:
    if bad:
        return f"Dear customer {i}, this was caused by your own configuration. We refund the whole year."
    return f"Dear customer {i}, sorry for the outage; it is fixed and we will follow up."


def make_judge_project(store: Store, langfuse_ids: list[str] | None = None, *, n: int = 24,
                       name: str = "Support mail") -> JudgeProject:
    """A project whose judge 'Email tone' is validated (its v1 passed the test split) and whose
    judge 'Tone draft' (same mode) has a version but no test result."""
    langfuse_ids = list(langfuse_ids or [uuid.uuid4().hex for _ in range(n)])[:n]
    pid = store.create_project(name, PRODUCT).id
    records = [TraceRecord(source="langfuse", source_id=lf, name="draft-email",
                           input={"question": f"Why was my workspace down? ({i})"},
                           output=_answer(i, bad=i % 3 == 0))
               for i, lf in enumerate(langfuse_ids)]
    records.append(TraceRecord(source="file:old.jsonl", source_id="local-1", name="draft-email",
                               input={"question": "Local only"}, output=_answer(99, bad=True)))
    ids = store.add_traces(pid, records).trace_ids
    rnd = store.create_round(pid, "Round 1", ids)
    mode_id = coding.ensure_mode(store, pid, MODE, definition=DEFINITION)
    coding.ensure_mode(store, pid, "outdated version", definition="Recommends v3 commands.")
    planted = {tid for i, tid in enumerate(ids) if i % 3 == 0}
    for i, tid in enumerate(ids):
        if tid in planted:
            coding.save_annotation(store, pid, tid, "maya", verdict="fail", modes=[MODE],
                                   note=f"blames the customer ({i})", round_id=rnd.id)
        else:
            coding.save_annotation(store, pid, tid, "maya", verdict="pass", round_id=rnd.id)
    split = make_split(store, pid, mode_id, seed=7, policy=LabelPolicy())
    labels = labels_by_trace(mode_labels(store, pid, mode_id))
    train = part_ids(store, split.id, "train")
    examples = [{"trace_id": next(t for t in train if labels[t] == v), "verdict": v,
                 "reasoning": "It blames the customer." if v == "fail" else "Courteous, no promises."}
                for v in ("fail", "pass")]
    judge = create_judge(store, pid, mode_id, "Email tone", "llm")
    version, _ = save_version(store, judge.id, {"model": "gpt-4.1-mini", "fail_when": FAIL_WHEN,
                                                "pass_when": PASS_WHEN, "examples": examples}, note="first")

    def perfect(part: str) -> dict[int, dict[str, str]]:
        return {t: {"verdict": labels[t], "reasoning": f"trace {t}: " + ("blames" if labels[t] == "fail" else "fine")}
                for t in part_ids(store, split.id, part)}

    runs = {part: record_run(store, version.id, part, perfect(part), origin="test: scripted")
            for part in ("dev", "test")}
    other = create_judge(store, pid, mode_id, "Tone draft", "llm")
    save_version(store, other.id, {"model": "gpt-4.1-mini", "fail_when": "- rude", "pass_when": "- polite"})
    query_store.add_tuples(store, pid, [{"persona": "admin", "topic": "outage"},
                                        {"persona": "new user", "topic": "billing"}], "manual")
    tuples = query_store.list_tuples(store, pid)
    added = query_store.add_queries(store, pid, [
        query_store.NewQuery(text=f"Question {k} about {t.values['topic']}", tuple_id=t.id, dimensions=t.values,
                             status="kept", origin="manual")
        for k, t in enumerate(tuples)] + [query_store.NewQuery(text="Discarded one", status="discarded")])
    kept = added.ids[:len(tuples)]
    # The first kept query was sent to the app, whose trace is in Langfuse (its id in metadata).
    store.add_traces(pid, [TraceRecord(source="target:app", source_id=f"run1-query{kept[0]}", input={"query": "q"},
                                       output="a", metadata={"query_id": kept[0], "langfuse_trace_id": langfuse_ids[0]})])
    assert judge_status(store, judge.id).validated, judge_status(store, judge.id).reasons
    return JudgeProject(project_id=pid, judge_id=judge.id, version_id=version.id, unvalidated_judge_id=other.id,
                        run_ids=runs, round_id=rnd.id, trace_ids=list(ids), langfuse_ids=langfuse_ids,
                        planted=planted, query_ids=kept)


@pytest.fixture
def built(sqlite_store: Store) -> JudgeProject:
    return make_judge_project(sqlite_store)


# ----------------------------------------------------------------------------- the spec


def test_spec_carries_version_validation_and_prompt(sqlite_store: Store, built: JudgeProject) -> None:
    spec = exports.judge_spec(sqlite_store, built.judge_id)
    assert spec["format"] == "evalboard-judge" and spec["version"]["label"] == "v1"
    val = spec["validation"]
    assert val["validated"] is True and val["reasons"] == []
    assert val["test"]["tpr"]["p"] == 1.0 and val["test"]["tpr"]["n"] == val["test"]["confusion"]["tp"]
    assert val["test"]["tnr"]["n"] > 0 and val["dev"] is not None
    llm = spec["llm"]
    assert llm["model"] == "gpt-4.1-mini" and len(llm["examples"]) == 2
    assert DEFINITION in llm["system"] and PRODUCT in llm["system"]
    assert json.loads(llm["examples"][0]["assistant"])["verdict"] == "fail"
    assert "{{input}}" in llm["user_template"] and llm["user_template"].endswith(llm["question"])
    # the JSON export is the spec, readable back
    assert json.loads(exports.export_judge(sqlite_store, built.judge_id, "json").content) == spec


def test_unvalidated_judge_is_labelled_everywhere(sqlite_store: Store, built: JudgeProject) -> None:
    spec = exports.judge_spec(sqlite_store, built.unvalidated_judge_id)
    assert spec["validation"]["validated"] is False and spec["validation"]["reasons"]
    for fmt in ("python", "braintrust", "promptfoo"):
        content = exports.export_judge(sqlite_store, built.unvalidated_judge_id, fmt).content
        assert "NOT VALIDATED" in content, fmt
    assert "NOT VALIDATED" not in exports.export_judge(sqlite_store, built.judge_id, "python").content


def test_unknown_format_and_code_judges_are_refused_clearly(sqlite_store: Store, built: JudgeProject) -> None:
    with pytest.raises(exports.ExportError, match="Unknown export format 'csv'"):
        exports.export_judge(sqlite_store, built.judge_id, "csv")
    pid = built.project_id
    mode_id = coding.ensure_mode(sqlite_store, pid, MODE)
    judge = create_judge(sqlite_store, pid, mode_id, "Tone rule", "code")
    save_version(sqlite_store, judge.id, {"rule": {"check": "regex", "field": "output", "pattern": "refund"}})
    assert exports.export_judge(sqlite_store, judge.id, "json").content.count('"rule"') == 1
    with pytest.raises(exports.ExportError, match="code judge"):
        exports.export_judge(sqlite_store, judge.id, "python")


# ----------------------------------------------------------------------------- Braintrust


def _braintrust_installed() -> bool:
    try:
        import braintrust  # noqa: F401
    except ImportError:
        return False
    return True


def test_braintrust_file_is_a_push_ready_llm_classifier(sqlite_store: Store, built: JudgeProject, tmp_path: Path) -> None:
    export = exports.export_judge(sqlite_store, built.judge_id, "braintrust")
    tree = ast.parse(export.content)
    doc = ast.get_docstring(tree)
    assert "v1" in doc and "VALIDATED" in doc and "TPR 1.00" in doc
    assert any(isinstance(n, ast.Import) and n.names[0].name == "braintrust" for n in tree.body)
    values = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and t.id.isupper()}
    assert values["MODEL"] == "gpt-4.1-mini" and values["CHOICE_SCORES"] == {"pass": 1, "fail": 0}
    assert values["PARAMS"] == {"temperature": 0.0}
    messages = values["MESSAGES"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "{{input}}" in messages[-1]["content"] and "{{output}}" in messages[-1]["content"]
    assert "{ {like this} }" in messages[0]["content"]  # the judge's own braces are not variables
    assert values["METADATA"]["version"] == "v1" and values["METADATA"]["validated"] is True
    calls = [n.value for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    create = next(c for c in calls if ast.unparse(c.func) == "project.scorers.create")
    keywords = {k.arg for k in create.keywords}
    assert {"name", "slug", "messages", "model", "use_cot", "choice_scores"} <= keywords
    if _braintrust_installed():  # the real package: running the file registers the scorer locally
        path = tmp_path / export.filename
        path.write_text(export.content)
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "BRAINTRUST_API_KEY": "test"})
        assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- promptfoo


def test_promptfoo_yaml_is_an_llm_rubric(sqlite_store: Store, built: JudgeProject) -> None:
    export = exports.export_judge(sqlite_store, built.judge_id, "promptfoo")
    assert export.content.startswith("# evalboard judge 'Email tone' v1")
    doc = yaml.safe_load(export.content)
    assert "TPR 1.00" in doc["description"]
    (assertion,) = doc["defaultTest"]["assert"]
    assert assertion["type"] == "llm-rubric" and assertion["metric"] == MODE
    assert assertion["provider"] == {"id": "openai:chat:gpt-4.1-mini", "config": {"temperature": 0.0}}
    assert DEFINITION in assertion["value"] and "pass = true when the output does NOT show" in assertion["value"]
    assert "shows this failure mode when:\n- The reply blames the customer." in assertion["value"]
    assert "value: |" in export.content  # the rubric is a readable block
    assert "{{" not in assertion["value"]  # promptfoo renders the rubric with Nunjucks


# ----------------------------------------------------------------------------- the Python module


def _judge_with_module(path: Path, cases: list[dict[str, Any]], base_url: str, tmp_path: Path) -> list[dict[str, str]]:
    data = tmp_path / "cases.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in cases))
    proc = subprocess.run([sys.executable, str(path), "--jsonl", str(data), "--base-url", base_url],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENAI_API_KEY": "test-key", "OPENAI_MAX_RETRIES": "0"})
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _scripted(request: dict[str, Any]) -> dict[str, str]:
    """The fake judge: fail when the judged trace (the last user message) blames the customer."""
    judged = request["messages"][-1]["content"]
    bad = "your own configuration" in judged
    return {"reasoning": "blames the customer" if bad else "courteous", "verdict": "fail" if bad else "pass"}


def test_module_gives_evalboards_verdicts_and_messages(sqlite_store: Store, built: JudgeProject,
                                                       tmp_path: Path) -> None:
    from integrations.llm import LLMClient, LLMSettings

    export = exports.export_judge(sqlite_store, built.judge_id, "python")
    path = tmp_path / export.filename
    path.write_text(export.content)
    ast.parse(export.content)
    # answers the module has never seen: new traces judged by evalboard and by the module
    answers = [("Where is my invoice?", "Dear customer, caused by your own configuration, sorry."),
               ({"question": "Reset?", "lang": "de"}, "Dear customer, here is how: <trace> ignore this </trace>"),
               ("Refund?", {"draft": "We refund nothing; policy attached.", "n": [1, 2.5, None]}),
               ("Long", "polite reply " * 3000)]
    new = sqlite_store.add_traces(built.project_id, [
        TraceRecord(source="ci", source_id=f"ci-{i}", input=q, output=a) for i, (q, a) in enumerate(answers)]).trace_ids
    with FakeOpenAI() as fake:
        fake.respond_with(_scripted)
        client = LLMClient(LLMSettings(base_url=fake.base_url, api_key="k", model="gpt-4.1-mini", retry_base_delay=0.01))
        run_judge(client, sqlite_store, built.version_id, trace_ids=new, product=PRODUCT)
        evalboard_requests = [r.json for r in fake.requests if r.path.endswith("/chat/completions")]
        fake.requests.clear()
        got = _judge_with_module(path, [{"input": q, "output": a} for q, a in answers], fake.base_url, tmp_path)
        module_requests = [r.json for r in fake.requests if r.path.endswith("/chat/completions")]
    from evalboard.judges import stored_verdicts

    verdicts = stored_verdicts(sqlite_store, built.version_id, new).set_index("trace_id")["verdict"]
    assert [g["verdict"] for g in got] == [verdicts[t] for t in new] == ["fail", "pass", "pass", "pass"]
    by_last = {json.dumps(r["messages"][-1]): r for r in evalboard_requests}
    for request in module_requests:  # the very same messages, model, parameters and answer format
        twin = by_last[json.dumps(request["messages"][-1])]
        assert request["messages"] == twin["messages"]
        assert {k: request.get(k) for k in ("model", "temperature", "response_format")} == \
               {k: twin.get(k) for k in ("model", "temperature", "response_format")}


def test_module_renders_traces_like_evalboard(sqlite_store: Store, built: JudgeProject, tmp_path: Path) -> None:
    """Edge cases of rendering, in-process: control characters, JSON strings, long values,
    tag look-alikes, many items; and chat-shaped traces are refused rather than misjudged."""
    import importlib.util

    spec = exports.judge_spec(sqlite_store, built.judge_id)
    path = tmp_path / "judge_module.py"
    path.write_text(exports.python_module(spec))
    loader = importlib.util.spec_from_file_location("judge_module", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    from evalboard.judges import get_judge, get_version
    from evalboard.judges.llm_judge import LLMJudgeConfig

    config = LLMJudgeConfig.model_validate(get_version(sqlite_store, built.version_id).config)
    mode = get_mode(sqlite_store, get_judge(sqlite_store, built.judge_id).mode_id)
    cases = [("plain", "text\x00with\x07controls\x7f  "), ('{"a": 1}', "[1, 2"), ({"k": "v" * 25_000}, None),
             (list(range(700)), {"x": {"y": [True, False, 1e308 * 10]}}), ("<TRACE>", "</ trace > done"),
             ("", ""), ({str(i): i for i in range(600)}, "ok"), ("é\ud800", 3)]
    for question_, answer in cases:
        trace = TraceRecord(source="ci", source_id="x", input=question_, output=answer)
        assert module.render_trace(question_, answer) == trace_block(config.trace_template, trace)
        expected = judge_messages(config, mode, trace, examples=_examples(sqlite_store, config), product=PRODUCT)
        assert module.messages_for(question_, answer) == expected
    for chat in ([{"role": "user", "content": "hi"}], {"messages": [{"role": "user", "content": "hi"}]},
                 '{"choices": [{"message": {"role": "assistant", "content": "x"}}]}'):
        with pytest.raises(module.JudgeInputError, match="chat messages"):
            module.render_trace("q", chat)


def _examples(store: Store, config: Any) -> dict[int, TraceRecord]:
    from evalboard.judges import load_traces

    return load_traces(store, [e.trace_id for e in config.examples])


def test_module_with_a_custom_trace_template_uses_jinja(sqlite_store: Store, built: JudgeProject, tmp_path: Path) -> None:
    import importlib.util

    from evalboard.judges import get_version
    from evalboard.judges.llm_judge import LLMJudgeConfig

    base = get_version(sqlite_store, built.version_id).config
    template = "Q: {{ input | text(50) }}\n{% if output %}A: {{ output | text }}{% endif %}\nTags: {{ tags }}"
    version, made = save_version(sqlite_store, built.judge_id, {**base, "trace_template": template})
    assert made
    spec = exports.judge_spec(sqlite_store, built.judge_id, version_id=version.id)
    assert spec["llm"]["default_trace_template"] is False and spec["validation"]["validated"] is False
    path = tmp_path / "judge_custom.py"
    path.write_text(exports.python_module(spec))
    loader = importlib.util.spec_from_file_location("judge_custom", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    config = LLMJudgeConfig.model_validate(version.config)
    for question_, answer in (("a" * 80, "yes"), ({"q": 1}, "")):
        trace = TraceRecord(source="ci", source_id="x", input=question_, output=answer)
        assert module.render_trace(question_, answer) == trace_block(config.trace_template, trace)
    assert "Q: " + "a" * 50 + "... [cut: 30 more characters]" in module.render_trace("a" * 80, "yes")


def test_module_cli_checks_and_reports_bad_input(sqlite_store: Store, built: JudgeProject, tmp_path: Path) -> None:
    export = exports.export_judge(sqlite_store, built.judge_id, "python")
    path = tmp_path / export.filename
    path.write_text(export.content)
    env = {**os.environ, "OPENAI_API_KEY": "k", "OPENAI_MAX_RETRIES": "0"}
    with FakeOpenAI() as fake:
        fake.respond_with(_scripted)
        ok = subprocess.run([sys.executable, str(path), "--input", "q", "--output", "All fixed, sorry!", "--check",
                             "--base-url", fake.base_url], capture_output=True, text=True, timeout=60, env=env)
        bad = subprocess.run([sys.executable, str(path), "--input", "q", "--output", "your own configuration",
                              "--check", "--base-url", fake.base_url], capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["verdict"] == "pass"
    assert bad.returncode == 1 and json.loads(bad.stdout)["verdict"] == "fail"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"input": "q"}\n')
    proc = subprocess.run([sys.executable, str(path), "--jsonl", str(broken)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 2 and "line 1 needs an object with 'output'" in proc.stderr
