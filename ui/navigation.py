"""The app's pages by workflow step. Only pages that work are listed here; the home page links
to a step only when its page is listed.

The page files live in app_pages/, not pages/: Streamlit 1.67 still switches a whole server to
the legacy "pages/ directory" mode when the first visit after start is a deep link (e.g.
/annotate?trace=12), which runs the page without app.py (no navigation, no sidebar)."""

from __future__ import annotations

import streamlit as st

# section -> (file, title, icon)
SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Start": [
        ("app_pages/home.py", "Home", ":material/home:"),
        ("app_pages/project.py", "Project", ":material/tune:"),
        ("app_pages/settings.py", "Settings", ":material/settings:"),
    ],
    "Know the queries": [
        ("app_pages/dimensions.py", "Dimensions and tuples", ":material/category:"),
        ("app_pages/queries.py", "Queries", ":material/forum:"),
    ],
    "Collect traces": [
        ("app_pages/import_traces.py", "Import files", ":material/upload_file:"),
        ("app_pages/langfuse_pull.py", "Pull from Langfuse", ":material/cloud_download:"),
        ("app_pages/traces.py", "Traces", ":material/list_alt:"),
        ("app_pages/rounds.py", "Rounds", ":material/layers:"),
    ],
    "Open coding": [
        ("app_pages/annotate.py", "Annotate", ":material/edit_note:"),
        ("app_pages/coding_progress.py", "Progress and agreement", ":material/insights:"),
    ],
    "Axial coding": [
        ("app_pages/axial.py", "Failure modes", ":material/account_tree:"),
        ("app_pages/prevalence.py", "Prevalence", ":material/bar_chart:"),
    ],
    "Judges": [
        ("app_pages/judges.py", "Judge workbench", ":material/gavel:"),
    ],
    "Production": [
        ("app_pages/production_runs.py", "Production runs", ":material/play_circle:"),
        ("app_pages/dashboard.py", "Production prevalence", ":material/monitoring:"),
    ],
    "Back to the vendor": [
        ("app_pages/sync.py", "Sync and export", ":material/cloud_sync:"),
    ],
}


def registered() -> set[str]:
    return {path for pages in SECTIONS.values() for path, _, _ in pages}


def build() -> dict[str, list[st.Page]]:
    return {section: [st.Page(path, title=title, icon=icon, default=path == "app_pages/home.py")
                      for path, title, icon in pages]
            for section, pages in SECTIONS.items()}
