"""Pull from Langfuse: choose traces (time, environment, name, tags, user, session, release,
version), how many (all, latest N, random N), and the round they go into; the pull runs in the
background with a progress bar and can be cancelled and continued."""

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from evalboard.store import StoreError
from integrations.langfuse import PullFilters, Sampling
from integrations.langfuse_rounds import RoundPull, discard_pending, pending_pull, prepare_round
from ui.langfuse import PullJob, langfuse_disabled_reason, langfuse_settings, running_job, start_pull
from ui.state import ROUND_KEY, get_store, require_project

JOB_KEY = "langfuse_pull.job"
RANGES = {"Last 24 hours": timedelta(hours=24), "Last 7 days": timedelta(days=7),
          "Last 30 days": timedelta(days=30), "Between": None, "All time": None}
TAKE = {"All matching traces": "all", "The latest N": "latest", "A random sample of N": "random"}

store = get_store()
project = require_project(store)

st.title("Pull traces from Langfuse")
reason = langfuse_disabled_reason()
if reason:
    st.info(reason)
    st.page_link("app_pages/settings.py", label="Set up Langfuse on the Settings page", icon=":material/settings:")
    st.stop()
settings = langfuse_settings()
st.caption(f"From {settings.masked()}. Each trace comes with its steps, input and output, metadata, tags, "
           "scores, latency, tokens and cost. Pulling the same traces again adds nothing twice.")


def _progress_text(snap: RoundPull) -> str:
    if snap.phase in ("starting", "listing"):
        return "Finding the matching traces..."
    return f"{snap.done:,} of {snap.planned:,} traces" + (" (continuing an earlier pull)" if snap.resumed else "")


def _counts(snap: RoundPull) -> str:
    return (f"{snap.matched:,} match · {snap.planned:,} to pull · {snap.done:,} pulled · {snap.added:,} new · "
            f"{snap.duplicates:,} already here · {snap.requests:,} requests")


@st.fragment(run_every=0.5)
def _live(job: PullJob) -> None:
    """Redrawn twice a second while the pull runs; a full rerun when it ends shows the outcome."""
    if not job.running:
        if job.snapshot().status == "done":
            st.session_state[ROUND_KEY] = job.round_id  # before the rerun, so the sidebar shows it
        st.rerun()
    snap = job.snapshot()
    st.progress(snap.fraction, text=_progress_text(snap))
    st.caption(_counts(snap))
    if snap.waiting:
        st.warning(snap.waiting[:1].upper() + snap.waiting[1:] + ".", icon=":material/hourglass_top:")
    st.button("Cancel", key="langfuse_pull.cancel", on_click=job.cancel.set, disabled=job.cancel.is_set(),
              help="Stops at the next request; what is pulled stays, and Pull continues it later.")


def _outcome(job: PullJob) -> None:
    snap = job.snapshot()
    if job.error:
        st.error(f"The pull into round '{job.round_name}' stopped with an error: {job.error}")
    elif snap.status == "failed":
        st.error(snap.summary())
        if snap.config_error:
            st.page_link("app_pages/settings.py", label="Check the keys on the Settings page", icon=":material/settings:")
    elif snap.status == "cancelled":
        st.warning(snap.summary())
    else:
        st.success(snap.summary() + " It is now the current round.")
        if not job.announced:
            st.session_state[ROUND_KEY] = job.round_id
        c1, c2 = st.columns(2)
        c1.page_link("app_pages/traces.py", label="See the traces", icon=":material/list_alt:")
        c2.page_link("app_pages/annotate.py", label="Start open coding", icon=":material/edit_note:")
    job.announced = True
    if snap.status != "done" and st.button("Continue this pull", type="primary", key="langfuse_pull.continue",
                                           help="Picks up where it stopped; nothing is pulled twice."):
        pending = pending_pull(store, job.round_id)
        if pending is None:
            st.info("There is nothing left to continue.")
            return
        try:
            st.session_state[JOB_KEY] = start_pull(store, settings, project.id, job.round_id, job.round_name,  # type: ignore[arg-type]
                                                   pending.filters, pending.sampling)
        except RuntimeError as exc:
            st.error(str(exc))
        else:
            st.rerun()


job: PullJob | None = st.session_state.get(JOB_KEY)
if job is not None and job.running:
    st.subheader(f"Pulling into round '{job.round_name}'")
    _live(job)
    st.stop()
if job is not None:
    _outcome(job)

rounds = store.list_rounds(project.id)  # type: ignore[arg-type]
stopped = {r.id: p for r in rounds if (p := pending_pull(store, r.id)) is not None and running_job(r.id) is None}
for rid, p in stopped.items():
    if job is None or job.round_id != rid:  # this session's own outcome is shown above
        name = next(r.name for r in rounds if r.id == rid)
        st.warning(f"Round '{name}': {p.describe()} Choose it below as the round to pull into, and Pull continues it.")

# ------------------------------------------------------------------------------------- the form
st.subheader("Which traces")
span = st.radio("Started", list(RANGES), index=1, horizontal=True, key="langfuse_pull.range",
                help="Trace start times, in UTC.")
since = until = None
if span == "Between":
    today = date.today()
    c1, c2, c3, c4 = st.columns(4)
    from_day = c1.date_input("From (UTC)", today - timedelta(days=7), key="langfuse_pull.from_day")
    from_time = c2.time_input("at", time(0, 0), key="langfuse_pull.from_time")
    to_day = c3.date_input("To (UTC)", today + timedelta(days=1), key="langfuse_pull.to_day")
    to_time = c4.time_input("at", time(0, 0), key="langfuse_pull.to_time")
    since = datetime.combine(from_day, from_time, tzinfo=UTC)
    until = datetime.combine(to_day, to_time, tzinfo=UTC)
elif RANGES[span] is not None:
    since = datetime.now(UTC) - RANGES[span]

c1, c2, c3 = st.columns(3)
environments = c1.text_input("Environments", key="langfuse_pull.env", placeholder="production, staging",
                             help="Any of these (comma-separated). Empty: every environment.")
trace_name = c2.text_input("Trace name", key="langfuse_pull.name", placeholder="e.g. support-chat")
tags = c3.text_input("Tags", key="langfuse_pull.tags", placeholder="vip, web",
                     help="Traces carrying all of these tags (comma-separated).")
c1, c2, c3, c4 = st.columns(4)
user_id = c1.text_input("User id", key="langfuse_pull.user")
session_id = c2.text_input("Session id", key="langfuse_pull.session")
release = c3.text_input("Release", key="langfuse_pull.release")
version = c4.text_input("Version", key="langfuse_pull.version")

st.subheader("How many")
c1, c2, c3 = st.columns([2, 1, 1])
take = TAKE[c1.radio("Take", list(TAKE), key="langfuse_pull.take")]
n = c2.number_input("N", min_value=1, value=100, step=10, key="langfuse_pull.n", disabled=take == "all")
seed = c3.number_input("Seed", min_value=0, value=42, step=1, key="langfuse_pull.seed", disabled=take != "random",
                       help="The same seed and filters draw the same sample again; it is recorded on the round.")

st.subheader("Into which round")
targets = ["A new round", "An existing round"] if rounds else ["A new round"]
if stopped and "langfuse_pull.target" not in st.session_state:
    # An interrupted pull: offer its round first, so that Pull continues it.
    st.session_state["langfuse_pull.target"] = "An existing round"
    st.session_state["langfuse_pull.round"] = next(iter(stopped))
target = st.radio("Round", targets, horizontal=True, key="langfuse_pull.target", label_visibility="collapsed")
round_id = None
new_name = ""
if target == "A new round":
    new_name = st.text_input("New round name", value=f"Langfuse {date.today().isoformat()}", key="langfuse_pull.new_round")
else:
    names = {r.id: f"{r.name} ({r.trace_count} traces)" for r in rounds}
    round_id = st.selectbox("Round", list(names), format_func=names.get, key="langfuse_pull.round",
                            help="The pulled traces are added after the ones it holds.")

pending = stopped.get(round_id) if round_id is not None else None
busy = running_job(round_id) if round_id is not None else None
if busy is not None:
    st.info("A pull into this round is running in another session; wait for it to finish.")
if pending is not None:
    how = ", ".join(f"{k}={v}" for k, v in pending.filters.describe().items()) or "no filters"
    st.warning(f"{pending.describe()} Pull continues it, with its own filters ({how}; {pending.sampling.method} "
               f"{pending.sampling.n or 'all'}), not the ones above.")
    if st.button("Discard it and use the filters above", key="langfuse_pull.discard"):
        discard_pending(store, round_id)  # type: ignore[arg-type]
        st.rerun()

label = "Continue the interrupted pull" if pending is not None else "Pull"
if st.button(label, type="primary", key="langfuse_pull.go", disabled=busy is not None, icon=":material/cloud_download:"):
    problems = []
    filters = sampling = None
    if since is not None and until is not None and since >= until:
        problems.append(f"Time range: 'From' ({since:%Y-%m-%d %H:%M}) must be before 'To' ({until:%Y-%m-%d %H:%M}).")
    try:
        filters = PullFilters(
            since=since, until=until, environment=tuple(e.strip() for e in environments.split(",")),
            trace_name=trace_name.strip() or None, tags=tuple(t.strip() for t in tags.split(",")),
            user_id=user_id.strip() or None, session_id=session_id.strip() or None,
            release=release.strip() or None, version=version.strip() or None)
    except ValueError as exc:  # only the time range can be refused; said above in plainer words
        problems = problems or [f"Time range: {exc}."]
    sampling = Sampling("latest", None) if take == "all" else Sampling(take, int(n), int(seed) if take == "random" else None)
    if target == "A new round":
        if not new_name.strip():
            problems.append("New round name: give the round a name.")
        elif any(r.name == new_name.strip() for r in rounds):
            problems.append(f"New round name: this project already has a round named '{new_name.strip()}'; "
                            "choose 'An existing round' to add to it.")
    if pending is not None:  # continuing: the interrupted pull's own request, so its checkpoint applies
        problems, filters, sampling = [], pending.filters, pending.sampling
    for problem in problems:
        st.error(problem)
    if not problems:
        try:
            rnd = store.get_round(round_id) if round_id is not None else prepare_round(store, project.id, new_name)[0]  # type: ignore[arg-type]
            st.session_state[JOB_KEY] = start_pull(store, settings, project.id, rnd.id, rnd.name,  # type: ignore[arg-type, union-attr]
                                                   filters, sampling)  # type: ignore[arg-type]
        except (StoreError, RuntimeError) as exc:
            st.error(str(exc))
        else:
            st.rerun()
