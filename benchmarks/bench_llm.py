"""Query generation throughput against the fake server, as a ratio to the concurrency floor.

500 queries are written through the real code path, `evalboard.queries.generate_queries`: 500
tuples (the full product of 10 x 10 x 5 values), one query each, so 500 structured LLM calls
through `LLMClient.map` at the default concurrency, each answer validated and stored in a
SQLite store as it arrives, the store's LLM cache written, and near-duplicates marked at the
end. The fake answers each call after 200 ms. No client can beat ceil(500 / concurrency) x
0.2 s, the floor; the figure is our wall time over that floor (goal <= 1.2).

    python benchmarks/bench_llm.py
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalboard import query_store  # noqa: E402
from evalboard.queries import GeneratedQueries, generate_queries  # noqa: E402
from evalboard.store import Store  # noqa: E402
from evalboard.tuples import Dimension, full_product  # noqa: E402
from integrations.llm import LLMClient, LLMSettings  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

LATENCY = 0.2
DIMENSIONS = [
    Dimension(name="persona", values=[f"persona {i}" for i in range(10)]),
    Dimension(name="intent", values=[f"intent {i}" for i in range(10)]),
    Dimension(name="style", values=[f"style {i}" for i in range(5)]),
]


WORDS = ("invoice refund export tax payroll login password report bank card vat receipt client "
         "supplier discount overdue reminder currency account budget ledger").split()


def _answer(request: dict) -> dict:
    """A different query per tuple, as real answers would be (queries sharing one template would
    all be marked near-duplicates, which real generations are not): eight words picked by a
    hash of the prompt."""
    seed = int(hashlib.sha256(request["messages"][-1]["content"].encode()).hexdigest(), 16)
    words = [WORDS[(seed >> (5 * i)) % len(WORDS)] for i in range(8)]
    return {"queries": [" ".join(words)]}


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI(latency=LATENCY) as fake:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        project_id = store.create_project("bench", "A benchmark product used by benchmark users.").id
        for dim in DIMENSIONS:
            query_store.add_dimension(store, project_id, dim)
        query_store.add_tuples(store, project_id, full_product(DIMENSIONS), "full")
        tuples = query_store.list_tuples(store, project_id)
        fake.respond_with(_answer)
        settings = LLMSettings(base_url=fake.base_url, api_key="bench", model="fake-model")
        client = LLMClient(settings, cache=store.llm_cache())
        client.structured("warm-up", GeneratedQueries)  # first-use imports and connection

        started = time.perf_counter()
        report = generate_queries(client, store, project_id, tuples, 1, context="bench", dims=DIMENSIONS)
        elapsed = time.perf_counter() - started
        store.dispose()

    if report.failed or report.added != len(tuples):
        raise RuntimeError(f"benchmark generation incomplete: {report.summary()}")
    floor = math.ceil(len(tuples) / settings.max_concurrency) * LATENCY
    return [{"bench": "querygen_vs_floor", "value": round(elapsed / floor, 3), "unit": "ratio",
             "floor": 1.0, "goal": 1.2}]


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
