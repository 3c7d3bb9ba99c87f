"""`evalboard push langfuse` and `evalboard export-judge`: dry run, push and rerun against the fake
Langfuse server, the unvalidated-judge guard, exit codes (0 done, 1 push failed, 2 refused or
misconfigured), and judge exports written to files."""

from __future__ import annotations

import ast
import functools
import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from typer.testing import CliRunner

import cli.main
import integrations.langfuse_push as langfuse_push
from cli.main import app
from evalboard.store import Store
from tests.evalboard.test_exports import JudgeProject, make_judge_project
from tests.fakes.langfuse_server import FakeLangfuse

runner = CliRunner()


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    with FakeLangfuse(traces=30, seed=6, public_key=f"pk-lf-{uuid.uuid4().hex[:10]}") as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("EVALBOARD_DATABASE_URL", url)
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL", "LANGFUSE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli.main, "_secrets_paths", lambda: [tmp_path / ".streamlit" / "secrets.toml"])
    monkeypatch.chdir(tmp_path)
    return url


@pytest.fixture
def built(env: str, fake: FakeLangfuse) -> Iterator[JudgeProject]:
    store = Store(env)
    yield make_judge_project(store, fake.trace_ids)
    store.dispose()


@pytest.fixture
def keys(env: str, fake: FakeLangfuse, monkeypatch: pytest.MonkeyPatch) -> FakeLangfuse:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", fake.public_key)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", fake.secret_key)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake.url)
    return fake


def invoke(*args: str):  # noqa: ANN201 - click's Result
    return runner.invoke(app, list(args), terminal_width=250, env={"COLUMNS": "250"})


def test_help_lists_the_commands_and_options() -> None:
    top = invoke("--help").output
    assert "push" in top and "export-judge" in top
    text = invoke("push", "langfuse", "--help").output
    for option in ("--judge", "--scores", "--annotations", "--dataset", "--confirm-unvalidated", "--dry-run",
                   "--rule", "--rule-sampling", "--version", "--project"):
        assert option in text


def test_dry_run_push_and_rerun(keys: FakeLangfuse, built: JudgeProject) -> None:
    args = ("push", "langfuse", "--judge", "Email tone", "--scores", str(built.run_ids["dev"]),
            "--annotations", "Round 1", "--dataset", "evalboard queries", "--rule", "--rule-sampling", "0.25")
    dry = invoke(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run: nothing is sent" in dry.output and "verdict scores" in dry.output
    assert keys.requests == []
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "created" in first.output and "done:" in first.output
    assert len(keys.evaluation_rules) == 1 and next(iter(keys.evaluation_rules.values()))["sampling"] == 0.25
    scores = len(keys.scores)
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "created" not in second.output and "unchanged" in second.output
    assert len(keys.scores) == scores and len(keys.evaluators) == 1 and len(keys.score_configs) == 3


def test_unvalidated_judge_needs_the_flag(keys: FakeLangfuse, built: JudgeProject) -> None:
    refused = invoke("push", "langfuse", "--judge", "Tone draft")
    assert refused.exit_code == 2 and "is not validated" in refused.output
    assert keys.requests == []
    ok = invoke("push", "langfuse", "--judge", "Tone draft", "--confirm-unvalidated")
    assert ok.exit_code == 0, ok.output
    assert "evalboard-unvalidated" in next(iter(keys.prompts.values()))[0]["labels"]


def test_refusals_and_configuration_errors_exit_2(env: str, fake: FakeLangfuse, built: JudgeProject,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    no_keys = invoke("push", "langfuse", "--judge", "Email tone")
    assert no_keys.exit_code == 2 and "LANGFUSE_PUBLIC_KEY" in no_keys.output
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", fake.public_key)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", fake.secret_key)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake.url)
    unknown = invoke("push", "langfuse", "--judge", "Nope")
    assert unknown.exit_code == 2 and "judges: Email tone, Tone draft" in unknown.output
    orphan = invoke("push", "langfuse", "--scores", "1")
    assert orphan.exit_code == 2 and "--scores needs --judge" in orphan.output
    nothing = invoke("push", "langfuse")
    assert nothing.exit_code == 2 and "Nothing to push" in nothing.output
    no_round = invoke("push", "langfuse", "--annotations", "Round 9")
    assert no_round.exit_code == 2 and "rounds: Round 1" in no_round.output
    bad_version = invoke("push", "langfuse", "--judge", "Email tone", "--version", "7")
    assert bad_version.exit_code == 2 and "has versions v1" in bad_version.output
    assert fake.requests == []


def test_a_failed_push_exits_1_and_a_rerun_finishes_it(keys: FakeLangfuse, built: JudgeProject,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # no SDK retries with backoff: the failures come at once
    monkeypatch.setattr(langfuse_push, "run_push", functools.partial(langfuse_push.run_push, max_retries=0))
    keys.inject(status=500, fraction=1.0, path="/api/public/comments", method="POST")
    failed = invoke("push", "langfuse", "--annotations", "Round 1")
    assert failed.exit_code == 1
    assert "Langfuse answered 500" in failed.output and "stopped" in failed.output
    keys.clear_faults()
    again = invoke("push", "langfuse", "--annotations", "Round 1")
    assert again.exit_code == 0, again.output
    assert len(keys.comments) == len(built.planted_in_langfuse)


def test_export_judge_writes_each_format(env: str, built: JudgeProject, tmp_path: Path) -> None:
    for fmt in ("python", "braintrust"):
        result = invoke("export-judge", "Email tone", "--format", fmt, "-o", str(tmp_path / f"judge.{fmt}.py"))
        assert result.exit_code == 0, result.output
        ast.parse((tmp_path / f"judge.{fmt}.py").read_text())
    default = invoke("export-judge", "Email tone", "--format", "promptfoo")
    assert default.exit_code == 0 and "Wrote email-tone_v1.promptfoo.yaml" in default.output
    assert yaml.safe_load(Path("email-tone_v1.promptfoo.yaml").read_text())["defaultTest"]["assert"][0]["type"] == "llm-rubric"
    printed = invoke("export-judge", "Email tone", "--format", "json", "-o", "-")
    assert printed.exit_code == 0 and json.loads(printed.output)["version"]["label"] == "v1"
    assert invoke("export-judge", "Email tone", "--format", "csv").exit_code == 2
    missing = invoke("export-judge", "Nope", "--format", "json")
    assert missing.exit_code == 2 and "No judge named 'Nope'" in missing.output
