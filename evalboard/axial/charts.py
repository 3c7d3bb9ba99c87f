"""Altair charts of failure-mode prevalence, built from the tables in evalboard.axial.prevalence.

Charts render as SVG (usermeta embedOptions renderer "svg") so their marks are real DOM
elements: crisp at any size, and clickable in browser tests. Shares are shown in percent; error
bars are the Wilson 95% intervals the tables carry.
"""

from __future__ import annotations

import json
from typing import Any

import altair as alt
import pandas as pd

from evalboard.axial.prevalence import ANY_FAILURE

SVG = {"embedOptions": {"renderer": "svg"}}
PARETO_SELECTION = "pick"
LOW_N_NOTE = "n < 10"


def pareto_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Bars: share of labelled traces with each mode (Wilson 95% error bars), most frequent
    first; line: cumulative share of all mode assignments (right axis). Clicking a bar selects
    its mode (selection parameter PARETO_SELECTION, field "mode")."""
    data = table.assign(label=[f"{k} of {n}" for k, n in zip(table["traces"], table["labelled"], strict=True)])
    order = list(data["mode"])
    pick = alt.selection_point(name=PARETO_SELECTION, fields=["mode"], on="click")
    x = alt.X("mode:N", sort=order, title=None, axis=alt.Axis(labelAngle=-30, labelLimit=180))
    tooltip = [alt.Tooltip("mode:N"), alt.Tooltip("label:N", title="traces"),
               alt.Tooltip("share:Q", format=".1%"), alt.Tooltip("low:Q", format=".1%", title="95% low"),
               alt.Tooltip("high:Q", format=".1%", title="95% high")]
    base = alt.Chart(data)
    bars = base.mark_bar().encode(
        x=x, y=alt.Y("share:Q", title="share of labelled traces", axis=alt.Axis(format="%")),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45)), tooltip=tooltip,
    ).add_params(pick)
    errors = base.mark_rule(strokeWidth=1.5, color="#333").encode(x=x, y="low:Q", y2="high:Q")
    counts = base.mark_text(dy=-8, fontSize=11).encode(x=x, y="high:Q", text="traces:Q")
    left = alt.layer(bars, errors, counts)
    line = base.mark_line(point=alt.OverlayMarkDef(color="#e45756"), color="#e45756").encode(
        x=x, y=alt.Y("cumulative:Q", title="cumulative share of assignments",
                      axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        tooltip=[alt.Tooltip("mode:N"), alt.Tooltip("cumulative:Q", format=".0%")])
    return (alt.layer(left, line).resolve_scale(y="independent")
            .properties(height=340, usermeta=SVG))


def heatmap_chart(df: pd.DataFrame, *, group_title: str) -> alt.LayerChart:
    """Mode x value: colour = failure rate, text = rate and n; low-n cells (n < 10) faded and
    marked with "*"."""
    data = df.assign(text=[f"{s:.0%}{'*' if low else ''}\nn={n}" if n else "n=0"
                           for s, n, low in zip(df["share"].fillna(0), df["labelled"], df["low_n"], strict=True)],
                     share_pct=df["share"].fillna(0))
    modes = [ANY_FAILURE, *[m for m in dict.fromkeys(data["mode"]) if m != ANY_FAILURE]]
    base = alt.Chart(data).encode(
        x=alt.X("value:N", title=group_title, axis=alt.Axis(labelAngle=-30, labelLimit=160)),
        y=alt.Y("mode:N", sort=modes, title=None, axis=alt.Axis(labelLimit=200)))
    cells = base.mark_rect().encode(
        color=alt.Color("share_pct:Q", title="failure rate", scale=alt.Scale(scheme="orangered", domain=[0, 1]),
                        legend=alt.Legend(format="%")),
        opacity=alt.condition(alt.datum.low_n, alt.value(0.45), alt.value(1.0)),
        tooltip=[alt.Tooltip("mode:N"), alt.Tooltip("value:N", title=group_title),
                 alt.Tooltip("traces:Q"), alt.Tooltip("labelled:Q", title="n"),
                 alt.Tooltip("share:Q", format=".1%"), alt.Tooltip("low:Q", format=".1%", title="95% low"),
                 alt.Tooltip("high:Q", format=".1%", title="95% high"), alt.Tooltip("low_n:N", title=LOW_N_NOTE)])
    text = base.mark_text(fontSize=10, lineBreak="\n").encode(
        text="text:N", color=alt.condition(alt.datum.share_pct > 0.5, alt.value("white"), alt.value("black")))
    return alt.layer(cells, text).properties(height=max(160, 34 * len(modes)), usermeta=SVG)


def transitions_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Last good step (rows) -> first failing step (columns), colour and text = traces."""
    base = alt.Chart(df).encode(
        x=alt.X("first_failing:N", title="first failing step", axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("last_good:N", title="last good step"))
    cells = base.mark_rect().encode(
        color=alt.Color("traces:Q", scale=alt.Scale(scheme="blues"), title="traces"),
        tooltip=["last_good:N", "first_failing:N", "traces:Q"])
    text = base.mark_text(fontSize=12).encode(text="traces:Q")
    return alt.layer(cells, text).properties(height=max(140, 40 * df["last_good"].nunique()), usermeta=SVG)


def compare_chart(df: pd.DataFrame, first: str, second: str) -> alt.LayerChart:
    """Per mode, the two rounds' rates side by side with Wilson 95% error bars."""
    long = pd.concat([
        pd.DataFrame({"mode": df["mode"], "round": first, "share": df["share_1"], "low": df["low_1"],
                      "high": df["high_1"], "traces": df["traces_1"], "labelled": df["labelled_1"]}),
        pd.DataFrame({"mode": df["mode"], "round": second, "share": df["share_2"], "low": df["low_2"],
                      "high": df["high_2"], "traces": df["traces_2"], "labelled": df["labelled_2"]}),
    ], ignore_index=True)
    order = list(df["mode"])
    base = alt.Chart(long).encode(
        y=alt.Y("mode:N", sort=order, title=None, axis=alt.Axis(labelLimit=200)),
        yOffset=alt.YOffset("round:N", sort=[first, second]),
        color=alt.Color("round:N", sort=[first, second], title="round"))
    bars = base.mark_bar().encode(
        x=alt.X("share:Q", title="share of labelled traces", axis=alt.Axis(format="%")),
        tooltip=["mode:N", "round:N", "traces:Q", alt.Tooltip("labelled:Q", title="n"),
                 alt.Tooltip("share:Q", format=".1%"), alt.Tooltip("low:Q", format=".1%", title="95% low"),
                 alt.Tooltip("high:Q", format=".1%", title="95% high")])
    errors = base.mark_rule(color="#333").encode(x="low:Q", x2="high:Q")
    return alt.layer(bars, errors).properties(height=max(160, 44 * len(order)), usermeta=SVG)


def difference_chart(df: pd.DataFrame, first: str, second: str) -> alt.LayerChart:
    """Per mode, the change second - first with Newcombe's 95% interval; 0 marked."""
    data = df.assign(change=[("lower" if h < 0 else "higher") if s else "no clear change"
                             for s, h in zip(df["significant"], df["diff_high"], strict=True)])
    order = list(df["mode"])
    base = alt.Chart(data).encode(y=alt.Y("mode:N", sort=order, title=None, axis=alt.Axis(labelLimit=200)))
    rules = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("diff_low:Q", title=f"change in share: {second} minus {first}", axis=alt.Axis(format="+%")),
        x2="diff_high:Q", color=alt.Color("change:N", scale=alt.Scale(
            domain=["lower", "no clear change", "higher"], range=["#2a9d8f", "#999999", "#e76f51"])))
    points = base.mark_point(filled=True, size=70).encode(
        x="diff:Q", color="change:N",
        tooltip=["mode:N", alt.Tooltip("diff:Q", format="+.1%"),
                 alt.Tooltip("diff_low:Q", format="+.1%", title="95% low"),
                 alt.Tooltip("diff_high:Q", format="+.1%", title="95% high")])
    zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return alt.layer(rules, points, zero).properties(height=max(140, 30 * len(order)), usermeta=SVG)


def chart_spec(chart: alt.TopLevelMixin) -> bytes:
    """The chart's Vega-Lite spec as JSON, data included (opens in the Vega editor, which
    exports PNG and SVG)."""
    return json.dumps(chart.to_dict(), indent=1, default=str).encode()


def chart_image(chart: alt.TopLevelMixin, fmt: str) -> bytes | None:
    """The chart as "svg" or "png" bytes when vl-convert is installed, else None."""
    try:
        import vl_convert as vlc  # optional: renders Vega-Lite without a browser
    except ImportError:
        return None
    spec: dict[str, Any] = chart.to_dict()
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode()
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=2)
    raise ValueError(f"chart format must be 'svg' or 'png', got {fmt!r}")
