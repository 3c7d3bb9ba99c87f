"""Project: what the product does and who uses it (used in every LLM prompt), and settings."""

import streamlit as st

from evalboard.render import RENDERER_LABELS
from evalboard.store import StoreError
from ui.state import PROJECT_KEY, ROUND_KEY, get_store, require_project

store = get_store()
project = require_project(store)

st.title("Project")
st.caption("Describe the product and its users: evalboard puts this context into every prompt it "
           "writes (query generation, clustering, judges), so be specific.")

with st.form("project.describe"):
    description = st.text_area(
        "What the product does and who uses it", value=project.description, height=180,
        placeholder="e.g. An assistant inside our billing console that answers questions about "
                    "invoices for finance teams; users are accountants and admins...")
    renderer_keys = ["auto", *RENDERER_LABELS]
    current = project.settings.get("default_renderer", "auto")
    renderer = st.selectbox(
        "Show traces as", renderer_keys,
        index=renderer_keys.index(current) if current in renderer_keys else 0,
        format_func=lambda k: "Detect from each trace" if k == "auto" else RENDERER_LABELS[k],
        help="How the trace viewer and the annotation page show a trace by default; "
             "anyone can switch per trace.")
    if st.form_submit_button("Save", type="primary"):
        store.update_project(project.id, description=description,  # type: ignore[arg-type]
                             settings={"default_renderer": renderer})
        st.toast("Project saved")

st.subheader("Another project")
with st.form("project.new", clear_on_submit=True):
    name = st.text_input("Name")
    about = st.text_area("What it does and who uses it", height=100)
    if st.form_submit_button("Create and switch to it"):
        try:
            st.session_state[PROJECT_KEY] = store.create_project(name, about).id
            st.session_state[ROUND_KEY] = None
            st.rerun()
        except StoreError as exc:
            st.error(str(exc))

with st.expander("Delete this project"):
    st.warning("Deleting removes its traces, rounds and labels from this database. Export first "
               "if you may need them.")
    confirm = st.text_input("Type the project name to confirm", key="project.delete_confirm")
    if st.button("Delete project", disabled=confirm != project.name, key="project.delete"):
        store.delete_project(project.id)  # type: ignore[arg-type]
        st.session_state[PROJECT_KEY] = None
        st.session_state[ROUND_KEY] = None
        st.rerun()
