"""CPU training-step throughput of the recipe's options against fp32 ResNet-18, in the same run.

Compute: backbone (ResNet-18, cnn9, cnn9-small) × precision (fp32, bf16 autocast) × memory layout
(contiguous, channels_last), forward + AdaTriplet-AM loss + backward + Adam on one batch of
P × m grey images. Every option is timed in interleaved rounds (one step each per round, the
median kept), so load from other processes hits all options alike; the ratio to fp32 ResNet-18
is the figure to compare across runs. Data: producing one augmented training batch from uint8
images in memory (radsearch.data.batches) against the per-image torchvision pipeline on the same
images (radsearch.data.build_transforms, as a DataLoader with 0 workers would).

    python -m benchmarks.train_step [--image-size 64] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks._report import machine_line, record

OPTIONS = [("resnet18", "fp32", False), ("resnet18", "bf16", False), ("resnet18", "bf16", True),
           ("cnn9", "fp32", False), ("cnn9", "fp32", True), ("cnn9", "bf16", False),
           ("cnn9", "bf16", True), ("cnn9-small", "bf16", False)]


def make_step(name: str, precision: str, channels_last: bool, size: int, p: int, m: int):
    from radsearch.losses import build_method
    from radsearch.models import create_model
    from radsearch.training.engine import train_step

    torch.manual_seed(0)
    model = create_model(name, embedding_dim=128)
    images = torch.randn(p * m, 1, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(p).repeat_interleave(m)
    method = build_method("AdaTriplet-AM")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> float:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else None
        return train_step(model, method, optimizer, images, labels, autocast=autocast)

    return step


def time_interleaved(steps: dict, rounds: int) -> dict:
    times: dict = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            started = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def data_paths(size: int, resize: int, p: int, m: int, rounds: int):
    import numpy as np

    from radsearch.data import build_transforms
    from radsearch.data.batches import BatchAugment

    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (p * m, resize, resize), dtype=np.uint8))
    batched = BatchAugment(size, 0.5, 0.3, train=True)
    per_image = build_transforms("oai", train=True, image_size=size, resize=resize, mean=0.5,
                                 std=0.3)

    def one_by_one():
        return torch.stack([per_image(pixels[i][None].float() / 255) for i in range(len(pixels))])

    batched(pixels), one_by_one()   # warm-up
    return time_interleaved({"batched (in memory, uint8)": lambda: batched(pixels),
                             "per image (torchvision v2)": one_by_one}, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--subjects", type=int, default=32, help="subjects per batch (P)")
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from radsearch.training.precision import cpu_bf16_native

    size, batch = args.image_size, args.subjects * args.m
    steps = {}
    for option in OPTIONS:
        steps[option] = make_step(*option, size, args.subjects, args.m)
        steps[option]()   # warm-up (oneDNN primitive creation)
    medians = time_interleaved(steps, args.rounds)
    reference = medians[OPTIONS[0]]
    lines = [f"Forward + AdaTriplet-AM + backward + Adam, batch {batch} = {args.subjects} × "
             f"{args.m}, {size}² grey input, {args.threads} torch thread(s); median of "
             f"{args.rounds} interleaved rounds after one warm-up step each. Native bf16 "
             f"(oneDNN): {cpu_bf16_native()}. Machine: {machine_line()}.", "",
             "| backbone | precision | channels_last | s / step | images/s | × fp32 ResNet-18 |",
             "|---|---|---|---|---|---|"]
    for (name, precision, layout), seconds in medians.items():
        lines.append(f"| {name} | {precision} | {'yes' if layout else 'no'} | {seconds:.3f} | "
                     f"{batch / seconds:.0f} | {reference / seconds:.2f} |")
    data = data_paths(size, size * 9 // 8, args.subjects, args.m, args.rounds)
    per_image = data["per image (torchvision v2)"]
    lines += ["", f"Producing one augmented batch of {batch} at {size}² (noise, rotation, crop, "
              "gamma, normalisation) from images already decoded:", "",
              "| data path | ms / batch | × per-image |", "|---|---|---|"]
    for name, seconds in data.items():
        lines.append(f"| {name} | {1000 * seconds:.1f} | {per_image / seconds:.1f} |")
    lines += ["", "No GPU figures: no GPU was lent to this task (the AMP / channels_last / NCCL "
              "GPU paths have not been run)."]
    body = "\n".join(lines)
    print(body)
    record("train_step", "Training step throughput (CPU): backbones, precision, layout, data path",
           f"python -m benchmarks.train_step --image-size {size} --threads {args.threads}", body)


if __name__ == "__main__":
    main()
