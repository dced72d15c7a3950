"""Time the default synthetic knee cohort (300 subjects x 7 visits x 2 knees at 256², PNGs + manifest)
next to a reference measured in the same run: PIL writing the same number of 256² PNGs of
random pixels (same zlib level, one process), i.e. the cost of the files alone. The issue's target
is <= 60 s for the cohort on 2 cores.

    python -m benchmarks.synth_cohort [--subjects 300] [--chest]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._report import machine_line, record
from radsearch.synth import generate_chest, generate_knee
from radsearch.synth.common import default_workers


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds summed over processes)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def reference_png_writes(n_images: int, size: int, folder: Path) -> None:
    """Write ``n_images`` random uint8 PNGs with PIL (compress_level=1), one process."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, size, size), dtype=np.uint8)
    for i in range(n_images):
        Image.fromarray(pixels[i % 8], mode="L").save(folder / f"{i}.png", compress_level=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--chest", action="store_true", help="also time a chest cohort")
    args = parser.parse_args(argv)

    lines = [f"Machine: {machine_line()}; {default_workers(10**6)} worker process(es) "
             f"(one per available core), os.cpu_count() = {os.cpu_count()}.", ""]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir = Path(tmp) / "ref"
        ref_dir.mkdir()
        kinds = [("knee", generate_knee)] + ([("chest", generate_chest)] if args.chest else [])
        for kind, generate in kinds:
            synth, wall, cpu = timed(generate, args.subjects, seed=0, image_size=args.image_size,
                                     out_dir=Path(tmp) / kind)
            n = len(synth.cohort)
            _, ref_wall, ref_cpu = timed(reference_png_writes, n, args.image_size, ref_dir)
            rows.append((kind, args.subjects, n, wall, cpu, ref_wall, ref_cpu))

    lines += ["| cohort | subjects | images | ours: wall s | ours: CPU s (all processes) | "
              "reference: wall s | reference: CPU s | ratio of CPU s ours / reference |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, subjects, n, wall, cpu, ref_wall, ref_cpu in rows:
        lines.append(f"| {kind} {args.image_size}² | {subjects} | {n} | {wall:.1f} | {cpu:.1f} | "
                     f"{ref_wall:.1f} | {ref_cpu:.1f} | {cpu / ref_cpu:.2f} |")
    lines += ["", "Target (issue 4): the default 300-subject knee cohort in <= 60 s on 2 cores. "
              "Ours includes drawing, rendering, PNG encoding, atomic writes and the manifest; "
              "the reference is PIL encoding random-pixel PNGs of the same size, one process. "
              "Wall time depends on what else runs on the machine; CPU seconds / 2 is the wall "
              "time on two otherwise idle cores."]
    body = "\n".join(lines)
    print(body)
    command = "python -m benchmarks.synth_cohort" + (" " + " ".join(argv or sys.argv[1:])
                                                     if (argv or sys.argv[1:]) else "")
    record("synth_cohort", "Synthetic cohort generation", command.strip(), body)


if __name__ == "__main__":
    main()
