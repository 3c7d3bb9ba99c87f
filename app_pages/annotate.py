"""Open coding: read each trace as its user saw it, mark pass or fail, write the first failure.

Keyboard first: P pass (and next), F fail, 1-9 toggle a failure mode, Ctrl+Enter save the note
and go to the next trace, J/K next/previous, D defer, U undo.
"""

import streamlit as st

from evalboard import coding, query_store
from evalboard.coding import QueueFilter
from evalboard.stats import wilson_interval
from evalboard.store import StoreError
from ui import trace_view
from ui.state import ANNOTATOR_KEY, ROUND_KEY, annotator, current_round, get_store, require_project, trace_facets

CURSOR = "annotate.trace_id"
FOCUS_NOTE = "annotate.focus_note"
BLUR = "annotate.blur"
# A constant script we write (no trace content): puts the cursor in the note box after a fail,
# so a fail with a known mode is "1", the note, Ctrl+Enter.
FOCUS_SCRIPT = """<script>
(function focusNote(tries) {
  const doc = (window.parent && window.parent.document) || document;
  const box = doc.querySelector('textarea[aria-label="First failure note"]');
  if (box) { box.focus(); } else if (tries > 0) { setTimeout(() => focusNote(tries - 1), 20); }
})(50);
</script>"""

# After "save note and next", the cursor would stay in the (reused) note box, and the next key
# press would type into it instead of labelling: hand the keyboard back to the shortcuts.
BLUR_SCRIPT = """<script>
const doc = (window.parent && window.parent.document) || document;
if (doc.activeElement && doc.activeElement.tagName === "TEXTAREA") { doc.activeElement.blur(); }
</script>"""

store = get_store()
project = require_project(store)
st.title("Open coding")

who = annotator()
if not who:
    st.info("Who is labelling? Your labels are saved under your name; other people's stay theirs.")
    st.text_input("Your name", key="annotate.name", placeholder="e.g. Maya",
                  on_change=lambda: st.session_state.update({ANNOTATOR_KEY: st.session_state["annotate.name"]}))
    st.stop()

rnd = current_round(store, project)
if rnd is None:
    rounds = store.list_rounds(project.id)  # type: ignore[arg-type]
    if not rounds:
        st.info("Draw a round first: a sample of traces to read one by one.")
        st.page_link("app_pages/traces.py", label="Draw a round on the Traces page", icon=":material/list_alt:")
        st.stop()
    wanted = st.query_params.get("round")
    match = next((r for r in rounds if str(r.id) == wanted), None)
    if match is None:
        st.info("Choose the round to label.")
        choice = st.selectbox("Round", [r.id for r in rounds], key="annotate.pick_round",
                              format_func={r.id: f"{r.name} ({r.trace_count})" for r in rounds}.get)
        if st.button("Start labelling", type="primary", key="annotate.start"):
            st.session_state[ROUND_KEY] = choice
            st.rerun()
        st.stop()
    st.session_state[ROUND_KEY] = match.id
    rnd = match

def go(trace_id: int | None) -> None:
    st.session_state[CURSOR] = trace_id
    if trace_id is None:
        st.query_params.pop("trace", None)
    else:
        st.query_params["trace"] = str(trace_id)
        st.query_params["round"] = str(rnd.id)



def on_jump() -> None:
    wanted = st.session_state.get("annotate.jump", "").strip()
    st.session_state["annotate.jump"] = ""
    if wanted.isdigit() and coding.queue_position(store, rnd.id, int(wanted)) is not None:  # type: ignore[union-attr]
        go(int(wanted))
    else:
        st.session_state["annotate.error"] = f"Trace {wanted[:40]} is not in round '{rnd.name}'."  # type: ignore[union-attr]


# -- queue settings --------------------------------------------------------------------------
with st.expander("Queue", expanded=False):
    c1, c2, c3 = st.columns(3)
    only_mine = c1.toggle("Only traces I have not labelled", value=True, key="annotate.only_mine")
    blind = c2.toggle("Blind mode", value=True, key="annotate.blind",
                      help="Hide other people's labels of a trace until you have labelled it.")
    verdict_filter = c3.selectbox("Labelled by anyone as", ["any", "fail", "pass"], key="annotate.verdict")
    # Quick-pick numbers follow creation order, so a mode keeps its key while people label.
    modes_df = coding.list_modes(store, project.id, order="created")  # type: ignore[arg-type]
    c4, c5, c6 = st.columns(3)
    mode_filter = c4.selectbox("With failure mode", ["any", *modes_df["name"]], key="annotate.mode")
    tags = trace_facets(store, project.id)["tags"]  # type: ignore[arg-type]
    tag_filter = c5.selectbox("With tag", ["any", *tags], key="annotate.tag")
    dims = [f"{d.name}={v.name}" for d in query_store.project_dimensions(store, project.id) for v in d.values]  # type: ignore[arg-type]
    dim_filter = c6.selectbox("With dimension value", ["any", *dims], key="annotate.dimension")
    st.text_input("Jump to trace id", key="annotate.jump", placeholder="a trace id, e.g. 42", on_change=on_jump)

flt = QueueFilter(
    unlabelled_by=who if only_mine else None,
    verdict=None if verdict_filter == "any" else verdict_filter,
    mode=None if mode_filter == "any" else mode_filter,
    tag=None if tag_filter == "any" else tag_filter,
    dimension=tuple(dim_filter.split("=", 1)) if dim_filter != "any" else None,  # type: ignore[arg-type]
)


def neighbour(trace_id: int, direction: int) -> int | None:
    """The next trace still to label, or the previous trace whether labelled or not (going
    back is for reviewing what was just labelled)."""
    position = coding.queue_position(store, rnd.id, trace_id)  # type: ignore[arg-type]
    if position is None:
        return None
    walk = flt if direction > 0 else flt.model_copy(update={"unlabelled_by": None})
    found = coding.queue_neighbour(store, rnd.id, position, direction=direction, flt=walk)  # type: ignore[arg-type]
    return found[0] if found else None


# -- where we are ----------------------------------------------------------------------------
if st.session_state.get("annotate.who") != who:
    # A new person starts at the first trace they have not labelled, not where the last was.
    if st.session_state.get("annotate.who") is not None:
        st.query_params.pop("trace", None)
        st.session_state[CURSOR] = None
    st.session_state["annotate.who"] = who
if st.session_state.get(CURSOR) is None:
    linked = st.query_params.get("trace")
    if linked and linked.isdigit() and coding.queue_position(store, rnd.id, int(linked)) is not None:
        go(int(linked))
    else:
        first = coding.queue_neighbour(store, rnd.id, -1, flt=flt)  # type: ignore[arg-type]
        go(first[0] if first else None)

done = coding.progress(store, rnd.id, who)  # type: ignore[arg-type]
low, high = wilson_interval(done["failed"], done["labelled"])
rate = f"{done['failed'] / done['labelled']:.0%} (95% Wilson interval {low:.0%}-{high:.0%})" if done["labelled"] else "-"
st.progress(done["labelled"] / max(done["total"], 1),
            text=f"Round '{rnd.name}': you labelled {done['labelled']} of {done['total']} · "
                 f"{done['failed']} failed · failure rate so far {rate}")

trace_id = st.session_state.get(CURSOR)
if trace_id is None:
    st.success("Nothing left in this queue. Change the queue filters, or look at what you found.")
    st.page_link("app_pages/coding_progress.py", label="Progress, saturation and agreement", icon=":material/insights:")
    st.stop()

trace = store.get_trace(trace_id)
if trace is None:
    go(None)
    st.rerun()
mine = coding.get_annotation(store, trace.id, who)  # type: ignore[union-attr]
note_key = f"annotate.note.{trace.id}"  # type: ignore[union-attr]
if note_key not in st.session_state:
    st.session_state[note_key] = mine.note if mine else ""
quick = list(modes_df["name"][:9])


# -- actions (callbacks, so one key press is one rerun) ---------------------------------------
def save(**changes) -> coding.Annotation | None:
    try:
        return coding.save_annotation(store, project.id, trace.id, who, round_id=rnd.id, **changes)  # type: ignore[arg-type, union-attr]
    except StoreError as exc:
        st.session_state["annotate.error"] = str(exc)
        return None


def on_pass() -> None:
    if save(verdict="pass", note=st.session_state.get(note_key, "")):
        go(neighbour(trace.id, 1))  # type: ignore[union-attr]


def on_fail() -> None:
    if save(verdict="fail", note=st.session_state.get(note_key, "")):
        st.session_state[FOCUS_NOTE] = True


def on_mode(name: str) -> None:
    current = set(mine.modes) if mine else set()
    chosen = current - {name} if name in current else current | {name}
    if save(modes=sorted(chosen), verdict="fail", note=st.session_state.get(note_key, "")):
        st.session_state[FOCUS_NOTE] = True


def on_new_mode() -> None:
    name = st.session_state.get("annotate.new_mode", "").strip()
    if name and save(add_modes=[name], verdict="fail", note=st.session_state.get(note_key, "")):
        st.session_state["annotate.new_mode"] = ""
        st.session_state[FOCUS_NOTE] = True


def on_note() -> None:
    if mine is not None or st.session_state.get(note_key):
        save(note=st.session_state.get(note_key, ""))


def on_save_next() -> None:
    changes = {"note": st.session_state.get(note_key, "")}
    if st.session_state.get(note_key, "").strip() and (mine is None or mine.verdict is None):
        changes["verdict"] = "fail"  # a first-failure note is a fail
    if save(**changes) is not None:
        st.session_state[BLUR] = True
        go(neighbour(trace.id, 1))  # type: ignore[union-attr]


def on_step() -> None:
    step = st.session_state.get("annotate.step")
    save(failure_step=None if step == "(not set)" else step)


def on_defer() -> None:
    if save(deferred=True):
        go(neighbour(trace.id, 1))  # type: ignore[union-attr]


def on_discuss() -> None:
    save(discuss=not (mine.discuss if mine else False))


def on_undo() -> None:
    target = coding.last_event_trace(store, project.id, who)  # type: ignore[arg-type]
    if target is None:
        st.session_state["annotate.error"] = "Nothing to undo."
        return
    coding.undo_last(store, project.id, who)  # type: ignore[arg-type]
    st.session_state.pop(f"annotate.note.{target}", None)
    st.session_state.pop(f"annotate.discuss.{target}", None)
    st.session_state["annotate.toast"] = "Undone"
    go(target)


def on_move(direction: int) -> None:
    go(neighbour(trace.id, direction) or trace.id)  # type: ignore[union-attr]


# -- the screen ------------------------------------------------------------------------------
if msg := st.session_state.pop("annotate.error", None):
    st.error(msg)
if msg := st.session_state.pop("annotate.toast", None):
    st.toast(msg)

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader(trace.name or f"Trace {trace.id}")  # type: ignore[union-attr]
    trace_view.show(trace, project.settings, key="annotate.view")  # type: ignore[arg-type]

with right:
    status = "not labelled yet"
    if mine and mine.verdict:
        status = f"**{mine.verdict.upper()}**" + (f" · {', '.join(mine.modes)}" if mine.modes else "")
    elif mine and mine.deferred:
        status = "deferred"
    st.markdown(f"Trace **{trace.id}** · your label: {status}")  # type: ignore[union-attr]
    b1, b2, b3 = st.columns(3)
    b1.button("Pass", icon=":material/check:", shortcut="P", on_click=on_pass, key="annotate.pass",
              type="primary" if mine and mine.verdict == "pass" else "secondary", width="stretch")
    b2.button("Fail", icon=":material/close:", shortcut="F", on_click=on_fail, key="annotate.fail",
              type="primary" if mine and mine.verdict == "fail" else "secondary", width="stretch")
    b3.button("Defer", icon=":material/schedule:", shortcut="D", on_click=on_defer, key="annotate.defer",
              width="stretch")

    st.caption("Failure modes (numbers are keys)")
    if quick:
        cols = st.columns(2)
        for i, name in enumerate(quick):
            picked = mine is not None and name in mine.modes
            cols[i % 2].button(name, key=f"annotate.mode.{i}", on_click=on_mode, args=(name,), wrap=True,
                               shortcut=str(i + 1), type="primary" if picked else "secondary", width="stretch")
    else:
        st.caption("No failure modes yet: name the first one below.")
    extra = [m for m in (mine.modes if mine else []) if m not in quick]
    if extra:
        st.caption("Also: " + ", ".join(extra))
    st.text_input("New mode...", key="annotate.new_mode", on_change=on_new_mode,
                  placeholder="name a new failure mode, Enter to add")

    st.text_area("First failure note", key=note_key, on_change=on_note, height=110,
                 placeholder="What went wrong first, in your own words (Ctrl+Enter saves and moves on)")
    steps = ["(not set)"] + [f"{s.name or s.id} ({s.type})" for s in trace.spans] + [  # type: ignore[union-attr]
        f"message {i + 1} ({m.role})" for i, m in enumerate(trace.messages)]  # type: ignore[union-attr]
    if len(steps) > 2:
        current_step = mine.failure_step if mine and mine.failure_step in steps else "(not set)"
        st.session_state["annotate.step"] = current_step
        st.selectbox("Step where it first went wrong", steps, key="annotate.step", on_change=on_step)
    n1, n2 = st.columns(2)
    n1.button("Save note and next", icon=":material/arrow_forward:", shortcut="Ctrl+Enter",
              on_click=on_save_next, key="annotate.next_save", type="primary", width="stretch")
    n2.button("Undo", icon=":material/undo:", shortcut="U", on_click=on_undo, key="annotate.undo",
              width="stretch")
    n3, n4 = st.columns(2)
    n3.button("Previous", icon=":material/arrow_back:", shortcut="K", on_click=on_move, args=(-1,),
              key="annotate.prev", width="stretch")
    n4.button("Next", icon=":material/arrow_forward:", shortcut="J", on_click=on_move, args=(1,),
              key="annotate.next", width="stretch")
    st.toggle("Flag for discussion", value=bool(mine and mine.discuss), key=f"annotate.discuss.{trace.id}",  # type: ignore[union-attr]
              on_change=on_discuss)

    others = [a for a in coding.trace_annotations(store, trace.id) if a.annotator != who]  # type: ignore[union-attr]
    if others:
        if blind and not (mine and mine.verdict):
            st.caption(f"{len(others)} other label(s) hidden until you label this trace (blind mode).")
        else:
            with st.container(border=True):
                for a in others:
                    st.markdown(f"**{a.annotator}**: {(a.verdict or 'no verdict').upper()}"
                                + (f" · {', '.join(a.modes)}" if a.modes else ""))
                    if a.note:
                        st.text(a.note)
    st.caption("Keys: **P** pass and next · **F** fail · **1-9** failure mode · **Ctrl+Enter** save note "
               "and next · **J**/**K** next/previous · **D** defer · **U** undo")

if st.session_state.pop(FOCUS_NOTE, False):
    st.html(FOCUS_SCRIPT, unsafe_allow_javascript=True)
elif st.session_state.pop(BLUR, False):
    st.html(BLUR_SCRIPT, unsafe_allow_javascript=True)
