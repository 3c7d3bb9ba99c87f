"""Axial coding: group the first-failure notes into named, defined failure modes.

Propose modes (LLM, offline clustering, or by hand), review the proposals (rename, redefine,
merge, split, move notes, discard, accept), then keep the accepted taxonomy tidy. Every change
goes to the taxonomy history shown at the bottom; the taxonomy exports as Markdown and CSV.
"""

import json

import pandas as pd
import streamlit as st

from evalboard.axial import clustering, taxonomy
from evalboard.store import StoreError
from ui.llm import llm_client, llm_disabled_reason, llm_settings
from ui.navigation import registered
from ui.state import ANNOTATOR_KEY, annotator, current_round, get_store, require_project

RUN = "axial.run_id"
FLASH = "axial.flash"
NEW = "__new__"
NONE = "__none__"

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]
rnd = current_round(store, project)
who = annotator()

st.title("Axial coding")
st.caption("Group the notes you wrote about each failed trace into failure modes: few, specific, "
           "defined families. Modes picked during open coding stay; accepting a proposal adds its "
           "mode to every note in it, recorded as coming from that clustering run.")


def act(fn, *args, done: str = "", **kwargs) -> None:  # noqa: ANN001 - any store operation
    """Run a taxonomy operation from a button callback; its outcome shows at the top."""
    try:
        result = fn(*args, **kwargs)
    except (StoreError, ValueError) as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    if isinstance(result, clustering.ClusterRun):
        st.session_state[RUN] = result.id
    st.session_state[FLASH] = ("success", done or "Saved.")


def link(page: str, label: str, icon: str) -> None:
    """A link to another page, shown only when that page is in the navigation."""
    if page in registered():
        st.page_link(page, label=label, icon=icon)


def value(key: str, default=None):  # noqa: ANN001, ANN201
    return st.session_state.get(key, default)


flash = st.session_state.pop(FLASH, None)
if flash:
    (st.error if flash[0] == "error" else st.success)(flash[1])

if not who:
    st.info("Who is reviewing? Taxonomy changes are recorded under your name.")
    st.text_input("Your name", key="axial.name", placeholder="e.g. Maya",
                  on_change=lambda: st.session_state.update({ANNOTATOR_KEY: st.session_state["axial.name"]}))

# -- 1. the notes ------------------------------------------------------------------------------
st.header("1. The notes")
all_notes = clustering.failure_notes(store, pid, round_id=rnd.id if rnd else None)
people = sorted(all_notes["annotator"].unique())
# People's notes by default; labels that came from files or generators can be added.
humans = sorted(all_notes.loc[all_notes["origin"] == "human", "annotator"].unique()) or people
chosen = st.multiselect("Notes by", people, default=humans, key="axial.annotators",
                        help="Whose first-failure notes to cluster. Labels not made by a person "
                             "(imported, generated) are left out unless you add them.")
notes = all_notes[all_notes["annotator"].isin(chosen)].reset_index(drop=True)
scope = f"round '{rnd.name}'" if rnd else "all rounds (pick a round in the sidebar to narrow)"
st.caption(f"{len(notes)} failed traces with a note in {scope}; "
           f"{int(notes['modes'].map(bool).sum())} of them already have a mode from open coding.")
if notes.empty:
    st.info("No failure notes yet. Label traces on the Annotate page: fail, and write what went wrong first.")
    link("app_pages/annotate.py", "Annotate", ":material/edit_note:")
else:
    with st.expander("Show the notes"):
        st.dataframe(notes.assign(modes=notes["modes"].map(", ".join)), hide_index=True,
                     column_order=["trace_id", "annotator", "note", "modes", "failure_step"])

# -- 2. propose ---------------------------------------------------------------------------------
st.header("2. Propose failure modes")
why_no_llm = llm_disabled_reason()
methods = ["LLM", "Offline clustering", "By hand"]
method = st.segmented_control("How", methods, key="axial.method",
                              default="Offline clustering" if why_no_llm else "LLM") or methods[1]


def start_llm() -> None:
    settings = llm_settings()
    client = llm_client(store)
    act(clustering.run_llm, store, pid, notes, client, context=project.description,
        model=settings.model_for(clustering.LLM_FEATURE), round_id=rnd.id if rnd else None,
        created_by=who, done="The LLM proposed failure modes: review them below.")


def start_offline() -> None:
    vectors, model = None, None
    if value("axial.embed"):
        client = llm_client(store)
        model = llm_settings().feature_models.get("embedding")
        try:
            vectors = clustering.embed_notes(client, list(notes["note"]))
        except Exception as exc:  # noqa: BLE001 - any endpoint failure is reported, TF-IDF still works
            st.session_state[FLASH] = ("error", f"Embedding failed ({exc}); use TF-IDF instead.")
            return
    k = int(value("axial.k", 0) or 0)
    act(clustering.run_offline, store, pid, notes, k=k or None, vectors=vectors, embedding_model=model,
        round_id=rnd.id if rnd else None, created_by=who,
        done="Clustered the notes: review the proposals below.")


if method == "LLM":
    st.write("The notes, your tentative mode names and the project description go to the configured "
             "LLM, which proposes modes (name, definition, what counts, what does not) and places every "
             "note. Many notes are sent in batches whose modes are then merged. Answers are cached.")
    st.button("Propose failure modes with the LLM", type="primary", key="axial.run_llm",
              disabled=bool(why_no_llm) or notes.empty or not who, help=why_no_llm, on_click=start_llm)
    if why_no_llm:
        st.caption(why_no_llm + " Offline clustering works without one.")
elif method == "Offline clustering":
    st.write("TF-IDF (or embeddings from the LLM endpoint) and k-means; the number of modes is the one "
             "whose clusters come back most alike when fitted on random subsets of the notes. Clusters are named by "
             "their top words: rename and define them before accepting.")
    c1, c2 = st.columns(2)
    c1.number_input("Number of modes (0 = choose)", min_value=0, max_value=30, value=0, key="axial.k")
    settings_ok = not why_no_llm and bool(llm_settings().feature_models.get("embedding"))
    c2.toggle("Use embeddings", key="axial.embed", disabled=not settings_ok,
              help=None if settings_ok else "Needs an embedding model: EVALBOARD_LLM_MODEL_EMBEDDING "
                                             "or [llm.models] embedding.")
    st.button("Cluster the notes", type="primary", key="axial.run_offline",
              disabled=notes.empty or not who, on_click=start_offline)
else:
    st.write("Start an empty run with every note unassigned, then create proposals and move notes into them.")
    st.button("Sort the notes by hand", type="primary", key="axial.run_manual", disabled=notes.empty or not who,
              on_click=lambda: act(clustering.manual_run, store, pid, notes, created_by=who,
                                   round_id=rnd.id if rnd else None, done="Empty run started."))

# -- 3. review ----------------------------------------------------------------------------------
st.header("3. Review the proposals")
runs = clustering.list_runs(store, pid)
if not runs:
    st.caption("No clustering run yet.")
else:
    ids = [r.id for r in runs]
    if value(RUN) not in ids:
        st.session_state[RUN] = ids[0]
    st.selectbox("Clustering run", ids, key=RUN, format_func={
        r.id: f"run {r.id}: {r.method}, {len(r.proposals)} proposals, by {r.created_by or '?'}, "
              f"{r.created_at:%Y-%m-%d %H:%M}" if r.created_at else f"run {r.id}" for r in runs}.get)
    run = next(r for r in runs if r.id == value(RUN))
    shown = {k: v for k, v in run.params.items() if v not in (None, "", [], {})}
    st.caption("Parameters: " + ", ".join(f"{k} = {v}" for k, v in shown.items()))
    text = run.note_text()
    ref = {n.annotation_id: n for n in run.notes}
    open_keys = [p.key for p in run.proposals if p.status == "proposed"]
    names = {p.key: p.name for p in run.proposals}
    if open_keys:
        st.button(f"Accept all {len(open_keys)} open proposals", type="primary", key="axial.accept_all",
                  disabled=not who, on_click=lambda: act(taxonomy.accept_proposals, store, run.id, who,
                                                         done="Accepted: the modes are now on the notes."))

    def members_table(members: list[int]) -> None:
        rows = [{"note": text.get(a, ""), "annotator": ref[a].annotator if a in ref else "",
                 "trace": f"/annotate?trace={ref[a].trace_id}" + (f"&round={ref[a].round_id}" if ref[a].round_id else "")
                 if a in ref else None} for a in members]
        st.dataframe(pd.DataFrame(rows, columns=["note", "annotator", "trace"]), hide_index=True,
                     column_config={"trace": st.column_config.LinkColumn("trace", display_text=r"trace=(\d+)")})

    def move_controls(key: str | None, members: list[int]) -> None:
        """Pick notes and where they go: another proposal, a new one (a split), or unassigned."""
        base = f"axial.{run.id}.{key or 'none'}"
        st.multiselect("Notes to move", members, key=f"{base}.sel",
                       format_func=lambda a: f"{text.get(a, '')[:90]} ({ref[a].annotator if a in ref else ''})")
        targets = [k for k in open_keys if k != key] + [NEW] + ([NONE] if key else [])
        c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
        c1.selectbox("Move to", targets, key=f"{base}.to", format_func=lambda k: {
            NEW: "a new proposal (split)", NONE: "unassigned"}.get(k, names.get(k, k)))
        c2.text_input("Name of the new proposal", key=f"{base}.new")

        def go() -> None:
            sel, to = value(f"{base}.sel") or [], value(f"{base}.to")
            if not sel:
                st.session_state[FLASH] = ("error", "Pick the notes to move first.")
            elif to == NEW and key:
                act(taxonomy.split_proposal, store, run.id, key, sel, value(f"{base}.new", ""), who,
                    done=f"Split {len(sel)} notes into a new proposal.")
            elif to == NEW:
                act(taxonomy.add_proposal, store, run.id, who, value(f"{base}.new", ""), members=sel,
                    done="New proposal made.")
            else:
                act(taxonomy.move_notes, store, run.id, sel, None if to == NONE else to, who,
                    done=f"Moved {len(sel)} notes.")
            st.session_state[f"{base}.sel"] = []

        c3.button("Move", key=f"{base}.move", disabled=not who, on_click=go)

    for p in run.proposals:
        with st.container(border=True):
            badge = {"proposed": "", "accepted": " ✓ accepted", "discarded": " (discarded)"}[p.status]
            st.markdown(f"**{p.name}**{badge} · {len(p.members)} notes")
            if p.definition:
                st.write(p.definition)
            if p.includes or p.excludes:
                st.caption(f"Counts: {p.includes or '-'}  \nDoes not count: {p.excludes or '-'}")
            if p.top_terms:
                st.caption("Top words: " + ", ".join(p.top_terms))
            members_table(p.members)
            if p.status == "proposed":
                with st.expander("Rename, define, merge, split or move notes"):
                    base = f"axial.{run.id}.{p.key}"
                    with st.form(f"{base}.form"):
                        st.text_input("Name", value=p.name, key=f"{base}.name")
                        st.text_area("Definition", value=p.definition, key=f"{base}.definition")
                        st.text_input("What counts", value=p.includes, key=f"{base}.includes")
                        st.text_input("What does not count", value=p.excludes, key=f"{base}.excludes")
                        st.form_submit_button("Save", disabled=not who, on_click=lambda k=p.key, b=base: act(
                            taxonomy.edit_proposal, store, run.id, k, who, name=value(f"{b}.name"),
                            definition=value(f"{b}.definition"), includes=value(f"{b}.includes"),
                            excludes=value(f"{b}.excludes"), done="Proposal saved."))
                    others = [k for k in open_keys if k != p.key]
                    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
                    c1.multiselect("Merge into this one", others, key=f"{base}.merge", format_func=names.get)
                    c2.button("Merge", key=f"{base}.do_merge", disabled=not who or not others,
                              on_click=lambda k=p.key, b=base: act(
                                  taxonomy.merge_proposals, store, run.id, [k, *(value(f"{b}.merge") or [])], who,
                                  done="Merged."))
                    move_controls(p.key, p.members)
                c1, c2 = st.columns(2)
                c1.button("Accept", key=f"axial.{run.id}.{p.key}.accept", type="primary", disabled=not who,
                          on_click=lambda k=p.key: act(taxonomy.accept_proposals, store, run.id, who, [k],
                                                       done="Accepted."))
                c2.button("Discard", key=f"axial.{run.id}.{p.key}.discard", disabled=not who,
                          on_click=lambda k=p.key: act(taxonomy.discard_proposal, store, run.id, k, who,
                                                       done="Discarded: its notes get no mode from this run."))
            elif p.status == "discarded":
                st.button("Restore", key=f"axial.{run.id}.{p.key}.restore", disabled=not who,
                          on_click=lambda k=p.key: act(taxonomy.discard_proposal, store, run.id, k, who,
                                                       restore=True, done="Restored."))
    with st.container(border=True):
        st.markdown(f"**Unassigned notes** · {len(run.unassigned)}")
        if run.unassigned:
            members_table(run.unassigned)
            move_controls(None, run.unassigned)
        else:
            st.caption("Every note of this run is in a proposal.")

# -- 4. the taxonomy ----------------------------------------------------------------------------
st.header("4. The taxonomy")
modes = taxonomy.taxonomy_table(store, pid)
if modes.empty:
    st.caption("No accepted failure modes yet.")
else:
    st.dataframe(modes, hide_index=True, column_order=["name", "definition", "includes", "excludes", "traces", "notes"],
                 column_config={"includes": "counts", "excludes": "does not count",
                                "notes": st.column_config.NumberColumn("labels")})
    mode_names = dict(zip(modes["id"].astype(int), modes["name"], strict=True))
    mode_id = st.selectbox("Change a mode", list(mode_names), key="axial.mode", format_func=mode_names.get)
    row = modes[modes["id"] == mode_id].iloc[0]
    mbase = f"axial.mode.{mode_id}"
    with st.form(f"{mbase}.form"):
        st.text_input("Name", value=row["name"], key=f"{mbase}.name")
        st.text_area("Definition", value=row["definition"], key=f"{mbase}.definition")
        st.text_input("What counts", value=row["includes"], key=f"{mbase}.includes")
        st.text_input("What does not count", value=row["excludes"], key=f"{mbase}.excludes")
        st.form_submit_button("Save", disabled=not who, on_click=lambda: act(
            taxonomy.update_mode, store, pid, mode_id, who, name=value(f"{mbase}.name"),
            definition=value(f"{mbase}.definition"), includes=value(f"{mbase}.includes"),
            excludes=value(f"{mbase}.excludes"), done="Mode saved; the change is in the history."))
    others = [m for m in mode_names if m != mode_id]
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.multiselect("Merge these modes into it", others, key=f"{mbase}.merge", format_func=mode_names.get)
    c2.button("Merge", key=f"{mbase}.do_merge", disabled=not who or not others, on_click=lambda: act(
        taxonomy.merge_modes, store, pid, value(f"{mbase}.merge") or [], mode_id, who, done="Merged."))
    assigned = taxonomy.mode_assignments(store, pid, mode_id)
    st.dataframe(assigned, hide_index=True, column_order=["trace_id", "annotator", "note", "provenance"])
    st.caption("Provenance: who or what gave the note this mode (a person's name, or axial:run-N).")
    st.multiselect("Notes to move out", list(assigned["annotation_id"]), key=f"{mbase}.sel",
                   format_func=dict(zip(assigned["annotation_id"], assigned["note"].str[:90], strict=True)).get)
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    c1.selectbox("To", [*others, NEW], key=f"{mbase}.to",
                 format_func=lambda m: "a new mode (split)" if m == NEW else mode_names.get(m, m))
    c2.text_input("Name of the new mode", key=f"{mbase}.new")

    def move_out() -> None:
        sel, to = value(f"{mbase}.sel") or [], value(f"{mbase}.to")
        if to == NEW:
            act(taxonomy.split_mode, store, pid, mode_id, sel, value(f"{mbase}.new", ""), who, done="Split.")
        else:
            act(taxonomy.move_assignments, store, pid, sel, mode_id, to, who, done="Moved.")

    c3.button("Move", key=f"{mbase}.move", disabled=not who, on_click=move_out)
    st.button("Retire this mode", key=f"{mbase}.retire", disabled=not who,
              help="Kept with its labels and history, left out of counts and pickers.",
              on_click=lambda: act(taxonomy.retire_mode, store, pid, mode_id, who, done="Retired."))

with st.expander("Add a mode by hand"):
    with st.form("axial.new_mode", clear_on_submit=True):
        st.text_input("Name", key="axial.new_mode.name")
        st.text_area("Definition", key="axial.new_mode.definition")
        st.text_input("What counts", key="axial.new_mode.includes")
        st.text_input("What does not count", key="axial.new_mode.excludes")
        st.form_submit_button("Create", disabled=not who, on_click=lambda: act(
            taxonomy.create_mode, store, pid, value("axial.new_mode.name", ""), who,
            definition=value("axial.new_mode.definition", ""), includes=value("axial.new_mode.includes", ""),
            excludes=value("axial.new_mode.excludes", ""), done="Mode created."))

# -- 5. history and export ----------------------------------------------------------------------
st.header("5. History and export")
events = taxonomy.history(store, pid)
if events.empty:
    st.caption("No taxonomy changes yet.")
else:
    # before/after hold different shapes per action: shown as JSON text (one column type).
    as_json = {c: events[c].map(lambda v: None if v is None else json.dumps(v, default=str)) for c in ("before", "after")}
    st.dataframe(events.assign(**as_json), hide_index=True,
                 column_order=["at", "actor", "action", "summary", "before", "after"],
                 column_config={"at": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm"),
                                "before": st.column_config.JsonColumn("before"),
                                "after": st.column_config.JsonColumn("after")})
c1, c2 = st.columns(2)
c1.download_button("Taxonomy as Markdown", taxonomy.export_markdown(store, pid, project_name=project.name),
                   file_name=f"{project.name}-failure-modes.md", mime="text/markdown", key="axial.md")
c2.download_button("Taxonomy as CSV", taxonomy.export_csv(store, pid),
                   file_name=f"{project.name}-failure-modes.csv", mime="text/csv", key="axial.csv")
link("app_pages/prevalence.py", "How often each mode happens", ":material/bar_chart:")
