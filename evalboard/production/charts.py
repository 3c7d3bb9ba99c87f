"""Altair charts of production prevalence, from the tables in evalboard.production.estimates.

Same conventions as evalboard.axial.charts: SVG rendering (marks are DOM elements, crisp and
clickable in browser tests), shares in percent, 95% intervals as rules. "raw" is the judge's
flag rate (Wilson interval), "corrected" the prevalence corrected for the judge's TPR and TNR
(interval from evalboard.stats); a refused correction simply has no corrected mark.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from evalboard.axial.charts import SVG

BARS_SELECTION = "pick"
KINDS = ["raw", "corrected"]
KIND_COLOURS = ["#9aa5b1", "#1f77b4"]
_TOOLTIP_SHARE = [alt.Tooltip("share:Q", format=".1%"), alt.Tooltip("low:Q", format=".1%", title="95% low"),
                  alt.Tooltip("high:Q", format=".1%", title="95% high")]


def _long(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per (keys..., kind): share/low/high of the raw rate and of the corrected one."""
    raw = df[keys + ["flagged", "judged", "raw", "raw_low", "raw_high"]].rename(
        columns={"raw": "share", "raw_low": "low", "raw_high": "high"}).assign(kind="raw")
    corrected = df[keys + ["flagged", "judged", "corrected", "low", "high"]].rename(
        columns={"corrected": "share"}).assign(kind="corrected")
    out = pd.concat([raw, corrected], ignore_index=True)
    out = out[out["share"].notna()].copy()
    out["share"] = out["share"].astype(float)
    out["low"] = out["low"].astype(float)
    out["high"] = out["high"].astype(float)
    return out


def bars_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Per mode, the raw rate and the corrected prevalence side by side, each with its 95%
    interval. Clicking a bar selects its mode (selection BARS_SELECTION, field "mode")."""
    data = _long(table, ["mode"])
    order = list(dict.fromkeys(table["mode"]))
    pick = alt.selection_point(name=BARS_SELECTION, fields=["mode"], on="click")
    y = alt.Y("mode:N", sort=order, title=None, axis=alt.Axis(labelLimit=220))
    colour = alt.Color("kind:N", sort=KINDS, scale=alt.Scale(domain=KINDS, range=KIND_COLOURS), title=None)
    base = alt.Chart(data).encode(y=y, yOffset=alt.YOffset("kind:N", sort=KINDS), color=colour)
    bars = base.mark_bar().encode(
        x=alt.X("share:Q", title="share of production traces", axis=alt.Axis(format="%")),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45)),
        tooltip=[alt.Tooltip("mode:N"), alt.Tooltip("kind:N"), alt.Tooltip("flagged:Q", title="flagged"),
                 alt.Tooltip("judged:Q", title="judged"), *_TOOLTIP_SHARE]).add_params(pick)
    errors = base.mark_rule(color="#333", strokeWidth=1.5).encode(x="low:Q", x2="high:Q")
    return alt.layer(bars, errors).properties(height=max(120, 64 * len(order)), usermeta=SVG)


def trend_chart(df: pd.DataFrame, period: str) -> alt.LayerChart:
    """Per mode over time: the corrected prevalence (line, 95% band) and the raw rate (dashed).
    Periods with few judged traces are drawn as hollow points."""
    data = _long(df.assign(low_n=df["low_n"].astype(bool)), ["period", "mode", "low_n"])
    data["period"] = pd.to_datetime(data["period"])
    x = alt.X("period:T", title=f"{period} (UTC)" if period == "day" else "week starting (UTC)",
              axis=alt.Axis(format="%b %d"))
    colour = alt.Color("mode:N", title="failure mode")
    corrected = alt.Chart(data[data["kind"] == "corrected"]).encode(x=x, color=colour)
    band = corrected.mark_area(opacity=0.18).encode(y=alt.Y("low:Q", title="share of production traces",
                                                            axis=alt.Axis(format="%")), y2="high:Q")
    tooltip = [alt.Tooltip("period:T", title=period, format="%Y-%m-%d"), alt.Tooltip("mode:N"),
               alt.Tooltip("kind:N"), alt.Tooltip("flagged:Q"), alt.Tooltip("judged:Q"), *_TOOLTIP_SHARE]
    line = corrected.mark_line(point=True).encode(y="share:Q", tooltip=tooltip)
    raw = alt.Chart(data[data["kind"] == "raw"]).mark_line(strokeDash=[4, 3], opacity=0.7).encode(
        x=x, y="share:Q", color=colour, tooltip=tooltip)
    few = alt.Chart(data[(data["kind"] == "corrected") & data["low_n"]]).mark_point(
        shape="circle", filled=True, color="white", size=28).encode(x=x, y="share:Q")
    return alt.layer(band, line, raw, few).properties(height=320, usermeta=SVG)


def breakdown_chart(df: pd.DataFrame, facet_title: str) -> alt.FacetChart:
    """One panel per mode: per value of the facet, raw and corrected with 95% intervals;
    values with few judged traces (low_n) faded."""
    data = _long(df.assign(low_n=df["low_n"].astype(bool)), ["mode", "value", "low_n"])
    order = list(dict.fromkeys(df["value"]))
    colour = alt.Color("kind:N", sort=KINDS, scale=alt.Scale(domain=KINDS, range=KIND_COLOURS), title=None)
    base = alt.Chart().encode(y=alt.Y("value:N", sort=order, title=facet_title, axis=alt.Axis(labelLimit=180)),
                              yOffset=alt.YOffset("kind:N", sort=KINDS), color=colour)
    bars = base.mark_bar().encode(
        x=alt.X("share:Q", title="share of production traces", axis=alt.Axis(format="%")),
        opacity=alt.condition(alt.datum.low_n, alt.value(0.4), alt.value(1.0)),
        tooltip=[alt.Tooltip("mode:N"), alt.Tooltip("value:N", title=facet_title), alt.Tooltip("kind:N"),
                 alt.Tooltip("flagged:Q"), alt.Tooltip("judged:Q"), *_TOOLTIP_SHARE,
                 alt.Tooltip("low_n:N", title="fewer than 30 traces")])
    errors = base.mark_rule(color="#333").encode(x="low:Q", x2="high:Q")
    height = max(90, 40 * len(order))
    return (alt.layer(bars, errors, data=data).properties(height=height, width=420)
            .facet(row=alt.Row("mode:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left",
                                                                        labelOrient="top", labelFontWeight="bold")))
            .properties(usermeta=SVG))


def compare_chart(df: pd.DataFrame, first: str, second: str) -> alt.LayerChart:
    """Per mode, the corrected prevalence in two windows side by side with 95% intervals (the
    raw rate where the correction is refused)."""
    rows = []
    for name, tag in ((first, "1"), (second, "2")):
        for r in df.itertuples(index=False):
            corrected = getattr(r, f"corrected_{tag}")
            refused = corrected is None or pd.isna(corrected)
            rows.append({"mode": r.mode, "window": name,
                         "share": getattr(r, f"raw_{tag}") if refused else corrected,
                         "low": None if refused else getattr(r, f"low_{tag}"),
                         "high": None if refused else getattr(r, f"high_{tag}"),
                         "judged": getattr(r, f"judged_{tag}"), "kind": "raw" if refused else "corrected"})
    data = pd.DataFrame(rows)
    order = list(df["mode"])
    base = alt.Chart(data).encode(y=alt.Y("mode:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
                                  yOffset=alt.YOffset("window:N", sort=[first, second]),
                                  color=alt.Color("window:N", sort=[first, second], title="window"))
    bars = base.mark_bar().encode(
        x=alt.X("share:Q", title="corrected prevalence", axis=alt.Axis(format="%")),
        tooltip=["mode:N", "window:N", "kind:N", "judged:Q", *_TOOLTIP_SHARE])
    errors = base.mark_rule(color="#333").encode(x="low:Q", x2="high:Q")
    return alt.layer(bars, errors).properties(height=max(120, 56 * len(order)), usermeta=SVG)
