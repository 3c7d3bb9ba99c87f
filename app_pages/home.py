"""Home: the workflow as steps, where this project stands at each, and what to do next."""

import streamlit as st

from evalboard.demo import DEMO_NAME, create_demo
from evalboard.store import StoreError
from evalboard.workflow import STEPS, next_step, project_status, step_counts
from ui.navigation import registered
from ui.state import PROJECT_KEY, current_project, get_store

store = get_store()
st.title("evalboard")
st.caption("From vibe checks to measured failure rates: read traces, name what fails, "
           "build judges you can trust, and count failures in production.")

project = current_project(store)
if project is None:
    st.subheader("Start here")
    st.write("There is no project yet. The demo project is a fictional documentation assistant "
             "(RAG answers, tool calls, emails): labelled rounds, a failure-mode taxonomy, judges and weekly production runs, all made on this machine, offline.")
    left, right = st.columns(2)
    if left.button("Create the demo project", type="primary", key="home.demo"):
        with st.spinner("Generating demo traces..."):
            st.session_state[PROJECT_KEY] = create_demo(store)
        st.rerun()
    with right.form("home.new_project"):
        name = st.text_input("Or a new, empty project", placeholder="Project name")
        if st.form_submit_button("Create project"):
            try:
                st.session_state[PROJECT_KEY] = store.create_project(name).id
                st.rerun()
            except StoreError as exc:
                st.error(str(exc))
    st.stop()

overview = project_status(store, project.id)  # type: ignore[arg-type]
available = {s.page for s in STEPS if s.page in registered()}
counts = step_counts(overview)
key, why = next_step(overview, available)

st.subheader(project.name)
if project.description:
    st.write(project.description)
st.info(f"**Next:** {why}", icon=":material/arrow_forward:")

for i, step in enumerate(STEPS, start=1):
    with st.container(border=True):
        left, mid, right = st.columns([3, 2, 1], vertical_alignment="center")
        marker = " (next)" if step.key == key else ""
        left.markdown(f"**{i}. {step.title}**{marker}  \n{step.purpose}")
        mid.write(counts[step.key])
        if step.page in available:
            right.page_link(step.page, label="Open", icon=":material/arrow_forward:")

if project.name != DEMO_NAME and store.project_by_name(DEMO_NAME) is None:
    if st.button("Also create the demo project", key="home.demo_extra"):
        create_demo(store)
        st.rerun()
