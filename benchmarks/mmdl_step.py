"""MMDL training step on CPU: images + reports vs images only, and report-encoder throughput.

Times are CPU seconds of this single-threaded process (``time.process_time``), so that other jobs
on a shared machine do not inflate them. Ours: one optimiser step of the MMDL objective with the report branch (TF-IDF → MLP, and a
2-layer scratch BERT). Reference, measured in the same run: the same step image-only (the report
branch's extra cost is the ratio). Encoder throughput is reports/s for a forward pass, with a
frozen encoder's embeddings cached (a lookup) as the comparison for frozen checkpoints.

Run: ``python -m benchmarks.mmdl_step [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks._report import machine_line, record
from radsearch.losses.mmdl import MMDLLoss, MMDLWeights
from radsearch.models.mmdl import MMDLModel
from radsearch.models.text import build_text_encoder
from radsearch.synth.chest import draw_from_labels
from radsearch.synth.reports import FINDINGS


def _reports(n: int, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    rng = np.random.default_rng(seed)
    texts, targets = [], torch.zeros(n, len(FINDINGS))
    for i in range(n):
        labels = [FINDINGS[j] for j in rng.choice(np.arange(1, 14), size=int(rng.integers(0, 3)),
                                                  replace=False)] or ["No Finding"]
        texts.append(draw_from_labels(labels, seed=i, image_size=32)[1])
        targets[i, [FINDINGS.index(x) for x in labels]] = 1
    return texts, targets


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()  # CPU time of this 1-thread process: robust to a busy machine
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    repeats = 2 if args.quick else 5
    b = args.batch
    texts, targets = _reports(max(b, 64))
    texts, targets = texts[:b], targets[:b]
    images = torch.randn(b, 1, args.image_size, args.image_size)
    weights = torch.ones_like(targets)
    criterion = MMDLLoss(MMDLWeights())

    def step_fn(encoder):
        model = MMDLModel("resnet18", dim=512, hidden=512, text_encoder=encoder)
        optim = torch.optim.Adam(model.parameters(), lr=1e-4)
        has = torch.ones(b, dtype=torch.bool)

        def step():
            u, lu = model.forward_image(images)
            v = lv = None
            if encoder is not None:
                v, lv = model.forward_text(texts)
            loss = criterion(u, lu, targets, weights, v, lv, has if encoder else None)["loss"]
            optim.zero_grad()
            loss.backward()
            optim.step()
        return step, model

    rows = []
    ref_step, _ = step_fn(None)
    ref = _time(ref_step, repeats)
    rows.append(("image only (reference)", ref))
    encoders = {"tfidf": build_text_encoder("tfidf", texts)}
    try:
        encoders["bert-scratch (2 layers, 128-d)"] = build_text_encoder(
            "bert-scratch", texts, vocab_size=1000, hidden=128, layers=2, heads=2, max_length=96)
    except Exception as exc:  # the optional 'text' extra is missing
        print(f"bert-scratch skipped: {exc}")
    for name, enc in encoders.items():
        step, _ = step_fn(enc)
        rows.append((f"images + reports, {name}", _time(step, repeats)))

    lines = [f"Machine: {machine_line()}. Batch {b}, {args.image_size}×{args.image_size} images, "
             "ResNet-18 image branch, d = 512.", "",
             "| training step | CPU s/step | images/CPU-s | × image-only |", "|---|---|---|---|"]
    for name, t in rows:
        lines.append(f"| {name} | {t:.3f} | {b / t:.0f} | {t / ref:.2f} |")
    lines += ["", "| report encoder forward | reports/CPU-s | × cached lookup |", "|---|---|---|"]
    cache = {t: torch.randn(512) for t in texts}
    lookup = _time(lambda: torch.stack([cache[t] for t in texts]), repeats)
    for name, enc in encoders.items():
        enc.eval()
        with torch.no_grad():
            t = _time(lambda: enc(texts), repeats)
        lines.append(f"| {name} | {b / t:.0f} | {t / lookup:.0f} |")
    lines.append(f"| cached embeddings (dict lookup + stack, reference) | {b / lookup:.0f} | 1 |")
    body = "\n".join(lines)
    print(body)
    record("mmdl_step", "MMDL training step and report encoders (benchmarks/mmdl_step.py)",
           "python -m benchmarks.mmdl_step" + (" --quick" if args.quick else ""), body)


if __name__ == "__main__":
    main()
