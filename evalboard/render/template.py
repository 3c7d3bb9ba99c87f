"""Custom views: a project's own Jinja2 template, run in a sandbox with bounded time and size.

Who writes what: the template is written by a member of the project; the trace it is filled
with comes from production and is untrusted. Trace text is only ever passed in as *data*
(plain dicts, lists and strings, like `model_dump(mode="json")`); it is never compiled, so a
trace cannot inject template code. The template itself runs in Jinja's
`ImmutableSandboxedEnvironment` (no `__class__`, `__globals__`, `mro`, private attributes or
mutating methods), with `StrictUndefined` so a misspelt field is an error rather than an empty
string, and with autoescaping in "html" mode. Whatever it produces is sanitised with nh3
("html" mode) or rendered as Markdown with raw HTML off and then sanitised ("markdown" mode).

Bounds, so a template cannot hang or exhaust the server:

* time: a per-thread trace hook counts every line the compiled template executes and stops it
  after `time_limit` seconds (default `TEMPLATE_TIME_LIMIT`); nested loops over data are caught
  this way, not only `range()`;
* `range()` yields at most `MAX_RANGE` numbers;
* size: the output is streamed and refused above `MAX_OUTPUT_CHARS`; one value (string, list
  when printed) may not exceed `MAX_VALUE_CHARS`; text built by the template in total may not
  exceed `MAX_BUILT_CHARS`. The operations that can multiply size in one step are checked
  *before* they run: `*` and `**`, `+`, `~`, `%` and `str.format` (widths and precisions),
  `center`/`ljust`/`rjust`/`zfill`/`expandtabs`/`replace`/`join` and the filters `center`,
  `indent`, `join`, `replace`, `format`, `batch`, `slice`, `tojson`;
* `lipsum`, `cycler` and `joiner` are not available; `range`, `dict` and `namespace` are.

Every failure (syntax error, undefined field, sandbox refusal, limit, runtime error) becomes
`TemplateError` with a plain message and the template line when known.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from evalboard.models import TraceRecord
from evalboard.render.safe import (
    clean_text,
    markdown_html,
    pretty_json,
    sanitize_html,
    to_plain,
)

TEMPLATE_TIME_LIMIT = 2.0
"""Seconds a template may run."""
MAX_TEMPLATE_CHARS = 50_000
"""Longest template source accepted."""
MAX_OUTPUT_CHARS = 2_000_000
"""Longest output (about 2 MB)."""
MAX_VALUE_CHARS = 2_000_000
"""Largest single value a template may build or print."""
MAX_BUILT_CHARS = 20_000_000
"""Text a template may build in total (bounds memory across many values)."""
MAX_RANGE = 10_000
"""Most numbers one `range()` may yield."""
MAX_WIDTH = 1_000
"""Largest width or precision in `%` / `str.format` specs, and the largest indent."""
MAX_INT_BITS = 100_000
"""Largest integer (in bits) `*` and `**` may produce (~30,000 digits)."""
TEMPLATE_MODES = ("markdown", "html")

_TEMPLATE_FILENAME = "<template>"
_MAX_MESSAGE = 500


class TemplateError(ValueError):
    """A template could not be rendered; `message` is plain text, `lineno` the template line."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        self.message = message
        self.lineno = lineno
        super().__init__(f"line {lineno}: {message}" if lineno else message)


class _Refused(Exception):
    """A template hit one of our limits (raised inside the render, turned into TemplateError)."""


# --- size estimates and checks -------------------------------------------------------------


def size_hint(value: Any, stop: int = MAX_VALUE_CHARS) -> int:
    """Roughly how many characters `value` becomes when printed; counting stops past `stop`.

    Iterative (no recursion) and bounded by `stop`, so cyclic or huge containers are cheap.
    """
    total = 0
    stack = [value]
    while stack and total <= stop:
        item = stack.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, range):
            total += 2 + 7 * len(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        else:
            total += 8
    return total


def _refuse_if_big(size: int, what: str, limit: int = MAX_VALUE_CHARS) -> None:
    if size > limit:
        raise _Refused(f"{what} would be larger than {limit:,} characters")


def _sequence_times(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple))


_PERCENT_SPEC_RE = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS_RE = re.compile(r"\d+")


def _check_percent_format(fmt: str, args: Any) -> None:
    """Refuse `fmt % args` when widths/precisions are huge or the result would be too big."""
    specs = 0
    for match in _PERCENT_SPEC_RE.finditer(fmt):
        specs += 1
        for number in match.groups():
            if number == "*":
                raise _Refused("'*' widths in % formatting are not allowed in templates")
            if number is not None and int(number) > MAX_WIDTH:
                raise _Refused(f"format width {number} is above the limit {MAX_WIDTH}")
    _refuse_if_big(len(fmt) + specs * (size_hint(args) + MAX_WIDTH), "the formatted text")


def _check_str_format(fmt: str, args: Any) -> None:
    """Same for `fmt.format(...)`: no nested specs, no widths above MAX_WIDTH."""
    fields = 0
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise _Refused(f"bad format string: {exc}") from None
    for _literal, field_name, spec, _conversion in parsed:
        if field_name is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise _Refused("nested format specs are not allowed in templates")
        for number in _DIGITS_RE.findall(spec or ""):
            if int(number) > MAX_WIDTH:
                raise _Refused(f"format width {number} is above the limit {MAX_WIDTH}")
    _refuse_if_big(len(fmt) + fields * (size_hint(args) + MAX_WIDTH), "the formatted text")


def _check_width(width: Any, limit: int = MAX_VALUE_CHARS) -> None:
    if isinstance(width, int) and width > limit:
        raise _Refused(f"width {width:,} is above the limit {limit:,}")


def _check_str_method(owner: str | bytes, name: str, args: tuple, kwargs: dict) -> tuple:
    """Refuse str/bytes method calls that would build a huge value; returns the args to use."""
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _check_width(args[0])
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
            _refuse_if_big(len(owner) + tabs * tabsize, f"{name}()")
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, (str, bytes)) and isinstance(new, (str, bytes)):
            hits = len(owner) + 1 if not old else owner.count(old)
            _refuse_if_big(len(owner) + hits * len(new), f"{name}()")
    elif name == "join" and args:
        items = list(args[0]) if not isinstance(args[0], (str, bytes)) else args[0]
        _refuse_if_big(size_hint(items) + len(owner) * len(items), "join()")
        return (items, *args[1:])
    return args


# --- filters -------------------------------------------------------------------------------

# Filters that never turn a container into text, so a big list passed to them is fine.
_CONTAINER_SAFE_FILTERS = {
    "abs", "attr", "batch", "count", "d", "default", "dictsort", "first", "groupby", "items",
    "last", "length", "list", "map", "max", "min", "random", "reject", "rejectattr", "reverse",
    "select", "selectattr", "slice", "sort", "sum", "unique", "join", "float", "int", "round",
}  # fmt: skip


def _argument(args: tuple, kwargs: dict, position: int, name: str, default: Any = None) -> Any:
    return args[position] if len(args) > position else kwargs.get(name, default)


def _check_filter_arguments(name: str, args: tuple, kwargs: dict) -> tuple:
    """Filter-specific checks; `args` starts with the filtered value. Returns args to use."""
    value = args[0] if args else None
    if name == "center":
        _check_width(_argument(args, kwargs, 1, "width"))
    elif name == "indent":
        width = _argument(args, kwargs, 1, "width", 4)
        width = len(width) if isinstance(width, str) else width
        if isinstance(width, int) and width > MAX_WIDTH:
            raise _Refused(f"indent {width:,} is above the limit {MAX_WIDTH}")
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        _refuse_if_big(size_hint(value) + lines * max(width or 0, 0), "the indented text")
    elif name == "join" and value is not None and not isinstance(value, (str, Mapping)):
        items = list(value)
        separator = _argument(args, kwargs, 1, "d", "")
        _refuse_if_big(size_hint(items) + len(str(separator)) * len(items), "the joined text")
        return (items, *args[1:])
    elif name == "replace" and isinstance(value, str):
        old, new = _argument(args, kwargs, 1, "old"), _argument(args, kwargs, 2, "new")
        if isinstance(old, str) and isinstance(new, str):
            hits = len(value) + 1 if not old else value.count(old)
            _refuse_if_big(len(value) + hits * len(new), "the replaced text")
    elif name == "format" and isinstance(value, str):
        _check_percent_format(value, (args[1:], kwargs))
    elif name in ("batch", "slice"):
        count = _argument(args, kwargs, 1, "linecount" if name == "batch" else "slices")
        if isinstance(count, int) and count > MAX_RANGE:
            raise _Refused(f"{name}({count:,}) is above the limit {MAX_RANGE:,}")
    elif name == "tojson":
        indent = _argument(args, kwargs, 1, "indent")
        if isinstance(indent, int) and indent > 16:
            raise _Refused("tojson indent above 16 is not allowed")
        _refuse_if_big(size_hint(value) * 2, "the JSON text")
    elif name == "wordwrap":
        width = _argument(args, kwargs, 1, "width", 79)
        if isinstance(width, int) and width < 1:
            raise _Refused("wordwrap width must be at least 1")
    return args


def _pretty(value: Any) -> str:
    """`{{ value | pretty }}`: indented JSON text, bounded like every other view."""
    return pretty_json(value)


# --- the environment -----------------------------------------------------------------------


class _Budget:
    """Deadline and size accounting for one render."""

    def __init__(self, time_limit: float) -> None:
        self.time_limit = time_limit
        self.deadline = time.monotonic() + time_limit
        self.built = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Refused(f"the template ran longer than {self.time_limit:g} s and was stopped")

    def produced(self, value: Any) -> Any:
        if isinstance(value, (str, bytes)):
            _refuse_if_big(len(value), "a value")
            self.built += len(value)
            if self.built > MAX_BUILT_CHARS:
                raise _Refused(f"the template built more than {MAX_BUILT_CHARS:,} characters")
        return value


class _GuardedCodeGenerator(CodeGenerator):
    """Routes `a ~ b` through the environment so its size is checked before joining."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.guarded_concat({join}, (")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _TemplateEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus the time and size bounds described in the module doc."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, budget: _Budget, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            finalize=self._finalize,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.budget = budget
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)
        self.globals["range"] = self._range
        self.filters = {name: self._guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["pretty"] = self._guard_filter("pretty", _pretty)

    # values

    def _finalize(self, value: Any) -> Any:
        """Applied to every `{{ ... }}`: None prints as "", big containers are refused."""
        self.budget.tick()
        if value is None:
            return ""
        if not isinstance(value, str):
            size = size_hint(value, MAX_OUTPUT_CHARS)
            _refuse_if_big(size, "the printed value", MAX_OUTPUT_CHARS)
        return value

    def _range(self, *args: Any) -> range:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise _Refused(f"range() of {len(numbers):,} numbers is above the limit {MAX_RANGE:,}")
        return numbers

    def guarded_concat(self, join: Callable[[Iterable[Any]], str], parts: tuple) -> str:
        self.budget.tick()
        _refuse_if_big(size_hint(parts), "the joined text (~)")
        return self.budget.produced(join(parts))

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """Joins buffered output of macros, `{% set %}` and `{% filter %}` blocks."""
        parts = list(parts)
        _refuse_if_big(sum(len(p) for p in parts), "a block's output", MAX_OUTPUT_CHARS)
        return self.budget.produced("".join(parts))

    # operators, calls, filters

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.budget.tick()
        both_ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and both_ints and right > 0:
            if max(abs(left).bit_length(), 1) * right > MAX_INT_BITS:
                raise _Refused(f"the power would exceed {MAX_INT_BITS:,} bits")
        elif operator == "*":
            if both_ints:
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise _Refused(f"the product would exceed {MAX_INT_BITS:,} bits")
            elif isinstance(right, int) and _sequence_times(left):
                _refuse_if_big(size_hint(left) * max(right, 0), "the repeated value")
            elif isinstance(left, int) and _sequence_times(right):
                _refuse_if_big(size_hint(right) * max(left, 0), "the repeated value")
        elif operator == "+" and _sequence_times(left) and _sequence_times(right):
            _refuse_if_big(size_hint(left) + size_hint(right), "the sum")
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left, right)
        return self.budget.produced(super().call_binop(context, operator, left, right))

    def call(  # noqa: N805 (Jinja's signature: "__self" so no keyword argument can clash)
        __self, __context: Context, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:
        __self.budget.tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, bytes)):
            args = _check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return __self.budget.produced(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__
        budget = self.budget

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_str_format(str(fmt), (args, kwargs))
            return budget.produced(wrapped(*args, **kwargs))

        return checked

    def _guard_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        # Jinja marks filters that take the environment/context first; keep that marker
        # (functools.wraps copies it) and find the filtered value after it.
        offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
        budget = self.budget

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            budget.tick()
            head, rest = args[:offset], args[offset:]
            if rest and name not in _CONTAINER_SAFE_FILTERS and not isinstance(rest[0], str):
                _refuse_if_big(size_hint(rest[0]), f"the input of |{name}")
            rest = _check_filter_arguments(name, rest, kwargs)
            return budget.produced(func(*head, *rest, **kwargs))

        return guarded


def _tracer(budget: _Budget) -> Callable[..., Any]:
    """A sys.settrace hook that checks the deadline on every line of compiled template code."""

    def line_hook(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            budget.tick()
        return line_hook

    def call_hook(frame: Any, event: str, arg: Any) -> Any:
        return line_hook if frame.f_code.co_filename == _TEMPLATE_FILENAME else None

    return call_hook


# --- public API ----------------------------------------------------------------------------


def template_context(trace: TraceRecord | Mapping[str, Any]) -> dict[str, Any]:
    """What a template sees: every trace field at top level and the whole trace as `trace`.

    Values are plain JSON data (dicts, lists, strings, numbers; times as ISO strings), cut like
    every displayed value (strings at 200 KB, 10,000 items per list, 64 levels deep).
    """
    plain = to_plain(trace, max_items=10_000, max_nodes=1_000_000)
    context = dict(plain) if isinstance(plain, dict) else {"value": plain}
    context["trace"] = plain
    return context


def _template_line(exc: BaseException) -> int | None:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:  # Jinja rewrites tracebacks so template frames carry template lines
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _as_template_error(exc: BaseException) -> TemplateError:
    line = _template_line(exc)
    detail = clean_text(str(exc))[:_MAX_MESSAGE] or type(exc).__name__
    if isinstance(exc, jinja2.TemplateSyntaxError):
        message = f"syntax error: {exc.message or detail}"
    elif isinstance(exc, SecurityError):
        message = f"not allowed in templates: {detail}"
    elif isinstance(exc, jinja2.UndefinedError):
        message = f"undefined: {detail}"
    elif isinstance(exc, _Refused):
        message = f"refused: {detail}"
    elif isinstance(exc, RecursionError):
        message = "refused: the template recursed too deeply"
    elif isinstance(exc, MemoryError):
        message = "refused: the template ran out of memory"
    elif isinstance(exc, OverflowError) and "range" in detail.lower():
        message = f"refused: {detail}"
    else:
        message = f"{type(exc).__name__}: {detail}"
    return TemplateError(message, line)


def render_template(
    template: str,
    trace: TraceRecord | Mapping[str, Any],
    mode: str = "markdown",
    *,
    time_limit: float = TEMPLATE_TIME_LIMIT,
) -> str:
    """Render a project template for one trace and return sanitised HTML.

    `mode` "markdown": the template writes Markdown (no autoescape; trace text stays text
    because raw HTML is off); "html": the template writes HTML, trace values are autoescaped,
    and the result is sanitised with nh3. Raises `TemplateError` and nothing else.
    """
    if mode not in TEMPLATE_MODES:
        allowed = ", ".join(TEMPLATE_MODES)
        raise TemplateError(f"template mode must be one of {allowed}, not {mode!r}")
    if not isinstance(template, str):
        raise TemplateError("the template must be text")
    template = clean_text(template)
    if len(template) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"the template is {len(template):,} characters; the limit is {MAX_TEMPLATE_CHARS:,}"
        )
    budget = _Budget(time_limit)
    environment = _TemplateEnvironment(budget, autoescape=(mode == "html"))
    try:
        compiled = environment.from_string(template)
        context = template_context(trace)
    except Exception as exc:  # any failure becomes a message the page can show
        raise _as_template_error(exc) from None

    pieces: list[str] = []
    size = 0
    previous_hook = sys.gettrace()
    sys.settrace(_tracer(budget))
    try:
        for chunk in compiled.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise _Refused(f"the output is longer than {MAX_OUTPUT_CHARS:,} characters")
            pieces.append(chunk)
    except Exception as exc:
        raise _as_template_error(exc) from None
    finally:
        sys.settrace(previous_hook)

    text = "".join(pieces)
    try:
        return markdown_html(text) if mode == "markdown" else sanitize_html(text)
    except Exception as exc:  # pragma: no cover - sanitising is not expected to fail
        raise TemplateError(f"the output could not be sanitised: {type(exc).__name__}") from None

