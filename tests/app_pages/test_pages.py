"""Every page renders without an exception on an empty database and on the demo project, and
the main interactions of the foundation pages work (AppTest, no browser)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from evalboard.demo import DEMO_NAME, create_demo
from evalboard.store import Store, TraceFilter

APP = "../../app.py"
PAGES = ["app_pages/home.py", "app_pages/project.py", "app_pages/dimensions.py", "app_pages/queries.py", "app_pages/import_traces.py", "app_pages/traces.py",
         "app_pages/rounds.py", "app_pages/annotate.py", "app_pages/coding_progress.py"]


def app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


@pytest.mark.parametrize("page", PAGES)
def test_page_on_empty_database(app_env: str, page: str) -> None:
    at = app()
    at.switch_page(page).run()
    assert_clean(at)


@pytest.mark.parametrize("page", PAGES)
def test_page_on_demo(app_env: str, page: str) -> None:
    create_demo(Store(app_env))
    at = app(**{"app.annotator": "tester"})
    at.switch_page(page).run()
    assert_clean(at)


def test_home_creates_demo_and_points_to_next_step(app_env: str) -> None:
    at = app()
    at.button(key="home.demo").click().run()
    assert_clean(at)
    assert any(DEMO_NAME in s.value for s in at.subheader)
    text = " ".join(m.value for m in at.markdown)
    assert "Collect traces" in text and "Open coding" in text
    assert any("Next:" in i.value for i in at.info)


def test_home_new_project(app_env: str) -> None:
    at = app()
    at.text_input[0].input("Billing bot")
    at.button[1].click().run()  # the form's submit button
    assert_clean(at)
    assert Store(app_env).project_by_name("Billing bot") is not None


def test_project_description_saved(app_env: str) -> None:
    store = Store(app_env)
    pid = store.create_project("P").id
    at = app()
    at.switch_page("app_pages/project.py").run()
    at.text_area[0].input("Answers invoice questions for accountants.")
    at.button[0].click().run()
    assert_clean(at)
    assert store.get_project(pid).description == "Answers invoice questions for accountants."


def test_traces_search_open_and_round(app_env: str) -> None:
    store = Store(app_env)
    pid = create_demo(store)
    at = app()
    at.switch_page("app_pages/traces.py").run()
    assert f"{store.count_traces(pid):,} traces match" in " ".join(c.value for c in at.caption)
    at.text_input(key="traces.text").input("powershell").run()
    assert_clean(at)
    caption = " ".join(c.value for c in at.caption)
    matching = store.count_traces(pid, TraceFilter(text="powershell"))
    assert f"{matching} traces match" in caption and matching > 0
    tid = store.trace_ids(pid)[17]  # the demo's trace with an HTML payload in its question
    at.number_input(key="traces.open").set_value(tid).run()
    assert_clean(at)
    assert at.get("html"), "the trace is rendered through st.html"
    html = " ".join(h.proto.body for h in at.get("html"))
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    at.text_input(key="traces.text").input("").run()
    form_name = [t for t in at.text_input if t.key is None][-1]
    form_name.input("Sampled round")
    at.button[-1].click().run()
    assert_clean(at)
    made = [r for r in store.list_rounds(pid) if r.name == "Sampled round"][0]
    assert made.trace_count == 100 and made.sampling["seed"] == 42


def test_import_page_offers_upload(app_env: str) -> None:
    # AppTest cannot upload files: the import itself is tested in tests/integrations and
    # through the browser in tests/browser.
    Store(app_env).create_project("P")
    at = app()
    at.switch_page("app_pages/import_traces.py").run()
    assert_clean(at)
    assert at.get("file_uploader"), "an uploader is shown"


def test_rounds_page_switches_current_round(app_env: str) -> None:
    store = Store(app_env)
    pid = create_demo(store)
    ids = store.trace_ids(pid)
    second = store.create_round(pid, "Second", ids[:5])
    at = app()
    at.switch_page("app_pages/rounds.py").run()
    at.selectbox(key="rounds.choice").select(second.id).run()
    at.button(key="rounds.use").click().run()
    assert_clean(at)
    assert at.session_state["app.round_id"] == second.id
