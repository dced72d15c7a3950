"""Diagnostic evaluation at MIMIC-CXR scale: streamed engine vs the row-sorting reference.

MIMIC-CXR's test split holds about 3.3k frontal images against a ~220k-image training database.
The cohort here has those sizes, the 14 CheXpert labels drawn with MIMIC-like prevalences
(No Finding when none) and D = 128 embeddings with label structure. ``evaluate_diagnostic``
computes every metric (mAP, mAP@R, R-precision, MRR, CMC, P@k and mAP@k for k = 1/5/10/20,
nDCG@10 with Jaccard gain, per-class rows with class-conditional relevance).

* The streamed engine (default) runs the full shape once.
* The reference (``engine="sort"``) runs a sample of the queries and a few queries against the
  whole database; with the database fixed, time = fixed cost + per-query cost, so the line
  through both gives its full-scale time (``--full-reference`` runs it at full scale instead).
* Both engines run the sample, and every group mean and per-query value is compared.
* The similarity product alone (the same float32 chunks) is a floor no engine can beat.

Wall time depends on what else the shared machine runs; CPU time (user + system of this
process) divided by the threads is the wall time the run would take with those cores to itself.

    python -m benchmarks.eval_diagnostic                   # records docs/benchmarks.md
    python -m benchmarks.eval_diagnostic --full-reference  # no projection (slow)
    python -m benchmarks.eval_diagnostic --sorts           # ways to rank one 220k row
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
from radsearch.evaluation.ranking import chunk_rows, prepare, similarities

PREVALENCE = {"Support Devices": .29, "Pleural Effusion": .24, "Lung Opacity": .22,
              "Atelectasis": .20, "Cardiomegaly": .20, "Edema": .12, "Pneumonia": .07,
              "Consolidation": .05, "Pneumothorax": .05, "Enlarged Cardiomediastinum": .03,
              "Lung Lesion": .03, "Fracture": .02, "Pleural Other": .01}
DIM = 128
FEW = 20  # queries of the small reference run that measures its fixed cost
TARGET_S = 30.0  # issue 11 item 8: the full shape within 30 s on 2 cores


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


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def differences(new, ref) -> tuple[float, int, int]:
    """Largest |difference| over every group mean and per-query value, how many values differ
    (NaN = NaN) and how many were compared."""
    pairs = [(new.groups[g][k], v) for g, values in ref.groups.items() for k, v in values.items()]
    pairs += [(a, b) for key, value in ref.per_query.values.items()
              for a, b in zip(new.per_query.values[key], value)]
    worst, differ = 0.0, 0
    for a, b in pairs:
        if np.isnan(a) and np.isnan(b):
            continue
        if a != b:
            differ += 1
            worst = max(worst, abs(a - b))
    return worst, differ, len(pairs)


def sort_primitives(n: int, rows: int = 16) -> str:
    """CPU milliseconds per row of n float32 similarities for the ways to rank it (one thread)."""
    from radsearch.evaluation.streaming import ordered_keys, radix_rank

    rng = np.random.default_rng(1)
    scores = (0.1 + 0.15 * rng.standard_normal((rows, n))).astype(np.float32)
    keys = ordered_keys(scores)
    packed = (keys.astype(np.int64) << 32) | np.arange(n)
    codes, positions = rng.integers(0, 3000, n).astype(np.uint64), np.arange(n)
    low = (keys & np.uint32(0xFFFF)).astype(np.uint16)
    ways = [("`np.sort` float32 (values only)", lambda i: np.sort(scores[i])),
            ("`np.argsort` float32", lambda i: np.argsort(scores[i])),
            ("`np.argsort(kind=\"stable\")` float32", lambda i: np.argsort(scores[i],
                                                                       kind="stable")),
            ("`np.argsort` float64", lambda i: np.argsort(scores[i].astype(np.float64))),
            ("`np.sort` int64 (key · 2³² + index, the previous engine)",
             lambda i: np.sort(packed[i])),
            ("`np.argsort(kind=\"stable\")` uint16 (one radix pass)",
             lambda i: np.argsort(low[i], kind="stable")),
            ("`radix_rank`: two uint16 passes with label-set codes and tie blocks",
             lambda i: radix_rank(keys[i], codes, positions))]
    lines = [f"One thread, {n:,} float32 similarities per row, best of 3 over {rows} rows "
             "(CPU time of this thread).", "", "| ranking one row | ms per row |", "|---|---|"]
    for name, way in ways:
        best = np.inf
        for _ in range(3):
            start = time.thread_time()
            for i in range(rows):
                way(i)
            best = min(best, (time.thread_time() - start) / rows)
        lines.append(f"| {name} | {best * 1e3:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=int, default=220_000)
    parser.add_argument("--queries", type=int, default=3_300, help="queries at full scale")
    parser.add_argument("--sample", type=int, default=330,
                        help="queries the reference runs (and both engines compare on)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full-reference", action="store_true",
                        help="run the reference at full scale too instead of projecting it")
    parser.add_argument("--sorts", action="store_true",
                        help="only time the ways to rank one database-sized row")
    parser.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sorts:
        body = f"Machine: {machine_line()}; load average {os.getloadavg()[0]:.1f}.\n\n" + \
            sort_primitives(args.database)
        print(body)
        if not args.no_record:
            print("\nrecorded in", record("eval_diagnostic_sorts",
                                          "Diagnostic evaluation: ranking one row",
                                          "python -m benchmarks.eval_diagnostic --sorts", body))
        return
    load_before = os.getloadavg()[0]

    cohort, emb = mimic_like(args.database, args.queries)
    split = cohort.table["split"].to_numpy()
    db, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    warm = np.r_[db[:5000], test[:20]]
    for engine in ("stream", "sort"):  # warm-up: start-up costs excluded
        evaluate_diagnostic(emb[warm], cohort.subset(warm), engine=engine)

    def run(rows: np.ndarray, engine: str) -> tuple[float, float, object]:
        sub, vectors = cohort.subset(rows), emb[rows]
        return timed(lambda: evaluate_diagnostic(vectors, sub, engine=engine))

    full_rows = np.r_[db, test]
    sample_rows, few_rows = np.r_[db, test[:args.sample]], np.r_[db, test[:FEW]]
    stream_wall, stream_cpu, full = run(full_rows, "stream")
    fixed_cpu = run(few_rows, "stream")[1]  # label tables, normalisation: mostly one thread
    sample_stream = run(sample_rows, "stream")[2]
    few_wall, few_cpu, _ = run(few_rows, "sort")
    sample_wall, sample_cpu, expected = run(sample_rows, "sort")

    def project(small: float, sample: float) -> float:
        per_query = max(sample - small, 0.0) / (args.sample - FEW)
        return sample + per_query * (args.queries - args.sample)

    if args.full_reference:
        ref_wall, ref_cpu, full_ref = run(full_rows, "sort")
        ref_note = "measured at full scale"
        worst, differ, compared = differences(full, full_ref)
        compared_on = f"all {args.queries:,} queries"
    else:
        ref_wall, ref_cpu = project(few_wall, sample_wall), project(few_cpu, sample_cpu)
        ref_note = (f"projected from {args.sample:,} queries ({sample_wall:.1f} s wall, "
                    f"{sample_cpu:.1f} s CPU) and {FEW} ({few_wall:.1f} s, {few_cpu:.1f} s)")
        worst, differ, compared = differences(sample_stream, expected)
        compared_on = f"the {args.sample:,} sampled queries"
    # the full run's first queries are the sample's: chunking must not change a value
    consistent = all(np.array_equal(value[:args.sample], sample_stream.per_query.values[key],
                                    equal_nan=True) for key, value in full.per_query.values.items())

    query_np = prepare(emb[test]).numpy()
    gallery_np = prepare(emb[db]).numpy()
    rows = chunk_rows(len(db), 8, 256)

    def product() -> None:
        for start in range(0, len(test), rows):
            similarities(query_np, gallery_np, start, min(len(test), start + rows))

    product_wall, product_cpu, _ = timed(product)
    # wall on cores of our own: the fixed part on one thread, the per-query part on all
    on_idle = fixed_cpu + max(stream_cpu - fixed_cpu, 0.0) / args.threads

    def row(name: str, wall: float, cpu: float, note: str = "") -> str:
        return (f"| {name} | {wall:.1f} | {cpu:.1f} | {cpu / args.threads:.1f} | "
                f"{cpu / stream_cpu:.2f}× | {note} |")

    met = "met" if on_idle <= TARGET_S else "missed"
    wall_met = "met" if stream_wall <= TARGET_S else "missed"
    lines = [f"Machine: {machine_line()}; {args.threads} thread(s); load average "
             f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (a shared "
             "2-core machine: wall times stretch with the load, CPU times much less).", "",
             f"Full shape: {args.queries:,} queries × {args.database:,} database images, "
             f"{len(PREVALENCE) + 1} labels, D = {DIM}; every metric of `evaluate_diagnostic` "
             "(mAP, mAP@R, R-precision, MRR, CMC@1/5, P@k and mAP@k for k = 1/5/10/20, "
             "nDCG@10, 14 per-class rows).", "",
             "| full shape | wall (s) | CPU (s) | CPU / threads (s) | CPU vs streamed | |",
             "|---|---|---|---|---|---|",
             row("`evaluate_diagnostic` streamed (default engine)", stream_wall, stream_cpu,
                 "measured"),
             row("`evaluate_diagnostic(engine=\"sort\")`, the row-sorting reference", ref_wall,
                 ref_cpu, ref_note),
             row("similarity product Q·Gᵀ alone (numpy float32, same chunks)", product_wall,
                 product_cpu, "a floor for any engine"), "",
             f"Target (issue 11 item 8: ≤ {TARGET_S:.0f} s at MIMIC scale on 2 cores): "
             f"wall time of this run {stream_wall:.1f} s at load {load_before:.1f}–"
             f"{os.getloadavg()[0]:.1f} — **{wall_met}** as wall time on this shared machine. "
             f"By CPU time **{met}**: {stream_cpu:.1f} CPU-seconds, of which {fixed_cpu:.1f} s "
             f"fixed cost on one thread (the {FEW}-query run) and the rest shared by "
             f"{args.threads} threads, i.e. about {on_idle:.1f} s on {args.threads} cores of "
             "our own (an estimate from CPU time, not a wall time observed on idle cores).", "",
             f"Engines compared on {compared_on}: {differ} of {compared:,} values differ "
             f"(largest difference {worst:.1e}); the full run reproduces the sample run's "
             f"per-query values: {'yes' if consistent else 'NO'}. All queries: mAP "
             f"{full.groups['all']['mAP']:.4f}, mAP@10 {full.groups['all']['mAP@10']:.4f}, "
             f"nDCG@10 {full.groups['all']['nDCG@10']:.4f}."]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        command = "python -m benchmarks.eval_diagnostic" + (" --full-reference"
                                                            if args.full_reference else "")
        path = record("eval_diagnostic", "Diagnostic evaluation (MIMIC-CXR scale)", command,
                      body)
        print(f"\nrecorded in {path}")


if __name__ == "__main__":
    main()
