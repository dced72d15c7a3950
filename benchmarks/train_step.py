"""Training-step throughput on CPU with the real data pipeline, and the share spent waiting for data.

Pipeline: knee PNGs on disk → CohortDataset (decode) → train transforms → MPerSubjectBatchSampler →
DataLoader(workers) → ResNet-18 step with AdaTriplet-AM. Reference in the same run: the same step on
batches already in memory (compute only). Data-wait share = time blocked on the loader / step time.

    python -m benchmarks.train_step [--image-size 128] [--steps 6] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks._report import machine_line, record


def build(image_size: int, embedding_dim: int = 128):
    from radsearch.losses import build_method
    from radsearch.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", embedding_dim=embedding_dim, weights="none")
    method = build_method("AdaTriplet-AM", preset="oai", embedding_dim=embedding_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    return model, method, optimizer


def step(model, method, optimizer, images, labels) -> None:
    from radsearch.training.engine import train_step

    train_step(model, method, optimizer, images, labels)


def run_pipeline(cohort, image_size: int, workers: int, steps: int, p: int, m: int):
    from radsearch.data import CohortDataset, MPerSubjectBatchSampler, build_transforms, seed_worker

    model, method, optimizer = build(image_size)
    dataset = CohortDataset(cohort, transform=build_transforms("oai", train=True,
                                                                image_size=image_size,
                                                                resize=image_size * 280 // 256),
                            mirror_right=True)
    sampler = MPerSubjectBatchSampler(cohort.subject_codes(), m=m, subjects_per_batch=p, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                        worker_init_fn=seed_worker if workers else None,
                        prefetch_factor=4 if workers else None)
    iterator = iter(loader)
    images, labels, _ = next(iterator)       # warm-up: worker start, first batch, allocator
    step(model, method, optimizer, images, labels)
    wait = compute = 0.0
    n_images = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        images, labels, _ = next(iterator)
        t1 = time.perf_counter()
        step(model, method, optimizer, images, labels)
        t2 = time.perf_counter()
        wait += t1 - t0
        compute += t2 - t1
        n_images += len(labels)
    del iterator
    return n_images / (wait + compute), wait / (wait + compute), images, labels


def run_compute_only(images, labels, image_size: int, steps: int) -> float:
    model, method, optimizer = build(image_size)
    step(model, method, optimizer, images, labels)
    started = time.perf_counter()
    for _ in range(steps):
        step(model, method, optimizer, images, labels)
    return steps * len(labels) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--subjects", type=int, default=8, help="subjects per batch (P)")
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from radsearch.cohort import Cohort
    from radsearch.synth import generate_knee

    with tempfile.TemporaryDirectory() as tmp:
        generate_knee(40, seed=0, image_size=args.image_size * 300 // 256, out_dir=tmp)
        cohort = Cohort.load(Path(tmp) / "manifest.csv").split("train")
        rows = []
        for workers in args.workers:
            ips, wait, images, labels = run_pipeline(cohort, args.image_size, workers,
                                                     args.steps, args.subjects, args.m)
            reference = run_compute_only(images, labels, args.image_size, args.steps)
            rows.append((workers, ips, reference, wait))
    batch = args.subjects * args.m
    lines = [f"ResNet-18 + AdaTriplet-AM training step, batch {batch} = {args.subjects} × {args.m}, "
             f"{args.image_size}² grey input, PNG decode + train augmentations, CPU, "
             f"{args.threads} torch thread(s) in the main process; {args.steps} timed steps "
             f"after one warm-up. Machine: {machine_line()}.", "",
             "| loader workers | images/s (pipeline) | images/s (compute only, reference) | ratio "
             "| data-wait share |", "|---|---|---|---|---|"]
    for workers, ips, reference, wait in rows:
        lines.append(f"| {workers} | {ips:.1f} | {reference:.1f} | {ips / reference:.2f} | "
                     f"{100 * wait:.1f}% |")
    lines += ["", "Target: data-wait share < 10% with 2 workers. No GPU figures: none was "
              "available for this run."]
    body = "\n".join(lines)
    print(body)
    record("train_step", "Training step throughput (CPU)",
           "python -m benchmarks.train_step", body)


if __name__ == "__main__":
    main()
