"""`evalboard pull langfuse` against the fake Langfuse server: pulls into a round, reruns,
continuing an interrupted pull, and the exit codes (0 done, 1 failed pull, 2 configuration)."""

from __future__ import annotations

import functools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli.main
import integrations.langfuse as lf
from cli.main import app, parse_when
from evalboard.store import Store
from integrations.langfuse_rounds import RoundPull, pending_pull, prepare_round, pull_into_round
from tests.fakes.langfuse_data import BASE_TIME
from tests.fakes.langfuse_server import FakeLangfuse
from tests.fakes.langfuse_server import fake_langfuse  # noqa: F401 - fixture

runner = CliRunner()
FAST_RETRY = lf.RetryPolicy(max_retries=2, base_delay=0.01, max_wait=0.5)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database; no Langfuse settings from the machine (env or secrets files)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("EVALBOARD_DATABASE_URL", url)
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL", "LANGFUSE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli.main, "_secrets_paths", lambda: [tmp_path / ".streamlit" / "secrets.toml"])
    # Quick retries, so that a test of a failing server takes milliseconds.
    monkeypatch.setattr(cli.main, "pull_into_round", functools.partial(pull_into_round, retry=FAST_RETRY))
    return url


@pytest.fixture
def keys(env: str, fake_langfuse: FakeLangfuse, monkeypatch: pytest.MonkeyPatch) -> FakeLangfuse:  # noqa: F811
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", fake_langfuse.public_key)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", fake_langfuse.secret_key)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake_langfuse.url)
    return fake_langfuse


def pull(*args: str):  # noqa: ANN201 - click's Result
    return runner.invoke(app, ["pull", "langfuse", *args])


def test_help_lists_pull_and_its_options() -> None:
    assert "pull" in runner.invoke(app, ["--help"]).output
    text = runner.invoke(app, ["pull", "langfuse", "--help"], terminal_width=200).output
    for option in ("--since", "--until", "--tag", "--env", "--name", "--user", "--session", "--release",
                   "--sample", "--random", "--seed", "--round", "--project", "--restart"):
        assert option in text


def test_pull_into_a_round_then_a_rerun_adds_nothing(keys: FakeLangfuse, env: str) -> None:
    args = ["--round", "Week 1", "--project", "shop", "--since", "2026-09-01", "--until", "2026-12-01",
            "--tag", "vip", "--sample", "5", "--random", "--seed", "3"]
    first = pull(*args)
    assert first.exit_code == 0, first.output
    vip = {r["traceId"] for r in keys.index.roots if "vip" in r["tags"]}
    assert f"5 of {len(vip)} matching traces to pull." in first.output
    assert f"Pulled 5 of {len(vip)} matching traces into round 'Week 1': 5 new" in first.output
    assert "seed 3" in first.output
    store = Store(env)
    pid = store.project_by_name("shop").id  # type: ignore[union-attr]
    [rnd] = store.list_rounds(pid)  # type: ignore[arg-type]
    pulled = {store.get_trace(t).source_id for t in store.round_trace_ids(rnd.id)}  # type: ignore[union-attr, arg-type]
    assert len(pulled) == 5 and pulled <= vip
    assert rnd.sampling["method"] == "random" and rnd.sampling["seed"] == 3 and rnd.sampling["filter"]["tags"] == ["vip"]

    observations_before = len(keys.requests_to("/api/public/v2/observations"))
    again = pull(*args)
    assert again.exit_code == 0, again.output
    assert "Nothing to do: this pull into round 'Week 1' had already finished (5 traces)." in again.output
    assert store.count_traces(pid) == 5 and store.get_round(rnd.id).trace_count == 5  # type: ignore[arg-type, union-attr]
    assert len(keys.requests_to("/api/public/v2/observations")) == observations_before, "nothing was fetched again"


def test_a_rerun_continues_an_interrupted_pull(keys: FakeLangfuse, env: str) -> None:
    store = Store(env)
    pid = store.create_project("shop").id
    rnd, _ = prepare_round(store, pid, "R")  # type: ignore[arg-type]
    cancel = threading.Event()

    def stop_after_first_batch(p: RoundPull) -> None:
        if p.phase == "batch":
            cancel.set()

    first = pull_into_round(store, lf.LangfuseSettings(keys.public_key, keys.secret_key, keys.url), pid, rnd.id,  # type: ignore[arg-type]
                            sampling=lf.Sampling("latest", 20), cancel=cancel, on_progress=stop_after_first_batch,
                            batch_size=8)
    assert first.status == "cancelled" and first.done == 8
    # Different options on the command line: the interrupted pull keeps its own.
    result = pull("--round", "R", "--sample", "3")
    assert result.exit_code == 0, result.output
    assert "A pull into this round was cancelled after 8 of 20 traces" in result.output
    assert "(continuing: 8 already pulled)" in result.output
    assert "Pulled 20 of 60 matching traces into round 'R': 12 new, 0 already in the project." in result.output
    assert store.get_round(rnd.id).trace_count == 20 and pending_pull(store, rnd.id) is None  # type: ignore[arg-type, union-attr]


def test_restart_discards_the_interrupted_pull(keys: FakeLangfuse, env: str) -> None:
    store = Store(env)
    pid = store.create_project("shop").id
    rnd, _ = prepare_round(store, pid, "R")  # type: ignore[arg-type]
    keys.inject(status=500, count=50)
    failed = pull("--round", "R", "--sample", "20")
    assert failed.exit_code == 1, failed.output
    assert "failed: Gave up after 3 attempts: Langfuse server error 500." in failed.output
    keys.clear_faults()
    result = pull("--round", "R", "--sample", "4", "--restart")
    assert result.exit_code == 0, result.output
    assert "Discarded the interrupted pull" in result.output and "Pulled 4 of 60" in result.output
    assert store.get_round(rnd.id).trace_count == 4  # type: ignore[arg-type, union-attr]


@pytest.mark.parametrize("args, message", [
    (["--since", "last tuesday"], "--since 'last tuesday': expected a date or time"),
    (["--until", "2026-13-01"], "--until '2026-13-01': expected a date or time"),
    (["--since", "2026-10-05", "--until", "2026-10-01"], "--since (2026-10-05T00:00:00+00:00) must be before --until (2026-10-01T00:00:00+00:00)"),
    (["--random"], "--random needs --sample N"),
    (["--seed", "4", "--sample", "3"], "--seed only applies to a random sample"),
    (["--sample", "0"], "--sample must be a positive number"),
])
def test_bad_options_exit_2_naming_the_option(keys: FakeLangfuse, env: str, args: list[str], message: str) -> None:
    result = pull("--round", "R", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not keys.requests, "nothing was sent to Langfuse"


def test_no_keys_exit_2_saying_where_to_set_them(env: str) -> None:
    result = pull("--round", "R")
    assert result.exit_code == 2
    assert "LANGFUSE_PUBLIC_KEY" in result.output and "secrets.toml" in result.output
    assert Store(env).list_projects() == [], "nothing was made before the configuration was checked"


def test_rejected_keys_exit_2(keys: FakeLangfuse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong-0000")
    result = pull("--round", "R")
    assert result.exit_code == 2, result.output
    assert "Langfuse rejected the keys (401)" in result.output
    assert "sk-lf-wrong-0000" not in result.output


def test_keys_from_secrets_toml(env: str, fake_langfuse: FakeLangfuse, tmp_path: Path) -> None:  # noqa: F811
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text(f'[langfuse]\npublic_key = "{fake_langfuse.public_key}"\nsecret_key = "{fake_langfuse.secret_key}"\n'
                       f'base_url = "{fake_langfuse.url}"\n')
    result = pull("--round", "R", "--sample", "2")
    assert result.exit_code == 0, result.output
    assert "Pulled 2 of 60" in result.output
    secrets.write_text("[langfuse\n")
    broken = pull("--round", "R")
    assert broken.exit_code == 2 and f"Cannot read {secrets}" in broken.output


def test_parse_when_accepts_dates_times_offsets_and_ages() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_when("2026-10-01", "--since") == datetime(2026, 10, 1, tzinfo=UTC)
    assert parse_when("2026-10-01T12:30", "--since") == datetime(2026, 10, 1, 12, 30, tzinfo=UTC)
    assert parse_when("2026-10-01T12:30+02:00", "--since") == datetime(2026, 10, 1, 10, 30, tzinfo=UTC)
    assert parse_when("7d", "--since", now) == now - timedelta(days=7)
    assert parse_when("36h", "--since", now) == now - timedelta(hours=36)
    assert parse_when("90m", "--since", now) == now - timedelta(minutes=90)
    assert parse_when(BASE_TIME.isoformat(), "--since") == BASE_TIME


def test_terminal_progress_bar_follows_the_pull() -> None:
    with cli.main._Printer(tty=True) as printer:
        printer(RoundPull(1, "R", phase="listing"))
        printer(RoundPull(1, "R", phase="batch", matched=50, planned=40, done=10, added=10))
        printer(RoundPull(1, "R", phase="waiting", matched=50, planned=40, done=10, waiting="rate limited, waiting 3 s"))
        task = printer.bar.tasks[0]
        assert (task.total, task.completed, task.fields["note"]) == (40, 10, "rate limited, waiting 3 s")
