"""The sidebar every page shares: project, round and who is labelling."""

from __future__ import annotations

import streamlit as st

from evalboard.store import Store
from ui import auth
from ui.state import ANNOTATOR_KEY, PROJECT_KEY, ROUND_KEY, current_project, logged_in_email


def render(store: Store) -> None:
    with st.sidebar:
        project = current_project(store)
        if project is None:
            st.caption("No project yet")
            who_am_i()
            return
        projects = store.list_projects()
        ids = [p.id for p in projects]
        names = {p.id: p.name for p in projects}
        # The canonical choice lives in app.* keys (pages change it too); sync the widget to it
        # before the widget exists, since Streamlit forbids changing a widget's state after.
        st.session_state["sidebar.project"] = project.id
        st.selectbox("Project", ids, format_func=names.get, key="sidebar.project",
                     on_change=_project_changed)
        rounds = store.list_rounds(project.id)  # type: ignore[arg-type]
        # 0 stands for "all traces" (a selectbox shows None as no choice at all).
        options = [0, *[r.id for r in rounds]]
        labels = {0: "All traces", **{r.id: f"{r.name} ({r.trace_count})" for r in rounds}}
        current = st.session_state.get(ROUND_KEY)
        st.session_state["sidebar.round"] = current if current in options else 0
        st.selectbox("Round", options, format_func=labels.get,
                     key="sidebar.round", on_change=_round_changed,
                     help="A round is one error-analysis pass over a sample of traces.")
        who_am_i()


def who_am_i() -> None:
    """The logged-in user and a logout button; without login, the name box and a note on who
    can reach the app."""
    email = logged_in_email()
    if email:
        st.caption(f"Signed in as `{email.replace('`', '')}`; your labels are saved under this address.")
        auth.logout_button()
        return
    st.text_input("Your name", key=ANNOTATOR_KEY, placeholder="who is labelling",
                  help="Labels are saved under this name; each person's labels are their own.")
    kind, note = auth.access_note()
    if kind == "ok":
        st.caption(note)
    else:
        st.warning(note, icon=":material/public:")


def _project_changed() -> None:
    st.session_state[PROJECT_KEY] = st.session_state["sidebar.project"]
    st.session_state[ROUND_KEY] = None


def _round_changed() -> None:
    st.session_state[ROUND_KEY] = st.session_state["sidebar.round"] or None
