"""Diagnostic evaluation at MIMIC-CXR scale: streamed engine vs the row-sorting reference.

MIMIC-CXR's test split holds about 3.3k frontal images against a ~220k-image training database.
The cohort here has those sizes, the 14 CheXpert labels drawn with MIMIC-like prevalences
(No Finding when none) and D = 128 embeddings with label structure. Both engines of
``evaluate_diagnostic`` (every metric: mAP, mAP@k, P@k, MRR, nDCG@10, per-class rows) run on the
same queries in one run. With the database fixed, time = fixed cost (label parsing, label-set
tables) + per-query cost; each engine is timed on a few and on a sample of queries, and the
full-scale time is that line at the full query count. The engines' results are compared on the
sampled queries.

    python -m benchmarks.eval_diagnostic                       # records docs/benchmarks.md
    python -m benchmarks.eval_diagnostic --queries 3300 --timed 3300   # no extrapolation
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from benchmarks._report import machine_line, record
from radsearch.cohort import Cohort
from radsearch.evaluation import evaluate_diagnostic

PREVALENCE = {"Support Devices": .29, "Pleural Effusion": .24, "Lung Opacity": .22,
              "Atelectasis": .20, "Cardiomegaly": .20, "Edema": .12, "Pneumonia": .07,
              "Consolidation": .05, "Pneumothorax": .05, "Enlarged Cardiomediastinum": .03,
              "Lung Lesion": .03, "Fracture": .02, "Pleural Other": .01}
DIM = 128
FEW = 20  # queries of the small run that measures the fixed cost


def mimic_like(n_database: int, n_queries: int, seed: int = 0) -> tuple[Cohort, np.ndarray]:
    """Database ("train") and query ("test") rows with labels and label-structured embeddings."""
    rng = np.random.default_rng(seed)
    names = np.array(list(PREVALENCE))
    n = n_database + n_queries
    hits = rng.random((n, len(names))) < np.array(list(PREVALENCE.values()))
    labels = ["|".join(names[h]) or "No Finding" for h in hits]
    onehot = np.concatenate([hits, ~hits.any(1, keepdims=True)], 1).astype(np.float32)
    centres = rng.standard_normal((onehot.shape[1], DIM)).astype(np.float32)
    emb = onehot @ centres + 2.0 * rng.standard_normal((n, DIM)).astype(np.float32)
    table = pd.DataFrame({"image": [f"{i:07d}.jpg" for i in range(n)],
                          "subject": [f"{10_000_000 + i}" for i in range(n)],
                          "time": np.zeros(n), "labels": labels,
                          "split": ["train"] * n_database + ["test"] * n_queries})
    return Cohort(table), emb


def seconds_of(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=int, default=220_000)
    parser.add_argument("--queries", type=int, default=3_300, help="queries at full scale")
    parser.add_argument("--timed", type=int, default=330, help="queries actually timed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cohort, emb = mimic_like(args.database, args.timed)
    db = np.flatnonzero(cohort.table["split"] == "train")
    warm = np.r_[db[:5000], np.flatnonzero(cohort.table["split"] == "test")[:20]]
    evaluate_diagnostic(emb[warm], cohort.subset(warm))  # warm-up: start-up costs excluded
    evaluate_diagnostic(emb[warm], cohort.subset(warm), engine="sort")

    test = np.flatnonzero(cohort.table["split"] == "test")
    few = np.r_[db, test[:FEW]]
    cohort_few, emb_few = cohort.subset(few), emb[few]

    def projected(engine: str) -> tuple[float, float, object]:
        """(seconds on the sample, projected seconds at full scale, result on the sample)."""
        small, _ = seconds_of(lambda: evaluate_diagnostic(emb_few, cohort_few, engine=engine))
        sample, result = seconds_of(lambda: evaluate_diagnostic(emb, cohort, engine=engine))
        per_query = max(sample - small, 0.0) / (args.timed - FEW)
        return sample, sample + per_query * (args.queries - args.timed), result

    ours, ours_full, result = projected("stream")
    reference, reference_full, expected = projected("sort")
    product, _ = seconds_of(lambda: emb[test] @ emb[db].T)
    worst = max(abs(result.groups[g][k] - v) for g, values in expected.groups.items()
                for k, v in values.items() if not (np.isnan(v) and np.isnan(result.groups[g][k])))

    def row(name: str, seconds: float, full: float) -> str:
        return f"| {name} | {seconds:.2f} | {full:.1f} | {full / ours_full:.2f}× |"

    lines = [f"Machine: {machine_line()}; {args.threads} thread(s); load average "
             f"{os.getloadavg()[0]:.1f} at the end (a shared 2-core machine: compare ratios).", "",
             f"Database {args.database:,} images, {len(PREVALENCE) + 1} labels, D = {DIM}; "
             f"{args.timed:,} queries timed (and {FEW}, for the fixed cost); full scale = "
             f"{args.queries:,} queries.", "",
             "| | time (s), timed queries | projected full scale (s) | vs streamed |",
             "|---|---|---|---|",
             row("`evaluate_diagnostic` streamed (default engine)", ours, ours_full),
             row("`evaluate_diagnostic(engine=\"sort\")`, the row-sorting reference", reference,
                 reference_full),
             row("similarity product Q·Gᵀ alone (numpy float32)", product,
                 product * args.queries / args.timed), "",
             f"Largest difference between the engines over every group and metric: {worst:.1e}. "
             f"All queries: mAP {result.groups['all']['mAP']:.4f}, mAP@10 "
             f"{result.groups['all']['mAP@10']:.4f}, nDCG@10 {result.groups['all']['nDCG@10']:.4f}."]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        path = record("eval_diagnostic", "Diagnostic evaluation (MIMIC-CXR scale)",
                      "python -m benchmarks.eval_diagnostic", body)
        print(f"\nrecorded in {path}")


if __name__ == "__main__":
    main()
