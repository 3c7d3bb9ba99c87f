"""Judge run throughput against the fake server, with rate limiting, as a ratio to the floor.

2,000 traces are judged through the real code path, `evalboard.judges.run_judge`: an LLM
judge version, every prompt rendered from its sandboxed templates, 2,000
structured calls through `LLMClient.map` at concurrency 32, each verdict validated and stored
(per version and trace) in a SQLite store as it arrives, the store's LLM cache written. The
fake (in its own process, as a real server would be) answers each call after 200 ms, and 5% of
calls get a 429 with Retry-After: 0.2 s (a retried call can be limited again). No client can
beat 2000 x 0.2 s / 32 = 12.5 s: the figure is our wall time over that floor (goal <= 1.2); the
rate-limited calls alone put the best reachable figure near 1.06. Then:

- `judge_run_lost`: traces without a stored verdict after the run (goal 0);
- `judge_rerun_calls`: requests the server saw when the same run is started again at once
  (goal 0: the version's stored verdicts are reused, so nothing is even looked up in the cache).

    python benchmarks/bench_judges.py
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalboard import coding  # noqa: E402
from evalboard.judges import (  # noqa: E402
    JudgeAnswer,
    create_judge,
    run_judge,
    save_version,
    stored_verdicts,
)
from evalboard.models import TraceRecord  # noqa: E402
from evalboard.store import Store  # noqa: E402
from integrations.llm import LLMClient, LLMSettings  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

N = 2000
LATENCY = 0.2
CONCURRENCY = 32
RATE_LIMITED = 0.05
RETRY_AFTER = 0.2


def _answer(request: dict) -> dict:
    """Fail when the judged trace's output mentions v3 (a deterministic, checkable verdict)."""
    last = request["messages"][-1]["content"]
    verdict = "fail" if "v3" in last else "pass"
    return JudgeAnswer(reasoning="The answer recommends a v3 command." if verdict == "fail"
                       else "Nothing from v3.", verdict=verdict).model_dump()


def _traces(n: int) -> list[TraceRecord]:
    return [TraceRecord(source="bench", source_id=str(i), name="rag-answer",
                        input={"question": f"how do I rotate key {i}?"},
                        output=f"Run `nimbus-{'v3' if i % 7 == 0 else 'v4'} keys rotate --key {i}`.")
            for i in range(n)]


def _serve_fake(conn: Any) -> None:
    """The fake server in its own process, driven over a pipe: a real LLM server never shares
    our interpreter, and in-process its request handling would compete with the client for the
    GIL and inflate the measured time."""
    with FakeOpenAI(latency=LATENCY) as fake:
        fake.respond_with(_answer)
        conn.send(fake.base_url)
        while True:
            command = conn.recv()
            if command == "rate-limit":
                fake.fail_fraction(RATE_LIMITED, 429, retry_after=RETRY_AFTER, seed=7)
            elif command == "count":
                conn.send(fake.count())
            elif command == "limited":
                conn.send(sum(1 for r in fake.chat_requests if r.status == 429))
            else:
                break


def run() -> list[dict]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve_fake, args=(theirs,), daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 60
        while not ours.poll(0.1):
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server process did not start")
        base_url = ours.recv()
        with tempfile.TemporaryDirectory() as folder:
            elapsed, lost, rerun_calls, report, rerun = _measure(base_url, Path(folder), ours)
        ours.send("limited")
        limited = ours.recv()
    finally:
        ours.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
    if report.failed or rerun.reused != N:
        raise RuntimeError(f"benchmark run incomplete: {report.summary()} / rerun: {rerun.summary()}")
    floor = N * LATENCY / CONCURRENCY
    print(f"# judge run: {elapsed:.2f} s for {N} traces ({limited} answers were 429), floor {floor:.2f} s",
          file=sys.stderr)
    return [
        {"bench": "judge_run_vs_floor", "value": round(elapsed / floor, 3), "unit": "ratio", "floor": 1.0,
         "goal": 1.2},
        {"bench": "judge_run_lost", "value": lost, "unit": "count", "goal": 0},
        {"bench": "judge_rerun_calls", "value": rerun_calls, "unit": "count", "goal": 0},
    ]


def _measure(base_url: str, folder: Path, server: Any) -> tuple[float, int, int, Any, Any]:
    store = Store(f"sqlite:///{folder / 'bench.db'}")
    try:
        project_id = store.create_project("bench", "A docs assistant.").id
        ids = store.add_traces(project_id, _traces(N)).trace_ids
        mode_id = coding.ensure_mode(store, project_id, "outdated version",
                                     definition="Recommends v3 behaviour or commands.")
        judge = create_judge(store, project_id, mode_id, "bench judge", "llm")
        version, _ = save_version(store, judge.id, {
            "model": "fake-model", "fail_when": "- a v3 command", "pass_when": "- v4 commands only"})
        settings = LLMSettings(base_url=base_url, api_key="bench", model="fake-model",
                               max_concurrency=CONCURRENCY)
        client = LLMClient(settings, cache=store.llm_cache())
        client.structured("warm-up", JudgeAnswer)  # first-use imports and connection
        server.send("rate-limit")

        started = time.perf_counter()
        report = run_judge(client, store, version.id, trace_ids=ids, concurrency=CONCURRENCY)
        elapsed = time.perf_counter() - started
        stored = stored_verdicts(store, version.id, ids)
        lost = N - len(stored)
        expected = {t: "fail" if i % 7 == 0 else "pass" for i, t in enumerate(ids)}
        wrong = sum(expected[int(t)] != v for t, v in zip(stored["trace_id"], stored["verdict"]))
        if wrong:
            raise RuntimeError(f"{wrong} stored verdicts differ from the server's answers")

        server.send("count")
        before = server.recv()
        rerun = run_judge(client, store, version.id, trace_ids=ids, concurrency=CONCURRENCY)
        server.send("count")
        rerun_calls = server.recv() - before
        return elapsed, lost, rerun_calls, report, rerun
    finally:
        store.dispose()


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
