"""Judges: one judge per failure mode, trusted only once it agrees with people on traces it never
saw. The page walks the steps for the chosen mode: labels and the train/dev/test split, the
judge and its versions, dev runs with the label audit, then the one-time test run and the
verdict on whether the judge is validated.
"""

import math

import pandas as pd
import streamlit as st
import yaml

from evalboard import coding
from evalboard import judges as J
from evalboard.store import StoreError
from integrations.llm import LLMCallError, LLMNotConfigured, LLMOutputError
from ui import trace_view
from ui.llm import llm_client, llm_disabled_reason, llm_settings, streamlit_secrets
from ui.state import ANNOTATOR_KEY, annotator, get_store, require_project

STEPS = ["1. Labels and split", "2. Judge", "3. Dev runs and label audit", "4. Test and validation"]
PAGE_SIZE = 10
PART_LABELS = {"train": "train (few-shot examples)", "dev": "dev (iterate)", "test": "test (run once)"}

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]

st.title("Judges")
st.caption("One judge per failure mode answers one question: does this trace show it? A judge is "
           "trusted only after it agrees with people on traces it never saw: improve it on dev, "
           "then run the test split once.")

if msg := st.session_state.pop("judges.error", None):
    st.error(msg)
if msg := st.session_state.pop("judges.success", None):
    st.success(msg)

modes = coding.list_modes(store, pid, order="created")
if modes.empty:
    st.info("No failure modes yet. Name them while labelling (open coding) or by grouping the "
            "failure notes (axial coding); then come back to build a judge per mode.")
    st.stop()

all_judges = J.list_judges(store, pid)
if all_judges:
    with st.expander(f"All judges of the project ({len(all_judges)})", expanded=False):
        overview = []
        for j in all_judges:
            status = J.judge_status(store, j.id)
            overview.append({"judge": j.name, "failure mode": j.mode_name, "kind": j.kind,
                             "status": f"validated ({status.tested_version})" if status.validated
                             else "not validated", "why not": status.reasons[0] if status.reasons else ""})
        st.dataframe(pd.DataFrame(overview), hide_index=True)

mode_names = dict(zip(modes["id"].astype(int), modes["name"]))
mode_id = st.selectbox("Failure mode", list(mode_names), format_func=mode_names.get, key="judges.mode")
mode = J.get_mode(store, mode_id)
st.caption(f"**Definition:** {mode.definition or '(none written yet: a judge needs a precise one)'}"
           + (f" · **includes:** {mode.includes}" if mode.includes else "")
           + (f" · **excludes:** {mode.excludes}" if mode.excludes else ""))

split = J.get_split(store, mode_id)
mode_judges = [j for j in all_judges if j.mode_id == mode_id]
step = st.segmented_control("Step", STEPS, default=STEPS[0] if split is None else STEPS[2 if mode_judges else 1],
                            key=f"judges.step.{mode_id}") or STEPS[0]


def fail(exc: Exception) -> None:
    st.session_state["judges.error"] = str(exc)


def who_am_i() -> str:
    """The annotator name (sidebar); asks for it when missing."""
    name = annotator()
    if not name:
        st.text_input("Your name (kept with your label corrections and runs)", key="judges.name",
                      on_change=lambda: st.session_state.update({ANNOTATOR_KEY: st.session_state["judges.name"]}))
    return name


def show_metrics(ev: J.Evaluation) -> None:
    """Metric cards and the confusion matrix of one evaluation."""
    m = ev.metrics
    if m is None:
        st.caption("No verdicts to compare with human labels yet.")
        return
    c1, c2, c3, c4 = st.columns(4)
    for col, name, rate, what in ((c1, "TPR", m.tpr, "human fails the judge caught"),
                                  (c2, "TNR", m.tnr, "human passes the judge passed")):
        col.metric(name, "-" if math.isnan(rate.p) else f"{rate.p:.2f}", border=True,
                   help=f"{what}: {rate.k} of {rate.n}; 95% Wilson interval {rate.low:.2f}-{rate.high:.2f}")
        col.caption(f"{rate.k}/{rate.n} · 95% CI {rate.low:.2f}-{rate.high:.2f}")
    c3.metric("Balanced accuracy", "-" if math.isnan(m.balanced_accuracy) else f"{m.balanced_accuracy:.2f}",
              border=True, help="(TPR + TNR) / 2")
    c3.caption(f"accuracy {J.rate_text(m.accuracy)}")
    c4.metric("Cohen's kappa", "-" if math.isnan(m.kappa) else f"{m.kappa:.2f}", border=True,
              help="Agreement with the human labels beyond chance (1 perfect, 0 chance).")
    c4.caption(f"precision {J.rate_text(m.precision)}")
    c = m.confusion
    st.dataframe(pd.DataFrame({"judge: fail": [c.tp, c.fp], "judge: pass": [c.fn, c.tn]},
                              index=["human: fail", "human: pass"]))
    extra = []
    if ev.missing:
        extra.append(f"{ev.missing} labelled traces not judged by this version yet")
    if ev.unlabelled:
        extra.append(f"{ev.unlabelled} traces of this part have no label now (tie or removed)")
    if extra:
        st.caption("; ".join(extra) + ".")


def run_with_progress(version_id: int, part: str, *, confirm_test: bool = False, run_id: int | None = None) -> None:
    """Run a version with a progress bar and a Stop button; the report goes to the next rerun."""
    judge_kind = J.get_judge(store, J.get_version(store, version_id).judge_id).kind
    bar = st.progress(0.0, text="Starting...")
    st.button("Stop", key="judges.stop", help="Stops after the calls on their way; verdicts received so far "
                                               "are kept, and running again picks up the rest.")
    try:
        client = llm_client(store) if judge_kind == "llm" else None
        report = J.run_judge(
            client, store, version_id, part=None if run_id else part, who=annotator(), product=project.description,
            concurrency=int(st.session_state.get("judges.concurrency") or 8), confirm_test=confirm_test,
            allowed_functions=J.allowed_functions(secrets=streamlit_secrets()), run_id=run_id,
            on_progress=lambda done, total: bar.progress(done / total, text=f"{done} of {total} traces"))
    except (StoreError, LLMNotConfigured, ValueError) as exc:
        fail(exc)
    else:
        if report.failed:
            first = next(iter(report.errors.values()), "")
            st.session_state["judges.error"] = f"{report.summary()} First error: {first}"
        else:
            st.session_state["judges.success"] = report.summary()
    st.rerun()


def version_picker(versions: list[J.Version], key: str) -> J.Version:
    labels = {v.id: f"{v.label} · {v.note or 'no note'} · {v.created_at:%Y-%m-%d %H:%M}" for v in versions}
    chosen = st.selectbox("Version", list(labels)[::-1], format_func=labels.get, key=key)
    return next(v for v in versions if v.id == chosen)


# ============================================================================== 1. labels and split
if step == STEPS[0]:
    st.subheader("Human labels for this mode")
    st.caption("Per annotator: **fail** = their label lists this mode; **pass** = they passed the trace, or "
               "it failed only in other ways; a fail without any mode says nothing about this mode. "
               "A label corrected in the audit overrides the votes.")
    people = sorted(coding.annotation_table(store, pid)["annotator"].unique())
    if split is not None:
        policy = split.policy
        st.caption(f"Labels combine by: **{policy.describe()}** (fixed with the split).")
    else:
        c1, c2 = st.columns(2)
        method = c1.radio("Combine several people's labels by", ["majority", "reference"], horizontal=True,
                          key="judges.policy_method", format_func={
                              "majority": "majority vote", "reference": "one reference annotator"}.get)
        reference = c2.selectbox("Reference annotator" if method == "reference" else "Ties go to",
                                 ([] if method == "reference" else [None]) + people, key="judges.policy_ref",
                                 format_func=lambda p: "nobody (ties are left out)" if p is None else p)
        try:
            policy = J.LabelPolicy(method=method, reference=reference)
        except ValueError:
            st.info("Choose the reference annotator (nobody has labelled yet?).")
            st.stop()
    labels = J.mode_labels(store, pid, mode_id, policy)
    counts = labels["label"].value_counts()
    ties = int((labels["how"] == "tie").sum())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Show this mode (fail)", int(counts.get("fail", 0)), border=True)
    c2.metric("Do not (pass)", int(counts.get("pass", 0)), border=True)
    c3.metric("Ties", ties, border=True, help="Annotators disagree and no tie-breaker: left out.")
    c4.metric("No vote", int((labels["how"] == "no vote").sum()), border=True,
              help="Failed without naming a mode: unknown for this mode.")
    with st.expander("Labels per trace"):
        st.dataframe(labels[["trace_id", "label", "how", "annotators"]], hide_index=True)

    st.subheader("Train / dev / test split")
    if split is None or not split.locked:
        if split is not None:
            st.dataframe(J.split_summary(store, split, labels), hide_index=True)
            st.caption(f"Seed {split.seed}. Not used by any run yet, so it can still be made again.")
        c1, c2, c3, c4 = st.columns(4)
        shares = split.proportions if split else J.DEFAULT_PROPORTIONS
        train = c1.number_input("Train %", 0, 100, round(shares["train"] * 100), key="judges.p_train")
        dev = c2.number_input("Dev %", 1, 100, round(shares["dev"] * 100), key="judges.p_dev")
        test = c3.number_input("Test %", 1, 100, round(shares["test"] * 100), key="judges.p_test")
        seed = c4.number_input("Seed", 0, 2**31 - 2, split.seed if split else 2026, key="judges.seed",
                               help="Recorded with the split, so the same split can be drawn again.")
        if st.button("Make the split" if split is None else "Make the split again", key="judges.make_split",
                     type="primary"):
            try:
                J.make_split(store, pid, mode_id, proportions=[train, dev, test], seed=int(seed), policy=policy,
                             who=annotator())
            except StoreError as exc:
                fail(exc)
            else:
                st.session_state["judges.success"] = "Split made."
            st.rerun()
        st.caption("Stratified: each part gets its share of the fails and of the passes. Proportions can "
                   "change until the first run; after that the split is fixed.")
    else:
        st.dataframe(J.split_summary(store, split, labels), hide_index=True)
        st.caption(f"Seed {split.seed}, made by {split.created_by or 'someone'} on {split.created_at:%Y-%m-%d}; "
                   "fixed, because runs have used it."
                   + (" The test split has been used." if split.test_used else ""))
    if split is not None:
        new = J.unsplit_labels(store, split, labels)
        if new:
            where = "train and dev (the test split was used, so it stays as it was)" if split.test_used \
                else "train, dev and test in the split's proportions"
            if st.button(f"Add the {len(new)} traces labelled since to the split", key="judges.extend",
                         help=f"They go to {where}."):
                counts = J.add_new_labels(store, split.id, who=annotator())
                st.session_state["judges.success"] = "Added: " + ", ".join(f"{n} to {p}" for p, n in counts.items())
                st.rerun()
        for ext in split.extensions:
            st.caption(f"Added {ext['added']} traces on {ext['at'][:10]} (seed {ext['seed']}): {ext['parts']}")

# ============================================================================== 2. the judge
elif step == STEPS[1]:
    if split is None:
        st.info("Make the train/dev/test split first (step 1): few-shot examples come from train only.")
    with st.expander("New judge", expanded=not mode_judges):
        with st.form(f"judges.new.{mode_id}", clear_on_submit=True):
            name = st.text_input("Name", value=f"{mode.name} judge", key=f"judges.new_name.{mode_id}")
            kind = st.radio("Kind", ["llm", "code"], horizontal=True, key=f"judges.new_kind.{mode_id}",
                            format_func={"llm": "LLM judge (a prompt)", "code": "Code judge (checks, no LLM)"}.get)
            if st.form_submit_button("Create the judge", type="primary", key=f"judges.create.{mode_id}"):
                try:
                    made = J.create_judge(store, pid, mode_id, name, kind, who=annotator())
                except StoreError as exc:
                    fail(exc)
                else:
                    st.session_state[f"judges.judge.{mode_id}"] = made.id
                st.rerun()
    if not mode_judges:
        st.stop()
    names = {j.id: f"{j.name} ({j.kind})" for j in mode_judges}
    judge_id = st.selectbox("Judge", list(names), format_func=names.get, key=f"judges.judge.{mode_id}")
    judge = J.get_judge(store, judge_id)
    versions = J.list_versions(store, judge.id)
    latest = versions[-1].config if versions else {}
    jk = f"judges.edit.{judge.id}"  # widget keys of this judge's editor

    if versions:
        with st.expander(f"Versions ({len(versions)}) and what changed"):
            shown = version_picker(versions, f"{jk}.history")
            st.caption(f"{shown.label} by {shown.created_by or 'someone'}: {shown.note or 'no note'}")
            st.code(shown.diff or "(no change)", language="diff")

    st.markdown(f"**Next version of {judge.name}** (every change is saved as a new version)")
    if judge.kind == "llm":
        settings_model = None
        if llm_disabled_reason() is None:
            settings_model = llm_settings().model_for(J.JUDGE_FEATURE)
        defaults = {"model": latest.get("model") or settings_model or "", "temperature": latest.get("temperature", 0.0),
                    "max_tokens": latest.get("max_tokens") or 0,
                    "fail_when": latest.get("fail_when", J.DEFAULT_FAIL_WHEN),
                    "pass_when": latest.get("pass_when", J.DEFAULT_PASS_WHEN),
                    "instructions": latest.get("instructions", J.DEFAULT_INSTRUCTIONS),
                    "trace_template": latest.get("trace_template", J.DEFAULT_TRACE_TEMPLATE)}
        for field, value in defaults.items():
            st.session_state.setdefault(f"{jk}.{field}", value)

        train_ids = J.part_ids(store, split.id, "train") if split else []
        train_labels = J.labels_by_trace(J.mode_labels(store, pid, mode_id, split.policy)) if split else {}

        def draft() -> None:
            try:
                picks = [t for t in train_ids if train_labels.get(t) == "fail"][:3] + \
                        [t for t in train_ids if train_labels.get(t) == "pass"][:3]
                found = J.load_traces(store, picks)
                notes = coding.annotation_table(store, pid)
                note_of = {int(r.trace_id): r.note for r in notes.itertuples() if r.note}
                drafted = J.draft_criteria(llm_client(store), mode, [(found[t], train_labels[t], note_of.get(t, ""))
                                                                     for t in picks if t in found],
                                           product=project.description, model=st.session_state.get(f"{jk}.model") or None)
            except (StoreError, LLMNotConfigured, LLMCallError, LLMOutputError, ValueError) as exc:
                fail(exc)
                return
            st.session_state[f"{jk}.fail_when"] = drafted.fail_when
            st.session_state[f"{jk}.pass_when"] = drafted.pass_when
            st.session_state["judges.success"] = "Drafted from the definition and train examples: edit before saving."

        reason = llm_disabled_reason()
        st.button("Draft the criteria with the LLM", key=f"{jk}.draft", on_click=draft, icon=":material/auto_awesome:",
                  disabled=reason is not None or split is None, help=reason or
                  "Writes fail/pass criteria from the mode's definition and up to 6 labelled train traces.")
        c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
        c1.text_input("Model", key=f"{jk}.model")
        c2.number_input("Temperature", 0.0, 2.0, step=0.1, key=f"{jk}.temperature")
        c3.number_input("Max tokens (0: none)", 0, 32000, step=50, key=f"{jk}.max_tokens")
        c4.number_input("Seed", value=latest.get("seed"), step=1, key=f"{jk}.seed",
                        help="Optional; some servers repeat answers with it.")
        st.text_area("Answer fail when", key=f"{jk}.fail_when", height=120,
                     help="Concrete things to look for in the trace; no vague words.")
        st.text_area("Answer pass when", key=f"{jk}.pass_when", height=100,
                     help="Include the near misses that look similar but are not this failure.")
        with st.expander("Prompt templates (Jinja2, sandboxed)"):
            st.caption("Instructions see `mode.name`, `mode.definition`, `mode.includes`, `mode.excludes`, "
                       "`fail_when`, `pass_when` and `product`. The trace template sees every trace field "
                       "(`input`, `output`, `spans`, `metadata`, ...) and `conversation`; `| text` prints a "
                       "value as text. Whatever the trace template writes is put between <trace> and "
                       "</trace> after a fixed note that it is data, never instructions.")
            st.text_area("Instructions", key=f"{jk}.instructions", height=260)
            st.text_area("Trace template", key=f"{jk}.trace_template", height=260)

        st.markdown("**Few-shot examples** (train split only)")
        old_examples = {e["trace_id"]: e for e in latest.get("examples") or []}
        choices = [t for t in train_ids if t in train_labels]
        st.session_state.setdefault(f"{jk}.examples", [t for t in old_examples if t in choices])
        picked = st.multiselect("Train traces to show the judge", choices, key=f"{jk}.examples",
                                format_func=lambda t: f"trace {t} · {train_labels.get(t)}",
                                help="Only train traces are offered: a dev or test trace shown as an example "
                                     "would leak its answer into the evaluation.")
        examples = []
        for t in picked:
            st.session_state.setdefault(f"{jk}.why.{t}", old_examples.get(t, {}).get("reasoning", ""))
            why = st.text_input(f"Reasoning for trace {t} ({train_labels.get(t)})", key=f"{jk}.why.{t}")
            examples.append({"trace_id": t, "verdict": train_labels.get(t), "reasoning": why})
        config = {"model": st.session_state[f"{jk}.model"].strip(),
                  "temperature": float(st.session_state[f"{jk}.temperature"]),
                  "max_tokens": int(st.session_state[f"{jk}.max_tokens"]) or None,
                  "seed": None if st.session_state[f"{jk}.seed"] is None else int(st.session_state[f"{jk}.seed"]),
                  "fail_when": st.session_state[f"{jk}.fail_when"], "pass_when": st.session_state[f"{jk}.pass_when"],
                  "instructions": st.session_state[f"{jk}.instructions"],
                  "trace_template": st.session_state[f"{jk}.trace_template"], "examples": examples}
        if split is not None:
            dev_ids = J.part_ids(store, split.id, "dev")
            if dev_ids and st.toggle("Preview the prompt for the first dev trace", key=f"{jk}.preview"):
                try:
                    checked = J.LLMJudgeConfig.model_validate({**config, "model": config["model"] or "(model)"})
                    found = J.load_traces(store, [dev_ids[0], *[e["trace_id"] for e in examples]])
                    for message in J.judge_messages(checked, mode, found[dev_ids[0]], examples=found,
                                                    product=project.description):
                        st.caption(message["role"])
                        st.code(message["content"], language=None, wrap_lines=True)
                except (StoreError, ValueError) as exc:
                    st.error(f"The prompt cannot be built: {exc}")
    else:
        allowed = J.allowed_functions(secrets=streamlit_secrets())
        st.session_state.setdefault(f"{jk}.rule", yaml.safe_dump(latest.get("rule") or J.EXAMPLE_RULE,
                                                                  sort_keys=False, allow_unicode=True))
        st.caption("The verdict is **fail when the rule holds**. A rule is one check, or `all:` / `any:` a list "
                   "of rules, or `not:` a rule. Fields: `input`, `output`, `error`, `conversation`, or a dotted "
                   "path such as `metadata.app_version`.")
        st.dataframe(pd.DataFrame([{"check": k, "what": v} for k, v in J.CHECKS.items()]), hide_index=True)
        st.text_area("Rule (YAML or JSON)", key=f"{jk}.rule", height=220)
        st.caption("Python checks the operator allowed (EVALBOARD_JUDGE_FUNCTIONS or [judges] functions in the "
                   f"secrets): {', '.join(f'`{a}`' for a in allowed) or 'none'}. Code is never typed here.")
        try:
            config = {"rule": yaml.safe_load(st.session_state[f"{jk}.rule"]) or {}}
        except yaml.YAMLError as exc:
            config = None
            st.error(f"The rule is not valid YAML/JSON: {exc}")
    note = st.text_input("What changed (kept with the version)", key=f"{jk}.note")
    if st.button("Save as a new version", key=f"{jk}.save", type="primary", disabled=config is None):
        try:
            saved, created = J.save_version(store, judge.id, config, who=annotator(), note=note,  # type: ignore[arg-type]
                                            allowed_functions=J.allowed_functions(secrets=streamlit_secrets()))
        except StoreError as exc:
            fail(exc)
        else:
            st.session_state["judges.success"] = (f"Saved {saved.label}." if created
                                                  else f"Nothing changed since {saved.label}: no new version.")
        st.rerun()

    with st.expander("Validation thresholds"):
        c1, c2, c3 = st.columns([1, 1, 1], vertical_alignment="bottom")
        tpr = c1.number_input("TPR at least", 0.01, 1.0, judge.thresholds["tpr"], 0.01, key=f"{jk}.tpr")
        tnr = c2.number_input("TNR at least", 0.01, 1.0, judge.thresholds["tnr"], 0.01, key=f"{jk}.tnr")
        if c3.button("Save thresholds", key=f"{jk}.save_thresholds"):
            J.set_thresholds(store, judge.id, tpr, tnr)
            st.rerun()
        st.caption("On the test split. Changing them after the test run is recorded on the validation step.")

# ============================================================================== 3. dev runs
elif step == STEPS[2]:
    if split is None or not mode_judges:
        st.info("Make the split (step 1) and a judge with a version (step 2) first.")
        st.stop()
    names = {j.id: f"{j.name} ({j.kind})" for j in mode_judges}
    judge_id = st.selectbox("Judge", list(names), format_func=names.get, key=f"judges.judge.{mode_id}")
    judge = J.get_judge(store, judge_id)
    versions = J.list_versions(store, judge.id)
    if not versions:
        st.info("This judge has no version yet: write it in step 2.")
        st.stop()
    version = version_picker(versions, f"judges.dev_version.{judge.id}")
    reason = llm_disabled_reason() if judge.kind == "llm" else None
    price = None
    if judge.kind == "llm" and reason is None:
        try:
            price = llm_client(store).settings.cost
        except ValueError as exc:
            reason = str(exc)
    try:
        estimate = J.estimate_run(store, version.id, part="dev", product=project.description, price=price)
    except StoreError as exc:
        st.error(str(exc))
        st.stop()
    st.info(f"Run {version.label} on dev: {estimate.summary()}")
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    if judge.kind == "llm":
        default_conc = 8 if reason else min(64, llm_client(store).settings.max_concurrency)
        c1.number_input("Calls at once", 1, 256, default_conc, key="judges.concurrency")
    if reason:
        st.caption(f":material/info: {reason}")
    if c2.button(f"Run {version.label} on dev", key="judges.run_dev", type="primary", disabled=reason is not None):
        run_with_progress(version.id, "dev")
    for run in J.interrupted_runs(store, judge.id):
        if run["part"] == "test":
            continue
        if st.button(f"Resume run {run['run']} ({run['status']}, {run['traces']} traces)",
                     key=f"judges.resume.{run['run']}", disabled=reason is not None):
            run_with_progress(run["version_id"], run["part"], run_id=run["run"])

    ev = J.evaluate(store, version.id, "dev")
    verdicts = J.stored_verdicts(store, version.id)
    if not verdicts.empty and set(verdicts["origin"]) == {J.RECORDED}:
        st.badge("demo data: recorded answers, no LLM was called", icon=":material/science:", color="violet")
    st.markdown(f"**{version.label} on dev** (positive = fail: the judge's job is to find failures)")
    show_metrics(ev)

    disagreements = ev.disagreements
    st.markdown(f"**Disagreements on dev ({len(disagreements)})**: the human note beside the judge's reasoning. "
                "Correct the human label when the judge was right (kept in the history with your reason), "
                "or move the trace to train to use it as a few-shot example.")
    if not disagreements.empty:
        who = who_am_i()
        pages = max(1, -(-len(disagreements) // PAGE_SIZE))
        page = st.pagination(pages, key=f"judges.dis_page.{version.id}") if pages > 1 else 1
        for row in disagreements.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE].itertuples():
            tid = int(row.trace_id)
            with st.container(border=True):
                left, right = st.columns(2)
                left.markdown(f"**Trace {tid}** · human: **{row.human}**")
                left.caption(row.annotators)
                for n in row.notes:
                    left.text(n)
                right.markdown(f"Judge {version.label}: **{row.judge}**")
                right.text(row.reasoning)
                if st.toggle("Show the trace", key=f"judges.show.{version.id}.{tid}"):
                    trace = store.get_trace(tid)
                    if trace is not None:
                        trace_view.show(trace, project.settings, key=f"judges.trace.{tid}")
                why = st.text_input("Reason", key=f"judges.why.{tid}", placeholder="why the label changes")
                b1, b2 = st.columns(2)

                def correct(trace_id: int = tid, label: str = row.judge, judged: str = row.judge) -> None:
                    try:
                        J.correct_label(store, pid, mode_id, trace_id, label, who=annotator(),
                                        reason=st.session_state.get(f"judges.why.{trace_id}", ""),
                                        context={"version": version.label, "judge": judged})
                    except StoreError as exc:
                        fail(exc)
                    else:
                        st.session_state["judges.success"] = f"Trace {trace_id} is now labelled {label} for this mode."

                def to_train(trace_id: int = tid) -> None:
                    try:
                        J.move_to_train(store, pid, mode_id, trace_id, who=annotator(),
                                        reason=st.session_state.get(f"judges.why.{trace_id}", ""),
                                        context={"version": version.label})
                    except StoreError as exc:
                        fail(exc)
                    else:
                        st.session_state["judges.success"] = f"Trace {trace_id} moved to train."

                b1.button(f"Correct the human label to {row.judge}", key=f"judges.correct.{tid}", on_click=correct,
                          disabled=not who)
                b2.button("Move to train (few-shot)", key=f"judges.to_train.{tid}", on_click=to_train, disabled=not who)

    st.markdown("**Versions compared**")
    st.dataframe(J.compare_versions(store, judge.id), hide_index=True)
    with st.expander("Runs"):
        st.dataframe(J.list_runs(store, judge.id), hide_index=True)
    with st.expander("Label audit history of this mode"):
        st.dataframe(J.label_history(store, mode_id), hide_index=True)

# ============================================================================== 4. test and validation
else:
    if split is None or not mode_judges:
        st.info("Make the split (step 1) and a judge with a version (step 2) first.")
        st.stop()
    names = {j.id: f"{j.name} ({j.kind})" for j in mode_judges}
    judge_id = st.selectbox("Judge", list(names), format_func=names.get, key=f"judges.judge.{mode_id}")
    judge = J.get_judge(store, judge_id)
    status = J.judge_status(store, judge.id)
    limits = f"TPR >= {judge.thresholds['tpr']:.2f} and TNR >= {judge.thresholds['tnr']:.2f} on test"
    if status.validated:
        st.success(f"**Validated:** {judge.name} {status.tested_version} meets {limits}.")
    else:
        st.warning(f"**Not validated yet** ({limits}):\n\n" + "\n".join(f"- {r}" for r in status.reasons))
    for n in status.notes:
        st.caption(f":material/info: {n}")

    versions = J.list_versions(store, judge.id)
    if versions and split.test_run_id is None:
        st.subheader("Run the test split")
        version = version_picker(versions, f"judges.test_version.{judge.id}")
        dev = J.evaluate(store, version.id, "dev")
        if dev.metrics is not None:
            st.caption(f"{version.label} on dev: TPR {J.rate_text(dev.metrics.tpr)}, TNR {J.rate_text(dev.metrics.tnr)}.")
        else:
            st.caption(f"{version.label} has not been run on dev: check it there first.")
        reason = llm_disabled_reason() if judge.kind == "llm" else None
        price = llm_client(store).settings.cost if judge.kind == "llm" and reason is None else None
        st.info(J.estimate_run(store, version.id, part="test", product=project.description, price=price).summary())
        sure = st.checkbox(f"I am done improving on dev. Run the test split once, for {version.label} only: no "
                           "other version of any judge of this mode can be tested on it afterwards.",
                           key=f"judges.test_sure.{judge.id}")
        if reason:
            st.caption(f":material/info: {reason}")
        if st.button("Run the test split", key="judges.run_test", type="primary", disabled=not sure or reason is not None):
            run_with_progress(version.id, "test", confirm_test=True)
    elif split.test_version_id in {v.id for v in versions}:
        tested = next(v for v in versions if v.id == split.test_version_id)
        test = status.test or J.evaluate(store, tested.id, "test")
        if test.metrics is None:
            st.info(f"The test run of {tested.label} stopped before the end.")
            if st.button("Resume the test run", key="judges.resume_test"):
                run_with_progress(tested.id, "test", run_id=split.test_run_id)
        else:
            st.subheader(f"Test result of {tested.label} (frozen {str(test.frozen_at)[:16].replace('T', ' ')})")
            verdicts = J.stored_verdicts(store, tested.id)
            if not verdicts.empty and set(verdicts["origin"]) == {J.RECORDED}:
                st.badge("demo data: recorded answers, no LLM was called", icon=":material/science:", color="violet")
            show_metrics(test)
            if not test.disagreements.empty:
                with st.expander(f"Test disagreements ({len(test.disagreements)}), for reading only"):
                    st.dataframe(test.disagreements[["trace_id", "human", "judge", "reasoning", "annotators"]],
                                 hide_index=True)
    else:
        st.info("The test split of this mode was used by another judge; this judge has no clean test result.")

    st.subheader("Label budget planner")
    st.caption("How many labelled traces the test split needs for the TPR and TNR intervals to be at most a "
               "given width (95% Wilson), and roughly how many traces to label to get there.")
    summary = J.split_summary(store, split).set_index("part")
    have_f, have_p = int(summary.loc["test", "fail"]), int(summary.loc["test", "pass"])
    all_labels = J.labels_by_trace(J.mode_labels(store, pid, mode_id, split.policy))
    share = sum(v == "fail" for v in all_labels.values()) / len(all_labels) if all_labels else None
    c1, c2, c3 = st.columns(3)
    width = c1.slider("Interval width at most", 0.05, 0.5, 0.2, 0.01, key="judges.budget_width")
    exp_tpr = c2.slider("Expected TPR", 0.5, 0.99, 0.9, 0.01, key="judges.budget_tpr")
    exp_tnr = c3.slider("Expected TNR", 0.5, 0.99, 0.95, 0.01, key="judges.budget_tnr")
    budget = J.label_budget(have_f, have_p, expected_tpr=exp_tpr, expected_tnr=exp_tnr, width=width,
                            fail_share=share, test_share=split.proportions["test"])
    st.dataframe(pd.DataFrame([
        {"": "human fails (for TPR)", "in test now": have_f, "needed": budget.fails_needed, "more": budget.more_fails},
        {"": "human passes (for TNR)", "in test now": have_p, "needed": budget.passes_needed, "more": budget.more_passes},
    ]), hide_index=True)
    if budget.traces_to_label:
        st.caption(f"About **{budget.traces_to_label}** more traces to label: {share:.0%} of labelled traces show "
                   f"this mode and {split.proportions['test']:.0%} of new labels go to test (if the test split is "
                   "still unused; after the test run new labels go to train and dev only).")
    elif budget.traces_to_label == 0:
        st.caption("The test split already holds enough labels for this width.")
