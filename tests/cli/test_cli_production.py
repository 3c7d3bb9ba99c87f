"""`evalboard judge run` and `evalboard prevalence` against the fake OpenAI server: exit codes,
the JSON summary, the Batch API path, the file source, and a run killed mid-way (SIGKILL, in a
subprocess) that resumes without losing or repeating a verdict."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import cli.main
import cli.production
from cli.main import app
from evalboard import production as prod
from evalboard.db import judge_verdicts, traces
from evalboard.store import Store
from tests.evalboard.test_production import RUDE, T0, build_world, scripted
from tests.fakes.openai_server import CHAT_PATH, FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
LLM_ENV = ("EVALBOARD_LLM_BASE_URL", "OPENAI_BASE_URL", "EVALBOARD_LLM_API_KEY", "OPENAI_API_KEY",
           "EVALBOARD_LLM_MODEL", "EVALBOARD_LLM_MAX_CONCURRENCY")
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A database with a validated LLM judge 'Rudeness', a round 'Prod' of 40 production traces
    (10 rude), a second judge that is not validated, and no LLM or secrets from the machine."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("EVALBOARD_DATABASE_URL", url)
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli.main, "_secrets_paths", lambda: [tmp_path / "secrets.toml"])
    store = Store(url)
    world = build_world(store)
    build_world(store, project_id=world.pid, mode="slow reply", name="Slowness", n_prod=0, flip_fail=6)
    store.create_round(world.pid, "Prod", world.prod_ids)
    yield store, world
    store.dispose()


@pytest.fixture
def llm(env, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    with FakeOpenAI(batch_polls=2) as fake:
        fake.respond_with(scripted)
        monkeypatch.setenv("EVALBOARD_LLM_BASE_URL", fake.base_url)
        monkeypatch.setenv("EVALBOARD_LLM_API_KEY", "test")
        monkeypatch.setenv("EVALBOARD_LLM_MODEL", "fake-model")
        yield fake


def run(*args: str):  # noqa: ANN201 - click's Result
    return runner.invoke(app, list(args))


@pytest.mark.parametrize(("args", "says"), [
    ((), "--judge NAME"),
    (("--judge", "Nope", "--source", "round", "--round", "Prod"), "No judge named 'Nope'"),
    (("--judge", "Slowness", "--source", "round", "--round", "Prod"), "not validated"),
    (("--judge", "Rudeness", "--source", "round"), "--source round needs --round"),
    (("--judge", "Rudeness", "--source", "round", "--round", "Nope"), "no round named 'Nope'"),
    (("--judge", "Rudeness", "--source", "file"), "--source file needs --file"),
    (("--judge", "Rudeness", "--source", "ftp"), "--source must be one of"),
    (("--judge", "Rudeness", "--source", "round", "--round", "Prod", "--since", "yesterday"), "--since 'yesterday'"),
    (("--judge", "Rudeness", "--source", "round", "--round", "Prod", "--sample", "0"), "positive number"),
    (("--judge", "Rudeness", "--source", "round", "--round", "Prod", "--env", "eu"), "--env and --tag"),
    (("--resume", "999"), "no production run with id 999"),
])
def test_configuration_errors_exit_2(env, llm, args: tuple[str, ...], says: str) -> None:  # noqa: ANN001
    result = run("judge", "run", *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert llm.count() == 0


def test_no_llm_for_an_llm_judge_exits_2_before_anything_runs(env) -> None:  # noqa: ANN001
    store, world = env
    result = run("judge", "run", "--judge", "Rudeness", "--source", "round", "--round", "Prod")
    assert result.exit_code == 2 and "No LLM configured" in result.output
    assert prod.list_runs(store, world.pid).empty


def test_round_run_prints_json_and_prevalence_reads_it_back(env, llm) -> None:  # noqa: ANN001
    store, world = env
    result = run("judge", "run", "--judge", "Rudeness", "--source", "round", "--round", "Prod", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["run"]["status"] == "finished" and summary["outcome"]["calls"] == 40
    [est] = summary["estimates"]
    assert (est["flagged"], est["judged"]) == (10, 40) and est["corrected"] == pytest.approx(2.25 / 11)
    assert summary["run"]["sample"]["source"] == "round" and summary["run"]["judges"][0]["version"] == "v1"
    run_id = summary["run"]["id"]

    again = run("prevalence", "--run", str(run_id), "--json")
    assert again.exit_code == 0
    read = json.loads(again.stdout)
    assert read["estimates"] == summary["estimates"]
    assert read["method"]["name"] == "fiducial_cp" and "representative" in read["method"]["assumes"]
    human = run("prevalence")  # --run last
    assert human.exit_code == 0 and "corrected 20.5%" in human.stdout and "10 of 40 flagged" in human.stdout
    for bad in (("--run", "999"), ("--run", "abc"), ("--confidence", "2")):
        assert run("prevalence", *bad).exit_code == 2


def test_sample_window_and_size_are_recorded(env, llm) -> None:  # noqa: ANN001
    result = run("judge", "run", "-j", "rude reply", "--source", "round", "--round", "Prod", "--sample", "12",
                 "--seed", "5", "--since", "2026-11-03", "--until", "2026-11-05", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    sample = summary["run"]["sample"]
    assert (sample["n"], sample["seed"], sample["method"]) == (12, 5, "random")
    assert summary["run"]["window"]["start"].startswith("2026-11-03") and summary["estimates"][0]["judged"] == 12


def test_push_scores_says_what_it_needs(env, llm, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(cli.production, "PUSH_MODULE", "integrations.no_such_push_module")
    result = run("judge", "run", "-j", "Rudeness", "--source", "round", "--round", "Prod", "--push-scores")
    assert result.exit_code == 0
    assert "Pushing scores needs the Langfuse push feature" in result.output


def test_push_scores_writes_the_verdicts_to_langfuse_once(env, llm, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    pytest.importorskip(cli.production.PUSH_MODULE)
    from tests.fakes.langfuse_server import FakeLangfuse

    store, world = env
    with FakeLangfuse(traces=len(world.prod_ids), seed=3) as lf:
        with store.engine.begin() as conn:  # the production traces came from this Langfuse
            for trace_id, lf_id in zip(world.prod_ids, lf.trace_ids, strict=False):
                conn.execute(traces.update().where(traces.c.id == trace_id).values(metadata={"langfuse_trace_id": lf_id}))
        for name, value in (("LANGFUSE_PUBLIC_KEY", lf.public_key), ("LANGFUSE_SECRET_KEY", lf.secret_key),
                            ("LANGFUSE_BASE_URL", lf.url)):
            monkeypatch.setenv(name, value)
        result = run("judge", "run", "-j", "Rudeness", "--source", "round", "--round", "Prod", "--batch",
                     "--poll-every", "0.01", "--push-scores", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        notes = summary["notes"]
        assert len(notes) == 1 and notes[0].startswith("Rudeness: Push")
        ours = [s for s in lf.scores.values() if (s.get("metadata") or {}).get("evalboard")]
        assert len(ours) == 40 and sum(s["value"] == 1 for s in ours) == 10
        again = run("judge", "run", "--resume", str(summary["run"]["id"]), "--push-scores")
        assert again.exit_code == 0, again.output
        assert len([s for s in lf.scores.values() if (s.get("metadata") or {}).get("evalboard")]) == 40


def test_batch_run_through_the_cli(env, llm) -> None:  # noqa: ANN001
    store, world = env
    result = run("judge", "run", "-j", "Rudeness", "--source", "round", "--round", "Prod", "--batch", "--no-wait",
                 "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["run"]["status"] == "submitted" and summary["run"]["execution"] == "batch"
    done = run("judge", "run", "--resume", "last", "--poll-every", "0.01", "--json")
    assert done.exit_code == 0, done.output
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["run"]["status"] == "finished" and final["estimates"][0]["judged"] == 40
    assert llm.count() == 0 and llm.count("/v1/batches") == 1


def test_file_source_imports_then_judges(env, llm, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "prod.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"id": f"f{i}", "input": f"production question {100 + i}",
                                            "output": RUDE if i < 3 else "Fine.", "timestamp": T0.isoformat()}) + b"\n"
                              for i in range(8)))
    result = run("judge", "run", "-j", "Rudeness", "--source", "file", "--file", str(path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["run"]["sample"]["source"] == "file"
    assert (summary["estimates"][0]["flagged"], summary["estimates"][0]["judged"]) == (3, 8)
    missing = run("judge", "run", "-j", "Rudeness", "--source", "file", "--file", str(tmp_path / "none.jsonl"))
    assert missing.exit_code == 2


def test_a_killed_run_resumes_without_losing_or_repeating_a_verdict(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    store = Store(url)
    world = build_world(store, n_prod=80)
    store.create_round(world.pid, "Prod", world.prod_ids)
    prod_ids = set(world.prod_ids)

    def stored() -> set[int]:
        with store.engine.connect() as conn:
            ids = conn.execute(select(judge_verdicts.c.trace_id).where(
                judge_verdicts.c.version_id == world.version_id)).scalars()
            return {t for t in ids if t in prod_ids}

    def asked(requests) -> list[str]:  # noqa: ANN001
        return [str(r.json["messages"][-1]["content"]).split("production question ")[1].split()[0] for r in requests]

    with FakeOpenAI(latency=0.08) as fake:
        fake.respond_with(scripted)
        child_env = {k: v for k, v in os.environ.items() if k not in LLM_ENV}
        child_env.update(EVALBOARD_DATABASE_URL=url, EVALBOARD_HOME=str(tmp_path), HOME=str(tmp_path),
                         EVALBOARD_LLM_BASE_URL=fake.base_url, EVALBOARD_LLM_API_KEY="test",
                         EVALBOARD_LLM_MODEL="fake-model", EVALBOARD_LLM_MAX_CONCURRENCY="4")
        child = subprocess.Popen([sys.executable, "-m", "cli.main", "judge", "run", "-j", "Rudeness", "--source",
                                  "round", "--round", "Prod"], cwd=ROOT, env=child_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while len(stored()) < 20 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)  # no chance to clean up
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
        before = stored()
        assert 20 <= len(before) < 80, f"the kill should land mid-run, {len(before)} verdicts stored"
        time.sleep(0.3)  # requests the child had in flight reach the fake's log
        first_requests = len(fake.requests)
        run_id = prod.latest_run(store, world.pid).id
        assert prod.get_run(store, run_id).status == "running", "killed: nothing could mark the run"

        monkeypatch.setattr(cli.main, "_secrets_paths", lambda: [tmp_path / "secrets.toml"])
        for name, value in child_env.items():
            if name.startswith("EVALBOARD_"):
                monkeypatch.setenv(name, value)
        result = run("judge", "run", "--resume", str(run_id), "--json")
        assert result.exit_code == 0, result.output
        again = asked([r for r in fake.requests[first_requests:] if r.path == CHAT_PATH])
        stored_numbers = {str(world.prod_ids.index(t)) for t in before}
        assert not set(again) & stored_numbers, "a stored verdict was asked for again"
        assert len(again) == len(set(again))
        assert len(again) <= 80 - len(before)
    assert stored() == prod_ids, "no verdict lost"
    assert prod.run_counts(store, run_id) == {world.version_id: (20, 80)}
    assert prod.get_run(store, run_id).status == "finished"
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(judge_verdicts).where(
            judge_verdicts.c.version_id == world.version_id)).scalar_one() == len(prod_ids) + sum(world.confusion.values())
    store.dispose()
