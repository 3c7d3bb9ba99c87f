"""Open coding progress: how much is labelled, how often traces fail, whether new failure modes
still appear (saturation), how far annotators agree, and the labels as files."""

import altair as alt
import pandas as pd
import streamlit as st

from evalboard import coding
from evalboard.stats import proportion, saturation
from ui.state import current_round, get_store, require_project

store = get_store()
project = require_project(store)
rnd = current_round(store, project)

st.title("Open coding: progress and agreement")
scope = f"round '{rnd.name}'" if rnd else "all rounds of the project"
st.caption(f"Showing {scope}. Pick a round in the sidebar to narrow it.")

labels = coding.annotation_table(store, project.id, round_id=rnd.id if rnd else None)  # type: ignore[arg-type]

with st.expander("Labels that came with imported files"):
    st.write("Files with a PASS/FAIL column or a notes column keep those as raw fields. Turn them "
             "into annotations (one per trace, under the name `import:<file>`).")
    if st.button("Create annotations from imported labels", key="progress.import_labels"):
        result = coding.labels_from_imports(store, project.id, round_id=rnd.id if rnd else None)  # type: ignore[arg-type]
        st.success(f"{result.created} annotations created.")
        if result.unrecognised:
            st.warning(f"{len(result.unrecognised)} labels were neither a pass nor a fail word and got "
                       "no verdict: " + ", ".join(f"{sid}={raw!r}" for sid, raw in result.unrecognised[:10]))
        labels = coding.annotation_table(store, project.id, round_id=rnd.id if rnd else None)  # type: ignore[arg-type]

done = labels[labels["verdict"].notna()]
if done.empty:
    st.info("No labels yet. Open coding starts on the Annotate page.")
    st.page_link("app_pages/annotate.py", label="Start labelling", icon=":material/edit_note:")
    st.stop()

st.subheader("Progress")
per_person = []
for who, g in done.groupby("annotator"):
    p = proportion(int((g["verdict"] == "fail").sum()), len(g))
    per_person.append({"annotator": who, "labelled": p.n, "failed": p.k, "failure rate": p.p,
                       "95% low": p.low, "95% high": p.high})
st.dataframe(pd.DataFrame(per_person), hide_index=True, column_config={
    c: st.column_config.NumberColumn(format="percent") for c in ("failure rate", "95% low", "95% high")})
st.caption("Failure rate = failed / labelled for each person, with a 95% Wilson interval. The interval "
           "covers sampling noise in which traces were drawn; it does not cover labelling mistakes, "
           "and it describes this round's traces only as far as they were sampled at random.")

left, right = st.columns(2)
counts = (done.explode("modes").dropna(subset=["modes"]).groupby("modes")["trace_id"].nunique()
          .rename("traces").reset_index().rename(columns={"modes": "failure mode"}))
with left:
    st.markdown("**Traces per failure mode** (any annotator)")
    if counts.empty:
        st.caption("No failure modes picked yet.")
    else:
        chart = alt.Chart(counts).mark_bar().encode(
            x=alt.X("traces:Q", title="traces"), y=alt.Y("failure mode:N", sort="-x", title=None),
            tooltip=["failure mode", "traces"])
        st.altair_chart(chart, width="stretch")

sat = saturation(coding.mode_sequence(labels))
with right:
    st.markdown("**Saturation**: distinct failure modes as labelling goes on")
    curve = pd.DataFrame({"labelled traces": range(1, len(sat.curve) + 1), "distinct modes": sat.curve})
    st.altair_chart(alt.Chart(curve).mark_line(point=True).encode(
        x="labelled traces:Q", y="distinct modes:Q"), width="stretch")
    st.caption("New modes in the last " + ", ".join(
        f"{w} labels: {n}" for w, n in sat.new_in_last.items())
        + ". When the last 20 or so labels bring no new mode, the taxonomy is close to saturated.")

st.subheader("Agreement")
report = coding.agreement_report(labels)
if report.shared_traces == 0:
    st.caption("Agreement needs traces labelled by two or more people. Ask a colleague to label "
               "part of the same round (blind mode keeps your labels hidden from them).")
else:
    st.write(f"{report.shared_traces} traces were labelled by more than one of "
             f"{', '.join(report.annotators)}.")
    if report.pairs:
        st.dataframe(pd.DataFrame(report.pairs), hide_index=True, column_config={
            "agreement": st.column_config.NumberColumn(format="percent"),
            "kappa": st.column_config.NumberColumn("Cohen's kappa", format="%.2f")})
    if report.alpha is not None and len(report.annotators) > 2:
        st.metric("Krippendorff's alpha (verdict, all annotators)", f"{report.alpha:.2f}")
    st.caption("Kappa and alpha correct agreement for chance: 1 is perfect, 0 is chance level. "
               "Below about 0.6, discuss the definitions before trusting counts.")
    if report.per_mode:
        st.markdown("**Per failure mode** (did both pick it, on traces both labelled)")
        st.dataframe(pd.DataFrame(report.per_mode), hide_index=True)
        st.caption("Modes named differently by each person show as disagreement here; axial "
                   "coding merges them into one taxonomy.")
    if report.disagreements:
        st.markdown(f"**To discuss**: {len(report.disagreements)} traces where labels differ")
        st.dataframe(pd.DataFrame(report.disagreements), hide_index=True)

st.subheader("Export")
c1, c2 = st.columns(2)
c1.download_button("Annotations as CSV", coding.export_annotations(labels, "csv"),
                   file_name=f"{project.name}-annotations.csv", mime="text/csv", key="progress.csv")
c2.download_button("Annotations as JSONL", coding.export_annotations(labels, "jsonl"),
                   file_name=f"{project.name}-annotations.jsonl", mime="application/jsonl",
                   key="progress.jsonl")
