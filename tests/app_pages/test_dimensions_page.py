"""AppTest for the "Know the queries" pages: dimensions and tuples, queries and targets.

The pages are run directly (AppTest.from_file on the page file) with the project chosen in
session state, so they do not depend on app.py's navigation. An LLM is configured only through
environment variables pointing at the fake OpenAI server.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from evalboard import query_store as qs
from evalboard.store import Store
from evalboard.tuples import Dimension
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_server import fake_openai  # noqa: F401  (pytest fixture)
from tests.fakes.target_app import TargetApp
from tests.fakes.target_app import target_app  # noqa: F401  (pytest fixture)

DIMENSIONS = "../../app_pages/dimensions.py"
QUERIES = "../../app_pages/queries.py"
LLM_ENV = ("EVALBOARD_LLM_BASE_URL", "OPENAI_BASE_URL", "EVALBOARD_LLM_API_KEY", "OPENAI_API_KEY",
           "EVALBOARD_LLM_MODEL")


@pytest.fixture
def app_store(app_env: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The store the app opens, with no LLM configured in the environment."""
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    store = Store(app_env)
    yield store
    store.dispose()


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI) -> FakeOpenAI:
    monkeypatch.setenv("EVALBOARD_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("EVALBOARD_LLM_API_KEY", "sk-page-test-0000")
    monkeypatch.setenv("EVALBOARD_LLM_MODEL", "fake-model")
    return fake_openai


def open_page(path: str, project_id: int) -> AppTest:
    at = AppTest.from_file(path, default_timeout=30)
    at.session_state["app.project_id"] = project_id
    return at.run()


def add_dimension(at: AppTest, name: str, values: str) -> AppTest:
    at.text_input(key="dims.new_name").input(name)
    at.text_area(key="dims.new_values").input(values)
    return at.button(key="dims.add_submit").click().run()


def seeded_project(store: Store, tuples: bool = True) -> int:
    pid = store.create_project("Shop", "Billing assistant for small shops.").id
    for dim in [Dimension(name="persona", values=["owner", "clerk"]),
                Dimension(name="intent", values=["refund", "export", "tax"])]:
        qs.add_dimension(store, pid, dim)
    if tuples:
        qs.add_tuples(store, pid, [{"persona": "owner", "intent": "refund"},
                                   {"persona": "clerk", "intent": "tax"}], "manual")
    return pid


def texts(elements) -> str:  # noqa: ANN001 - an AppTest element list
    return "\n".join(str(e.value) for e in elements)


def test_empty_project_says_where_to_start(app_store: Store) -> None:
    pid = app_store.create_project("Empty").id
    at = open_page(DIMENSIONS, pid)
    assert not at.exception
    assert "No dimensions yet" in texts(at.info)
    assert "Describe the product and its users first" in texts(at.warning)
    assert not at.get("metric")  # nothing about tuples until there are dimensions


def test_add_dimensions_then_pairwise_tuples(app_store: Store) -> None:
    pid = app_store.create_project("Shop", "Billing assistant.").id
    at = open_page(DIMENSIONS, pid)
    at = add_dimension(at, "expertise", "beginner: first week\nexpert")
    at = add_dimension(at, "intent", "refund\nexport\ntax")
    at = add_dimension(at, "style", "terse\nchatty")
    assert not at.exception and not at.error
    dims = qs.list_dimensions(app_store, pid)
    assert [d.name for d in dims] == ["expertise", "intent", "style"]
    assert dims[0].values[0].description == "first week"
    assert [m.value for m in at.get("metric")][:2] == ["12", "0"]

    at.button(key="dims.pairwise").click().run()
    assert not at.exception
    stored = qs.list_tuples(app_store, pid)
    assert 6 <= len(stored) < 12 and {t.origin for t in stored} == {"pairwise"}
    assert "cover 16 of 16 pairs" in texts(at.success)
    assert at.get("metric")[2].value == "16 / 16"

    # A bad values list is refused with its line, and nothing is added.
    at = add_dimension(at, "channel", "web\nWeb")
    assert "line 2: 'Web' repeats line 1" in texts(at.error)
    assert len(qs.list_dimensions(app_store, pid)) == 3


def test_reorder_delete_and_exclusion_errors(app_store: Store) -> None:
    pid = seeded_project(app_store, tuples=False)
    at = open_page(DIMENSIONS, pid)
    intent_id = qs.list_dimensions(app_store, pid)[1].id
    at.button(key=f"dims.up.{intent_id}").click().run()
    assert [d.name for d in qs.list_dimensions(app_store, pid)] == ["intent", "persona"]

    at.text_area(key="dims.rules").input("persona=owner, intent=tax\npersona=boss\nintent=refnd")
    at.button(key="dims.rules_save").click().run()
    errors = texts(at.error)
    assert "line 2:" in errors and "'boss' is not a value" in errors
    assert "line 3:" in errors and "did you mean 'refund'" in errors
    assert qs.exclusions_text(app_store, pid) == ""
    at.text_area(key="dims.rules").input("persona=owner, intent=tax")
    at.button(key="dims.rules_save").click().run()
    assert "Saved 1 rule." in texts(at.success)

    at.button(key="dims.full").click().run()  # 6 combinations, 1 excluded
    assert len(qs.list_tuples(app_store, pid)) == 5
    at.button(key=f"dims.delete.{intent_id}").click().run()
    assert [d.name for d in qs.list_dimensions(app_store, pid)] == ["persona"]
    assert "no longer match the dimensions" in texts(at.warning)


def test_full_product_asks_before_making_more_than_500(app_store: Store) -> None:
    pid = app_store.create_project("Big").id
    for i in range(3):
        qs.add_dimension(app_store, pid, Dimension(name=f"d{i}", values=[f"v{j}" for j in range(8)]))
    at = open_page(DIMENSIONS, pid)
    assert "**512** tuples" in texts(at.markdown)
    assert at.button(key="dims.full").disabled
    at.checkbox(key="dims.full_confirm").check().run()
    at.button(key="dims.full").click().run()
    assert not at.exception and len(qs.list_tuples(app_store, pid)) == 512


def test_llm_buttons_are_disabled_without_configuration(app_store: Store) -> None:
    pid = seeded_project(app_store)
    dims_page = open_page(DIMENSIONS, pid)
    suggest = dims_page.button(key=f"dims.suggest.{qs.list_dimensions(app_store, pid)[0].id}")
    assert suggest.disabled and "EVALBOARD_LLM_BASE_URL" in suggest.help
    assert "No LLM configured" in texts(dims_page.caption)
    # Everything else still works: tuples can be made by hand.
    dims_page.button(key="dims.manual_add").click().run()
    assert len(qs.list_tuples(app_store, pid)) == 2  # owner/refund was already there

    queries_page = open_page(QUERIES, pid)
    generate = queries_page.button(key="queries.generate")
    assert generate.disabled and "No LLM configured" in generate.help
    assert not queries_page.exception


def test_llm_configured_through_streamlit_secrets(app_store: Store) -> None:
    pid = seeded_project(app_store)
    at = AppTest.from_file(QUERIES, default_timeout=30)
    at.session_state["app.project_id"] = pid
    at.secrets["llm"] = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    at.run()
    assert not at.button(key="queries.generate").disabled


def test_suggest_values_keeps_only_the_chosen_ones(app_store: Store, llm_env: FakeOpenAI) -> None:
    pid = seeded_project(app_store)
    intent = qs.list_dimensions(app_store, pid)[1]
    llm_env.queue({"values": [{"name": "payroll", "description": "salaries"},
                              {"name": "refund", "description": "already there"},
                              {"name": "invoices", "description": "sending them"}]})
    at = open_page(DIMENSIONS, pid)
    at.button(key=f"dims.suggest.{intent.id}").click().run()
    assert not at.exception
    keep = at.multiselect(key=f"dims.keep.{intent.id}")
    assert keep.options == ["payroll", "invoices"]
    keep.select("invoices")
    at.button(key=f"dims.keep_add.{intent.id}").click().run()
    assert qs.get_dimension(app_store, intent.id).value_names == ["refund", "export", "tax", "invoices"]
    assert "Billing assistant for small shops." in llm_env.chat_requests[0].json["messages"][0]["content"]


def test_generate_queries_with_the_fake_server(app_store: Store, llm_env: FakeOpenAI) -> None:
    pid = seeded_project(app_store)
    llm_env.respond_with(lambda r: {"queries": [
        "refnd pls " + r["messages"][-1]["content"].split("- intent: ")[1].split("\n")[0],
        "where do i " + r["messages"][-1]["content"].split("- persona: ")[1].split("\n")[0]]})
    at = open_page(QUERIES, pid)
    at.number_input(key="queries.n").set_value(2)
    at.button(key="queries.generate").click().run()
    assert not at.exception
    stored = qs.get_queries(app_store, pid)
    assert len(stored) == 4 and llm_env.count() == 2
    assert "4 new queries from 2 of 2 tuples" in texts(at.success)
    assert {q.dimensions["intent"] for q in stored} == {"refund", "tax"}

    # Again with "all tuples": answered from the store's LLM cache, nothing added.
    at.radio(key="queries.which").set_value("all").run()
    at.button(key="queries.generate").click().run()
    assert llm_env.count() == 2
    assert "0 new queries" in texts(at.success) and "2 answered from the cache" in texts(at.success)

    at.button(key="queries.keep_page").click().run()
    assert qs.status_counts(app_store, pid)["kept"] == 4
    assert len(at.get("download_button")) == 2


def test_save_http_target_and_send_kept_queries(app_store: Store, target_app: TargetApp) -> None:
    pid = seeded_project(app_store)
    qs.add_queries(app_store, pid, [qs.NewQuery(text=t, status="kept") for t in ["q one", "q [text] two"]])
    at = open_page(QUERIES, pid)
    at.text_input(key="queries.t_name.None").input("shop app")
    at.text_input(key="queries.t_url.None").input(target_app.url("/chat"))
    at.text_area(key="queries.t_headers.None").input("Authorization: Bearer sk-literal")
    at.text_input(key="queries.t_path.None").input("data.answer")
    at.button(key="queries.t_save.None").click().run()
    assert "looks like a credential" in texts(at.error)
    assert qs.list_targets(app_store, pid) == []

    at.text_area(key="queries.t_headers.None").input("X-Team: qa")
    at.button(key="queries.t_save.None").click().run()
    assert not at.exception and not at.error
    target = qs.list_targets(app_store, pid)[0]
    assert at.selectbox(key="queries.target").value == target.id  # the saved target is selected
    at.text_input(key="queries.round_name").input("sent to shop app")
    at.button(key="queries.run").click().run()
    assert not at.exception
    assert "2 queries sent: 1 answered, 1 failed" in texts(at.warning)
    rnd = next(r for r in app_store.list_rounds(pid) if r.name == "sent to shop app")
    assert rnd.trace_count == 2 and at.session_state["app.round_id"] == rnd.id
    assert target_app.requests[0].headers["x-team"] == "qa"
