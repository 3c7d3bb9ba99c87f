"""Throughput of structured LLM calls against the fake server, as a ratio to the concurrency floor.

500 structured calls (shaped like query generation: a prompt per tuple, a pydantic list of
queries back) go through `LLMClient.map` at the default concurrency, while the fake answers each
after 200 ms. No client can beat ceil(500 / concurrency) x 0.2 s, the floor; the figure is our
wall time over that floor (goal <= 1.2).

    python benchmarks/bench_llm.py
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, Field  # noqa: E402

from integrations.llm import LLMClient, LLMSettings  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

CALLS = 500
LATENCY = 0.2


class GeneratedQueries(BaseModel):
    queries: list[str] = Field(min_length=1)


def run() -> list[dict]:
    with FakeOpenAI(latency=LATENCY) as fake:
        fake.respond_with(lambda req: {"queries": [f"q for {req['messages'][-1]['content']}"]})
        settings = LLMSettings(base_url=fake.base_url, api_key="bench", model="fake-model")
        client = LLMClient(settings)
        concurrency = settings.max_concurrency
        client.structured("warm-up", GeneratedQueries)  # first-use imports and connection

        requests = [
            [{"role": "system", "content": "Write realistic user queries for the given tuple."},
             {"role": "user", "content": f"tuple {i}: persona=p{i % 7}, scenario=s{i % 11}"}]
            for i in range(CALLS)
        ]
        started = time.perf_counter()
        results = client.map(requests, "structured", schema=GeneratedQueries, feature="querygen")
        elapsed = time.perf_counter() - started

    failed = sum(not r.ok for r in results)
    if failed:
        raise RuntimeError(f"{failed} of {CALLS} benchmark calls failed: {results[0].error!r}")
    floor = math.ceil(CALLS / concurrency) * LATENCY
    return [{"bench": "querygen_vs_floor", "value": round(elapsed / floor, 3), "unit": "ratio",
             "floor": 1.0, "goal": 1.2}]


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
