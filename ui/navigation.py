"""The app's pages by workflow step. Only pages that work are listed here; the home page links
to a step only when its page is listed."""

from __future__ import annotations

import streamlit as st

# section -> (file, title, icon)
SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Start": [
        ("pages/home.py", "Home", ":material/home:"),
        ("pages/project.py", "Project", ":material/tune:"),
    ],
    "Collect traces": [
        ("pages/import_traces.py", "Import files", ":material/upload_file:"),
        ("pages/traces.py", "Traces", ":material/list_alt:"),
        ("pages/rounds.py", "Rounds", ":material/layers:"),
    ],
    "Open coding": [
        ("pages/annotate.py", "Annotate", ":material/edit_note:"),
        ("pages/coding_progress.py", "Progress and agreement", ":material/insights:"),
    ],
}


def registered() -> set[str]:
    return {path for pages in SECTIONS.values() for path, _, _ in pages}


def build() -> dict[str, list[st.Page]]:
    return {section: [st.Page(path, title=title, icon=icon, default=path == "pages/home.py")
                      for path, title, icon in pages]
            for section, pages in SECTIONS.items()}
