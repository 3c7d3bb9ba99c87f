"""Pairwise tuple counts against their lower bound (see evalboard/tuples.py for the bound).

A covering array needs at least n1 * n2 tuples, n1 and n2 the two largest value counts, so the
figure is ``tuples produced / (n1 * n2)``: 1.0 is optimal, the goal is <= 1.6. Sizes, not
times, so the figures do not depend on how busy the machine is.

Run: python -m benchmarks.bench_tuples
"""

from __future__ import annotations

import json

from evalboard.tuples import Dimension, coverage_report, pairwise_tuples

SHAPES = [
    ("pairwise_6x4_vs_bound", (4, 4, 4, 4, 4, 4)),
    ("pairwise_uneven_vs_bound", (3, 5, 2, 7, 4)),
]


def _ratio(sizes: tuple[int, ...]) -> float:
    dims = [Dimension(name=f"d{i}", values=[f"v{j}" for j in range(n)]) for i, n in enumerate(sizes)]
    tuples = pairwise_tuples(dims, seed=0)
    if not coverage_report(dims, tuples).complete:  # a short answer that misses pairs is no win
        raise AssertionError(f"pairwise tuples for {sizes} miss pairs")
    largest, second = sorted(sizes)[-1], sorted(sizes)[-2]
    return len(tuples) / (largest * second)


def run() -> list[dict]:
    return [{"bench": name, "value": round(_ratio(sizes), 4), "unit": "ratio", "floor": 1.0, "goal": 1.6}
            for name, sizes in SHAPES]


def main() -> None:
    for figure in run():
        print(json.dumps(figure))


if __name__ == "__main__":
    main()
