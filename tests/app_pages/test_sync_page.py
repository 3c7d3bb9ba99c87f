"""The Sync page (AppTest, opened directly: it is not in the navigation yet): dry run, push with
the result of every object, the push log, the unvalidated-judge confirmation, and exports;
against the fake Langfuse server."""

from __future__ import annotations

import functools
import uuid
from typing import Iterator

import pytest
from streamlit.testing.v1 import AppTest

import integrations.langfuse_push as langfuse_push
from evalboard import push_log
from evalboard.store import Store
from tests.evalboard.test_exports import JudgeProject, make_judge_project
from tests.fakes.langfuse_server import FakeLangfuse

PAGE = "../../app_pages/sync.py"
LANGFUSE_ENV = ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL", "LANGFUSE_HOST")


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    with FakeLangfuse(traces=30, seed=4, public_key=f"pk-lf-{uuid.uuid4().hex[:10]}") as server:
        yield server


@pytest.fixture
def no_keys(app_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:  # noqa: ANN001
    for name in LANGFUSE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.streamlit/secrets.toml in reach
    return app_env


@pytest.fixture
def keys(no_keys: str, fake: FakeLangfuse, monkeypatch: pytest.MonkeyPatch) -> FakeLangfuse:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", fake.public_key)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", fake.secret_key)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake.url)
    return fake


@pytest.fixture
def built(no_keys: str, fake: FakeLangfuse) -> Iterator[tuple[Store, JudgeProject]]:
    store = Store(no_keys)
    yield store, make_judge_project(store, fake.trace_ids)
    store.dispose()


def open_page(project_id: int) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["app.project_id"] = project_id
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def frame(at: AppTest, tab: int, *columns: str):  # noqa: ANN201 - a DataFrame
    """The first table in a tab (0 push, 1 export, 2 log) that has these columns."""
    for element in at.tabs[tab].dataframe:
        if set(columns) <= set(element.value.columns):
            return element.value
    raise AssertionError(f"no table with columns {columns} in tab {tab}")


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("success", "error", "warning", "info", "markdown", "caption") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def test_dry_run_then_push_then_the_log(keys: FakeLangfuse, built: tuple[Store, JudgeProject]) -> None:
    store, project = built
    at = open_page(project.project_id)
    assert at.button(key="sync.push").disabled  # nothing chosen yet
    at.selectbox(key="sync.judge").select(project.judge_id).run()
    assert "v1 is validated" in texts(at)
    at.selectbox(key="sync.run").select(project.run_ids["dev"]).run()
    at.selectbox(key="sync.round").select(project.round_id).run()
    at.text_input(key="sync.dataset").input("evalboard queries").run()
    at.button(key="sync.dry_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    plan = frame(at, 0, "to send")
    assert "verdict scores" in set(plan["object"]) and int(plan["to send"].sum()) > 40
    assert keys.requests == []  # a dry run sends nothing
    at.button(key="sync.push").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("done:" in s.value for s in at.success), texts(at)
    result = frame(at, 0, "kind", "remote_id")
    assert {"score_config", "prompt", "evaluator", "score", "annotation_score", "dataset_item"} <= set(result["kind"])
    assert set(result["status"]) <= {"created", "skipped"}
    assert len(keys.evaluators) == 1 and len(keys.dataset_items) == len(project.query_ids)
    links = frame(at, 0, "where", "count")
    assert {"prompt", "evaluator", "score_config"} <= set(links["kind"])
    log = frame(at, 2, "push", "result")
    assert list(log["status"]) == ["done"]
    objects = frame(at, 2, "kind", "remote_id")
    assert len(objects) == len(result)
    # pushing again from the page: everything is unchanged
    at.button(key="sync.push").click().run()
    again = frame(at, 0, "kind", "remote_id")
    assert set(again["status"]) <= {"unchanged", "skipped"}
    assert [p.status for p in push_log.list_pushes(store, project.project_id)] == ["done", "done"]


def test_unvalidated_judge_needs_the_box_ticked(keys: FakeLangfuse, built: tuple[Store, JudgeProject]) -> None:
    _, project = built
    at = open_page(project.project_id)
    at.selectbox(key="sync.judge").select(project.unvalidated_judge_id).run()
    assert "v1 is not validated" in texts(at)
    assert at.button(key="sync.push").disabled
    at.button(key="sync.dry_run").click().run()  # a dry run needs no confirmation
    assert not at.error and "prompt 'evalboard/tone-draft'" in set(frame(at, 0, "to send")["object"])
    at.checkbox(key="sync.confirm_unvalidated").check().run()
    at.button(key="sync.push").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("done:" in s.value for s in at.success), texts(at)
    (prompt,) = keys.prompts["evalboard/tone-draft"]
    assert "evalboard-unvalidated" in prompt["labels"]


def test_push_failures_are_shown_per_object(keys: FakeLangfuse, built: tuple[Store, JudgeProject],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, project = built
    # no SDK retries with backoff: the failure comes at once
    monkeypatch.setattr(langfuse_push, "run_push", functools.partial(langfuse_push.run_push, max_retries=0))
    keys.inject(status=500, fraction=1.0, path="/api/public/v2/evaluators")
    at = open_page(project.project_id)
    at.selectbox(key="sync.judge").select(project.judge_id).run()
    at.button(key="sync.push").click().run()
    assert any("failed" in e.value for e in at.error), texts(at)
    result = frame(at, 0, "kind", "remote_id")
    failed = result[result["status"] == "failed"]
    assert list(failed["object"]) == ["evaluator 'evalboard: Email tone'"]
    assert "Langfuse answered 500" in failed["detail"].iloc[0]


def test_without_keys_push_explains_and_exports_still_work(no_keys: str, built: tuple[Store, JudgeProject]) -> None:
    _, project = built
    at = open_page(project.project_id)
    assert any("LANGFUSE_PUBLIC_KEY" in i.value for i in at.info)
    assert at.get("download_button"), "the export tab offers the file"
    at.selectbox(key="sync.export_judge").select(project.unvalidated_judge_id).run()
    assert "v1 is not validated" in texts(at)
    at.button_group(key="sync.export_format").set_value("braintrust").run()
    assert not at.exception, [e.message for e in at.exception]
    code = at.get("code")
    assert code and "project.scorers.create(" in code[0].value and "NOT VALIDATED" in code[0].value
