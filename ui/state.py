"""Shared Streamlit state: the cached store, the current project, round and annotator.

Session keys owned here are prefixed `app.`; pages prefix their own keys with their name.
"""

from __future__ import annotations

import streamlit as st

from evalboard.db import default_database_url
from evalboard.models import Project, Round
from evalboard.store import Store

PROJECT_KEY = "app.project_id"
ROUND_KEY = "app.round_id"
ANNOTATOR_KEY = "app.annotator"


@st.cache_resource(max_entries=4, show_spinner=False)
def _store_for(url: str) -> Store:
    return Store(url)


def get_store() -> Store:
    """The process-wide store for the configured database (migrated once, then cached)."""
    return _store_for(default_database_url())


@st.cache_data(ttl=300, max_entries=32, show_spinner=False)
def _facets(url: str, project_id: int, newest_trace: int) -> dict[str, list[str]]:
    return _store_for(url).trace_facets(project_id)


def trace_facets(store: Store, project_id: int) -> dict[str, list[str]]:
    """Tags and sources for filter widgets. Reading them scans every trace's tags, so they are
    cached until a trace is added (the newest trace id changes) or for five minutes."""
    return _facets(store.url, project_id, store.newest_trace_id())


def current_project(store: Store) -> Project | None:
    projects = store.list_projects()
    if not projects:
        return None
    wanted = st.session_state.get(PROJECT_KEY)
    chosen = next((p for p in projects if p.id == wanted), projects[0])
    st.session_state[PROJECT_KEY] = chosen.id
    return chosen


def current_round(store: Store, project: Project) -> Round | None:
    rid = st.session_state.get(ROUND_KEY)
    if rid is None:
        return None
    rnd = store.get_round(rid)
    return rnd if rnd is not None and rnd.project_id == project.id else None


def logged_in_email() -> str | None:
    """The logged-in user's email when login is configured ([auth] in secrets), else None."""
    user = st.user.to_dict()
    email = user.get("email") if user.get("is_logged_in") else None
    return str(email).strip().lower() if email else None


def annotator() -> str:
    """Who is labelling: the logged-in user when login is configured, else the sidebar name."""
    return logged_in_email() or (st.session_state.get(ANNOTATOR_KEY) or "").strip()


def require_project(store: Store) -> Project:
    """The current project, or stop the page with a pointer to where one is made."""
    project = current_project(store)
    if project is None:
        st.info("No project yet. Create the demo project or a new one on the Home page.")
        st.page_link("app_pages/home.py", label="Go to Home", icon=":material/home:")
        st.stop()
    return project  # type: ignore[return-value]
