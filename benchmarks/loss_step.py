"""AdaTriplet-AM loss step (mining + forward + backward + AutoMargin statistics) on one CPU thread.

Ours: ``build_method("AdaTriplet-AM")`` — one (positive pairs × B) Δ matrix per batch.
Reference, measured in the same run: the same computation written the way research code usually
is — triplet indices from pytorch-metric-learning's ``get_all_triplets_indices`` (|T| index
triplets) and the unique negative pairs de-duplicated through a set of Python tuples.

Run: ``python -m benchmarks.loss_step [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from benchmarks._report import machine_line, record
from radsearch.losses import build_method

EMBEDDING_DIM = 128
IMAGES_PER_SUBJECT = 4


def straightforward_step(embeddings: torch.Tensor, labels: torch.Tensor, epsilon: float,
                         beta: float, sums: list[float]) -> torch.Tensor:
    """AdaTriplet reference form + AutoMargin sums, as typically written in research code."""
    x = F.normalize(embeddings, dim=1)
    sim = x @ x.T
    a, p, n = lmu.get_all_triplets_indices(labels)
    delta = sim[a, p] - sim[a, n]
    pairs = set()
    for i, j in zip(a.tolist(), n.tolist()):
        pairs.add((min(i, j), max(i, j)))
    rows, cols = zip(*sorted(pairs))
    neg_sims = sim[torch.tensor(rows), torch.tensor(cols)]
    with torch.no_grad():
        sums[0] += float(delta.sum())
        sums[1] += delta.numel()
        sums[2] += float(neg_sims.sum())
        sums[3] += neg_sims.numel()
    mined = (delta > 0) & (delta <= epsilon)
    hinge = epsilon - delta[mined]
    hinge = hinge[hinge > 0]
    trip = hinge.mean() if hinge.numel() else 0 * sim.sum()
    active = neg_sims[neg_sims >= beta] - beta
    neg = active.mean() if active.numel() else 0 * sim.sum()
    loss = trip + neg
    loss.backward()
    return loss


def ours_step(method, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    loss = method(embeddings, labels)
    loss.backward()
    return loss


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run(batch_sizes: list[int], budget_s: float) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    for batch in batch_sizes:
        torch.manual_seed(batch)
        labels = torch.arange(batch // IMAGES_PER_SUBJECT).repeat_interleave(IMAGES_PER_SUBJECT)
        # identity structure: each subject's images cluster around a centre
        centres = F.normalize(torch.randn(batch // IMAGES_PER_SUBJECT, EMBEDDING_DIM), dim=1)
        base = centres[labels] + 0.1 * torch.randn(batch, EMBEDDING_DIM)
        method = build_method("AdaTriplet-AM", preset="oai")
        emb_ours = base.clone().requires_grad_(True)
        emb_ref = base.clone().requires_grad_(True)

        # the two must compute the same loss and gradient before they are timed
        loss_ours = ours_step(method, emb_ours, labels)
        loss_ref = straightforward_step(emb_ref, labels, method.epsilon, method.beta, [0.0] * 4)
        torch.testing.assert_close(loss_ours, loss_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(emb_ours.grad, emb_ref.grad, rtol=1e-4, atol=1e-6)

        def ours():
            emb_ours.grad = None
            ours_step(method, emb_ours, labels)

        def ref():
            emb_ref.grad = None
            straightforward_step(emb_ref, labels, 0.25, 0.0, [0.0] * 4)

        probe = time.perf_counter()
        ref()
        ref_single = time.perf_counter() - probe
        ref_repeats = max(3, min(50, int(budget_s / max(ref_single, 1e-4))))
        ours_ms = median_ms(ours, repeats=200)
        ref_ms = median_ms(ref, repeats=ref_repeats, warmup=1)
        n_pos = batch * (IMAGES_PER_SUBJECT - 1)
        n_triplets = n_pos * (batch - IMAGES_PER_SUBJECT)
        rows.append({
            "batch": batch, "ours_ms": ours_ms, "ref_ms": ref_ms, "ratio": ref_ms / ours_ms,
            "ours_elems": n_pos * batch, "ref_elems": n_triplets * 4, "cube_elems": batch ** 3,
            "ref_repeats": ref_repeats,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| batch (subjects × 4) | ours median ms | straightforward median ms | speed-up | "
        "ours largest intermediate (P·B) | straightforward (triplet indices + Δ) | B³ cube |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} ({r['batch'] // 4} × 4) | {r['ours_ms']:.2f} | {r['ref_ms']:.1f} | "
            f"{r['ratio']:.0f}× | {r['ours_elems']:,} | {r['ref_elems']:,} | "
            f"{r['cube_elems']:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 128 only, short budget")
    parser.add_argument("--no-record", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    sizes = [128] if args.quick else [128, 256, 512]
    rows = run(sizes, budget_s=2.0 if args.quick else 8.0)
    table = format_table(rows)
    body = (f"Machine: {machine_line()}. D = {EMBEDDING_DIM}, 4 images per subject, "
            "embeddings with identity structure; ours and the straightforward version are first "
            "checked to give the same loss and gradient. Times are medians of forward + backward "
            "including the AutoMargin statistics (ours: 200 repeats; straightforward: as many as "
            "fit in ~8 s). Memory columns count tensor elements of the largest per-batch "
            "intermediate (analytic, from the shapes).\n\n" + table)
    print(table)
    if not args.no_record:
        record("loss_step", "AdaTriplet-AM loss step (benchmarks/loss_step.py)",
               "python -m benchmarks.loss_step", body)


if __name__ == "__main__":
    main()
