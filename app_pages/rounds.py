"""Rounds: the samples under analysis, how each was drawn, and which one is current."""

import pandas as pd
import streamlit as st

from ui.state import ROUND_KEY, current_round, get_store, require_project

store = get_store()
project = require_project(store)

st.title("Rounds")
st.caption("A round is one error-analysis pass over a sample of traces. Teams run two or three "
           "(before and after a fix) and compare them. Draw new rounds on the Traces page.")

rounds = store.list_rounds(project.id)  # type: ignore[arg-type]
if not rounds:
    st.info("No rounds yet. On the Traces page, filter what you want to study and draw a sample.")
    st.page_link("app_pages/traces.py", label="Go to Traces", icon=":material/list_alt:")
    st.stop()


def _how(sampling: dict) -> str:
    method = sampling.get("method", "?")
    if method == "random":
        return f"random {sampling.get('n')} of {sampling.get('of')} (seed {sampling.get('seed')})"
    if method == "all":
        return f"all {sampling.get('n')} matching"
    if method == "import":
        return f"imported from {sampling.get('file')}"
    return method


table = pd.DataFrame([{
    "id": r.id, "name": r.name, "traces": r.trace_count, "drawn as": _how(r.sampling),
    "filter": ", ".join(f"{k}={v}" for k, v in (r.sampling.get("filter") or {}).items()) or "-",
    "queue order": (r.sampling.get("order") or {}).get("method", "time"),
    "created": r.created_at, "description": r.description} for r in rounds])
st.dataframe(table, hide_index=True, column_config={
    "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})

current = current_round(store, project)
ids = [r.id for r in rounds]
names = {r.id: r.name for r in rounds}
choice = st.selectbox("Round", ids, index=ids.index(current.id) if current else 0,
                      format_func=names.get, key="rounds.choice")
left, right = st.columns(2)
if left.button("Make it the current round", type="primary", key="rounds.use",
               disabled=current is not None and current.id == choice):
    st.session_state[ROUND_KEY] = choice
    st.rerun()
with right.popover("Delete round"):
    st.write(f"Delete round '{names[choice]}'? Its traces stay in the project.")
    if st.button("Delete", key="rounds.delete"):
        store.delete_round(choice)
        if st.session_state.get(ROUND_KEY) == choice:
            st.session_state[ROUND_KEY] = None
        st.rerun()
