"""The `evalboard` command: import, demo, projects, db upgrade, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from evalboard.store import Store

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("EVALBOARD_DATABASE_URL", url)
    return url


def test_help_explains_each_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("import", "demo", "serve", "db", "projects"):
        assert command in result.output


def test_import_reports_and_dedupes(env: str, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"input": "a", "output": "b"}) + "\n{broken\n")
    result = runner.invoke(app, ["import", str(path), "--project", "shop", "--round", "R1"])
    assert result.exit_code == 0, result.output
    assert "1 imported" in result.output and "1 skipped" in result.output
    assert "t.jsonl line 2: malformed JSON" in result.output
    again = runner.invoke(app, ["import", str(path), "--project", "shop"])
    assert "0 imported, 1 already present" in again.output
    store = Store(env)
    pid = store.project_by_name("shop").id
    assert store.count_traces(pid) == 1 and store.list_rounds(pid)[0].name == "R1"


def test_import_with_mapping(env: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"ask": "hi", "reply": "yo"}) + "\n")
    failed = runner.invoke(app, ["import", str(path), "-p", "x"])
    assert failed.exit_code == 1 and "Map the fields" in failed.output
    ok = runner.invoke(app, ["import", str(path), "-p", "x", "--map", "input=ask", "--map", "output=reply"])
    assert ok.exit_code == 0 and "1 imported" in ok.output
    bad = runner.invoke(app, ["import", str(path), "-p", "x", "--map", "colour=ask"])
    assert bad.exit_code == 2 and "PART=FIELD" in bad.output


def test_demo_and_projects(env: str) -> None:
    result = runner.invoke(app, ["demo"])
    store = Store(env)
    project = store.project_by_name("Demo: Nimbus Docs Assistant")
    counts = store.project_overview(project.id)
    assert result.exit_code == 0 and f"{counts['traces']} traces" in result.output
    listed = runner.invoke(app, ["projects"])
    assert f"Demo: Nimbus Docs Assistant\t{counts['traces']} traces\t{counts['rounds']} rounds" in listed.output


def test_db_upgrade(env: str) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0 and "-> " + Store.head_revision() in result.output
