"""Run every benchmark and print one JSON line per figure (GUIDE section 6).

    python -m benchmarks                # all of them
    python -m benchmarks store tuples   # only benchmarks/bench_store.py and bench_tuples.py

Each benchmarks/bench_<name>.py has `run() -> list[dict]`. Figures are ratios taken within one
run (e.g. import time / parse time of the same file), so a noisy machine moves both sides.
Each benchmark runs in a fresh Python process, so none inherits another's caches, threads or
patched modules (AppTest, for one, replaces `__main__`).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
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
        code = ("import json, sys\n"
                f"from benchmarks.{name} import run\n"
                "for figure in run():\n"
                "    print(json.dumps(figure), flush=True)\n")
        done = subprocess.run([sys.executable, "-c", code], cwd=folder.parent, stdout=subprocess.PIPE,
                              text=True)
        sys.stdout.write(done.stdout)
        sys.stdout.flush()
        if done.returncode != 0:
            print(json.dumps({"bench": name, "error": f"exit code {done.returncode}, see stderr"}), flush=True)
            failed += 1
        print(f"# {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
