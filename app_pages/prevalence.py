"""Failure prevalence: how often each failure mode happens, where, and whether a fix changed it.

Pareto chart of modes (click a bar to list its traces), failure rate by dimension value and by
tag, last good step -> first failing step, and two rounds side by side. Filters apply to every
chart; each chart downloads as data (CSV) and as a Vega-Lite spec.
"""

import pandas as pd
import streamlit as st

from evalboard.axial import charts
from evalboard.axial import prevalence as pv
from evalboard.coding import annotation_table
from ui.state import current_round, get_store, require_project

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]

st.title("Failure prevalence")
st.caption("Counts are traces. A trace is failed, or has a mode, when any of the selected annotators "
           "said so; pick one annotator to read one person's labels. Rates come with 95% Wilson "
           "intervals: they cover the chance of which traces were drawn into the round (read as a "
           "random sample of its traffic), not labelling mistakes or disagreement, nor traffic the "
           "round does not represent.")

rounds = store.list_rounds(pid)
round_names = {0: "All labelled traces", **{r.id: r.name for r in rounds}}
sidebar_round = current_round(store, project)
default_round = sidebar_round.id if sidebar_round else (rounds[-1].id if rounds else 0)
if st.session_state.get("prevalence.round") not in round_names:
    st.session_state["prevalence.round"] = default_round

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    round_id = c1.selectbox("Round", list(round_names), key="prevalence.round", format_func=round_names.get)
    labels = annotation_table(store, pid, round_id=round_id or None)
    people = sorted(labels.loc[labels["verdict"].notna(), "annotator"].unique())
    who = c2.multiselect("Annotators", people, key="prevalence.annotators", placeholder="everyone")
    tags = c3.multiselect("Tags (traces with all of them)", store.trace_facets(pid)["tags"], key="prevalence.tags")

frame = pv.trace_frame(store, pid, round_id=round_id or None, annotators=who, tags=tags)
if frame.empty:
    st.info("No labelled traces under these filters. Label traces on the Annotate page, or widen the filters.")
    st.stop()


def downloads(chart, data: pd.DataFrame, name: str) -> None:  # noqa: ANN001 - an Altair chart
    """Download buttons for a chart: its data as CSV, its Vega-Lite spec, and SVG/PNG when the
    server can render them (vl-convert installed). The chart's own menu also saves a PNG."""
    cols = st.columns(4)
    cols[0].download_button("Data (CSV)", data.to_csv(index=False).encode(), file_name=f"{name}.csv",
                            mime="text/csv", key=f"prevalence.{name}.csv")
    cols[1].download_button("Chart (Vega-Lite JSON)", charts.chart_spec(chart), file_name=f"{name}.vl.json",
                            mime="application/json", key=f"prevalence.{name}.spec",
                            help="Opens in the Vega editor, which exports PNG and SVG.")
    svg = charts.chart_image(chart, "svg")
    if svg is not None:
        cols[2].download_button("SVG", svg, file_name=f"{name}.svg", mime="image/svg+xml",
                                key=f"prevalence.{name}.svg")
        cols[3].download_button("PNG", charts.chart_image(chart, "png") or b"", file_name=f"{name}.png",
                                mime="image/png", key=f"prevalence.{name}.png")


overall = pv.failure_rate(frame)
m1, m2, m3 = st.columns(3)
m1.metric("Labelled traces", overall["labelled"])
m2.metric("Failed traces", overall["traces"])
m3.metric("Failure rate", f"{overall['share']:.0%}",
          help=f"95% Wilson interval {overall['low']:.0%} to {overall['high']:.0%}")

# -- Pareto ---------------------------------------------------------------------------------------
st.subheader("Which failure to fix first")
table = pv.pareto_table(frame)
if table.empty:
    st.caption("No failure modes on these traces yet: accept a taxonomy on the Axial coding page.")
else:
    chart = charts.pareto_chart(table)
    event = st.altair_chart(chart, on_select="rerun", key="prevalence.pareto", width="stretch")
    st.caption("Bars: share of labelled traces with the mode, with 95% Wilson intervals; number on "
               "top: traces. Line: cumulative share of all mode assignments. Click a bar to list its traces.")
    downloads(chart, table, "pareto")
    picked = (event or {}).get("selection", {}).get(charts.PARETO_SELECTION) or []
    mode = picked[0].get("mode") if picked and isinstance(picked[0], dict) else None
    if mode is None:
        mode = st.selectbox("Or choose a mode", list(table["mode"]), index=None, key="prevalence.mode",
                            placeholder="a mode to list its traces")
    if mode:
        hits = pv.traces_with_mode(frame, mode)
        st.markdown(f"**{mode}**: {len(hits)} traces")
        st.dataframe(hits.assign(link=[f"/annotate?trace={t}" + (f"&round={round_id}" if round_id else "")
                                       for t in hits["trace_id"]]),
                     hide_index=True, key="prevalence.mode_traces",
                     column_config={"link": st.column_config.LinkColumn("open", display_text="open")})

# -- breakdowns ----------------------------------------------------------------------------------
st.subheader("Where it fails")
dims = pv.dimension_names(frame)
left, right = st.columns(2)
with left:
    if dims:
        dim = st.selectbox("Dimension", dims, key="prevalence.dimension")
        by_dim = pv.breakdown(frame, f"dimension:{dim}")
        chart = charts.heatmap_chart(by_dim, group_title=dim)
        st.altair_chart(chart, width="stretch")
        downloads(chart, by_dim, f"by-{dim}")
    else:
        st.caption("These traces carry no dimension values (set on import or by generated queries).")
with right:
    by_tag = pv.breakdown(frame, "tag")
    if by_tag.empty:
        st.caption("These traces have no tags.")
    else:
        st.markdown("**By tag**")
        chart = charts.heatmap_chart(by_tag, group_title="tag")
        st.altair_chart(chart, width="stretch")
        downloads(chart, by_tag, "by-tag")
st.caption(f"Cell: failure rate among the labelled traces with that value, and n. Faded cells with "
           f"* have n < {pv.LOW_N}: their 95% interval is wider than about 30 points, so read them as "
           "a hint, not a finding. A trace with several tags counts under each.")

st.subheader("Where in the trace")
steps = pv.transitions(store, frame)
if steps.empty:
    st.caption("No failure steps recorded under these filters (annotators set the failing step while labelling).")
else:
    chart = charts.transitions_chart(steps)
    st.altair_chart(chart, width="stretch")
    st.caption("Rows: the last step that ran before the failure; columns: the step the annotator marked "
               "as the first failure. '(start)' means it failed at the first step.")
    downloads(chart, steps, "transitions")

# -- compare rounds ------------------------------------------------------------------------------
st.subheader("Compare two rounds")
if len(rounds) < 2:
    st.caption("Draw a second round (e.g. after a fix) to compare rates.")
else:
    ids = [r.id for r in rounds]
    c1, c2 = st.columns(2)
    first = c1.selectbox("Before", ids, index=0, key="prevalence.before", format_func=round_names.get)
    second = c2.selectbox("After", ids, index=len(ids) - 1, key="prevalence.after", format_func=round_names.get)
    a = pv.trace_frame(store, pid, round_id=first, annotators=who, tags=tags)
    b = pv.trace_frame(store, pid, round_id=second, annotators=who, tags=tags)
    compared = pv.compare_rounds(a, b)
    if compared.empty:
        st.caption("One of the rounds has no labelled traces under these filters.")
    else:
        name_a, name_b = round_names[first], round_names[second]
        chart = charts.compare_chart(compared, name_a, name_b)
        st.altair_chart(chart, width="stretch")
        diff = charts.difference_chart(compared, name_a, name_b)
        st.altair_chart(diff, width="stretch")
        st.dataframe(compared, hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="percent") for c in
            ("share_1", "low_1", "high_1", "share_2", "low_2", "high_2", "diff", "diff_low", "diff_high")})
        shared = pv.shared_traces(a, b)
        st.caption("Difference = after minus before, with Newcombe's 95% interval (from the two Wilson "
                   "intervals); 'lower'/'higher' when the interval excludes 0. It assumes the rounds hold "
                   "different traces sampled the same way"
                   + (f"; these share {shared} traces, which makes it conservative." if shared else "."))
        downloads(diff, compared, "compare-rounds")
