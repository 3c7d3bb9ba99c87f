"""The axial coding and prevalence pages through AppTest.

Until the pages are listed in ui/navigation.py they are run directly
(`AppTest.from_file("../../app_pages/axial.py")` with `app.project_id` in session state); once
listed, through app.py and `switch_page`, as users reach them.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from evalboard import coding
from evalboard.axial import clustering, taxonomy
from evalboard.demo import NOTES
from evalboard.models import TraceRecord
from evalboard.store import Store
from tests.fakes.openai_server import FakeOpenAI, fake_openai  # noqa: F401  (pytest fixture)
from ui.navigation import registered

LLM_ENV = ("EVALBOARD_LLM_BASE_URL", "OPENAI_BASE_URL", "EVALBOARD_LLM_API_KEY", "OPENAI_API_KEY",
           "EVALBOARD_LLM_MODEL", "EVALBOARD_LLM_MODEL_EMBEDDING")


@pytest.fixture
def project(app_env: str, monkeypatch: pytest.MonkeyPatch):
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    store = Store(app_env)
    pid = store.create_project("Docs bot", "Answers questions about Nimbus.").id
    notes = [n.format(doc="Plans and pricing") for mode in ("outdated version", "wrong tone email",
                                                            "tool error hidden") for n in NOTES[mode]]
    records = [TraceRecord(source="t", source_id=str(i), input=f"q{i}", output=f"a{i}", tags=["rag"],
                           dimensions={"persona": "dev" if i % 2 else "admin"}) for i in range(len(notes) + 4)]
    ids = store.add_traces(pid, records).trace_ids
    rid = store.create_round(pid, "R1", ids).id
    for tid, note in zip(ids, notes, strict=False):
        coding.save_annotation(store, pid, tid, "ana", verdict="fail", note=note, round_id=rid)
    for tid in ids[len(notes):]:
        coding.save_annotation(store, pid, tid, "ana", verdict="pass", round_id=rid)
    return store, pid, rid


def open_page(page: str, pid: int, who: str | None = "lead", **state) -> AppTest:
    path = f"app_pages/{page}.py"
    if path in registered():
        at = AppTest.from_file("../../app.py", default_timeout=60)
    else:
        at = AppTest.from_file(f"../../{path}", default_timeout=60)
    at.session_state["app.project_id"] = pid
    if who:
        at.session_state["app.annotator"] = who
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if path in registered():
        at.switch_page(path).run()
    return ok(at)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_offline_clustering_review_and_accept(project) -> None:
    store, pid, _ = project
    at = open_page("axial", pid)
    llm_button = at.button(key="axial.run_llm") if any(b.key == "axial.run_llm" for b in at.button) else None
    assert llm_button is None  # no LLM configured: the page starts on offline clustering
    at.number_input(key="axial.k").set_value(3)
    at.button(key="axial.run_offline").click().run()
    ok(at)
    run = clustering.list_runs(store, pid)[0]
    assert run.method == "offline" and len(run.proposals) == 3
    assert at.session_state["axial.run_id"] == run.id
    assert any("Accept all 3" in b.label for b in at.button)
    at.button(key="axial.accept_all").click().run()
    ok(at)
    table = taxonomy.taxonomy_table(store, pid)
    assert len(table) == 3 and table["notes"].sum() == len(run.notes)
    assert any("accept" in str(v) for v in at.dataframe[-1].value["action"])
    assert {d.label for d in at.get("download_button")} >= {"Taxonomy as Markdown", "Taxonomy as CSV"}


def test_merge_and_split_proposals_with_the_widgets(project) -> None:
    store, pid, _ = project
    notes = clustering.failure_notes(store, pid)
    run = clustering.run_offline(store, pid, notes, k=3, created_by="lead")
    at = open_page("axial", pid)
    base = f"axial.{run.id}"
    at.multiselect(key=f"{base}.p1.merge").set_value(["p2"])
    at.button(key=f"{base}.p1.do_merge").click().run()
    ok(at)
    merged = clustering.get_run(store, run.id)
    assert [p.key for p in merged.proposals] == ["p1", "p3"]
    first = merged.proposal("p1").members
    at.multiselect(key=f"{base}.p1.sel").set_value(first[:2])
    at.selectbox(key=f"{base}.p1.to").set_value("__new__")
    at.text_input(key=f"{base}.p1.new").input("split off")
    at.button(key=f"{base}.p1.move").click().run()
    ok(at)
    after = clustering.get_run(store, run.id)
    assert after.proposal("p4").name == "split off" and after.proposal("p4").members == first[:2]
    assert any(s.value.startswith("Split 2 notes") for s in at.success)


def test_rename_a_mode_and_see_it_in_the_history(project) -> None:
    store, pid, _ = project
    mid = taxonomy.create_mode(store, pid, "tone", "lead", definition="rude")
    at = open_page("axial", pid, who="maya")
    at.text_input(key=f"axial.mode.{mid}.name").input("wrong tone email")
    save = [b for b in at.button if b.label == "Save"]  # the mode form's submit button
    assert len(save) == 1
    save[0].click().run()
    ok(at)
    assert taxonomy.taxonomy_table(store, pid)["name"].tolist() == ["wrong tone email"]
    h = taxonomy.history(store, pid)
    assert (h.iloc[0]["action"], h.iloc[0]["actor"]) == ("rename", "maya")


def test_llm_clustering_from_the_page(project, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    store, pid, _ = project
    monkeypatch.setenv("EVALBOARD_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("EVALBOARD_LLM_MODEL", "fake-model")
    fake_openai.queue({"modes": [{"name": "outdated version", "definition": "v3 steps", "includes": "v3",
                                  "excludes": "v4"}],
                       "assignments": [{"note": "N1", "mode": "outdated version"}]})
    at = open_page("axial", pid)
    assert at.segmented_control(key="axial.method").value == "LLM"
    at.button(key="axial.run_llm").click().run()
    ok(at)
    run = clustering.list_runs(store, pid)[0]
    assert run.method == "llm" and run.params["model"] == "fake-model"
    assert [p.name for p in run.proposals] == ["outdated version"] and len(run.proposals[0].members) == 1
    assert len(run.unassigned) == len(run.notes) - 1
    assert "Docs bot" not in fake_openai.chat_requests[0].json["messages"][0]["content"]
    assert "Answers questions about Nimbus." in fake_openai.chat_requests[0].json["messages"][0]["content"]


def test_without_a_name_changes_are_disabled(project) -> None:
    store, pid, _ = project
    at = open_page("axial", pid, who=None)
    assert any("Who is reviewing" in i.value for i in at.info)
    assert at.button(key="axial.run_offline").disabled


def test_prevalence_page_charts_and_bar_selection(project) -> None:
    store, pid, rid = project
    run = clustering.run_offline(store, pid, clustering.failure_notes(store, pid), k=3, created_by="lead")
    taxonomy.accept_proposals(store, run.id, "lead")
    at = open_page("prevalence", pid)
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 2  # Pareto, dimension heatmap, tag heatmap
    assert at.metric[0].value == str(len(store.round_trace_ids(rid)))
    top = taxonomy.taxonomy_table(store, pid).iloc[0]
    # A bar click arrives as the chart's selection state; under AppTest it is a plain dict.
    at.session_state["prevalence.pareto"] = {"selection": {"pick": [{"mode": top["name"]}]}}
    at.run()
    ok(at)
    assert any(m.value.startswith(f"**{top['name']}**: {top['traces']} traces") for m in at.markdown)
    listed = next(d.value for d in at.dataframe if "notes" in d.value.columns)
    assert len(listed) == top["traces"]
    assert any(d.label == "Data (CSV)" for d in at.get("download_button"))


def test_prevalence_page_compares_two_rounds(project) -> None:
    store, pid, rid = project
    ids = store.add_traces(pid, [TraceRecord(source="t2", source_id=str(i)) for i in range(5)]).trace_ids
    r2 = store.create_round(pid, "R2", ids).id
    for tid in ids:
        coding.save_annotation(store, pid, tid, "ana", verdict="pass", round_id=r2)
    at = open_page("prevalence", pid)
    assert at.selectbox(key="prevalence.before").value == rid
    assert at.selectbox(key="prevalence.after").value == r2
    compared = at.dataframe[-1].value
    assert compared.iloc[0]["mode"] == "(any failure)" and compared.iloc[0]["traces_2"] == 0
    assert any("Newcombe" in c.value for c in at.caption)
