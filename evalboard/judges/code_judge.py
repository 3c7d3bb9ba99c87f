"""Code judges: declarative checks on a trace that need no LLM, combined with and/or/not.

A code judge version is a `rule`; the verdict is **fail when the rule holds**. A rule is one
check, or a combination:

    {"all": [rule, ...]}    every rule holds        {"any": [rule, ...]}   at least one holds
    {"not": rule}           the rule does not hold

Checks (a dict with "check" naming the kind; `field` defaults to "output"):

- ``regex``: `pattern` is found in the field's text (`present: false`: is not found;
  `ignore_case` defaults to true);
- ``json``: the field is valid JSON (a string that parses, or structured data), and, when
  `schema` is given, it matches that JSON Schema (`valid: false`: the opposite);
- ``length``: the field's text is `min` to `max` characters long (either bound may be left out);
- ``tool``: a tool named `tool` was called (`called: false`: was not called), in the
  conversation's tool calls or as a TOOL span;
- ``span_error``: a span errored (level ERROR), optionally only spans whose name matches
  the regex `span` (`errored: false`: no such span errored);
- ``python``: a function the operator allowed (see below) returns true.

Fields: ``input``, ``output``, ``error``, ``conversation`` (every message's text, one per
line), or a dotted path into the trace (``output.body``, ``metadata.app_version``,
``messages.0.content``). A field's text is the string itself, or compact JSON for other values.

Python functions: a trace can be checked by a function `fn(trace: TraceRecord) -> bool` (or
(bool, explanation)), named "package.module:function". Only names the operator lists in the
environment variable EVALBOARD_JUDGE_FUNCTIONS (comma-separated) or in secrets
``[judges] functions = [...]`` can be used: code is never typed into the page.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict

from evalboard.judges.labels import JudgeError
from evalboard.judges.llm_judge import JudgeAnswer
from evalboard.models import TraceRecord
from evalboard.render.fields import chat_messages, message_text

FUNCTIONS_ENV = "EVALBOARD_JUDGE_FUNCTIONS"
MAX_RULE_DEPTH = 10

CHECKS: dict[str, str] = {
    "regex": "a regular expression is present (or absent) in a field",
    "json": "a field is valid JSON, optionally matching a JSON Schema",
    "length": "a field's text length is within bounds",
    "tool": "a tool was (or was not) called",
    "span_error": "a step (span) errored",
    "python": "an operator-allowed Python function says so",
}

EXAMPLE_RULE = {"all": [{"check": "span_error"},
                        {"check": "regex", "field": "output", "pattern": "error|failed|timed out|sorry",
                         "present": False}]}

_KEYS = {
    "regex": {"check", "field", "pattern", "present", "ignore_case"},
    "json": {"check", "field", "schema", "valid"},
    "length": {"check", "field", "min", "max"},
    "tool": {"check", "tool", "called"},
    "span_error": {"check", "span", "errored"},
    "python": {"check", "function"},
}


class CodeJudgeConfig(BaseModel):
    """One code judge version: the rule (validated by `parse_rule` when saved and run)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["code"] = "code"
    rule: dict[str, Any]


# ----------------------------------------------------------------------------- allowed functions


def allowed_functions(env: Mapping[str, str] | None = None,
                      secrets: Mapping[str, Any] | None = None) -> list[str]:
    """The Python check functions the operator allowed: EVALBOARD_JUDGE_FUNCTIONS (comma
    separated) and secrets ``[judges] functions``; in that order, without repeats."""
    env = os.environ if env is None else env
    names = [n.strip() for n in (env.get(FUNCTIONS_ENV) or "").split(",") if n.strip()]
    table = (secrets or {}).get("judges") or {}
    listed = table.get("functions") if hasattr(table, "get") else None
    if isinstance(listed, str):
        listed = [listed]
    names += [str(n).strip() for n in (listed or []) if str(n).strip()]
    return list(dict.fromkeys(names))


def load_function(name: str, allowed: Iterable[str]) -> Callable[[TraceRecord], Any]:
    """Import "package.module:function" if the operator allowed it; JudgeError otherwise."""
    allowed = list(allowed)
    if name not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        raise JudgeError(f"The Python check {name!r} is not one the operator allowed (allowed: {listed}). "
                         f"Add it to {FUNCTIONS_ENV} or to [judges] functions in the secrets.")
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise JudgeError(f"A Python check is named 'package.module:function', not {name!r}.")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - say what failed, whatever it was
        raise JudgeError(f"The Python check module {module_name!r} could not be imported: "
                         f"{type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise JudgeError(f"{module_name!r} has no function {attr!r}.")
    return fn


# ----------------------------------------------------------------------------- parsing


def parse_rule(rule: Any, allowed: Sequence[str] = (), *, where: str = "rule", depth: int = 0) -> dict[str, Any]:
    """A validated copy of `rule` (defaults filled in); JudgeError names the bad part by path,
    e.g. "rule.all[1].pattern: not a valid regular expression (...)"."""
    if depth > MAX_RULE_DEPTH:
        raise JudgeError(f"{where}: rules nest at most {MAX_RULE_DEPTH} levels deep.")
    if not isinstance(rule, Mapping):
        raise JudgeError(f"{where}: a rule is a mapping (a check, or all/any/not), got {type(rule).__name__}.")
    combos = [k for k in ("all", "any", "not") if k in rule]
    if combos:
        if len(rule) != 1:
            raise JudgeError(f"{where}: '{combos[0]}' stands alone; put other keys in its own checks.")
        key = combos[0]
        if key == "not":
            return {"not": parse_rule(rule["not"], allowed, where=f"{where}.not", depth=depth + 1)}
        items = rule[key]
        if not isinstance(items, list) or not items:
            raise JudgeError(f"{where}.{key}: give a non-empty list of rules.")
        return {key: [parse_rule(r, allowed, where=f"{where}.{key}[{i}]", depth=depth + 1)
                      for i, r in enumerate(items)]}
    kind = rule.get("check")
    if kind not in CHECKS:
        raise JudgeError(f"{where}: unknown check {kind!r}; use one of {', '.join(CHECKS)} "
                         "(or combine rules with all/any/not).")
    extra = set(rule) - _KEYS[kind]
    if extra:
        raise JudgeError(f"{where}: the {kind} check does not take {', '.join(sorted(extra))}; "
                         f"it takes {', '.join(sorted(_KEYS[kind] - {'check'}))}.")
    out = dict(rule)

    def flag(name: str, default: bool) -> None:
        value = out.get(name, default)
        if not isinstance(value, bool):
            raise JudgeError(f"{where}.{name}: true or false, got {value!r}.")
        out[name] = value

    if kind in ("regex", "json", "length"):
        out["field"] = str(out.get("field") or "output")
    if kind == "regex":
        pattern = out.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise JudgeError(f"{where}.pattern: give the regular expression to look for.")
        flag("present", True)
        flag("ignore_case", True)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise JudgeError(f"{where}.pattern: not a valid regular expression ({exc}).") from None
    elif kind == "json":
        flag("valid", True)
        schema = out.get("schema")
        if schema is not None:
            if not isinstance(schema, Mapping):
                raise JudgeError(f"{where}.schema: a JSON Schema is a mapping.")
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise JudgeError(f"{where}.schema: not a valid JSON Schema ({exc.message}).") from None
    elif kind == "length":
        for bound in ("min", "max"):
            value = out.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise JudgeError(f"{where}.{bound}: a whole number of characters >= 0, got {value!r}.")
        if out.get("min") is None and out.get("max") is None:
            raise JudgeError(f"{where}: a length check needs min, max or both.")
        if out.get("min") is not None and out.get("max") is not None and out["min"] > out["max"]:
            raise JudgeError(f"{where}: min ({out['min']}) is above max ({out['max']}).")
    elif kind == "tool":
        if not isinstance(out.get("tool"), str) or not out["tool"].strip():
            raise JudgeError(f"{where}.tool: name the tool.")
        flag("called", True)
    elif kind == "span_error":
        flag("errored", True)
        span = out.get("span")
        if span is not None:
            try:
                re.compile(str(span))
            except re.error as exc:
                raise JudgeError(f"{where}.span: not a valid regular expression ({exc}).") from None
    elif kind == "python":
        name = out.get("function")
        if not isinstance(name, str) or not name.strip():
            raise JudgeError(f"{where}.function: name the function as 'package.module:function'.")
        if name not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            raise JudgeError(f"{where}.function: {name!r} is not one the operator allowed (allowed: "
                             f"{listed}); code is never typed into the page.")
    return out


# ----------------------------------------------------------------------------- evaluating


def field_value(trace: TraceRecord, path: str) -> Any:
    """The value at `path` (see the module docstring); None when the path leads nowhere."""
    if path == "conversation":
        lines = []
        for m in chat_messages(trace):
            text = message_text(m.content)
            lines.append(text if text is not None else ("" if m.content is None else json.dumps(m.content, default=str)))
        return "\n".join(lines)
    value: Any = trace.model_dump(mode="json")
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def field_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _tools_called(trace: TraceRecord) -> set[str]:
    names = {c.name for m in chat_messages(trace) for c in m.tool_calls}
    names |= {s.name for s in trace.spans if s.type.upper() == "TOOL" and s.name}
    return names


def _check(check: Mapping[str, Any], trace: TraceRecord, functions: Mapping[str, Callable]) -> tuple[bool, str]:
    kind = check["check"]
    if kind == "regex":
        flags = re.IGNORECASE if check["ignore_case"] else 0
        found = re.search(check["pattern"], field_text(field_value(trace, check["field"])), flags)
        held = bool(found) == check["present"]
        what = f"/{check['pattern']}/ {'found' if found else 'not found'} in {check['field']}"
        return held, what
    if kind == "json":
        value = field_value(trace, check["field"])
        ok, why = True, "valid JSON"
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                ok, why = False, "not valid JSON"
        elif value is None:
            ok, why = False, "empty"
        if ok and check.get("schema") is not None:
            errors = sorted(jsonschema.validators.validator_for(check["schema"])(check["schema"])
                            .iter_errors(value), key=lambda e: list(e.path))
            if errors:
                ok, why = False, f"does not match the schema ({errors[0].message[:200]})"
            else:
                why = "matches the schema"
        return ok == check["valid"], f"{check['field']} {why}"
    if kind == "length":
        n = len(field_text(field_value(trace, check["field"])))
        low, high = check.get("min"), check.get("max")
        inside = (low is None or n >= low) and (high is None or n <= high)
        bounds = f"{low if low is not None else 0}-{high if high is not None else 'any'}"
        return inside, f"{check['field']} is {n} characters ({'within' if inside else 'outside'} {bounds})"
    if kind == "tool":
        called = check["tool"] in _tools_called(trace)
        return called == check["called"], f"tool {check['tool']} {'called' if called else 'not called'}"
    if kind == "span_error":
        pattern = check.get("span")
        errored = [s.name or s.id for s in trace.spans if (s.level or "").upper() == "ERROR"
                   and (pattern is None or re.search(str(pattern), s.name or ""))]
        what = f"step {', '.join(errored[:3])} errored" if errored else "no step errored"
        return bool(errored) == check["errored"], what
    # python
    name = check["function"]
    result = functions[name](trace)
    note = ""
    if isinstance(result, tuple):
        result, note = result[0], str(result[1]) if len(result) > 1 else ""
    held = bool(result)
    return held, f"{name} says {'yes' if held else 'no'}" + (f" ({note[:300]})" if note else "")


def evaluate_rule(rule: Mapping[str, Any], trace: TraceRecord,
                  functions: Mapping[str, Callable] | None = None) -> tuple[bool, str]:
    """(does the rule hold, why) for a rule `parse_rule` accepted. Every check is evaluated, so
    the explanation lists them all."""
    functions = functions or {}
    if "all" in rule or "any" in rule:
        key = "all" if "all" in rule else "any"
        results = [evaluate_rule(r, trace, functions) for r in rule[key]]
        held = all(h for h, _ in results) if key == "all" else any(h for h, _ in results)
        joined = f" {'and' if key == 'all' else 'or'} ".join(f"[{'yes' if h else 'no'}: {w}]" for h, w in results)
        return held, joined
    if "not" in rule:
        held, why = evaluate_rule(rule["not"], trace, functions)
        return not held, f"not [{why}]"
    return _check(rule, trace, functions)


def functions_in(rule: Mapping[str, Any]) -> list[str]:
    """Names of the Python checks a rule uses."""
    if "all" in rule or "any" in rule:
        return [n for r in rule.get("all", rule.get("any", [])) for n in functions_in(r)]
    if "not" in rule:
        return functions_in(rule["not"])
    return [rule["function"]] if rule.get("check") == "python" else []


def code_verdict(rule: Mapping[str, Any], trace: TraceRecord,
                 functions: Mapping[str, Callable] | None = None) -> JudgeAnswer:
    """The code judge's answer: fail when the rule holds, with the checks as the reasoning."""
    held, why = evaluate_rule(rule, trace, functions)
    return JudgeAnswer(reasoning=f"{'Fails' if held else 'Passes'}: {why}", verdict="fail" if held else "pass")
