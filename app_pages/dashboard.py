"""Production prevalence for product managers: how often each failure happens in production,
corrected for the judges' errors, over time, where, and before/after a change.

Every control is in the URL (widgets bound to query parameters), so a view can be shared by
copying the address. Charts download as CSV and Vega-Lite (SVG/PNG too when vl-convert is
installed); the chart menu also saves images.
"""

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from evalboard import production as prod
from evalboard.axial import charts as axial_charts
from evalboard.production import charts
from ui import trace_view
from ui.navigation import registered
from ui.state import get_store, require_project

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]
RUNS_PAGE = "app_pages/production_runs.py"
PERCENT = st.column_config.NumberColumn(format="percent")

st.title("Production prevalence")
st.caption("How often each failure mode happens in production: the share of sampled production traces "
           "each validated judge flagged (raw), and that share corrected for the judge's own misses and "
           "false alarms, with 95% intervals. The address bar holds every choice below: copy it to share "
           "this view.")
with st.expander("How these numbers are computed, and what they assume"):
    st.markdown(prod.METHOD_NOTE)

judges = prod.production_judges(store, pid)
span = prod.data_span(store, pid)
if not judges or span is None:
    st.info("No production verdicts yet. Run validated judges on a production sample first.")
    if RUNS_PAGE in registered():
        st.page_link(RUNS_PAGE, label="Go to Production runs", icon=":material/play_circle:")
    st.caption("From a terminal: `evalboard judge run --judge NAME --source langfuse --since 24h --sample 1000`.")
    st.stop()

# Labels identify a judge version in the URL: the mode's name, with the version when a mode has several.
modes_count = pd.Series([j.mode for j in judges]).value_counts()
label = {j.version_id: j.mode if modes_count[j.mode] == 1 else f"{j.mode} ({j.judge} {j.version})" for j in judges}
by_label = {label[j.version_id]: j for j in judges}
first_day, last_day = span
default_from = max(first_day, last_day - timedelta(days=55))

with st.container(border=True):
    c1, c2, c3, c4 = st.columns([4, 2, 2, 2], vertical_alignment="bottom")
    chosen = c1.multiselect("Failure modes", list(by_label), default=list(by_label), key="dashboard.modes",
                            bind="query-params", placeholder="all validated judges")
    start = c2.date_input("From", value=default_from, min_value=first_day, max_value=last_day,
                          key="dashboard.from", bind="query-params")
    end = c3.date_input("To", value=last_day, min_value=first_day, max_value=last_day, key="dashboard.to",
                        bind="query-params")
    period = c4.segmented_control("Trend per", list(prod.PERIODS), default="week",
                                  key="dashboard.period", bind="query-params") or "week"

shown = [by_label[name] for name in chosen] or judges
if not isinstance(start, date) or not isinstance(end, date) or start > end:
    st.warning("Choose a window whose start is on or before its end.")
    st.stop()
st.caption(f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (UTC days, both included). Production verdicts exist from "
           f"{first_day:%Y-%m-%d} to {last_day:%Y-%m-%d}.")


def downloads(chart, data: pd.DataFrame, name: str) -> None:  # noqa: ANN001 - an Altair chart
    """The chart's data as CSV and its Vega-Lite spec; SVG and PNG when vl-convert is installed."""
    cols = st.columns(4)
    cols[0].download_button("Data (CSV)", data.to_csv(index=False).encode(), file_name=f"{name}.csv",
                            mime="text/csv", key=f"dashboard.{name}.csv")
    cols[1].download_button("Chart (Vega-Lite JSON)", axial_charts.chart_spec(chart), file_name=f"{name}.vl.json",
                            mime="application/json", key=f"dashboard.{name}.spec",
                            help="Opens in the Vega editor, which exports PNG and SVG.")
    svg = axial_charts.chart_image(chart, "svg")
    if svg is not None:
        cols[2].download_button("SVG", svg, file_name=f"{name}.svg", mime="image/svg+xml", key=f"dashboard.{name}.svg")
        cols[3].download_button("PNG", axial_charts.chart_image(chart, "png") or b"", file_name=f"{name}.png",
                                mime="image/png", key=f"dashboard.{name}.png")


def share(value: float | None) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.1%}"


def flagged_list(judge: prod.RunJudge, key: str, page_size: int = 25) -> None:
    """The traces `judge` flagged in the window, a page at a time; select a row to read it."""
    total = prod.count_flagged(store, pid, judge.version_id, start, end)
    st.markdown(f"**{judge.mode}**: {total:,} traces flagged by {judge.judge} {judge.version} in this window")
    if not total:
        return
    pages = max(1, -(-total // page_size))
    page = st.pagination(pages, key=f"{key}.page") if pages > 1 else 1
    rows = prod.flagged_traces(store, pid, judge.version_id, start, end, limit=page_size,
                               offset=(min(page, pages) - 1) * page_size)
    event = st.dataframe(rows, hide_index=True, on_select="rerun", selection_mode="single-row", key=f"{key}.table",
                         column_config={"time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm"),
                                        "input": st.column_config.TextColumn("input", width="medium"),
                                        "output": st.column_config.TextColumn("output", width="medium"),
                                        "reasoning": st.column_config.TextColumn("judge's reasoning", width="large")})
    picked = (event or {}).get("selection", {}).get("rows") or []
    if picked:
        trace_id = int(rows.iloc[picked[0]]["trace_id"])
        trace = store.get_trace(trace_id)
        if trace is not None and trace.project_id == pid:
            with st.container(border=True):
                st.markdown(f"**Trace {trace_id}**, flagged: {rows.iloc[picked[0]]['reasoning'] or '(no reasoning)'}")
                trace_view.show(trace, project.settings, key=f"{key}.trace")


tabs = st.tabs(["Prevalence", "Trend", "Breakdown", "Compare windows", "Flagged traces"], key="dashboard.view",
               bind="query-params")

# -- prevalence per mode ------------------------------------------------------------------------
with tabs[0]:
    if tabs[0].open is not False:
        estimates = prod.window_estimates(store, pid, shown, start, end)
        table = prod.estimates_table(estimates)
        cols = st.columns(min(4, len(estimates)))
        for n, est in enumerate(estimates):
            value = est.corrected if est.refused is None else est.raw
            interval = (f"95% interval {share(est.low)} to {share(est.high)}" if est.refused is None
                        else f"raw rate only: {est.refused}")
            cols[n % len(cols)].metric(est.mode, share(value), border=True,
                                       help=f"{interval}. Raw: {est.flagged:,} of {est.judged:,} flagged "
                                            f"({share(est.raw)}, 95% {share(est.raw_low)} to {share(est.raw_high)}).")
        for est in estimates:
            if est.refused:
                st.warning(f"**{est.mode}**: no correction, only the raw rate is shown: {est.refused}.")
            elif not est.judged:
                st.info(f"**{est.mode}**: no production traces judged in this window.")
        if table["judged"].sum():
            chart = charts.bars_chart(table)
            event = st.altair_chart(chart, on_select="rerun", key="dashboard.bars", width="stretch")
            st.caption("Grey: raw share the judge flagged (Wilson 95% interval). Blue: corrected prevalence "
                       "(95% interval covering production sampling and the test split's TPR and TNR). "
                       "Click a bar to list the traces that judge flagged.")
            st.dataframe(table.drop(columns=["version_id"]), hide_index=True, column_config={
                c: PERCENT for c in ("raw", "raw_low", "raw_high", "corrected", "low", "high")})
            downloads(chart, table, "prevalence")
            picked = (event or {}).get("selection", {}).get(charts.BARS_SELECTION) or []
            mode = picked[0].get("mode") if picked and isinstance(picked[0], dict) else None
            target = next((j for j in shown if j.mode == mode), None)
            if target is not None:
                flagged_list(target, "dashboard.bars_flagged")

# -- trend ------------------------------------------------------------------------------------
with tabs[1]:
    if tabs[1].open:
        series = prod.trend(store, pid, shown, start, end, period)
        if series.empty:
            st.info("No production traces judged in this window.")
        else:
            chart = charts.trend_chart(series, period)
            st.altair_chart(chart, width="stretch")
            st.caption(f"Solid line and band: corrected prevalence per {period} with its 95% interval; dashed: "
                       f"raw share flagged. White dots: fewer than {prod.LOW_N} traces judged that {period}, "
                       "so the interval is wide.")
            downloads(chart, series, f"trend-per-{period}")

# -- breakdown --------------------------------------------------------------------------------
with tabs[2]:
    if tabs[2].open:
        kinds = prod.facets(store, pid)
        if not kinds:
            st.info("These traces carry no environment, release, tags or dimensions to break down by.")
        else:
            facet = st.selectbox("By", kinds, key="dashboard.facet", bind="query-params", format_func=prod.facet_label)
            parts = prod.breakdown(store, pid, shown, facet or kinds[0], start, end)
            if parts.empty:
                st.info("No production traces judged in this window.")
            else:
                title = prod.facet_label(facet or kinds[0])
                chart = charts.breakdown_chart(parts, title)
                st.altair_chart(chart)
                st.caption(f"Each {title} value is estimated separately with the judge's TPR and TNR. Faded "
                           f"bars: fewer than {prod.LOW_N} traces judged. A trace with several tags counts under each.")
                st.dataframe(parts.drop(columns=["version_id"]), hide_index=True, column_config={
                    c: PERCENT for c in ("raw", "raw_low", "raw_high", "corrected", "low", "high")})
                downloads(chart, parts, f"by-{title}")

# -- compare two windows ----------------------------------------------------------------------
with tabs[3]:
    if tabs[3].open:
        middle = start + (end - start) // 2
        c1, c2, c3, c4 = st.columns(4)
        a_from = c1.date_input("Before: from", value=start, key="dashboard.a_from", bind="query-params")
        a_to = c2.date_input("Before: to", value=middle, key="dashboard.a_to", bind="query-params")
        b_from = c3.date_input("After: from", value=min(middle + timedelta(days=1), end), key="dashboard.b_from",
                               bind="query-params")
        b_to = c4.date_input("After: to", value=end, key="dashboard.b_to", bind="query-params")
        if not all(isinstance(d, date) for d in (a_from, a_to, b_from, b_to)) or a_from > a_to or b_from > b_to:
            st.warning("Each window needs a start on or before its end.")
        else:
            compared = prod.compare_windows(store, pid, shown, (a_from, a_to), (b_from, b_to))
            name_a, name_b = f"{a_from:%b %d}-{a_to:%b %d}", f"{b_from:%b %d}-{b_to:%b %d}"
            chart = charts.compare_chart(compared, name_a, name_b)
            st.altair_chart(chart, width="stretch")
            usable = compared.dropna(subset=["raw_diff"]).rename(
                columns={"raw_diff": "diff", "raw_diff_low": "diff_low", "raw_diff_high": "diff_high"})
            if not usable.empty:
                st.altair_chart(axial_charts.difference_chart(usable, name_a, name_b), width="stretch")
            st.caption("Top: corrected prevalence in each window (raw where the correction is refused). Bottom: "
                       "change in the raw share with Newcombe's 95% interval; 'lower'/'higher' when it excludes "
                       "0. Both windows share the judge's TPR and TNR, so the corrected change (table) is clear "
                       "exactly when the raw one is.")
            st.dataframe(compared, hide_index=True, column_config={
                c: PERCENT for c in compared.columns if c.split("_")[0] in ("raw", "corrected", "low", "high")})
            downloads(chart, compared, "compare-windows")

# -- flagged traces ---------------------------------------------------------------------------
with tabs[4]:
    if tabs[4].open:
        names = [label[j.version_id] for j in shown]
        name = st.selectbox("Judge", names, key="dashboard.flag_mode", bind="query-params")
        flagged_list(by_label.get(name or names[0], shown[0]), "dashboard.flagged")
