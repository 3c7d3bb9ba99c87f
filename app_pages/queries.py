"""Know the queries, part 2: write queries from tuples with the LLM, review them, and send the
kept ones to your app (a target) so that each answer becomes a trace in a new round."""

from datetime import datetime

import pandas as pd
import streamlit as st

from evalboard import query_store
from evalboard.queries import (
    MAX_QUERIES_PER_TUPLE,
    NEAR_DUPLICATE_THRESHOLD,
    export_queries,
    generate_queries,
    mark_near_duplicates,
)
from evalboard.query_store import QUERY_STATUSES, NewQuery
from evalboard.store import StoreError
from integrations.llm import LLMNotConfigured
from integrations.target import (
    DEFAULT_BODY,
    TargetCaller,
    TargetError,
    headers_text,
    parse_headers,
    parse_target,
    pending_query_ids,
    run_target,
    save_target,
    start_run,
    target_from_stored,
)
from ui.llm import llm_client, llm_disabled_reason, streamlit_secrets
from ui.state import ROUND_KEY, get_store, require_project

PAGE_SIZE = 50
STATUS_LABELS = {"new": "new", "kept": "kept", "discarded": "discarded", "unrealistic": "flagged unrealistic"}

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]

st.title("Queries")
st.caption("Write queries from the tuples made on the Dimensions page, keep the realistic ones, "
           "then send them to your app: every answer becomes a trace to read in open coding.")

dims = query_store.project_dimensions(store, pid)
dim_names = [d.name for d in dims]
try:
    exclusions = query_store.project_exclusions(store, pid, dims)
except ValueError:
    exclusions = []  # the Dimensions page explains; tuples are then checked without the rules
tuples = query_store.list_tuples(store, pid)
usable = [t for t in tuples if not query_store.tuple_problem(t.values, dims, exclusions)]
counts = query_store.tuple_query_counts(store, pid)

# --------------------------------------------------------------------------------- 1. generate
st.subheader("1. Write queries")
llm_reason = llm_disabled_reason()
if not usable:
    st.info("No tuples to write from yet: define dimensions and make tuples on the Dimensions page.")
else:
    fresh = [t for t in usable if not counts.get(t.id)]
    c1, c2, c3 = st.columns([3, 1, 1])
    which = c1.radio("Tuples", ["without queries yet", "all"], horizontal=True, key="queries.which",
                     format_func=lambda w: f"{w} ({len(fresh) if w.startswith('without') else len(usable)})")
    n = c2.number_input("Queries per tuple", 1, MAX_QUERIES_PER_TUPLE, 3, key="queries.n")
    batch = c3.number_input("Set", 1, 1000, 1, key="queries.batch",
                            help="Asking again for the same set of the same tuples is answered from "
                                 "the cache at no cost and adds nothing; raise the set for new queries.")
    chosen = fresh if which.startswith("without") else usable
    if llm_reason:
        st.caption(f":material/info: {llm_reason}")
    elif not project.description.strip():
        st.warning("The project has no description: describe the product and its users on the "
                   "Dimensions page, or the queries will be generic.")
    st.caption(f"{len(chosen)} LLM requests for up to {len(chosen) * int(n)} queries.")
    if st.button("Write queries", key="queries.generate", type="primary", icon=":material/auto_awesome:",
                 disabled=llm_reason is not None or not chosen, help=llm_reason):
        bar = st.progress(0.0, text="Starting...")
        st.button("Stop", key="queries.stop",
                  help="Stops after the requests on their way; answers received so far are kept, "
                       "and generating again picks up the rest from the cache.")
        try:
            report = generate_queries(
                llm_client(store), store, pid, chosen, int(n), context=project.description, dims=dims,
                batch=int(batch),
                on_progress=lambda done, total: bar.progress(done / total, text=f"{done} of {total} tuples"))
        except (LLMNotConfigured, ValueError) as exc:
            st.error(str(exc))
        else:
            st.session_state["queries.report"] = (report.summary(), [f"tuple {t}: {e}" for t, e in report.failed])
            st.rerun()
    last = st.session_state.get("queries.report")
    if last:
        (st.warning if last[1] else st.success)(last[0])
        for line in last[1][:10]:
            st.error(line)

# --------------------------------------------------------------------------------- 2. review
st.subheader("2. Review")
by_status = query_store.status_counts(store, pid)
st.caption(" - ".join(f"{STATUS_LABELS[s]}: {by_status[s]}" for s in QUERY_STATUSES)
           + ". Keep the queries a real user would send; edit or flag the rest.")

with st.expander("Add a query by hand"):
    with st.form("queries.manual", clear_on_submit=True):
        manual_text = st.text_area("Query", key="queries.manual_text")
        tuple_choice = st.selectbox("Tuple", [None, *[t.id for t in usable]], key="queries.manual_tuple",
                                    format_func=lambda tid: "none" if tid is None else
                                    ", ".join(f"{k}={v}" for k, v in next(t for t in usable if t.id == tid).values.items()))
        if st.form_submit_button("Add as kept", key="queries.manual_add"):
            chosen_tuple = next((t for t in usable if t.id == tuple_choice), None)
            try:
                query_store.add_queries(store, pid, [NewQuery(
                    text=manual_text, tuple_id=tuple_choice, origin="manual", status="kept",
                    dimensions=chosen_tuple.values if chosen_tuple else None)])
            except StoreError as exc:
                st.error(str(exc))

total_queries = sum(by_status.values())
if total_queries:
    f1, f2, f3 = st.columns([3, 2, 1], vertical_alignment="bottom")
    shown = f1.multiselect("Show", list(QUERY_STATUSES), default=["new", "kept"], key="queries.show",
                           format_func=STATUS_LABELS.get)
    only_dups = f2.toggle("Only near-duplicates", key="queries.only_dups")
    matching = query_store.count_queries(store, pid, shown or None, duplicates_only=only_dups)
    pages = max(1, -(-matching // PAGE_SIZE))
    page = min(st.pagination(pages, key="queries.page") if pages > 1 else 1, pages)
    items = query_store.get_queries(store, pid, shown or None, duplicates_only=only_dups,
                                    limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    frame = query_store.queries_frame(items, dim_names)

    # The editor's key changes after each applied edit, so its edited_rows always refer to the
    # rows on screen (a new page or a re-sorted list never inherits an old edit).
    version = st.session_state.setdefault("queries.grid_version", 0)
    grid_key = f"queries.grid.{version}"
    st.session_state["queries.grid_ids"] = [int(i) for i in frame["id"]]

    def _apply_edits(key: str) -> None:
        edits = (st.session_state.get(key) or {}).get("edited_rows") or {}
        st.session_state["queries.grid_problems"] = query_store.apply_review_edits(
            store, pid, st.session_state.get("queries.grid_ids") or [], edits)
        st.session_state["queries.grid_version"] = st.session_state.get("queries.grid_version", 0) + 1

    st.data_editor(
        frame, key=grid_key, on_change=_apply_edits, args=(grid_key,), hide_index=True,
        num_rows="fixed", disabled=[c for c in frame.columns if c not in ("status", "text")],
        column_order=["id", "status", "text", *dim_names, "duplicate_of", "similarity", "edited"],
        column_config={
            "id": st.column_config.NumberColumn(width="small"),
            "status": st.column_config.SelectboxColumn(options=list(QUERY_STATUSES), required=True),
            "text": st.column_config.TextColumn("query", width="large"),
            "duplicate_of": st.column_config.NumberColumn("near-duplicate of", help="An earlier query this one repeats."),
            "similarity": st.column_config.NumberColumn(format="%.2f"),
        })
    for problem in st.session_state.pop("queries.grid_problems", []):
        st.error(problem)

    b1, b2, b3 = st.columns(3)
    page_ids = [q.id for q in items]
    if b1.button("Keep every new query on this page", key="queries.keep_page", disabled=not page_ids):
        query_store.set_query_status(store, pid, [q.id for q in items if q.status == "new"], "kept")
        st.rerun()
    dup_ids = [q.id for q in items if q.duplicate_of is not None and q.status != "discarded"]
    if b2.button(f"Discard the {len(dup_ids)} near-duplicates on this page", key="queries.discard_dups",
                 disabled=not dup_ids):
        query_store.set_query_status(store, pid, dup_ids, "discarded")
        mark_near_duplicates(store, pid)
        st.rerun()
    with b3.popover("Near-duplicate check"):
        threshold = st.slider("Similarity threshold", 0.5, 1.0, NEAR_DUPLICATE_THRESHOLD, 0.01,
                              key="queries.threshold",
                              help="Cosine similarity of character n-grams; 1.0 marks only identical wording.")
        if st.button("Check again", key="queries.recheck"):
            marked = mark_near_duplicates(store, pid, threshold)
            st.session_state["queries.report"] = (f"{marked} near-duplicates marked.", [])
            st.rerun()

    export_items = query_store.get_queries(store, pid, shown or None)
    d1, d2 = st.columns(2)
    d1.download_button(f"Export {len(export_items)} as CSV", export_queries(export_items, "csv", dim_names),
                       file_name=f"{project.name}-queries.csv", mime="text/csv", key="queries.export_csv",
                       on_click="ignore")
    d2.download_button(f"Export {len(export_items)} as JSONL", export_queries(export_items, "jsonl", dim_names),
                       file_name=f"{project.name}-queries.jsonl", mime="application/jsonl",
                       key="queries.export_jsonl", on_click="ignore")
elif usable:
    st.info("No queries yet: write some above.")

# --------------------------------------------------------------------------------- 3. targets
st.subheader("3. Send kept queries to your app")
st.caption("A target is your app as evalboard calls it: an HTTP endpoint taking JSON, or an "
           "OpenAI-compatible chat endpoint with your system prompt. Secrets are never saved: "
           "write `${ENV:NAME}` (an environment variable) or `${SECRET:section.key}` "
           "(.streamlit/secrets.toml) where a key or token goes.")
targets = query_store.list_targets(store, pid)
names = {t.id: t.name for t in targets}
if "queries.saved_target" in st.session_state:  # select a target just saved (before the widget exists)
    st.session_state["queries.target"] = st.session_state.pop("queries.saved_target")
    st.success("Target saved.")
editing = st.selectbox("Target", [None, *names], format_func=lambda t: "New target" if t is None else names[t],
                       key="queries.target")
current = next((t for t in targets if t.id == editing), None)
config = current.config if current else {}
kind = st.radio("Kind", ["http", "openai"], horizontal=True, key=f"queries.kind.{editing}",
                index=1 if current and current.kind == "openai" else 0,
                format_func={"http": "HTTP endpoint (JSON)", "openai": "OpenAI-compatible chat"}.get)
with st.form(f"queries.target_form.{editing}"):
    t_name = st.text_input("Name", value=current.name if current else "", key=f"queries.t_name.{editing}")
    values: dict = {"kind": kind, "name": t_name}
    if kind == "http":
        left, right = st.columns([4, 1])
        values["url"] = left.text_input("URL", value=config.get("url", ""), key=f"queries.t_url.{editing}",
                                        placeholder="https://my-app.internal/api/chat")
        methods = ["POST", "PUT", "GET"]
        values["method"] = right.selectbox("Method", methods, index=methods.index(config.get("method", "POST")),
                                           key=f"queries.t_method.{editing}")
        headers_raw = st.text_area("Headers, one per line", value=headers_text(config.get("headers") or {}),
                                   key=f"queries.t_headers.{editing}",
                                   placeholder="Authorization: Bearer ${ENV:MYAPP_TOKEN}")
        values["body_template"] = st.text_area(
            "JSON body; {{query}} is replaced by the query", value=config.get("body_template", DEFAULT_BODY),
            key=f"queries.t_body.{editing}", help="For GET, put {{query}} in the URL instead.")
        values["answer_path"] = st.text_input(
            "Where the answer is in the response", value=config.get("answer_path", ""),
            key=f"queries.t_path.{editing}", placeholder="e.g. data.answer or choices[0].message.content; empty: the whole response")
    else:
        left, right = st.columns(2)
        values["base_url"] = left.text_input("Base URL", value=config.get("base_url", ""),
                                             key=f"queries.t_base.{editing}", placeholder="http://localhost:8000/v1")
        values["model"] = right.text_input("Model", value=config.get("model", ""), key=f"queries.t_model.{editing}")
        values["api_key"] = st.text_input("API key reference", value=config.get("api_key", ""),
                                          key=f"queries.t_key.{editing}", placeholder="${ENV:MYAPP_OPENAI_KEY}")
        values["system_prompt"] = st.text_area("System prompt", value=config.get("system_prompt", ""),
                                               key=f"queries.t_system.{editing}", height=150)
    left, right = st.columns(2)
    values["concurrency"] = left.number_input("Calls at once", 1, 256, int(config.get("concurrency", 8)),
                                              key=f"queries.t_conc.{editing}")
    values["timeout"] = right.number_input("Timeout (s)", 1.0, 3600.0, float(config.get("timeout", 60.0)),
                                           key=f"queries.t_timeout.{editing}")
    if st.form_submit_button("Save target", key=f"queries.t_save.{editing}"):
        try:
            if kind == "http":
                values["headers"] = parse_headers(headers_raw)
            saved_id = save_target(store, pid, parse_target(values))
        except (TargetError, StoreError) as exc:
            st.error(f"Not saved: {exc}")
        else:
            st.session_state["queries.saved_target"] = saved_id
            st.rerun()

if current is not None:
    try:
        target = target_from_stored(current)
    except TargetError as exc:
        st.error(f"This target's saved config is not valid any more: {exc}")
        st.stop()
    kept = query_store.get_queries(store, pid, ["kept"])
    with st.expander("Try it with one query"):
        probe = st.text_input("Query", value=kept[0].text if kept else "", key="queries.probe")
        if st.button("Send", key="queries.probe_send", disabled=not probe.strip()):
            try:
                with TargetCaller(target, secrets=streamlit_secrets(), max_retry_wait=10) as caller:
                    answer = caller.call(probe)
            except TargetError as exc:
                st.error(str(exc))
            else:
                (st.error if answer.error else st.success)(
                    f"{answer.error or 'Answered'} ({answer.latency_ms:.0f} ms, HTTP {answer.status})")
                if isinstance(answer.output, str):
                    st.write(answer.output)
                else:
                    st.json(answer.output)

    default_round = f"{current.name} {datetime.now():%Y-%m-%d %H:%M}"
    round_name = st.text_input("New round for the answers", value=default_round, key="queries.round_name")
    if st.button(f"Send the {len(kept)} kept queries", key="queries.run", type="primary", disabled=not kept):
        try:
            run = start_run(store, pid, current.id, round_name=round_name)  # type: ignore[arg-type]
        except (StoreError, TargetError) as exc:
            st.error(str(exc))
        else:
            st.session_state["queries.run_id"] = run.id

# Runs: the one just started runs here; unfinished ones can be resumed.
runs = query_store.list_runs(store, pid)
to_run = st.session_state.pop("queries.run_id", None)
if runs:
    table = pd.DataFrame([{"run": r.id, "target": r.target_name, "queries": len(r.query_ids),
                           "answered": r.succeeded, "failed": r.failed, "status": r.status,
                           "round": r.round_id, "started": r.created_at} for r in runs])
    st.dataframe(table, hide_index=True, column_config={
        "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    unfinished = [r for r in runs if r.status != "finished" or r.failed]
    if unfinished and to_run is None:
        left, mid, right = st.columns([2, 2, 1], vertical_alignment="bottom")
        again = left.selectbox("Run to continue", [r.id for r in unfinished], key="queries.resume_choice",
                               format_func=lambda rid: f"run {rid}")
        retry = mid.toggle("Also retry failed calls", key="queries.retry_errors")
        if right.button("Continue", key="queries.resume"):
            st.session_state["queries.retry"] = retry
            to_run = again
if to_run is not None:
    run = query_store.get_run(store, to_run)
    retry = bool(st.session_state.pop("queries.retry", False))
    todo = len(pending_query_ids(store, run, retry_errors=retry)) if run else 0
    bar = st.progress(0.0, text=f"Sending {todo} queries...")
    st.button("Stop", key="queries.run_stop", help="Finished calls are kept; continue the run later.")
    try:
        result = run_target(store, to_run, secrets=streamlit_secrets(), retry_errors=retry,
                            on_progress=lambda done, total: bar.progress(done / total, text=f"{done} of {total} sent"))
    except (TargetError, StoreError) as exc:
        st.error(str(exc))
    else:
        (st.warning if result.failed else st.success)(result.summary())
        for line in result.errors[:10]:
            st.error(line)
        if result.round_id is not None:
            st.session_state[ROUND_KEY] = result.round_id
            st.caption("The new round is now the current round: read its traces on the Traces page.")
