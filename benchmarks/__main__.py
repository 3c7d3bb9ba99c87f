"""Run every benchmark and print one JSON line per figure (GUIDE section 6).

    python -m benchmarks                # all of them
    python -m benchmarks store tuples   # only benchmarks/bench_store.py and bench_tuples.py

Each benchmarks/bench_<name>.py has `run() -> list[dict]`. Figures are ratios taken within one
run (e.g. import time / parse time of the same file), so a noisy machine moves both sides.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    folder = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_"))
    wanted = [f"bench_{a.removeprefix('bench_')}" for a in argv]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(names)}", file=sys.stderr)
        return 2
    failed = 0
    for name in wanted or names:
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            figures = module.run()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            print(json.dumps({"bench": name, "error": repr(exc)}), flush=True)
            failed += 1
            continue
        for figure in figures:
            print(json.dumps(figure), flush=True)
        print(f"# {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
