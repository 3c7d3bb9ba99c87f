"""Generated trace files for benchmarks: realistic chat traces with a tool call (~1 KB each)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson


def trace_row(i: int, rng: random.Random) -> dict:
    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i * 7)
    return {
        "id": f"t{i}", "timestamp": t.isoformat(), "tags": ["prod", rng.choice(["rag", "chat", "email"])],
        "metadata": {"app_version": "1.4.2", "region": rng.choice(["eu", "us"])},
        "user_id": f"u{i % 500}", "session_id": f"s{i % 2000}",
        "messages": [
            {"role": "system", "content": "You are a helpful documentation assistant. Answer with citations."},
            {"role": "user", "content": f"How do I rotate API keys for project {i}? The dashboard errors with code {i % 97}."},
            {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{i}", "type": "function", "function": {
                "name": "search_docs", "arguments": orjson.dumps({"query": "rotate api keys", "k": 3}).decode()}}]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": "[1] Keys rotate under Settings > API keys. "
             "[2] The old key stays valid for 24h. [3] CLI: acme keys rotate --project ID."},
            {"role": "assistant", "content": "Open Settings > API keys and click Rotate [1]. The old key stays "
             f"valid for 24 hours [2]. From a terminal: `acme keys rotate --project {i}` [3]."}],
        "latency_ms": rng.randint(300, 4000), "cost": round(rng.random() / 100, 5),
    }


def write_traces(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("wb") as fh:
        for i in range(n):
            fh.write(orjson.dumps(trace_row(i, rng)) + b"\n")
    return path
