"""Data pipeline throughput: PNG decode + training transforms, images/s with 0, 1 and 2 workers.

Ours: ``CohortDataset`` (read_image → [1, H, W] tensor) + ``build_transforms("oai", train=True)``
(resize 280 → noise blend → rotation → random crop 256 → gamma → normalise) fed through a
``DataLoader`` with ``MPerSubjectBatchSampler`` (8 subjects × 4 = 32 images per batch), on N
synthetic 256² 8-bit PNGs written to a temporary folder. Reference, measured in the same run: the
model step the pipeline has to keep up with — torchvision ResNet-18 (1 input channel) forward +
backward + SGD step on the same batch of 32 × 256² images. The ratio pipeline / model images/s says
how many times faster the loader produces images than the model consumes them (> 1: not the
bottleneck). A second table shows the on-disk cache on 1024² PNGs (decode + resize vs cached).

Run: ``python -m benchmarks.data_pipeline [--images 512] [--quick] [--model-device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks._report import machine_line, record
from radsearch.cohort import Cohort
from radsearch.data import (CohortDataset, ImageCache, MPerSubjectBatchSampler, build_transforms,
                            loader_generator, seed_worker)
from radsearch.images import read_image

IMAGES_PER_SUBJECT = 4
SUBJECTS_PER_BATCH = 8  # batch 32
TARGET = 400.0  # images/s on 2 cores (issue 4)
CACHED = "2, cached 280² copies"


def write_pngs(folder: Path, n: int, size: int, seed: int = 0) -> Cohort:
    """n smooth random greyscale PNGs (low-frequency noise, like soft anatomy) and their cohort."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        coarse = (rng.random((16, 16)) * 255).astype(np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        name = f"img_{i:05d}.png"
        image.save(folder / name)
        rows.append({"image": name, "subject": f"S{i // IMAGES_PER_SUBJECT:04d}",
                     "time": float(i % IMAGES_PER_SUBJECT)})
    return Cohort(pd.DataFrame(rows), root=folder)


class Rate(NamedTuple):
    """Images per wall-clock second, and per CPU-second of all processes involved (the second
    barely moves with other users' load, so it estimates what free cores would do)."""

    wall: float
    cpu: float


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes, from /proc (Linux); NaN elsewhere."""
    try:
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def loader_rate(cohort: Cohort, num_workers: int, epochs: int,
                cache_dir: Path | None = None) -> Rate:
    """Whole epochs through the DataLoader (worker start-up excluded by a warm-up).

    With ``cache_dir`` the cache is filled first, so the timed epochs read only cached images.
    """
    transform = build_transforms("oai", train=True)
    dataset = CohortDataset(cohort, transform=transform, cache_dir=cache_dir)
    if dataset.cache is not None:
        for path in cohort.image_paths():
            dataset.cache.read(path)
    sampler = MPerSubjectBatchSampler(cohort.subject_codes(), m=IMAGES_PER_SUBJECT,
                                      subjects_per_batch=SUBJECTS_PER_BATCH, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                        worker_init_fn=seed_worker, generator=loader_generator(0),
                        persistent_workers=num_workers > 0)
    iterator = iter(loader)
    for _ in range(2):  # warm-up: starts the workers
        next(iterator)
    pids = [os.getpid()] + [w.pid for w in getattr(iterator, "_workers", [])]
    cpu_start, start, images = cpu_seconds(pids), time.perf_counter(), 0
    for _ in range(epochs):
        for batch, _, _ in loader:
            images += len(batch)
    wall, cpu = time.perf_counter() - start, cpu_seconds(pids) - cpu_start
    return Rate(images / wall, images / cpu)


def one_thread(fn, *args):
    """Run fn with one intra-op thread, as DataLoader workers do (small per-image ops only lose
    from thread synchronisation, badly so on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def stage_rates(cohort: Cohort, repeats: int) -> tuple[float, float]:
    """Images per CPU-second of decoding alone and of the transforms alone, in this process."""
    paths = cohort.image_paths()[: min(len(cohort), 128)]
    start = time.process_time()
    for _ in range(repeats):
        decoded = [read_image(p) for p in paths]
    decode = repeats * len(paths) / (time.process_time() - start)
    transform = build_transforms("oai", train=True)
    tensors = [torch.from_numpy(d)[None] for d in decoded]
    start = time.process_time()
    for _ in range(repeats):
        for t in tensors:
            transform(t)
    return decode, repeats * len(tensors) / (time.process_time() - start)


def model_rate(device: str, repeats: int) -> Rate:
    """Throughput of a ResNet-18 (1 channel) forward + backward + SGD step on 32 × 256² images."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=128)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.to(device).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    batch = torch.randn(IMAGES_PER_SUBJECT * SUBJECTS_PER_BATCH, 1, 256, 256, device=device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        model(batch).square().mean().backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    cpu = len(batch) / statistics.median(cpus) if device == "cpu" else float("nan")
    return Rate(len(batch) / statistics.median(walls), cpu)


def cache_rates(folder: Path, n: int) -> tuple[float, float]:
    """1024² PNGs: images/s of decode + resize to 280² against reading the cached 280² copy."""
    (folder / "big").mkdir()
    big = write_pngs(folder / "big", n, 1024, seed=1)
    cache = ImageCache(folder / "cache", size=280)
    paths = big.image_paths()
    start = time.perf_counter()
    for p in paths:  # miss: decode, resize, store
        cache.read(p)
    miss = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for p in paths:
        cache.read(p)
    return miss, n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per worker count")
    parser.add_argument("--model-device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke test: 128 images, 1 epoch")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    n, epochs = (128, 1) if args.quick else (args.images, args.epochs)
    repeats = 1 if args.quick else 3

    with tempfile.TemporaryDirectory(prefix="radsearch-bench-") as tmp:
        folder = Path(tmp)
        (folder / "small").mkdir()
        cohort = write_pngs(folder / "small", n, 256)
        model = model_rate(args.model_device, repeats=2 if args.quick else 4)
        decode, transform = one_thread(stage_rates, cohort, repeats)
        rows = []
        for workers in (0, 1, 2):
            rate = one_thread(loader_rate, cohort, workers, epochs)
            rows.append((workers, rate))
            print(f"workers={workers}: {rate.wall:.0f} images/s wall, {rate.cpu:.0f} per CPU-s",
                  flush=True)
        cached = one_thread(loader_rate, cohort, 2, epochs, folder / "loader-cache")
        rows.append((CACHED, cached))
        miss, hit = cache_rates(folder, 16 if args.quick else 48)

    lines = [f"Machine: {machine_line()}; {n} PNGs of 256² (8-bit), batch 32 = "
             f"{SUBJECTS_PER_BATCH} subjects × {IMAGES_PER_SUBJECT}, {epochs} timed epoch(s) "
             "after a warm-up.", "",
             f"Reference — model step (ResNet-18, 1 channel, 32 × 256², forward + backward + SGD, "
             f"{args.model_device}, {torch.get_num_threads()} thread(s)): **{model.wall:.1f} "
             f"images/s** wall, {model.cpu:.1f} images per CPU-second.",
             f"Stages alone (1 thread): decode {decode:.0f}, train transforms {transform:.0f} "
             "images per CPU-second.", "",
             "| DataLoader workers | images/s (wall) | images per CPU-second | wall ÷ model step "
             "| CPU-s ÷ model step |", "|---|---:|---:|---:|---:|"]
    for workers, rate in rows:
        lines.append(f"| {workers} | {rate.wall:.0f} | {rate.cpu:.0f} | "
                     f"{rate.wall / model.wall:.1f}× | {rate.cpu / model.cpu:.1f}× |")
    two_workers, cached = dict(rows)[2].cpu, dict(rows)[CACHED].cpu
    lines += ["", f"Estimate for two free cores (2 × images per CPU-second with 2 workers): "
              f"**{2 * two_workers:.0f} images/s** decoding PNGs, **{2 * cached:.0f} images/s** "
              f"from the cache (target {TARGET:.0f}: {2 * two_workers / TARGET:.2f}× and "
              f"{2 * cached / TARGET:.2f}×). Wall figures on this shared machine depend on the "
              f"other users' load (load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores at the end of this run).", "",
              f"Cache, 1024² 8-bit PNGs → 280²: decode + resize + store {miss:.0f} images/s, "
              f"cached read {hit:.0f} images/s ({hit / miss:.0f}× faster).", "",
              "Loader rates use 1 intra-op thread per process (PyTorch's default in workers, set "
              "here for 0 workers too: with 2 threads on a busy machine the small per-image ops "
              "slow down several-fold). The model step uses all intra-op threads."]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        command = "python -m benchmarks.data_pipeline" + (" --quick" if args.quick else "")
        record("data_pipeline", "Data pipeline: decode + transforms vs model step", command, body)


if __name__ == "__main__":
    main()
