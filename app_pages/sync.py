"""Sync: push a judge, its verdicts, people's labels and the kept queries to Langfuse (dry run
first, progress, the result of every object, a log of past pushes), and export a judge for
Braintrust, promptfoo, CI (Python) or as a JSON spec."""

from dataclasses import replace

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from evalboard import exports, push_log, query_store
from evalboard.judges import list_judges, list_runs, list_versions
from integrations.langfuse_push import PushError, PushRequest, RuleOptions, dry_run, run_push
from ui.langfuse import langfuse_disabled_reason, langfuse_settings
from ui.state import annotator, get_store, require_project

FORMATS = {"python": "Python module (CI)", "braintrust": "Braintrust scorer", "promptfoo": "promptfoo assertion",
           "json": "JSON spec"}

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]

st.title("Sync and export")
st.caption("Send what evalboard learned back to Langfuse (a judge as a scorer there, its verdicts as scores, "
           "people's labels, the kept queries as a dataset), or take a judge to another tool. Pushing again "
           "sends only what is new or changed: nothing ends up in Langfuse twice, and a push that stopped "
           "continues where it stopped.")

judges = list_judges(store, pid)
judge_names = {j.id: f"{j.name} ({j.mode_name})" for j in judges}
push_tab, export_tab, log_tab = st.tabs(["Push to Langfuse", "Export a judge", "Past pushes"])


def _version_choice(judge_id: int, key: str) -> int | None:
    """A version picker: the default (validated, else latest) or a chosen number; its id or None."""
    versions = list_versions(store, judge_id)
    labels = {0: "the validated version (else the latest)", **{v.id: v.label for v in versions}}
    chosen = st.selectbox("Version", list(labels), format_func=labels.get, key=key)
    return chosen or None


def _status_line(judge_id: int, version_id: int | None) -> bool:
    """Say whether the version to use is validated, and why not; True when it is."""
    version, status, validated = exports.choose_version(store, judge_id, version_id)
    if validated:
        st.success(f"{version.label} is validated on the test split.", icon=":material/verified:")
    else:
        why = " ".join(status.reasons) if not status.validated else (
            f"{version.label} is not the validated version ({status.tested_version} is).")
        st.warning(f"{version.label} is not validated. {why}", icon=":material/warning:")
    return validated


# ------------------------------------------------------------------------------------- push
with push_tab:
    reason = langfuse_disabled_reason()
    if reason:
        st.info(reason)
        try:
            st.page_link("app_pages/settings.py", label="Set up Langfuse on the Settings page", icon=":material/settings:")
        except StreamlitPageNotFoundError:  # the page runs outside the app's navigation (tests)
            pass
    else:
        settings = langfuse_settings()
        st.caption(f"To {settings.masked()}.")
        request_args: dict = {}
        confirmed = True
        with st.container(border=True):
            st.markdown("**Judge**: score config, prompt and LLM-as-a-judge evaluator")
            choice = st.selectbox("Judge", [0, *judge_names], format_func=lambda j: judge_names.get(j, "No judge"),
                                  key="sync.judge")
            if choice:
                version_id = _version_choice(choice, "sync.version")
                validated = _status_line(choice, version_id)
                if not validated:
                    confirmed = st.checkbox("Push it anyway, labelled 'not validated' in Langfuse",
                                            key="sync.confirm_unvalidated")
                c1, c2 = st.columns(2)
                evaluator = c1.checkbox("Create the evaluator", value=True, key="sync.evaluator")
                provider = c2.text_input("LLM connection in Langfuse", value="openai", key="sync.provider",
                                         help="The provider of the evaluator's model; empty for the project's "
                                              "default evaluation model.")
                rule = None
                if evaluator and st.checkbox("Let Langfuse judge new traces (an evaluation rule)", key="sync.rule"):
                    r1, r2, r3 = st.columns(3)
                    sampling = r1.slider("Share of traces judged", 0.01, 1.0, 0.1, key="sync.sampling")
                    envs = r2.text_input("Environments", key="sync.rule_env", placeholder="production")
                    enabled = r3.toggle("Enabled", value=True, key="sync.rule_enabled")
                    rule = RuleOptions(enabled=enabled, sampling=sampling,
                                       environments=tuple(e.strip() for e in envs.split(",") if e.strip()))
                runs = list_runs(store, choice)
                run_labels = {0: "No scores", **{int(r.run): f"Run {r.run}: v{r.version}, {r.part or 'traces'}, "
                                                f"{r.traces} traces ({r.status})" for r in runs.itertuples()}}
                run_id = st.selectbox("Verdicts as scores", list(run_labels), format_func=run_labels.get,
                                      key="sync.run")
                request_args.update(judge=choice, version=version_id, evaluator=evaluator, rule=rule,
                                    provider=provider.strip() or None, scores_run=run_id or None,
                                    confirm_unvalidated=confirmed and not validated)
        with st.container(border=True):
            st.markdown("**People's labels**: verdict and failure-mode scores, first-failure notes as comments")
            rounds = {0: "No labels", **{r.id: f"{r.name} ({r.trace_count} traces)" for r in store.list_rounds(pid)}}
            round_id = st.selectbox("Round", list(rounds), format_func=rounds.get, key="sync.round")
            request_args["annotations_round"] = round_id or None
        with st.container(border=True):
            kept = query_store.count_queries(store, pid, ["kept"])
            st.markdown(f"**Kept queries** as a dataset ({kept} kept)")
            dataset = st.text_input("Dataset name", key="sync.dataset", placeholder="e.g. evalboard-queries",
                                    help="Empty: no dataset.", disabled=not kept)
            request_args["dataset"] = dataset.strip() or None
        request = PushRequest(**request_args)

        c1, c2 = st.columns(2)
        if c1.button("Dry run", key="sync.dry_run", icon=":material/preview:", disabled=request.empty):
            try:
                # a dry run sends nothing, so it needs no confirmation
                plan = dry_run(store, pid, replace(request, confirm_unvalidated=True), settings)
            except PushError as exc:
                st.error(str(exc))
            else:
                st.markdown(f"**Dry run**: {plan.to_send:,} objects to send; nothing was sent.")
                st.dataframe(plan.lines(), hide_index=True, key="sync.plan")
        go = c2.button("Push", type="primary", key="sync.push", icon=":material/cloud_upload:",
                       disabled=request.empty or not confirmed)
        if request.empty:
            st.caption("Choose a judge, a round or a dataset name to push.")
        if go:
            bar = st.progress(0.0, text="Connecting to Langfuse...")
            try:
                report = run_push(store, pid, request, settings, who=annotator(),
                                  on_progress=lambda p: bar.progress(p.fraction, text=f"{p.done}/{p.total}: {p.current}"))
            except PushError as exc:
                bar.empty()
                st.error(str(exc))
            else:
                bar.progress(1.0, text="Finished")
                (st.success if report.ok else st.error)(report.summary())
                st.dataframe(report.objects.drop(columns=["at"]), hide_index=True, key="sync.result",
                             column_config={"link": st.column_config.LinkColumn("link")})
        if choice:
            links = push_log.judge_links(store, choice)
            if not links.empty:
                st.markdown("**In Langfuse** (from earlier pushes)")
                st.dataframe(links, hide_index=True, key="sync.links",
                             column_config={"link": st.column_config.LinkColumn("link")})

# ------------------------------------------------------------------------------------- export
with export_tab:
    if not judges:
        st.info("No judges yet: build one on the Judges page, then export it here.")
    else:
        judge_id = st.selectbox("Judge", list(judge_names), format_func=judge_names.get, key="sync.export_judge")
        version_id = _version_choice(judge_id, "sync.export_version")
        _status_line(judge_id, version_id)
        llm = next(j.kind for j in judges if j.id == judge_id) == "llm"
        # a code judge's rule runs in evalboard only: it exports as a JSON spec
        fmt = st.segmented_control("Format", list(FORMATS) if llm else ["json"], format_func=FORMATS.get,
                                   default="python" if llm else "json", key="sync.export_format")
        st.caption({"python": "Judges (input, output) pairs with the openai SDK as evalboard does; for CI.",
                    "braintrust": "For `braintrust push`: an LLM classifier scoring pass 1, fail 0.",
                    "promptfoo": "An llm-rubric assertion to merge into promptfooconfig.yaml.",
                    "json": "Everything about the version: prompt, model, validation figures."}.get(fmt or "", ""))
        if fmt:
            try:
                export = exports.export_judge(store, judge_id, fmt, version_id=version_id)
            except exports.ExportError as exc:
                st.error(str(exc))
            else:
                st.download_button(f"Download {export.filename}", export.content.encode(), file_name=export.filename,
                                   mime=export.mime, key="sync.download", icon=":material/download:")
                with st.expander("Preview"):
                    st.code(export.content[:4000] + ("\n..." if len(export.content) > 4000 else ""),
                            language={"json": "json", "promptfoo": "yaml"}.get(fmt, "python"))

# ------------------------------------------------------------------------------------- log
with log_tab:
    log = push_log.list_pushes(store, pid)
    if not log:
        st.info("Nothing pushed yet.")
    else:
        st.dataframe(push_log.pushes_frame(log), hide_index=True, key="sync.log")
        names = {p.id: f"Push {p.id} ({p.status}, {p.started_at:%Y-%m-%d %H:%M})" for p in log}
        shown = st.selectbox("Objects of push", list(names), format_func=names.get, key="sync.log_push")
        st.dataframe(push_log.push_objects_frame(store, shown), hide_index=True, key="sync.log_objects",
                     column_config={"link": st.column_config.LinkColumn("link")})
