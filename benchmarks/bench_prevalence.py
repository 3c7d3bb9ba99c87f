"""Coverage and width of corrected-prevalence intervals over a simulation grid.

Each grid cell fixes a true failure prevalence theta, a judge's true TPR and TNR, a test split
(n1 human-failed + n0 human-passed traces) and a production sample size m. A simulated study
draws tp ~ Bin(n1, TPR), tn ~ Bin(n0, TNR) and k ~ Bin(m, theta TPR + (1 - theta)(1 - TNR)),
then asks a method for a 95% interval. Coverage = share of studies whose interval contains theta.

A study whose test split gives TPR_hat + TNR_hat <= 1 is refused (CorrectionNotPossible) and
counted as NOT covered, for every method. Figures:

- prevalence_coverage_worst: coverage of evalboard's default method, worst cell (goal >= 0.94)
- judgy_coverage_worst: the same for judgy's approach (test split bootstrap only), same studies
- prevalence_width_vs_judgy: median over cells of (our median width / judgy's median width)

Monte Carlo sizes: `STUDIES` studies per cell (the worst of 405 cells is a minimum of noisy
estimates: with 1000 studies a cell's coverage has a standard error of about 0.007), and
`DRAWS` Monte Carlo draws per interval (the library default is 20 000; 1000 moves an interval
limit by under a tenth of its standard error, which leaves coverage unchanged to within noise).
judgy's approach is reimplemented on counts (method "judgy"), because calling the package
costs seconds per study; tests/evalboard/test_stats.py checks the two agree.

EVALBOARD_BENCH_QUICK=1 shrinks the grid for a smoke run; EVALBOARD_BENCH_ALL_METHODS=1 adds
worst coverage and width ratio for every method in evalboard.stats.PREVALENCE_METHODS.

Run: python -m benchmarks.bench_prevalence
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from evalboard.stats.prevalence import DEFAULT_METHOD, PREVALENCE_METHODS, prevalence_interval_arrays

FULL_GRID = {
    "prevalence": (0.02, 0.05, 0.1, 0.2, 0.4),
    "tpr": (0.7, 0.85, 0.95),
    "tnr": (0.8, 0.9, 0.98),
    # (human-failed, human-passed) traces in the test split: 46, 100 and 300 traces
    "test_split": ((20, 26), (43, 57), (130, 170)),
    "production": (200, 1000, 5000),
}
QUICK_GRID = {
    "prevalence": (0.02, 0.2),
    "tpr": (0.85,),
    "tnr": (0.8, 0.98),
    "test_split": ((20, 26), (130, 170)),
    "production": (200, 5000),
}
STUDIES, QUICK_STUDIES = 1000, 300
DRAWS, QUICK_DRAWS = 1000, 500
SEED = 2026


@dataclass(frozen=True)
class CellResult:
    coverage: float  # refused studies count as not covered
    median_width: float  # over studies that were not refused
    refused: int
    studies: int


@dataclass(frozen=True)
class Studies:
    """Simulated data for one cell: one entry per study."""

    k: np.ndarray
    tp: np.ndarray
    tn: np.ndarray
    refused: np.ndarray  # TPR_hat + TNR_hat <= 1


def simulate_studies(theta: float, tpr: float, tnr: float, n1: int, n0: int, m: int,
                     studies: int, rng: np.random.Generator) -> Studies:
    """Draw `studies` independent (k, tp, tn) triples for one grid cell."""
    flag_rate = theta * tpr + (1 - theta) * (1 - tnr)
    tp = rng.binomial(n1, tpr, studies)
    tn = rng.binomial(n0, tnr, studies)
    k = rng.binomial(m, flag_rate, studies)
    return Studies(k=k, tp=tp, tn=tn, refused=tp / n1 + tn / n0 <= 1.0)


def evaluate(method: str, data: Studies, theta: float, m: int, n1: int, n0: int,
             draws: int, rng: np.random.Generator) -> CellResult:
    """Coverage and median width of `method` on simulated studies (refusals not covered)."""
    ok = ~data.refused
    covered = np.zeros(len(data.k), dtype=bool)
    widths = np.array([np.nan])
    if ok.any():
        low, high = prevalence_interval_arrays(method, data.k[ok], m, data.tp[ok], n1, data.tn[ok], n0,
                                               draws=draws, rng=rng)
        covered[ok] = (low <= theta + 1e-12) & (theta - 1e-12 <= high)
        widths = high - low
    return CellResult(coverage=float(covered.mean()), median_width=float(np.median(widths)),
                      refused=int(data.refused.sum()), studies=len(data.k))


def coverage_for_cell(method: str, theta: float, tpr: float, tnr: float, n1: int, n0: int, m: int,
                      studies: int, seed: int, draws: int = DRAWS) -> CellResult:
    """Simulate one cell and evaluate one method on it (seeded: same arguments, same result)."""
    data_rng, method_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    data = simulate_studies(theta, tpr, tnr, n1, n0, m, studies, data_rng)
    return evaluate(method, data, theta, m, n1, n0, draws, method_rng)


def _grid(quick: bool) -> list[tuple[float, float, float, int, int, int]]:
    g = QUICK_GRID if quick else FULL_GRID
    return [(th, se, sp, n1, n0, m) for th, se, sp, (n1, n0), m in
            itertools.product(g["prevalence"], g["tpr"], g["tnr"], g["test_split"], g["production"])]


def run() -> list[dict]:
    quick = os.environ.get("EVALBOARD_BENCH_QUICK") == "1"
    all_methods = os.environ.get("EVALBOARD_BENCH_ALL_METHODS") == "1"
    studies, draws = (QUICK_STUDIES, QUICK_DRAWS) if quick else (STUDIES, DRAWS)
    methods = list(PREVALENCE_METHODS) if all_methods else [DEFAULT_METHOD, "judgy"]
    results: dict[str, list[CellResult]] = {name: [] for name in methods}
    cells = _grid(quick)
    started = time.perf_counter()
    for index, (theta, se, sp, n1, n0, m) in enumerate(cells):
        # one seed per cell, so a cell's figures do not depend on which cells ran before it
        data_seq, *method_seqs = np.random.SeedSequence([SEED, index]).spawn(1 + len(methods))
        data = simulate_studies(theta, se, sp, n1, n0, m, studies, np.random.default_rng(data_seq))
        for name, seq in zip(methods, method_seqs):
            results[name].append(evaluate(name, data, theta, m, n1, n0, draws, np.random.default_rng(seq)))
    elapsed = time.perf_counter() - started

    ours, judgy = results[DEFAULT_METHOD], results["judgy"]
    worst = int(np.argmin([r.coverage for r in ours]))
    ratio = float(np.median([a.median_width / b.median_width for a, b in zip(ours, judgy)]))
    refused = sum(r.refused for r in ours)
    print(f"# prevalence: {len(cells)} cells x {studies} studies, {draws} draws, {elapsed:.0f} s; "
          f"worst cell for {DEFAULT_METHOD}: theta, TPR, TNR, n1, n0, m = {cells[worst]}; "
          f"refused studies (TPR_hat + TNR_hat <= 1, counted as not covered): {refused}",
          file=sys.stderr)
    figures = [
        {"bench": "prevalence_coverage_worst", "value": round(ours[worst].coverage, 4),
         "unit": "proportion", "floor": 0.94, "goal": 0.94},
        {"bench": "judgy_coverage_worst", "value": round(min(r.coverage for r in judgy), 4),
         "unit": "proportion", "floor": None, "goal": None},
        {"bench": "prevalence_width_vs_judgy", "value": round(ratio, 4), "unit": "ratio",
         "floor": None, "goal": None},
        {"bench": "prevalence_coverage_mean", "value": round(float(np.mean([r.coverage for r in ours])), 4),
         "unit": "proportion", "floor": None, "goal": None},
        {"bench": "judgy_coverage_mean", "value": round(float(np.mean([r.coverage for r in judgy])), 4),
         "unit": "proportion", "floor": None, "goal": None},
    ]
    if all_methods:
        for name in methods:
            cov = [r.coverage for r in results[name]]
            width = float(np.median([a.median_width / b.median_width for a, b in zip(results[name], judgy)]))
            figures.append({"bench": f"prevalence_{name}_coverage_worst", "value": round(min(cov), 4),
                            "unit": "proportion", "floor": None, "goal": None})
            figures.append({"bench": f"prevalence_{name}_coverage_mean",
                            "value": round(float(np.mean(cov)), 4),
                            "unit": "proportion", "floor": None, "goal": None})
            figures.append({"bench": f"prevalence_{name}_width_vs_judgy", "value": round(width, 4),
                            "unit": "ratio", "floor": None, "goal": None})
    return figures


def main() -> None:
    for figure in run():
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
