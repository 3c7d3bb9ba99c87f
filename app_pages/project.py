"""Project: what the product does and who uses it (used in every LLM prompt), and settings."""

import streamlit as st

from evalboard.render import RENDERER_LABELS, TemplateError, render_trace
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
    renderer_keys = ["auto", *(k for k in RENDERER_LABELS if k != "custom" or project.settings.get("custom_template"))]
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

st.subheader("Custom view")
st.caption("A Jinja2 template over the trace's fields (`input`, `output`, `messages`, `spans`, "
           "`metadata`, `tags`, `dimensions`...), for when the built-in views do not show the trace "
           "the way your users see it. It runs in a sandbox and its output is sanitised: no scripts, "
           "no event handlers. It becomes the 'Custom template' view everywhere.")
example = "### {{ input.question if input is mapping and input.question else input }}\n\n{{ output }}"
template = st.text_area("Template", value=project.settings.get("custom_template", ""), height=160,
                        key="project.template", placeholder=example)
mode = st.radio("Template writes", ["markdown", "html"], horizontal=True, key="project.template_mode",
                index=["markdown", "html"].index(project.settings.get("custom_template_mode", "markdown")))
sample_ids = store.trace_ids(project.id)[:50]  # type: ignore[arg-type]
if template.strip() and sample_ids:
    preview_id = st.selectbox("Preview on trace", sample_ids, key="project.template_trace")
    try:
        st.html(render_trace(store.get_trace(preview_id), "custom", template=template,  # type: ignore[arg-type]
                             template_mode=mode))
    except TemplateError as exc:
        st.error(f"Template error: {exc}")
if st.button("Save view", key="project.template_save"):
    try:
        if template.strip() and sample_ids:
            render_trace(store.get_trace(sample_ids[0]), "custom", template=template, template_mode=mode)  # type: ignore[arg-type]
    except TemplateError as exc:
        st.error(f"Not saved: the template fails on trace {sample_ids[0]}: {exc}")
    else:
        store.update_project(project.id, settings={"custom_template": template,  # type: ignore[arg-type]
                                                   "custom_template_mode": mode})
        st.toast("Custom view saved")

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
