"""``radsearch demo``: training that visibly learns, in minutes on a laptop CPU.

Synthesise a knee cohort, train AdaTriplet-AM and Triplet under the same budget with the CPU
recipe (a plain 9-layer CNN, bf16 autocast + channels_last where the CPU has bf16, uint8 images in
memory augmented per batch, 32 × 4 batches, Adam 1e-3, an epoch = 25 batches so AutoMargin
updates every 25 steps), evaluate per years apart on the test site beside chance, raw pixels and
the untrained network, and write ``<out>/report.md`` with the table and the figures (learning
curves, margins, distributions, example queries). The defaults below are ``configs/demo.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

DEMO_METHODS = ("AdaTriplet-AM", "Triplet")

DEMO_CONFIG: dict = {
    "data": {"synth": {"kind": "knee", "n_subjects": 160, "seed": 0, "image_size": 80},
             "preset": "oai", "image_size": 64, "resize": 72, "normalize": "auto",
             "in_memory": True, "workers": 0},
    "model": {"name": "cnn9", "embedding_dim": 128, "weights": "none"},
    "method": {"name": "AdaTriplet-AM"},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-4},
    "train": {"epochs": 24, "subjects_per_batch": 32, "images_per_subject": 4,
              "batches_per_epoch": 25, "seed": 0, "device": "auto", "precision": "auto",
              "threads": 2, "channels_last": False},
    "val": {"every": 1, "metric": "mAP", "batch_size": 256},
    "run": {"out_dir": "demo/runs"},
}


def demo_config(out: str | Path = "demo", config: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()):
    """The demo's Config: the embedded defaults (or ``config``), with runs under ``out``."""
    from radsearch.training.config import load_config

    out = Path(out)
    cfg = load_config(config, overrides, base=None if config else DEMO_CONFIG)
    # everything the demo writes lives under `out`
    cfg.run.out_dir = str(out / "runs")
    if cfg.data.synth is not None and cfg.data.synth.out_dir is None:
        cfg.data.synth.out_dir = str(out / "cohort")
    return cfg


def run_demo(out: str | Path = "demo", config: str | Path | None = None,
             overrides: list[str] | tuple[str, ...] = (), console: Console | None = None,
             methods: tuple[str, ...] = DEMO_METHODS) -> Path:
    """Train ``methods`` and write ``<out>/report.md``; returns its path."""
    from radsearch.cohort import Cohort
    from radsearch.reporting.figures import (plot_distributions, plot_learning_curves,
                                             plot_margins, plot_queries)
    from radsearch.training.embed import embed_run, mirror_right_for
    from radsearch.training.engine import train
    from radsearch.training.rundir import RunDir

    console = console or Console(soft_wrap=True)  # never wrapped outside a terminal
    out = Path(out)
    base = demo_config(out, config, overrides)
    started = time.perf_counter()
    runs: dict[str, Path] = {}
    for method in methods:
        cfg = base.model_copy(deep=True)
        cfg.method.name = method
        cfg.run.name = method
        console.print(f"training {method} ({cfg.train.epochs} epochs) → {cfg.run_dir()}")
        runs[method] = train(cfg, report=console.print)
    from radsearch.training.callbacks import read_metrics

    # epoch times as logged: the real training time, also when finished runs were reused
    train_minutes = sum(r.get("seconds", 0.0) for d in runs.values() for r in read_metrics(d)) / 60
    first = RunDir(runs[methods[0]])
    test = Cohort.load(first.cohort).split("test")
    figures = {
        "learning": plot_learning_curves(runs, out / "learning.png",
                                         validation_references(first)),
        "margins": plot_margins(runs, out / "margins.png"),
        "distributions": plot_distributions(first.path, out / "distributions.png",
                                            title=methods[0]),
        "queries": plot_queries(embed_run(first.path, test), test, out / "queries.png",
                                mirror_right=mirror_right_for(base, test),
                                title=f"{methods[0]}: latest-visit queries (8 years after the "
                                      "baseline) and their top-5 baseline matches"),
    }
    minutes = (time.perf_counter() - started) / 60
    return write_report(out, runs, figures, _notes(base, train_minutes, minutes))


def validation_references(run) -> dict[str, float]:
    """Validation mAP (leave-one-out, as in training) of the untrained network and raw pixels."""
    import torch

    from radsearch.cohort import Cohort
    from radsearch.evaluation import evaluate_forensic
    from radsearch.models import create_model
    from radsearch.training.embed import embed_cohort, load_run_config, mirror_right_for
    from radsearch.training.preprocessing import load_preprocessing
    from radsearch.training.references import PIXELS, UNTRAINED, RawPixels

    config = load_run_config(run.path)
    val = Cohort.load(run.cohort).split("val")
    transform = load_preprocessing(run.path, config).transform(train=False)
    mirror = mirror_right_for(config, val)
    torch.manual_seed(config.train.seed)
    model = create_model(config.model.name, embedding_dim=config.model.embedding_dim,
                         weights="none")
    out = {}
    for label, net in ((UNTRAINED, model), (PIXELS, RawPixels())):
        vectors = embed_cohort(net, val, transform, batch_size=256, mirror_right=mirror)
        out[f"{label} (validation)"] = evaluate_forensic(vectors, val,
                                                         leave_one_out=True).groups["all"]["mAP"]
    return out


def _notes(base, train_minutes: float, minutes: float) -> list[str]:
    from radsearch.training.precision import cpu_bf16_native

    synth = base.data.synth
    t = base.train
    cohort = (f"Synthetic knee cohort: {synth.n_subjects} subjects × 2 knees × 7 visits (0–8 "
              f"years), generated at {synth.image_size}², trained at {base.data.image_size}² "
              "(test = site C)." if synth is not None else f"Cohort: {base.data.manifest}.")
    return [
        f"{cohort} {base.model.name} from random weights, {t.epochs} epochs × "
        f"{t.batches_per_epoch or 'one pass of'} batches of {t.subjects_per_batch} subjects × "
        f"{t.images_per_subject} images, Adam lr {base.optim.lr}, precision {t.precision} "
        f"(native bf16 on this CPU: {cpu_bf16_native()}), {t.threads or 'all'} thread(s). "
        f"Model selected on validation mAP (leave-one-out). Training took {train_minutes:.1f} "
        f"min (sum of the logged epoch times), this demo command {minutes:.1f} min.",
        "",
        "Reference rows, on the same test protocol: **chance** (random embeddings), **raw "
        "pixels** (the network's input image itself as the vector) and the **untrained "
        "network** (same architecture, random weights, no training). A trained model is only "
        "worth something where it is above all three. One seed: differences between the two "
        "methods here are not evidence; see docs/results.md for the multi-seed comparison.",
    ]


CAPTIONS = {
    "learning": "## Learning curves\n\nValidation mAP (leave-one-out inside the validation "
                "fold) after every epoch, against the untrained network and raw pixels on the same "
                "fold (grey lines).",
    "margins": "## AutoMargin over epochs (paper Fig. 3)\n\nε (triplet margin) and β "
               "(negative-similarity threshold) used in each epoch; AutoMargin sets them from the "
               "previous epoch's mean Δ and mean negative similarity (right panel). Triplet keeps "
               "its fixed ε.",
    "distributions": "## Δ and negative-similarity distributions per epoch (Fig. 2b–c)\n\n"
                     "Over all triplets / all negative pairs of each training epoch of "
                     "AdaTriplet-AM: Δ should move right (positives closer than negatives), "
                     "negative similarities should concentrate below β.",
    "queries": "## Example queries (Fig. 1a style)\n\nTest subjects' latest visits against the "
               "baseline gallery (both knees of every test subject), right knees shown mirrored "
               "as the network sees them; green frames are the same person, and each query says "
               "at which rank its true match was found.",
}


def write_report(out: Path, runs: dict[str, Path], figures: dict[str, Path],
                 notes: list[str] | None = None) -> Path:
    """<out>/report.md: per-year table with reference rows, then the figures."""
    from radsearch.io import write_text
    from radsearch.reporting.tables import forensic_markdown, run_results
    from radsearch.training.rundir import RunDir

    results = run_results({m: [d] for m, d in runs.items()})
    first = RunDir(next(iter(runs.values()))).read_json("results")
    n_queries = {g: int(m.get("n_queries", 0)) for g, m in first["groups"].items()}
    lines = ["# radsearch demo: forensic knee matching across years", ""]
    lines += notes or []
    lines += ["", "## Test-set retrieval per years between query and gallery", "",
              "Queries per group: " + ", ".join(
                  f"{'All' if g == 'all' else g + ' y'}: {n}" for g, n in n_queries.items()), "",
              forensic_markdown(results), ""]
    for key, figure in figures.items():
        lines += [CAPTIONS.get(key, f"## {key}"), "", f"![{key}]({Path(figure).name})", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
