"""One judge, many homes: a judge version exported for other tools.

`judge_spec` describes a judge version completely and portably (plain JSON): the failure mode,
the version, its validation (the frozen test result when this version was tested, the dev
figures, the thresholds, and in words why it is not validated when it is not), and for an LLM
judge everything that decides its verdicts: the rendered system prompt, the few-shot turns,
the question, the trace template, the model and its parameters, and the answer schema. The
Langfuse push (`integrations.langfuse_push`) builds its prompt and evaluator from it too.

From the spec, four files (`export_judge`):

- ``json``: the spec itself;
- ``python``: a self-contained module (only the `openai` SDK; `jinja2` too when the judge has
  its own trace template) that judges an (input, output) pair the way evalboard does: the same
  messages, the same structured answer, the same reading of it. Meant for CI;
- ``braintrust``: a scorer file for `braintrust push` (an LLM classifier with the judge's
  messages, model and choice scores pass = 1, fail = 0);
- ``promptfoo``: an `llm-rubric` assertion (YAML) with the judge's criteria and model.

Every file names the judge, its version and its validation figures, and says plainly when the
version is not validated. Which version: the validated one (the version that passed the test
split) unless another is asked for; a judge with no validated version exports its latest one,
labelled "not validated".

Vendor templates (Braintrust, promptfoo, Langfuse) fill ``{{input}}`` and ``{{output}}``; a
``{{`` in the judge's own text would be taken for a variable there, so it is written ``{ {``
in those files (`defuse_braces`). The Python module and the JSON spec keep the text as it is.

What the other homes cannot reproduce: vendor templates see a trace's input and output only,
rendered as evalboard's default trace template renders them; chat transcripts, steps and a
custom trace template are evalboard's (and the Python module's, for plain input/output).
"""

from __future__ import annotations

import json
import math
import pprint
import re
from dataclasses import dataclass
from typing import Any

import yaml

from evalboard.judges import (
    DEFAULT_TRACE_TEMPLATE,
    JudgeAnswer,
    JudgeError,
    LLMJudgeConfig,
    evaluate,
    get_judge,
    get_version,
    judge_messages,
    judge_status,
    list_versions,
)
from evalboard.judges.labels import get_mode
from evalboard.judges.llm_judge import (
    MAX_FIELD_CHARS,
    MAX_TRACE_CHARS,
    TRACE_CLOSE,
    TRACE_OPEN,
    question,
)
from evalboard.judges.runs import load_traces
from evalboard.models import TraceRecord
from evalboard.render.safe import to_plain
from evalboard.store import Store, StoreError

FORMATS = ("braintrust", "promptfoo", "python", "json")
SPEC_FORMAT = "evalboard-judge"
SPEC_VERSION = 1
#: What trace_context's `to_plain` keeps per string (llm_judge passes max_str=MAX_FIELD_CHARS).
PLAIN_MAX_ITEMS = 500
PLAIN_MAX_NODES = 100_000
#: The fallback instruction of integrations.llm for servers without structured output; the
#: module uses the same words so it asks exactly as evalboard does.
JSON_INSTRUCTION = "Answer with only a JSON object, and no other text, that matches this JSON Schema:\n{schema}"
OUTPUT_RETRIES = 2


class ExportError(StoreError):
    """A judge that cannot be exported in the format asked for; the message says why."""


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content: str
    mime: str


def slug(text: str, limit: int = 60) -> str:
    """'Email tone (v2)' -> 'email-tone-v2': lower-case letters, digits and single dashes."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (out[:limit].rstrip("-") or "judge")


def defuse_braces(text: str) -> str:
    """Text with every ``{{`` written ``{ {`` (and ``}}`` as ``} }``), so a template engine
    that fills ``{{variables}}`` reads it as plain text."""
    return text.replace("{{", "{ {").replace("}}", "} }")


def response_format() -> dict[str, Any]:
    """The chat `response_format` evalboard asks a judge with: JudgeAnswer's JSON schema, strict
    (the same object `integrations.llm.response_format_for(JudgeAnswer)` builds)."""
    schema = JudgeAnswer.model_json_schema()
    schema["additionalProperties"] = False
    return {"type": "json_schema", "json_schema": {"name": "JudgeAnswer", "schema": schema, "strict": True}}


# ----------------------------------------------------------------------------- the spec


def _rate(p: Any) -> dict[str, Any] | None:
    if p is None or p.n == 0 or math.isnan(p.p):
        return {"p": None, "k": p.k if p else 0, "n": p.n if p else 0, "low": None, "high": None}
    return {"p": round(p.p, 4), "k": p.k, "n": p.n, "low": round(p.low, 4), "high": round(p.high, 4)}


def _metrics(m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    c = m.confusion
    return {"tpr": _rate(m.tpr), "tnr": _rate(m.tnr), "precision": _rate(m.precision),
            "accuracy": _rate(m.accuracy),
            "balanced_accuracy": None if math.isnan(m.balanced_accuracy) else round(m.balanced_accuracy, 4),
            "kappa": None if math.isnan(m.kappa) else round(m.kappa, 4),
            "confusion": {"tp": c.tp, "fn": c.fn, "tn": c.tn, "fp": c.fp}}


def choose_version(store: Store, judge_id: int, version_id: int | None = None) -> tuple[Any, Any, bool]:
    """(version, judge status, whether this version is the validated one).

    Default: the validated version when the judge has one, else its latest version."""
    status = judge_status(store, judge_id)
    versions = list_versions(store, judge_id)
    if not versions:
        raise ExportError("The judge has no version yet: write its prompt (or rule) and save it first.")
    if version_id is not None:
        version = get_version(store, version_id)
        if version.judge_id != judge_id:
            raise ExportError(f"Version id {version_id} belongs to another judge.")
    elif status.validated and status.tested_version_id is not None:
        version = get_version(store, status.tested_version_id)
    else:
        version = versions[-1]
    return version, status, bool(status.validated and status.tested_version_id == version.id)


def judge_spec(store: Store, judge_id: int, *, version_id: int | None = None,
               product: str | None = None) -> dict[str, Any]:
    """Everything about one judge version that another tool needs (see the module docstring).

    `product` defaults to the project's description (what the judges' prompts say about it).
    """
    try:
        judge = get_judge(store, judge_id)
        version, status, validated = choose_version(store, judge_id, version_id)
        mode = get_mode(store, judge.mode_id)
    except JudgeError as exc:
        raise ExportError(str(exc)) from None
    project = store.get_project(judge.project_id)
    if product is None:
        product = project.description if project else ""
    test = status.test.metrics if (status.test is not None and status.tested_version_id == version.id) else None
    dev = evaluate(store, version.id, "dev")
    if validated:
        reasons: list[str] = []
    elif status.validated:
        reasons = [f"{version.label} is not the validated version ({status.tested_version} is): it has no "
                   "clean test result."]
    else:
        reasons = list(status.reasons) or ["The judge is not validated."]
    spec: dict[str, Any] = {
        "format": SPEC_FORMAT,
        "format_version": SPEC_VERSION,
        "project": project.name if project else "",
        "judge": {"id": judge.id, "name": judge.name, "kind": judge.kind,
                  "mode": {"name": mode.name, "definition": mode.definition, "includes": mode.includes,
                           "excludes": mode.excludes}},
        "version": {"number": version.number, "label": version.label, "note": version.note,
                    "created_by": version.created_by,
                    "created_at": version.created_at.isoformat() if version.created_at else None},
        "validation": {
            "validated": validated,
            "reasons": reasons,
            "notes": list(status.notes),
            "thresholds": dict(judge.thresholds),
            "tested_version": status.tested_version,
            "tested_at": str(status.tested_at) if status.tested_at else None,
            "test": _metrics(test),
            "dev": _metrics(dev.metrics),
        },
        "positive": "fail",
        "product": product or "",
        "llm": None,
        "code": None,
    }
    if judge.kind == "code":
        spec["code"] = {"rule": version.config.get("rule")}
        return spec
    config = LLMJudgeConfig.model_validate(version.config)
    examples = load_traces(store, [e.trace_id for e in config.examples])
    placeholder = TraceRecord(source="evalboard", source_id="placeholder", input="", output="")
    try:
        # judge_messages builds what a run sends; its last message is the trace being judged.
        messages = judge_messages(config, mode, placeholder, examples=examples, product=product or "")
    except JudgeError as exc:
        raise ExportError(f"The judge's prompt cannot be built: {exc}") from None
    turns = [{"user": messages[i]["content"], "assistant": messages[i + 1]["content"]}
             for i in range(1, len(messages) - 1, 2)]
    ask = question(mode)
    spec["llm"] = {
        "model": config.model,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "seed": config.seed,
        "system": messages[0]["content"],
        "fail_when": config.fail_when,
        "pass_when": config.pass_when,
        "examples": turns,
        "question": ask,
        "trace_template": config.trace_template,
        "default_trace_template": config.trace_template == DEFAULT_TRACE_TEMPLATE,
        "user_template": f"{TRACE_OPEN}\nInput:\n{{{{input}}}}\n\nOutput:\n{{{{output}}}}\n{TRACE_CLOSE}\n\n{ask}",
        "response_format": response_format(),
        "trace_defaults": to_plain(TraceRecord(source="ci", source_id="ci"), max_str=MAX_FIELD_CHARS,
                                   max_items=PLAIN_MAX_ITEMS, max_nodes=PLAIN_MAX_NODES),
    }
    return spec


def _rate_text(rate: dict[str, Any] | None) -> str:
    if not rate or rate.get("p") is None:
        return "- (no cases)"
    return f"{rate['p']:.2f} ({rate['k']}/{rate['n']}; 95% CI {rate['low']:.2f}-{rate['high']:.2f})"


def validation_lines(spec: dict[str, Any]) -> list[str]:
    """The judge, its version and its validation in a few lines of plain text."""
    judge, version, val = spec["judge"], spec["version"], spec["validation"]
    lines = [f"evalboard judge '{judge['name']}' {version['label']} (failure mode '{judge['mode']['name']}', "
             f"project '{spec['project']}')."]
    limits = val["thresholds"]
    if val["validated"]:
        lines.append(f"VALIDATED on the held-out test split (needs TPR >= {limits['tpr']:.2f} and TNR >= "
                     f"{limits['tnr']:.2f}).")
    else:
        lines.append("NOT VALIDATED: " + " ".join(val["reasons"]))
    if val["test"]:
        lines.append(f"Test: TPR {_rate_text(val['test']['tpr'])}, TNR {_rate_text(val['test']['tnr'])}.")
    if val["dev"]:
        lines.append(f"Dev: TPR {_rate_text(val['dev']['tpr'])}, TNR {_rate_text(val['dev']['tnr'])}.")
    lines.append("TPR = share of human-labelled fails the judge calls fail; TNR = share of passes it calls pass.")
    return lines


# ----------------------------------------------------------------------------- files


def export_judge(store: Store, judge_id: int, fmt: str, *, version_id: int | None = None,
                 product: str | None = None) -> ExportFile:
    """The judge in one of FORMATS, with a suggested file name."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    spec = judge_spec(store, judge_id, version_id=version_id, product=product)
    return render_export(spec, fmt)


def render_export(spec: dict[str, Any], fmt: str) -> ExportFile:
    base = f"{slug(spec['judge']['name'])}_{spec['version']['label']}"
    if fmt == "json":
        return ExportFile(f"{base}.judge.json", json_spec(spec), "application/json")
    if spec["llm"] is None:
        raise ExportError(f"'{spec['judge']['name']}' is a code judge: its rule runs in evalboard only, so it "
                          "exports as a JSON spec (format json), not as a {fmt} file.".replace("{fmt}", fmt))
    if fmt == "python":
        return ExportFile(f"judge_{base.replace('-', '_')}.py", python_module(spec), "text/x-python")
    if fmt == "braintrust":
        return ExportFile(f"{base}.braintrust.py", braintrust_file(spec), "text/x-python")
    return ExportFile(f"{base}.promptfoo.yaml", promptfoo_yaml(spec), "application/yaml")


def json_spec(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


def _literal(value: Any) -> str:
    """A Python literal for plain JSON data (readable, and `ast.literal_eval`-able)."""
    return pprint.pformat(value, width=100, sort_dicts=False)


def _docstring(lines: list[str]) -> str:
    text = "\n".join(lines).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{text}\n"""'


def vendor_messages(spec: dict[str, Any]) -> list[dict[str, str]]:
    """The judge as chat messages for a vendor template (``{{input}}``, ``{{output}}``)."""
    llm = spec["llm"]
    messages = [{"role": "system", "content": defuse_braces(llm["system"])}]
    for turn in llm["examples"]:
        messages.append({"role": "user", "content": defuse_braces(turn["user"])})
        messages.append({"role": "assistant", "content": defuse_braces(turn["assistant"])})
    ask = defuse_braces(llm["question"])
    messages.append({"role": "user", "content": llm["user_template"].replace(llm["question"], ask)})
    return messages


def _metadata(spec: dict[str, Any]) -> dict[str, Any]:
    val = spec["validation"]
    return {"evalboard_judge": spec["judge"]["name"], "failure_mode": spec["judge"]["mode"]["name"],
            "version": spec["version"]["label"], "validated": val["validated"],
            "test": val["test"], "dev": val["dev"], "thresholds": val["thresholds"]}


def braintrust_file(spec: dict[str, Any]) -> str:
    """A scorer file for `braintrust push FILE`: an LLM classifier whose choices are the
    verdicts, scored pass = 1 and fail = 0 (so a higher score is better, as Braintrust expects)."""
    llm = spec["llm"]
    params: dict[str, Any] = {}
    for key in ("temperature", "max_tokens", "seed"):
        if llm[key] is not None:
            params[key] = llm[key]
    name = f"{spec['judge']['name']} ({spec['version']['label']})"
    if not spec["validation"]["validated"]:
        name += " - not validated"
    description = " ".join(validation_lines(spec))
    head = validation_lines(spec) + [
        "",
        "A Braintrust scorer (LLM classifier) exported by evalboard. Push it with:",
        "",
        "    BRAINTRUST_API_KEY=... braintrust push " + f"{slug(spec['judge']['name'])}_{spec['version']['label']}.braintrust.py",
        "",
        "The classifier answers \"pass\" (score 1: the output does not show the failure mode) or",
        "\"fail\" (score 0: it does). It reads the test case's input and output; evalboard's chat",
        "transcripts and steps are not available to it. Do not edit: export the judge again instead.",
    ]
    return "\n".join([
        _docstring(head),
        "",
        "import braintrust",
        "",
        f"PROJECT = {spec['project']!r}",
        f"NAME = {name!r}",
        f"SLUG = {('evalboard-' + slug(spec['judge']['name']))!r}",
        f"DESCRIPTION = {description!r}",
        f"MODEL = {llm['model']!r}",
        f"PARAMS = {_literal(params)}",
        "CHOICE_SCORES = {'pass': 1, 'fail': 0}",
        f"METADATA = {_literal(_metadata(spec))}",
        f"MESSAGES = {_literal(vendor_messages(spec))}",
        "",
        "project = braintrust.projects.create(name=PROJECT)",
        "",
        "project.scorers.create(",
        "    name=NAME,",
        "    slug=SLUG,",
        "    description=DESCRIPTION,",
        "    messages=MESSAGES,",
        "    model=MODEL,",
        "    params=PARAMS,",
        "    use_cot=True,",
        "    choice_scores=CHOICE_SCORES,",
        "    metadata=METADATA,",
        "    if_exists='replace',",
        ")",
        "",
    ])


def rubric_text(spec: dict[str, Any]) -> str:
    """The judge's criteria as a rubric: the output passes when it does not show the mode."""
    mode, llm = spec["judge"]["mode"], spec["llm"]
    lines = [f'Check the output for one failure mode only: "{mode["name"]}".',
             f"Definition: {mode['definition'] or '(none written)'}"]
    if mode["includes"]:
        lines.append(f"It includes: {mode['includes']}")
    if mode["excludes"]:
        lines.append(f"It does not include: {mode['excludes']}")
    if spec["product"]:
        lines.append(f"The product: {spec['product']}")
    lines += ["", "The output shows this failure mode when:", llm["fail_when"].strip(), "",
              "It does not show it when:", llm["pass_when"].strip(), "",
              "Other problems in the output do not matter here. Grade pass = true when the output does NOT "
              "show this failure mode and pass = false when it does; score 1.0 for a pass, 0.0 for a fail."]
    return defuse_braces("\n".join(lines))


class _BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings as literal blocks (|), so the rubric reads as written."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)


def promptfoo_yaml(spec: dict[str, Any]) -> str:
    """A promptfoo config fragment: the judge as an `llm-rubric` assertion on every test."""
    llm = spec["llm"]
    config: dict[str, Any] = {}
    for key in ("temperature", "max_tokens", "seed"):
        if llm[key] is not None:
            config[key] = llm[key]
    provider: dict[str, Any] = {"id": f"openai:chat:{llm['model']}"}
    if config:
        provider["config"] = config
    assertion = {"type": "llm-rubric", "metric": spec["judge"]["mode"]["name"], "value": rubric_text(spec),
                 "provider": provider}
    doc = {"description": " ".join(validation_lines(spec)), "defaultTest": {"assert": [assertion]}}
    comments = [f"# {line}" for line in validation_lines(spec)] + [
        "# A promptfoo llm-rubric assertion exported by evalboard: merge `defaultTest.assert` into your",
        "# promptfooconfig.yaml (or copy the assertion into one test's `assert`). The grader passes an",
        "# output that does not show the failure mode. Few-shot examples are not carried over (see the",
        "# JSON export). Do not edit: export the judge again instead.",
    ]
    body = yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(comments) + "\n" + body


# ----------------------------------------------------------------------------- the Python module

_MODULE = r'''__DOC__

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any

JUDGE = __JUDGE__
MODEL = __MODEL__
PARAMS = __PARAMS__
SYSTEM = __SYSTEM__
# Few-shot turns: (user, assistant) pairs, the assistant answering as JSON.
EXAMPLES = __EXAMPLES__
QUESTION = __QUESTION__
# None: evalboard's default trace template (rendered here without jinja2); else the judge's own
# template, rendered with jinja2 exactly as evalboard renders it.
TRACE_TEMPLATE = __TEMPLATE__
TRACE_DEFAULTS = __DEFAULTS__
RESPONSE_FORMAT = __FORMAT__
JSON_INSTRUCTION = __INSTRUCTION__
OUTPUT_RETRIES = __RETRIES__
MAX_FIELD_CHARS = __MAX_FIELD__
MAX_TRACE_CHARS = __MAX_TRACE__
MAX_ITEMS = __MAX_ITEMS__
MAX_NODES = __MAX_NODES__
MAX_DEPTH = 64
TRACE_OPEN, TRACE_CLOSE = "<trace>", "</trace>"


class JudgeInputError(ValueError):
    """An (input, output) pair this module cannot judge the way evalboard would."""


# -- the trace as the judge reads it (the same rules as evalboard) ---------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG_LIKE = re.compile(r"<(\s*/?\s*trace\b)", re.IGNORECASE)


def _clean(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _SURROGATE.sub("\ufffd", text)
    return _CONTROL.sub(lambda m: "\u2421" if m.group() == "\x7f" else chr(0x2400 + ord(m.group())), text)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated, {len(text.encode('utf-8')):,} bytes]"


def _plain(value: Any, budget: list[int], depth: int = 1) -> Any:
    """JSON-ready and bounded, as evalboard stores trace fields for templates."""
    budget[0] -= 1
    if budget[0] < 0:
        return "…"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 10_000 else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return _clip(_clean(value), MAX_FIELD_CHARS)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return f"… (nested deeper than {MAX_DEPTH} levels)"
        out: dict[str, Any] = {}
        for index, (key, sub) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS:,} more keys"
                break
            out[_clip(_clean(str(key)), 1_000)] = _plain(sub, budget, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            return f"… (nested deeper than {MAX_DEPTH} levels)"
        items = []
        for index, sub in enumerate(value):
            if index >= MAX_ITEMS:
                items.append(f"… {len(value) - MAX_ITEMS:,} more items")
                break
            items.append(_plain(sub, budget, depth + 1))
        return items
    return _clip(_clean(str(value)), MAX_FIELD_CHARS)


def _text(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """The `| text` filter: strings as they are, other values as compact JSON; cut at `limit`."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    limit = max(0, min(int(limit), MAX_FIELD_CHARS))
    if len(text) > limit:
        return f"{text[:limit]}... [cut: {len(text) - limit:,} more characters]"
    return text


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped and stripped[0] in "{[" and len(stripped) <= 10 * 200_000:
            try:
                return json.loads(stripped)
            except (ValueError, RecursionError):
                return value
    return value


def _is_message(item: Any) -> bool:
    return isinstance(item, dict) and ("role" in item or "tool_calls" in item)


def _looks_like_chat(value: Any) -> bool:
    value = _parsed(value)
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            value = value["messages"]
        elif isinstance(value.get("choices"), list) and value["choices"]:
            first = value["choices"][0]
            return isinstance(first, dict) and _is_message(first.get("message"))
        else:
            return _is_message(value)
    return isinstance(value, list) and bool(value) and all(_is_message(item) for item in value[:3])


def _render(template: str, context: dict[str, Any]) -> str:
    try:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise SystemExit("This judge has its own trace template, which needs jinja2: pip install jinja2") from None
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True,
                                        lstrip_blocks=True)
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.filters["text"] = _text
    return env.from_string(template).render(**context).strip()


def render_trace(input: Any, output: Any) -> str:
    """The trace block the judge reads: the answer between <trace> and </trace>."""
    if _looks_like_chat(input) or _looks_like_chat(output):
        raise JudgeInputError("This input or output holds chat messages; evalboard renders those as a "
                              "conversation, which this module does not. Judge chat traces with evalboard.")
    budget = [MAX_NODES - 8]  # evalboard's record node and the 7 fields before `input`
    plain_in = _plain(input, budget)
    plain_out = _plain(output, budget)
    if TRACE_TEMPLATE is None:
        body = f"Input:\n{_text(plain_in)}\n\nOutput:\n{_text(plain_out)}\n".strip()
    else:
        context = {**TRACE_DEFAULTS, "input": plain_in, "output": plain_out, "conversation": []}
        body = _render(TRACE_TEMPLATE, context)
    body = _TAG_LIKE.sub(r"&lt;\1", body)
    if len(body) > MAX_TRACE_CHARS:
        body = f"{body[:MAX_TRACE_CHARS]}\n... [trace cut: {len(body) - MAX_TRACE_CHARS:,} more characters]"
    return f"{TRACE_OPEN}\n{body}\n{TRACE_CLOSE}"


def messages_for(input: Any, output: Any) -> list[dict[str, str]]:
    """The chat messages evalboard sends to judge this (input, output)."""
    messages = [{"role": "system", "content": SYSTEM}]
    for user, assistant in EXAMPLES:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": f"{render_trace(input, output)}\n\n{QUESTION}"})
    return messages


# -- asking the model --------------------------------------------------------------------------

def _answer(text: str | None) -> dict[str, str]:
    """{reasoning, verdict} from the model's answer; ValueError says what is wrong with it."""
    if not text:
        raise ValueError("the answer was empty")
    stripped = text.strip()
    try:
        data = json.loads(stripped)
    except ValueError:
        data, decoder = None, json.JSONDecoder()
        for match in re.finditer(r"\{", stripped):
            try:
                data, _ = decoder.raw_decode(stripped, match.start())
                break
            except ValueError:
                continue
        if data is None:
            raise ValueError("the answer contains no JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("does not match JudgeAnswer: (top level): not an object")
    if not isinstance(data.get("reasoning"), str):
        raise ValueError("does not match JudgeAnswer: reasoning: a string is required")
    if data.get("verdict") not in ("pass", "fail"):
        raise ValueError("does not match JudgeAnswer: verdict: must be 'pass' or 'fail'")
    return {"reasoning": data["reasoning"], "verdict": data["verdict"]}


def _request(messages: list[dict[str, str]], mode: str, model: str) -> dict[str, Any]:
    request: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], **PARAMS}
    if mode == "json_schema":
        request["response_format"] = RESPONSE_FORMAT
        return request
    instruction = JSON_INSTRUCTION.format(schema=json.dumps(RESPONSE_FORMAT["json_schema"]["schema"],
                                                            ensure_ascii=False))
    first = request["messages"][0]
    request["messages"][0] = {**first, "content": first["content"] + "\n\n" + instruction}
    if mode == "json_object":
        request["response_format"] = {"type": "json_object"}
    return request


def judge(input: Any, output: Any, *, client: Any = None, model: str | None = None) -> dict[str, str]:
    """{"verdict": "pass" | "fail", "reasoning": ...} for one answer of your app.

    `client` is an `openai.OpenAI` (default: one from OPENAI_API_KEY / OPENAI_BASE_URL). A server
    without structured output is asked in JSON mode, then plainly with the schema in the prompt;
    an answer that is not a valid verdict is sent back with the problem (twice at most)."""
    import openai

    client = client or openai.OpenAI()
    model = model or MODEL
    conversation = messages_for(input, output)
    problems: list[str] = []
    modes = ["json_schema", "json_object", "plain"]
    while True:
        try:
            completion = client.chat.completions.create(**_request(conversation, modes[0], model))
        except openai.APIStatusError as exc:
            if exc.status_code in (400, 422) and len(modes) > 1:
                modes.pop(0)
                continue
            raise
        text = completion.choices[0].message.content if completion.choices else None
        try:
            return _answer(text)
        except ValueError as exc:
            problems.append(str(exc))
            if len(problems) > OUTPUT_RETRIES:
                raise RuntimeError(f"{model} gave no valid verdict in {len(problems)} answers; last problem: {exc}") from None
            conversation = conversation + [
                {"role": "assistant", "content": text or ""},
                {"role": "user", "content": f"That answer was not valid: {exc}. Reply again with only a JSON "
                                            "object that matches the schema."},
            ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Judge answers with the evalboard judge {JUDGE['name']!r} "
                                                 f"{JUDGE['version']} ({JUDGE['status']}).")
    parser.add_argument("--input", help="The question or input of one answer.")
    parser.add_argument("--output", help="The answer to judge.")
    parser.add_argument("--jsonl", help="A file with one {\"input\": ..., \"output\": ...} object per line ('-' for stdin).")
    parser.add_argument("--model", help=f"Model to ask (default {MODEL}).")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI).")
    parser.add_argument("--check", action="store_true", help="Exit with status 1 when any verdict is fail.")
    args = parser.parse_args(argv)
    if (args.jsonl is None) == (args.output is None):
        parser.error("give --output (and --input), or --jsonl")
    import openai

    client = openai.OpenAI(base_url=args.base_url) if args.base_url else openai.OpenAI()
    if args.jsonl is None:
        cases = [{"input": args.input, "output": args.output}]
    else:
        handle = sys.stdin if args.jsonl == "-" else open(args.jsonl, encoding="utf-8")
        with handle:
            cases = []
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        case = json.loads(line)
                    except ValueError as exc:
                        parser.error(f"{args.jsonl} line {number} is not JSON: {exc}")
                    if not isinstance(case, dict) or "output" not in case:
                        parser.error(f"{args.jsonl} line {number} needs an object with 'output' (and 'input')")
                    cases.append(case)
    failed = 0
    for case in cases:
        result = judge(case.get("input"), case.get("output"), client=client, model=args.model)
        failed += result["verdict"] == "fail"
        print(json.dumps({**({"id": case["id"]} if "id" in case else {}), **result}, ensure_ascii=False), flush=True)
    return 1 if (args.check and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def python_module(spec: dict[str, Any]) -> str:
    """A self-contained module that judges (input, output) pairs as evalboard does (for CI)."""
    llm = spec["llm"]
    params: dict[str, Any] = {}
    if llm["temperature"] is not None:
        params["temperature"] = llm["temperature"]
    if llm["max_tokens"] is not None:
        params["max_tokens"] = llm["max_tokens"]
    if llm["seed"] is not None:
        params["seed"] = llm["seed"]
    file = f"judge_{slug(spec['judge']['name']).replace('-', '_')}_{spec['version']['label']}.py"
    doc = validation_lines(spec) + [
        "",
        "Runs this judge with the openai SDK, for CI: the same prompt, model, parameters and",
        "answer schema as evalboard, so the same model answers give the same verdicts.",
        "",
        f"    OPENAI_API_KEY=... python {file} --input 'question' --output 'answer'",
        f"    python {file} --jsonl answers.jsonl --check   # exit 1 when any verdict is fail",
        "    from " + file[:-3] + " import judge; judge(question, answer)  # {'verdict', 'reasoning'}",
        "",
        "Prints one JSON line per answer: {\"verdict\": \"pass\" | \"fail\", \"reasoning\": ...}; fail means",
        "the answer shows the failure mode. Set OPENAI_BASE_URL (or --base-url) for another",
        "OpenAI-compatible server. Inputs and outputs are text or JSON; chat transcripts are",
        "refused (evalboard renders them as a conversation). Needs `openai`"
        + (" and `jinja2` (the judge has its own trace template)." if not llm["default_trace_template"] else "."),
        "Generated by evalboard; do not edit: export the judge again instead.",
    ]
    judge_info = {"name": spec["judge"]["name"], "failure_mode": spec["judge"]["mode"]["name"],
                  "version": spec["version"]["label"],
                  "status": "validated" if spec["validation"]["validated"] else "not validated",
                  "validation": {k: spec["validation"][k] for k in ("validated", "reasons", "thresholds", "test", "dev")},
                  "project": spec["project"]}
    replacements = {
        "__DOC__": _docstring(doc),
        "__JUDGE__": _literal(judge_info),
        "__MODEL__": repr(llm["model"]),
        "__PARAMS__": _literal(params),
        "__SYSTEM__": repr(llm["system"]),
        "__EXAMPLES__": _literal([(t["user"], t["assistant"]) for t in llm["examples"]]),
        "__QUESTION__": repr(llm["question"]),
        "__TEMPLATE__": "None" if llm["default_trace_template"] else repr(llm["trace_template"]),
        "__DEFAULTS__": _literal(llm["trace_defaults"]),
        "__FORMAT__": _literal(llm["response_format"]),
        "__INSTRUCTION__": repr(JSON_INSTRUCTION),
        "__RETRIES__": repr(OUTPUT_RETRIES),
        "__MAX_FIELD__": repr(MAX_FIELD_CHARS),
        "__MAX_TRACE__": repr(MAX_TRACE_CHARS),
        "__MAX_ITEMS__": repr(PLAIN_MAX_ITEMS),
        "__MAX_NODES__": repr(PLAIN_MAX_NODES),
    }
    # One pass: text put in (a prompt that happens to say __MODEL__) is never substituted again.
    return re.sub(r"__[A-Z_]+__", lambda m: replacements.get(m.group(), m.group()), _MODULE)
