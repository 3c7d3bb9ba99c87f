"""Production runs: validated judges on a production sample, run now or through the Batch API.

Choose judges and a sample (a round, a Langfuse pull, or the project's traces in a window),
start the run and watch it; every verdict is stored as it arrives, so a stopped or crashed run
resumes without repeating a judgment. The Production prevalence page charts the results.
"""

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from evalboard import production as prod
from evalboard.production.batch import poll_batches
from ui.langfuse import langfuse_disabled_reason, langfuse_settings
from ui.llm import llm_client, llm_disabled_reason
from ui.navigation import registered
from ui.state import annotator, get_store, require_project

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]
DASHBOARD = "app_pages/dashboard.py"
JUDGES_PAGE = "app_pages/judges.py"
SELECTED = "production_runs.selected"

st.title("Production runs")
st.caption("A production run applies validated judges to a sample of production traces and records the "
           "sample, the judge versions and the time window. Only validated judges can run: their test-split "
           "TPR and TNR are what correct the raw flag rate into a prevalence.")

choices = prod.judge_choices(store, pid)
validated = [c for c in choices if c.validated]
waiting = [c for c in choices if not c.validated]
if waiting:
    with st.expander(f"Judges not validated yet ({len(waiting)})"):
        for c in waiting:
            st.markdown(f"**{c.name}** ({c.mode}): {' '.join(c.reasons) or 'no validated test result.'}")


def show_progress(bar) -> object:  # noqa: ANN001 - a st.progress element
    def update(p: prod.RunProgress) -> None:
        share = p.done / p.total if p.total else 0.0
        bar.progress(min(1.0, share), text=f"{p.judge or p.phase}: {p.done:,} of {p.total:,}")
    return update


def execute(run_id: int) -> None:
    """Run (or resume) a run here, with a progress bar; the Stop button interrupts it, keeping
    every verdict stored so far."""
    run = prod.get_run(store, run_id)
    needs_llm = any(j.kind == "llm" for j in run.judges)
    client = llm_client(store) if needs_llm else None
    st.button("Stop", key="production_runs.stop", help="Stops the run; what was judged stays stored. "
                                                        "Resume it from the list below.")
    bar = st.progress(0.0, text="Starting")
    try:
        if run.execution == "batch":
            outcome = prod.run_batch(client, store, run_id, wait=False, on_progress=show_progress(bar),
                                     who=annotator())
        else:
            outcome = prod.run_direct(client, store, run_id, on_progress=show_progress(bar), who=annotator())
    except prod.ProductionError as exc:
        st.error(str(exc))
        return
    (st.success if outcome.status in ("finished", "submitted") else st.warning)(outcome.summary())


# -- a new run --------------------------------------------------------------------------------
st.subheader("New run")
if not validated:
    st.info("No validated judge yet. Validate a judge on its test split first (Judges page).")
    if JUDGES_PAGE in registered():
        st.page_link(JUDGES_PAGE, label="Go to Judges", icon=":material/gavel:")
else:
    names = {c.name: c for c in validated}
    picked = st.multiselect("Judges", list(names), default=list(names), key="production_runs.judges",
                            format_func=lambda n: f"{n} ({names[n].mode}, {names[n].version})")
    source = st.segmented_control("Sample from", ["Round", "Langfuse", "Project traces"], default="Round",
                                  key="production_runs.source") or "Round"
    c1, c2, c3 = st.columns(3)
    size = c1.number_input("Sample size (0 = all)", min_value=0, value=0 if source != "Langfuse" else 1000,
                           step=100, key="production_runs.n")
    seed = c2.number_input("Seed", min_value=0, value=42, step=1, key="production_runs.seed",
                           help="The same seed and source draw the same sample again.")
    execution = c3.radio("Run", ["direct", "batch"], key="production_runs.execution", horizontal=True,
                         format_func={"direct": "now (concurrent calls)", "batch": "Batch API (cheaper, up to 24 h)"}.get)
    round_id = None
    since = until = None
    blocked = None
    if source == "Round":
        rounds = store.list_rounds(pid)
        if not rounds:
            blocked = "This project has no round yet: import or pull traces into one first."
        else:
            round_id = st.selectbox("Round", [r.id for r in rounds], key="production_runs.round",
                                    format_func={r.id: f"{r.name} ({r.trace_count} traces)" for r in rounds}.get)
    if source == "Langfuse":
        blocked = langfuse_disabled_reason()
        ago = st.selectbox("Traces from the last", ["24 hours", "7 days", "30 days"], key="production_runs.ago")
        since = datetime.now(UTC) - {"24 hours": timedelta(hours=24), "7 days": timedelta(days=7),
                                     "30 days": timedelta(days=30)}[ago]
        env = st.text_input("Environments (comma separated, optional)", key="production_runs.env")
    elif source in ("Round", "Project traces"):
        dates = st.date_input("Only traces started between (optional)", value=(), key="production_runs.dates")
        if isinstance(dates, tuple) and len(dates) == 2:
            since = datetime.combine(dates[0], time.min, tzinfo=UTC)
            until = datetime.combine(dates[1], time.max, tzinfo=UTC)
    chosen = [names[n] for n in picked]
    if any(c.kind == "llm" for c in chosen) and llm_disabled_reason():
        blocked = f"{llm_disabled_reason()} (the chosen judges include LLM judges)"
    if blocked:
        st.caption(blocked)
    if st.button("Start run", type="primary", disabled=bool(blocked) or not chosen, key="production_runs.start"):
        try:
            if source == "Langfuse":
                from integrations.langfuse import PullFilters, Sampling
                from integrations.langfuse_rounds import prepare_round, pull_into_round

                rnd, _ = prepare_round(store, pid, f"Production sample {datetime.now(UTC):%Y-%m-%d %H:%M}")
                filters = PullFilters(since=since, environment=tuple(e.strip() for e in env.split(",") if e.strip()))
                with st.status("Pulling the sample from Langfuse", expanded=False) as status:
                    pulled = pull_into_round(store, langfuse_settings(), pid, rnd.id, filters,  # type: ignore[arg-type]
                                             Sampling("random", int(size), int(seed)) if size else Sampling())
                    status.update(label=pulled.summary(), state="complete" if pulled.status == "done" else "error")
                if pulled.status != "done":
                    raise prod.ProductionError(pulled.summary())
                sample = prod.draw_sample(store, pid, round_id=rnd.id, since=since, definition={
                    "source": "langfuse", "filters": filters.describe(), "sampling": pulled.sampling})
            else:
                sample = prod.draw_sample(store, pid, round_id=round_id, since=since, until=until,
                                          n=int(size) or None, seed=int(seed))
            run_id = prod.create_run(store, pid, chosen, sample, execution=execution, who=annotator())
        except prod.ProductionError as exc:
            st.error(str(exc))
        else:
            st.session_state[SELECTED] = run_id
            execute(run_id)

# -- runs -------------------------------------------------------------------------------------
st.subheader("Runs")
runs = prod.list_runs(store, pid)
if runs.empty:
    st.caption("No production runs yet.")
    st.stop()
event = st.dataframe(runs, hide_index=True, on_select="rerun", selection_mode="single-row", key="production_runs.table",
                     column_config={"from": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                                    "to": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                                    "cost": st.column_config.NumberColumn("cost $", format="%.4f")})
rows = (event or {}).get("selection", {}).get("rows") or []
if rows:
    st.session_state[SELECTED] = int(runs.iloc[rows[0]]["run"])
selected = st.session_state.get(SELECTED) or int(runs.iloc[0]["run"])
if selected not in set(runs["run"]):
    selected = int(runs.iloc[0]["run"])
run = prod.get_run(store, selected)

with st.container(border=True):
    st.markdown(f"**Run {run.id}: {run.name}** ({run.status}, {run.execution}, {run.origin})")
    st.caption(run.describe_sample())
    for j in run.judges:
        st.caption(f"{j.judge} {j.version} ({j.mode}): test TPR {j.tpr:.2f} ({j.confusion['tp']}/{j.n_fail}), "
                   f"TNR {j.tnr:.2f} ({j.confusion['tn']}/{j.n_pass})")
    estimates = prod.estimates_table(prod.run_estimates(store, run.id))
    st.dataframe(estimates.drop(columns=["version_id"]), hide_index=True, key="production_runs.estimates",
                 column_config={c: st.column_config.NumberColumn(format="percent")
                                for c in ("raw", "raw_low", "raw_high", "corrected", "low", "high")})
    if run.errors:
        with st.expander(f"Errors ({len(run.errors)} shown)"):
            st.json(run.errors)
    if DASHBOARD in registered():
        st.page_link(DASHBOARD, label="See it on the Production prevalence page", icon=":material/monitoring:")
    if run.status in ("planned", "running", "cancelled", "incomplete") and run.execution == "direct":
        if st.button("Resume this run", key="production_runs.resume",
                     help="Judges only what has no verdict yet; stored verdicts are reused at no cost."):
            execute(run.id)
    if run.execution == "batch" and run.pending_batches:
        st.caption(f"{len(run.pending_batches)} batch(es) waiting at the provider; checked every 30 s while this "
                   "page is open.")

        @st.fragment(run_every=30)
        def batch_watch() -> None:
            if llm_disabled_reason():
                st.caption(llm_disabled_reason())
                return
            outcome = poll_batches(llm_client(store), store, run.id)
            st.caption(f"Last check {datetime.now(UTC):%H:%M:%S} UTC: {outcome.summary()}")
            if not prod.get_run(store, run.id).pending_batches:
                st.rerun()

        batch_watch()
    elif run.execution == "batch" and run.status in ("cancelled", "incomplete"):
        if st.button("Submit the rest again", key="production_runs.resubmit"):
            execute(run.id)
