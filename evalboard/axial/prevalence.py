"""How often each failure mode happens in the labelled traces, and where.

Everything here counts traces, not labels. A trace counts as labelled when one of the selected
annotators gave it a verdict, as failed when one of them marked it failed, and as having a mode
when one of them gave it that (active) mode. With two people on the same traces that is the
union of what they saw; choose one annotator to read one person's labels.

Rates are k / n with a 95% Wilson score interval (evalboard.stats.wilson_interval). The interval
covers the sampling of the n traces, taken as a random sample of the traffic the round was drawn
from; it does not cover labelling mistakes or disagreement between people, nor traffic the round
does not represent. A difference between two rounds uses Newcombe's hybrid score interval
(evalboard.stats.diff_interval), which assumes the rounds hold different traces: with shared
traces it is conservative (too wide), and `compare_rounds` reports how many are shared.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from evalboard.coding import annotation_table
from evalboard.db import traces
from evalboard.stats import diff_interval, proportion
from evalboard.store import Store

ANY_FAILURE = "(any failure)"
LOW_N = 10  # cells with fewer labelled traces are marked: their interval spans ~30 points or more
START = "(start)"
NOT_IN_TRACE = "(step not in trace)"


def trace_frame(store: Store, project_id: int, *, round_id: int | None = None,
                annotators: Sequence[str] = (), tags: Sequence[str] = (),
                modes: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per labelled trace under the filters: trace_id, source_id, failed, modes (the
    active modes any selected annotator gave it), tags, dimensions, failure_steps, notes.

    `tags` keeps traces that carry every one of them; `modes` is the set of mode names to count
    (default: the project's active modes).
    """
    from evalboard.axial.taxonomy import active_mode_names

    labels = annotation_table(store, project_id, round_id=round_id)
    labels = labels[labels["verdict"].notna()]
    if annotators:
        labels = labels[labels["annotator"].isin(list(annotators))]
    keep = set(active_mode_names(store, project_id) if modes is None else modes)
    rows = []
    for tid, g in labels.groupby("trace_id", sort=True):
        tag_list = list(g["tags"].iloc[0] or [])
        if tags and not set(tags) <= set(tag_list):
            continue
        failed = bool((g["verdict"] == "fail").any())
        found = sorted({m for ms in g["modes"] for m in ms if m in keep}) if failed else []
        rows.append({"trace_id": int(tid), "source_id": g["source_id"].iloc[0], "failed": failed,
                     "modes": found, "tags": tag_list, "dimensions": dict(g["dimensions"].iloc[0] or {}),
                     "failure_steps": sorted({s for s in g["failure_step"] if isinstance(s, str) and s}),
                     "notes": [f"{r.annotator}: {r.note}" for r in g.itertuples() if isinstance(r.note, str) and r.note]})
    return pd.DataFrame(rows, columns=["trace_id", "source_id", "failed", "modes", "tags",
                                       "dimensions", "failure_steps", "notes"])


def _rate_row(k: int, n: int) -> dict[str, Any]:
    p = proportion(k, n)
    return {"traces": k, "labelled": n, "share": p.p, "low": p.low, "high": p.high}


def pareto_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Modes by traces affected, most first: mode, traces, labelled, share (= traces /
    labelled traces) with its Wilson 95% interval (low, high), and cumulative, the running share
    of all mode assignments (the Pareto line: the few modes that make most of the failures)."""
    n = len(frame)
    counts: dict[str, int] = {}
    for ms in frame["modes"]:
        for m in ms:
            counts[m] = counts.get(m, 0) + 1
    rows = [{"mode": m, **_rate_row(k, n)} for m, k in counts.items()]
    table = pd.DataFrame(rows, columns=["mode", "traces", "labelled", "share", "low", "high"])
    table = table.sort_values(["traces", "mode"], ascending=[False, True]).reset_index(drop=True)
    total = table["traces"].sum()
    table["cumulative"] = table["traces"].cumsum() / total if total else 0.0
    return table


def failure_rate(frame: pd.DataFrame) -> dict[str, Any]:
    """Failed traces / labelled traces with its Wilson interval."""
    return _rate_row(int(frame["failed"].sum()), len(frame))


def traces_with_mode(frame: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The traces that have `mode` (or every failed trace for ANY_FAILURE), with their notes."""
    if mode == ANY_FAILURE:
        hits = frame[frame["failed"]]
    else:
        hits = frame[frame["modes"].map(lambda ms: mode in ms)]
    out = hits[["trace_id", "source_id", "modes", "notes"]].copy()
    out["modes"] = out["modes"].map(", ".join)
    out["notes"] = out["notes"].map(" | ".join)
    return out.reset_index(drop=True)


def _groups(frame: pd.DataFrame, by: str) -> dict[str, list[int]]:
    """Row positions per group value: by "tag", or by "dimension:<name>"."""
    groups: dict[str, list[int]] = {}
    if by == "tag":
        for i, ts in enumerate(frame["tags"]):
            for t in ts:
                groups.setdefault(str(t), []).append(i)
    elif by.startswith("dimension:"):
        name = by.split(":", 1)[1]
        for i, dims in enumerate(frame["dimensions"]):
            if name in dims and dims[name] not in (None, ""):
                groups.setdefault(str(dims[name]), []).append(i)
    else:
        raise ValueError(f"breakdown by {by!r}: use 'tag' or 'dimension:<name>'")
    return groups


def dimension_names(frame: pd.DataFrame) -> list[str]:
    return sorted({k for dims in frame["dimensions"] for k in dims})


def breakdown(frame: pd.DataFrame, by: str, *, modes: Sequence[str] | None = None) -> pd.DataFrame:
    """Failure rate per group value and mode: value, mode, traces (k), labelled (n), share,
    low, high (Wilson 95%), low_n (n < LOW_N). Includes ANY_FAILURE (the trace failed at all).
    A trace with several tags counts under each tag."""
    groups = _groups(frame, by)
    if modes is None:
        modes = list(pareto_table(frame)["mode"])
    rows = []
    mode_sets = list(frame["modes"])
    failed = list(frame["failed"])
    for value, idx in sorted(groups.items()):
        n = len(idx)
        for mode in [ANY_FAILURE, *modes]:
            k = sum(1 for i in idx if failed[i]) if mode == ANY_FAILURE else sum(1 for i in idx if mode in mode_sets[i])
            rows.append({"value": value, "mode": mode, **_rate_row(k, n), "low_n": n < LOW_N})
    return pd.DataFrame(rows, columns=["value", "mode", "traces", "labelled", "share", "low", "high", "low_n"])


def step_order(spans: Sequence[dict[str, Any]]) -> list[str]:
    """The steps of a trace in the order they ran: spans without children (containers such as
    the root are not steps), by start time, then by position in the trace."""
    parents = {s.get("parent_id") for s in spans if s.get("parent_id")}
    steps = [(_start(s.get("start_time")), i, s.get("name") or s.get("id") or "?")
             for i, s in enumerate(spans) if s.get("id") not in parents]
    return [name for _, _, name in sorted(steps, key=lambda t: (t[0], t[1]))]


def _start(value: Any) -> float:
    """Seconds since the epoch of a span's start (ISO text or datetime); +inf when unknown, so
    steps without a time keep their place after the timed ones."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return math.inf
    return math.inf


def transitions(store: Store, frame: pd.DataFrame) -> pd.DataFrame:
    """Last good step -> first failing step, counted over failed traces with a failure step:
    last_good, first_failing, traces. The last good step is the step that ran just before the
    failing one (START when it was the first); a failure step that names no span of the trace
    is counted as NOT_IN_TRACE."""
    wanted = frame[frame["failed"] & frame["failure_steps"].map(bool)]
    if wanted.empty:
        return pd.DataFrame(columns=["last_good", "first_failing", "traces"])
    ids = [int(t) for t in wanted["trace_id"]]
    spans: dict[int, list[dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 900):
            for tid, sp in conn.execute(select(traces.c.id, traces.c.spans).where(traces.c.id.in_(ids[i:i + 900]))):
                spans[tid] = sp or []
    pairs: dict[tuple[str, str], set[int]] = {}
    for r in wanted.itertuples():
        order = step_order(spans.get(int(r.trace_id), []))
        for step in r.failure_steps:
            if step in order:
                pos = order.index(step)
                before = order[pos - 1] if pos > 0 else START
                pairs.setdefault((before, step), set()).add(int(r.trace_id))
            else:
                pairs.setdefault((NOT_IN_TRACE, step), set()).add(int(r.trace_id))
    rows = [{"last_good": a, "first_failing": b, "traces": len(t)} for (a, b), t in pairs.items()]
    return pd.DataFrame(rows).sort_values("traces", ascending=False).reset_index(drop=True)


def compare_rounds(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Per mode (and ANY_FAILURE): rate in each round with its Wilson interval, and the
    difference second - first with Newcombe's 95% interval (`significant` when it excludes 0).

    Columns: mode, traces_1, labelled_1, share_1, low_1, high_1, the same with _2, diff,
    diff_low, diff_high, significant. Empty when either round has no labelled traces.
    """
    n1, n2 = len(first), len(second)
    cols = ["mode", "traces_1", "labelled_1", "share_1", "low_1", "high_1", "traces_2", "labelled_2",
            "share_2", "low_2", "high_2", "diff", "diff_low", "diff_high", "significant"]
    if n1 == 0 or n2 == 0:
        return pd.DataFrame(columns=cols)
    modes = list(dict.fromkeys([*pareto_table(first)["mode"], *pareto_table(second)["mode"]]))
    rows = []
    for mode in [ANY_FAILURE, *modes]:
        if mode == ANY_FAILURE:
            k1, k2 = int(first["failed"].sum()), int(second["failed"].sum())
        else:
            k1 = int(first["modes"].map(lambda ms: mode in ms).sum())
            k2 = int(second["modes"].map(lambda ms: mode in ms).sum())
        # diff_interval(k1, n1, k2, n2) is p1 - p2; we want after - before.
        d = diff_interval(k2, n2, k1, n1)
        rows.append({"mode": mode, "traces_1": k1, "labelled_1": n1, "share_1": d.second.p,
                     "low_1": d.second.low, "high_1": d.second.high, "traces_2": k2, "labelled_2": n2,
                     "share_2": d.first.p, "low_2": d.first.low, "high_2": d.first.high,
                     "diff": d.diff, "diff_low": d.low, "diff_high": d.high,
                     "significant": d.low > 0 or d.high < 0})
    return pd.DataFrame(rows, columns=cols)


def shared_traces(first: pd.DataFrame, second: pd.DataFrame) -> int:
    """How many traces both frames hold (Newcombe's interval assumes none)."""
    return len(set(first["trace_id"]) & set(second["trace_id"]))
