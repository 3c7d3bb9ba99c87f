"""Offline clustering of failure notes: how well it recovers known modes, and what it costs.

Data: 5,000 notes from `evalboard.demo_axial.synthetic_notes` (seed 7): six failure families
in unequal shares, each written from ten templates whose anchor words vary (citation / source /
cited source, v3 / outdated / deprecated v3, ...), with slot words shared across families
(pages, plans, topics, operating systems), optional openers and tails, 8% misspelt words and
8% vague notes that name no family at all. Not trivially separable: a supervised classifier on
the same TF-IDF features (5-fold cross-validated) reaches an adjusted Rand index of 0.85, not 1.

Figures:
- cluster_ari: adjusted Rand index of `cluster_offline` (k chosen automatically) against the
  known modes. 1 is perfect, 0 is chance; floor 0.5 (most families recovered whole).
- cluster_time_vs_vectorise: whole clustering time (vectorise, choose k by stability, final
  k-means, labels) / vectorisation (TF-IDF + LSA) alone, in the same run. Reported, no goal:
  choosing k fits k-means 2 x 4 times per candidate k, so the ratio is large while the absolute
  time stays a few seconds.

Run: python -m benchmarks.bench_axial
"""

from __future__ import annotations

import json
import time

from sklearn.metrics import adjusted_rand_score

from evalboard.axial.clustering import cluster_offline, lsa, vectorise
from evalboard.demo_axial import synthetic_notes

N_NOTES = 5000
SEED = 7


def run() -> list[dict]:
    notes = synthetic_notes(N_NOTES, seed=SEED)
    texts = [n.text for n in notes]
    truth = [n.mode for n in notes]
    start = time.perf_counter()
    matrix, _ = vectorise(texts)
    lsa(matrix)
    vectorise_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = cluster_offline(texts)
    total_seconds = time.perf_counter() - start
    ari = adjusted_rand_score(truth, result.labels)
    return [
        {"bench": "cluster_ari", "value": round(ari, 3), "unit": "index", "floor": 0.5, "goal": None,
         "k": result.k, "true_k": len(set(truth)), "notes": N_NOTES},
        {"bench": "cluster_time_vs_vectorise", "value": round(total_seconds / vectorise_seconds, 1),
         "unit": "ratio", "floor": None, "goal": None, "seconds": round(total_seconds, 2),
         "vectorise_seconds": round(vectorise_seconds, 3)},
    ]


def main() -> None:
    for figure in run():
        print(json.dumps(figure))


if __name__ == "__main__":
    main()
