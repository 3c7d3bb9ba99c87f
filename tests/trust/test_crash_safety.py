"""kill -9 at a random point, then run again: nothing lost, nothing twice.

Each test starts the real work in a child process (the `evalboard` CLI, or a small driver of
the judge run), waits until it has visibly begun writing, lets it run a random extra moment,
and kills it with SIGKILL: no handler, no cleanup, as when a machine loses power or the OOM
killer strikes. After a few kills the same command runs to the end, and the database must hold
every item exactly once. The random seed is printed, so a failure can be replayed.
Covered: `evalboard import`, `evalboard pull langfuse`, a judge run, `evalboard push langfuse`.

"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from evalboard.db import judge_verdicts, round_traces, rounds, traces
from evalboard.models import TraceRecord
from evalboard.store import Store
from tests.trust.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("EVALBOARD_CRASH_SEED", random.SystemRandom().randrange(10**6)))
KILLS = int(os.environ.get("EVALBOARD_CRASH_KILLS", "2"))

pytestmark = pytest.mark.slow


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OPENAI_", "EVALBOARD_LLM"))}
    return {**env, "EVALBOARD_DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1", **extra}


def kill_at_random_point(cmd: list[str], env: dict[str, str], begun: Callable[[], bool],
                         rng: random.Random, extra: float) -> bool:
    """Run `cmd`, wait until `begun()` says it is writing, wait up to `extra` seconds more,
    SIGKILL it. True when it was killed while still running (False: it finished first).
    Callers pass extra=0 for their first kill, so at least one lands mid-work on any machine."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not begun() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, extra))
        running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if not running:
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        return running
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()


def _count(store: Store, query) -> int:  # noqa: ANN001 - a select
    with store.engine.connect() as conn:
        return conn.execute(query).scalar_one()


# -- import ------------------------------------------------------------------------------------

N_ROWS = 20_000
BAD_LINES = 7


def _write_jsonl(path: Path) -> list[dict]:
    rows = [{"id": f"row-{i}", "input": f"question {i} " + "x" * (i % 50), "output": f"answer {i}",
             "timestamp": f"2026-10-{1 + i % 28:02d}T08:{i % 60:02d}:00Z", "tags": ["crash"]}
            for i in range(N_ROWS)]
    lines = [json.dumps(r) for r in rows]
    for k in range(BAD_LINES):  # bad rows are reported and skipped every time, never imported
        lines.insert(1000 + k * 3000, '{"id": "broken", "input": ')
    path.write_text("\n".join(lines) + "\n")
    return rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_import_killed_at_random_points(backend: str, new_database: Callable[[str], str], tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"EVALBOARD_CRASH_SEED={SEED}")
    url = new_database(backend)
    store = Store(url)  # schema in place before the first kill
    path = tmp_path / "big.jsonl"
    rows = _write_jsonl(path)
    cmd = [sys.executable, "-m", "cli.main", "import", str(path), "--project", "crash", "--round", "all"]
    survived = 0
    for k in range(KILLS):
        already = _count(store, select(func.count()).select_from(traces))
        survived += kill_at_random_point(
            cmd, _env(url), lambda: _count(store, select(func.count()).select_from(traces)) > already, rng,
            0.5 * (k > 0))
    assert survived >= 1  # at least one kill landed mid-import
    partial = _count(store, select(func.count()).select_from(traces))

    done = subprocess.run(cmd, cwd=ROOT, env=_env(url), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{N_ROWS - partial} imported, {partial} already present, {BAD_LINES} skipped" in done.stdout
    assert _count(store, select(func.count()).select_from(traces)) == N_ROWS
    assert _count(store, select(func.count(func.distinct(traces.c.source_id)))) == N_ROWS
    rid = _count(store, select(rounds.c.id))
    assert _count(store, select(func.count()).select_from(round_traces).where(round_traces.c.round_id == rid)) == N_ROWS
    assert store.get_round(rid).trace_count == N_ROWS
    assert _count(store, select(func.count(func.distinct(round_traces.c.position)))) == N_ROWS
    pid = store.project_by_name("crash").id
    sample = rng.sample(range(N_ROWS), 25)
    for i in sample:  # what arrived is what the file says, whichever run wrote it
        flt = select(traces.c.input, traces.c.output).where(traces.c.project_id == pid,
                                                            traces.c.source_id == f"row-{i}")
        with store.engine.connect() as conn:
            got = conn.execute(flt).one()
        assert (got.input, got.output) == (rows[i]["input"], rows[i]["output"])
    store.dispose()


# -- Langfuse pull -----------------------------------------------------------------------------

def test_langfuse_pull_killed_at_random_points(new_database: Callable[[str], str]) -> None:
    from tests.fakes.langfuse_data import BASE_TIME
    from tests.fakes.langfuse_server import FakeLangfuse

    rng = random.Random(SEED + 1)
    url = new_database("sqlite")
    store = Store(url)
    with FakeLangfuse(traces=2500, seed=7, latency=0.1) as fake:  # a pull of ~3 s: room to land kills
        env = _env(url, LANGFUSE_PUBLIC_KEY=fake.public_key, LANGFUSE_SECRET_KEY=fake.secret_key,
                   LANGFUSE_BASE_URL=fake.url)
        since, until = (BASE_TIME - timedelta(days=1)).isoformat(), (BASE_TIME + timedelta(days=30)).isoformat()
        cmd = [sys.executable, "-m", "cli.main", "pull", "langfuse", "--round", "pulled", "--project", "lf",
               "--since", since, "--until", until]
        survived = 0
        for k in range(KILLS):  # killed while listing, fetching or writing a batch of 1000
            seen = len(fake.requests)
            survived += kill_at_random_point(cmd, env, lambda: len(fake.requests) > seen, rng, 1.5 * (k > 0))
        assert survived >= 1
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        expected = set(fake.trace_ids)
    pid = store.project_by_name("lf").id
    with store.engine.connect() as conn:
        got = list(conn.execute(select(traces.c.source_id).where(traces.c.project_id == pid)).scalars())
    assert len(got) == len(set(got)) == len(expected) and set(got) == expected
    rnd = store.list_rounds(pid)[0]
    assert rnd.trace_count == len(expected) == len(store.round_trace_ids(rnd.id))
    store.dispose()


# -- judge run ---------------------------------------------------------------------------------

JUDGE_DRIVER = """
import sys
from evalboard.judges.runs import run_judge
from evalboard.store import Store
from integrations.llm import LLMClient, LLMSettings

url, version_id, base_url, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
store = Store(url, migrate=False)
client = LLMClient(LLMSettings(base_url=base_url, api_key="sk-test", model="judge-model", max_concurrency=4,
                               retry_base_delay=0.01), cache=store.llm_cache())
report = run_judge(client, store, version_id, trace_ids=[int(t) for t in ids.split(",")], concurrency=4)
print(report.status, report.reused, report.calls, report.cache_hits, flush=True)
"""


def test_judge_run_killed_at_random_points(new_database: Callable[[str], str]) -> None:
    from evalboard.coding import ensure_mode
    from evalboard.judges.core import create_judge, save_version
    from tests.fakes.openai_server import FakeOpenAI

    rng = random.Random(SEED + 2)
    url = new_database("sqlite")
    store = Store(url)
    pid = store.create_project("judged").id
    ids = store.add_traces(pid, [TraceRecord(source="s", source_id=str(i), input=f"q {i}", output=f"a {i}")
                                 for i in range(240)]).trace_ids
    mode = ensure_mode(store, pid, "wrong tone", definition="The reply is rude.")
    judge = create_judge(store, pid, mode, "tone judge", "llm")
    version, _ = save_version(store, judge.id, {"model": "judge-model"})
    trace_arg = ",".join(map(str, ids))
    verdicts = select(func.count()).select_from(judge_verdicts)
    with FakeOpenAI(latency=0.03) as fake:
        cmd = [sys.executable, "-c", JUDGE_DRIVER, url, str(version.id), fake.base_url, trace_arg]
        survived = 0
        for k in range(KILLS):
            already = _count(store, verdicts)
            survived += kill_at_random_point(cmd, _env(url), lambda: _count(store, verdicts) > already, rng,
                                             0.6 * (k > 0))
        assert survived >= 1
        time.sleep(0.3)  # calls the killed process left on the wire reach the fake and are counted
        before_last = _count(store, verdicts)
        calls_before = fake.count()
        done = subprocess.run(cmd, cwd=ROOT, env=_env(url), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        status, reused, calls, cache_hits = done.stdout.split()
        assert status == "finished" and int(reused) == before_last
        # The last run asked only about traces with no stored verdict; answers that arrived just
        # before a kill came from the LLM cache, so only calls in progress were paid twice: at most
        # one per worker of LLMClient.map (4 on the wire plus 2 spare) per kill.
        assert fake.count() - calls_before == int(calls) == len(ids) - before_last - int(cache_hits)
        assert fake.count() <= len(ids) + KILLS * (4 + 2)
    with store.engine.connect() as conn:
        judged = list(conn.execute(select(judge_verdicts.c.trace_id).where(
            judge_verdicts.c.version_id == version.id)).scalars())
    assert sorted(judged) == sorted(ids)  # every trace judged, none twice
    store.dispose()


# -- push to Langfuse --------------------------------------------------------------------------

def test_push_killed_at_random_points(new_database: Callable[[str], str]) -> None:
    """People's labels of a pulled round go to Langfuse as scores (upserted by a stable id) and
    notes as trace comments (which Langfuse cannot update or find by id): after kills and a final
    push, every trace has one verdict score, one failure-mode score and one comment."""
    from evalboard.coding import save_annotation
    from integrations.langfuse import LangfuseSettings, PullFilters
    from integrations.langfuse_rounds import prepare_round, pull_into_round
    from tests.fakes.langfuse_data import BASE_TIME
    from tests.fakes.langfuse_server import FakeLangfuse

    rng = random.Random(SEED + 3)
    url = new_database("sqlite")
    store = Store(url)
    with FakeLangfuse(traces=150, seed=9) as fake:
        settings = LangfuseSettings(public_key=fake.public_key, secret_key=fake.secret_key, base_url=fake.url)
        pid = store.create_project("pushed").id
        rnd, _ = prepare_round(store, pid, "labelled")
        window = PullFilters(since=BASE_TIME - timedelta(days=1), until=BASE_TIME + timedelta(days=30))
        assert pull_into_round(store, settings, pid, rnd.id, window).added == 150
        for i, trace_id in enumerate(store.round_trace_ids(rnd.id)):
            save_annotation(store, pid, trace_id, "maya", verdict="fail", note=f"note {i}: the answer is wrong",
                            modes=[f"mode {i % 3}"], round_id=rnd.id)
        seeded = set(fake.scores)
        fake.latency = 0.01
        env = _env(url, LANGFUSE_PUBLIC_KEY=fake.public_key, LANGFUSE_SECRET_KEY=fake.secret_key,
                   LANGFUSE_BASE_URL=fake.url)
        cmd = [sys.executable, "-m", "cli.main", "push", "langfuse", "--annotations", "labelled", "--project", "pushed"]
        survived = 0
        for k in range(KILLS):
            seen = len(fake.comments) + len(fake.scores)
            survived += kill_at_random_point(cmd, env, lambda: len(fake.comments) + len(fake.scores) > seen, rng,
                                             1.5 * (k > 0))
        assert survived >= 1
        time.sleep(0.3)  # requests the killed process left on the wire land first
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0
        comments = list(fake.comments.values())
        scores = [fake.scores[k] for k in set(fake.scores) - seeded]
    lf_ids = {t.source_id for t in (store.get_trace(i) for i in store.round_trace_ids(rnd.id))}
    per_trace: dict[str, int] = {}
    for c in comments:
        per_trace[c["objectId"]] = per_trace.get(c["objectId"], 0) + 1
    assert per_trace == {lf: 1 for lf in lf_ids}  # one note each: none lost, none twice
    by_kind: dict[tuple[str, str], int] = {}
    for sc in scores:
        key = (sc.get("traceId") or sc.get("_traceId"), sc["name"])
        by_kind[key] = by_kind.get(key, 0) + 1
    assert len(scores) == 2 * len(lf_ids) and set(by_kind.values()) == {1}
    store.dispose()
