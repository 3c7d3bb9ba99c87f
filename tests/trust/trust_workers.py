"""Work run in child processes by the trust tests (concurrency and kill -9 tests).

    python -m tests.trust.trust_workers label URL PROJECT_ID ROUND_ID ANNOTATOR N GO_FILE
    python -m tests.trust.trust_workers pull URL PROJECT_ID LANGFUSE_URL PUBLIC SECRET

`label` waits for GO_FILE to exist (so that all processes start writing together), then saves
the annotator's label of the first N traces of the round, in an order of its own.
`pull` pulls every trace of a Langfuse server into the project, checkpointed in the store, and
prints one line per batch written (the killing test waits for the first ones).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path


def planned_label(annotator: str, trace_id: int) -> dict:
    """What `annotator` says about `trace_id`: deterministic, different per person."""
    salt = sum(map(ord, annotator))
    fail = (trace_id + salt) % 3 == 0
    return {"verdict": "fail" if fail else "pass",
            "note": f"{annotator} read trace {trace_id}" if fail else "",
            "modes": [f"mode {(trace_id + salt) % 5}"] if fail else []}


def label(url: str, project_id: int, round_id: int, annotator: str, n: int, go: str | None = None) -> int:
    from evalboard.coding import save_annotation
    from evalboard.store import Store

    store = Store(url, migrate=False)
    ids = store.round_trace_ids(round_id)[:n]
    random.Random(annotator).shuffle(ids)  # each person walks the traces in another order
    if go:
        while not Path(go).exists():
            time.sleep(0.01)
    for trace_id in ids:
        save_annotation(store, project_id, trace_id, annotator, round_id=round_id, **planned_label(annotator, trace_id))
    store.dispose()
    return len(ids)


def pull(url: str, project_id: int, base_url: str, public_key: str, secret_key: str) -> None:
    from evalboard.store import Store
    from integrations.langfuse import LangfuseSettings, PullFilters, RetryPolicy, StoreCheckpoint, pull_traces
    from tests.fakes.langfuse_data import BASE_TIME
    from datetime import timedelta

    store = Store(url, migrate=False)
    settings = LangfuseSettings(public_key=public_key, secret_key=secret_key, base_url=base_url, timeout=10.0)
    filters = PullFilters(since=BASE_TIME - timedelta(days=1), until=BASE_TIME + timedelta(days=30))
    for progress in pull_traces(settings, filters, checkpoint=StoreCheckpoint(store), batch_size=25,
                                concurrency=2, retry=RetryPolicy(max_retries=3, base_delay=0.01),
                                now=BASE_TIME + timedelta(days=31)):
        if progress.records:
            result = store.add_traces(project_id, progress.records, want_ids=False)
            print(f"batch {progress.batch_index} added {result.added} duplicates {result.duplicates}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "label":
        url, pid, rid, who, n, *go = args
        print(label(url, int(pid), int(rid), who, int(n), go[0] if go else None), flush=True)
    elif command == "pull":
        url, pid, base, pk, sk = args
        pull(url, int(pid), base, pk, sk)
    else:
        raise SystemExit(f"unknown command {command!r}")
