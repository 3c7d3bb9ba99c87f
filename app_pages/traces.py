"""Traces: search, filter and page through traces; open one; draw a round from what you see."""

from datetime import UTC, datetime, time

import streamlit as st

from evalboard.store import SORTS, StoreError, TraceFilter
from ui import trace_view
from ui.state import ROUND_KEY, current_round, get_store, require_project, trace_facets

store = get_store()
project = require_project(store)
rnd = current_round(store, project)

st.title("Traces")
facets = trace_facets(store, project.id)  # type: ignore[arg-type]

with st.container(border=True):
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    text = c1.text_input("Search text", key="traces.text", placeholder="words in input, output or messages")
    tags = c2.multiselect("Tags", facets["tags"], key="traces.tags")
    sources = c3.multiselect("Source", facets["sources"], key="traces.sources")
    sort_options = [s for s in SORTS if s != "round order" or rnd is not None]
    sort = c4.selectbox("Sort", sort_options, key="traces.sort")
    c5, c6, c7 = st.columns([2, 2, 3])
    dates = c5.date_input("Between", value=(), key="traces.dates")
    errors_only = c6.toggle("Only traces with errors", key="traces.errors")
    in_round = c7.toggle(f"Only round '{rnd.name}'" if rnd else "Only the current round",
                         value=rnd is not None, disabled=rnd is None, key="traces.in_round")

since = until = None
if isinstance(dates, tuple) and len(dates) == 2:
    since = datetime.combine(dates[0], time.min, tzinfo=UTC)
    until = datetime.combine(dates[1], time.max, tzinfo=UTC)
flt = TraceFilter(round_id=rnd.id if rnd and in_round else None, text=text, tags=tags,
                  sources=sources, since=since, until=until, errors_only=errors_only)

total = store.count_traces(project.id, flt)  # type: ignore[arg-type]
size = st.session_state.get("traces.size", 50)
pages = max(1, -(-total // size))
left, right = st.columns([4, 1], vertical_alignment="bottom")
left.caption(f"{total:,} traces match" + (f" in round '{rnd.name}'" if flt.round_id else ""))
right.selectbox("Rows per page", [25, 50, 100], index=[25, 50, 100].index(size), key="traces.size")
page = st.pagination(pages, key="traces.page") if pages > 1 else 1
page = min(page, pages)

rows = store.list_traces(project.id, flt, sort=sort, limit=size, offset=(page - 1) * size)  # type: ignore[arg-type]
event = st.dataframe(
    rows, hide_index=True, on_select="rerun", selection_mode="multi-row", key="traces.table",
    column_order=["id", "timestamp", "name", "input_preview", "output_preview", "tags",
                  "latency_ms", "cost", "span_count", "source"],
    column_config={
        "id": st.column_config.NumberColumn("id", width="small"),
        "timestamp": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm"),
        "input_preview": st.column_config.TextColumn("input", width="large"),
        "output_preview": st.column_config.TextColumn("output", width="large"),
        "latency_ms": st.column_config.NumberColumn("latency ms", format="%.0f"),
        "cost": st.column_config.NumberColumn("cost $", format="%.5f"),
        "span_count": st.column_config.NumberColumn("steps"),
    })
selected = [int(rows.iloc[i]["id"]) for i in event["selection"]["rows"]] if len(rows) else []

opened = st.number_input("Open trace by id", min_value=0, step=1, value=selected[0] if selected else 0,
                         key="traces.open", help="Or select a row above.")
if opened:
    trace = store.get_trace(int(opened))
    if trace is None or trace.project_id != project.id:
        st.warning(f"No trace {int(opened)} in this project.")
    else:
        st.subheader(trace.name or f"Trace {trace.id}")
        trace_view.show(trace, project.settings, key="traces.detail")

st.divider()
st.subheader("Draw a round")
st.caption("A round is one error-analysis pass over a sample of traces. How it was drawn (filter, "
           "size, seed) is recorded on the round.")
with st.form("traces.round"):
    name = st.text_input("Round name", placeholder="e.g. Round 2: after the retrieval fix")
    how = st.radio("From", ["a random sample of the traces matching the filters",
                            "all traces matching the filters", "the rows selected above"],
                   key="traces.round_from")
    c1, c2 = st.columns(2)
    n = c1.number_input("Sample size", min_value=1, value=min(100, max(total, 1)), step=10)
    seed = c2.number_input("Seed", min_value=0, value=42, step=1,
                           help="The same seed and filters draw the same sample again.")
    if st.form_submit_button("Create round", type="primary"):
        try:
            if how.startswith("the rows"):
                if not selected:
                    raise StoreError("Select rows in the table first.")
                new = store.create_round(project.id, name, selected,  # type: ignore[arg-type]
                                         sampling={"method": "selection", "n": len(selected)})
            else:
                new = store.create_round_from_filter(
                    project.id, name, flt.model_copy(update={"round_id": None}) if not in_round else flt,  # type: ignore[arg-type]
                    n=int(n) if how.startswith("a random") else None, seed=int(seed))
        except StoreError as exc:
            st.error(str(exc))
        else:
            st.session_state[ROUND_KEY] = new.id
            st.success(f"Round '{new.name}' created with {new.trace_count} traces; it is now the current round.")
