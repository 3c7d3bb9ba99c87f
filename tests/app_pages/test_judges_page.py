"""The judge workbench page through AppTest.

The page is not in the app's navigation until the lead adds it, so the tests open the page file
directly (`AppTest.from_file("../../app_pages/judges.py")`) after putting the project, the
failure mode and the step in session state, as the sidebar and the page's own widgets would.
LLM judges run against the fake OpenAI server, configured through the environment.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from evalboard import coding
from evalboard import judges as J
from evalboard.demo import create_demo
from evalboard.models import TraceRecord
from evalboard.store import Store
from tests.fakes.openai_server import FakeOpenAI

PAGE = "../../app_pages/judges.py"
MODE = "wrong tone"
STEPS = ["1. Labels and split", "2. Judge", "3. Dev runs and label audit", "4. Test and validation"]


def open_page(pid: int, mode_id: int | None = None, step: int | None = None, **state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["app.project_id"] = pid
    at.session_state["app.annotator"] = "ana"
    if mode_id is not None:
        at.session_state["judges.mode"] = mode_id
        if step is not None:
            at.session_state[f"judges.step.{mode_id}"] = STEPS[step - 1]
    for key, value in state.items():
        at.session_state[key] = value
    return ok(at.run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def texts(elements) -> str:
    return " ".join(e.value for e in elements)


@pytest.fixture
def labelled(app_env: str):
    """A project with 12 traces showing the mode (the fake judge misses two) and 18 that do not
    (the fake judge flags two), labelled by one person."""
    store = Store(app_env)
    pid = store.create_project("Support bot", "Drafts support emails.").id
    mode_id = coding.ensure_mode(store, pid, MODE, definition="The reply blames the customer.")
    plan = [("fail", "fail")] * 10 + [("fail", "pass")] * 2 + [("pass", "pass")] * 16 + [("pass", "fail")] * 2
    ids = store.add_traces(pid, [TraceRecord(source="t", source_id=str(i), input=f"q{i}",
                                             output=f"reply {i} [judge:{judge}]")
                                 for i, (_, judge) in enumerate(plan)]).trace_ids
    for tid, (human, _) in zip(ids, plan):
        coding.save_annotation(store, pid, tid, "maya", verdict=human, modes=[MODE] if human == "fail" else [],
                               note="blames the customer" if human == "fail" else "")
    return store, pid, mode_id


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch):
    with FakeOpenAI() as fake:
        fake.respond_with(lambda r: {"reasoning": "scripted",
                                     "verdict": "fail" if "[judge:fail]" in r["messages"][-1]["content"] else "pass"})
        monkeypatch.setenv("EVALBOARD_LLM_BASE_URL", fake.base_url)
        monkeypatch.setenv("EVALBOARD_LLM_MODEL", "fake-model")
        monkeypatch.setenv("EVALBOARD_LLM_API_KEY", "test")
        yield fake


def test_demo_shows_a_validated_and_a_not_validated_judge(app_env: str) -> None:
    store = Store(app_env)
    pid = create_demo(store)
    by_mode = {j.mode_name: j.mode_id for j in J.list_judges(store, pid)}
    at = open_page(pid, by_mode["wrong tone email"], 4)
    assert "Validated:" in texts(at.success) and "Email tone v2" in texts(at.success)
    at = open_page(pid, by_mode["outdated version"], 4)
    warning = texts(at.warning)
    assert "Not validated yet" in warning and "On test, TPR of v1 is 0.86 (6 of 7 human fails caught)" in warning
    at = open_page(pid, by_mode["outdated version"], 3)
    assert "recorded answers, no LLM was called" in texts(at.markdown)  # st.badge is Markdown
    assert [m.label for m in at.metric][:2] == ["TPR", "TNR"]
    table = at.dataframe[-3].value  # versions compared
    assert list(table["version"]) == ["v1", "v2"]
    assert table["test"].iloc[1].startswith("test split already used")
    assert "LLM" in texts(at.caption)  # the run button says why it cannot run without an LLM
    assert at.button(key="judges.run_dev").disabled


def test_split_judge_dev_run_audit_and_test(labelled, fake_llm) -> None:
    store, pid, mode_id = labelled
    at = open_page(pid, mode_id, 1)
    assert [m.value for m in at.metric][:2] == ["12", "18"]
    at.button(key="judges.make_split").click().run()
    ok(at)
    split = J.get_split(store, mode_id)
    assert split.seed == 2026 and split.proportions == pytest.approx(J.DEFAULT_PROPORTIONS)

    at = open_page(pid, mode_id, 2)
    at.button(key=f"judges.create.{mode_id}").click().run()
    ok(at)
    (judge,) = J.list_judges(store, pid)
    assert judge.kind == "llm" and judge.name == f"{MODE} judge"
    jk = f"judges.edit.{judge.id}"
    assert at.text_input(key=f"{jk}.model").value == "fake-model"  # from the LLM settings
    train = J.part_ids(store, split.id, "train")
    assert len(at.multiselect(key=f"{jk}.examples").options) == len(train)  # only train traces are offered
    at.text_area(key=f"{jk}.fail_when").input("- the reply blames the customer")
    at.text_input(key=f"{jk}.note").input("first version")
    at.button(key=f"{jk}.save").click().run()
    ok(at)
    assert "Saved v1." in texts(at.success)
    (version,) = J.list_versions(store, judge.id)
    assert version.config["fail_when"] == "- the reply blames the customer" and version.note == "first version"

    at = open_page(pid, mode_id, 3)
    assert "LLM calls at most" in texts(at.info)
    at.button(key="judges.run_dev").click().run()
    ok(at)
    assert "traces judged now" in texts(at.success)
    dev = J.evaluate(store, version.id, "dev")
    assert dev.metrics is not None and dev.missing == 0
    shown = {m.label: m.value for m in at.metric}
    assert shown["TPR"] == f"{dev.metrics.tpr.p:.2f}" and shown["TNR"] == f"{dev.metrics.tnr.p:.2f}"
    calls = fake_llm.count()

    wrong = dev.disagreements.iloc[0]
    tid = int(wrong.trace_id)
    at.text_input(key=f"judges.why.{tid}").input("re-read: the judge is right")
    at.button(key=f"judges.correct.{tid}").click().run()
    ok(at)
    history = J.label_history(store, mode_id, tid)
    assert history.iloc[0][["label", "who", "reason"]].tolist() == [wrong.judge, "ana", "re-read: the judge is right"]

    at = open_page(pid, mode_id, 4)
    assert "has not been run" in texts(at.warning)
    assert at.button(key="judges.run_test").disabled  # until the one-time action is confirmed
    at.checkbox(key=f"judges.test_sure.{judge.id}").check().run()
    at.button(key="judges.run_test").click().run()
    ok(at)
    assert "test result frozen" in texts(at.success)
    status = J.judge_status(store, judge.id)
    assert status.tested_version == "v1" and status.test.frozen
    assert fake_llm.count() > calls
    assert ("Validated:" in texts(at.success)) == status.validated
    assert at.get("slider")  # the label budget planner is shown

    # the dev rerun of the same version makes no call
    at = open_page(pid, mode_id, 3)
    before = fake_llm.count()
    at.button(key="judges.run_dev").click().run()
    ok(at)
    assert fake_llm.count() == before


def test_code_judge_runs_without_an_llm(labelled) -> None:
    store, pid, mode_id = labelled
    J.make_split(store, pid, mode_id, seed=1)
    at = open_page(pid, mode_id, 2, **{f"judges.new_kind.{mode_id}": "code"})
    at.radio(key=f"judges.new_kind.{mode_id}").set_value("code")
    at.text_input(key=f"judges.new_name.{mode_id}").input("marker check")
    at.button(key=f"judges.create.{mode_id}").click().run()
    ok(at)
    (judge,) = J.list_judges(store, pid)
    assert judge.kind == "code"
    jk = f"judges.edit.{judge.id}"
    at.text_area(key=f"{jk}.rule").input("check: regex\npattern: 'judge:fail'\n")
    at.button(key=f"{jk}.save").click().run()
    ok(at)
    at.text_area(key=f"{jk}.rule").input("check: regx\n")
    at.button(key=f"{jk}.save").click().run()
    assert "unknown check 'regx'" in texts(at.error)
    assert len(J.list_versions(store, judge.id)) == 1

    at = open_page(pid, mode_id, 3)
    assert "no LLM calls, no cost" in texts(at.info)
    at.button(key="judges.run_dev").click().run()
    ok(at)
    dev = J.evaluate(store, J.list_versions(store, judge.id)[0].id, "dev")
    c = dev.metrics.confusion
    assert (c.tp + c.fn, c.tn + c.fp) == (5, 7) and c.fn == dev.rows.query("human == 'fail' and judge == 'pass'").shape[0]


def test_without_failure_modes_the_page_says_where_they_come_from(app_env: str) -> None:
    store = Store(app_env)
    pid = store.create_project("Empty").id
    at = open_page(pid)
    assert "No failure modes yet" in texts(at.info)
