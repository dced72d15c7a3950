"""``radsearch demo``: the whole job in a few minutes on a laptop CPU.

Synthesise a knee cohort, train AdaTriplet-AM and Triplet briefly under the same budget, evaluate
both per years apart on the test site, and write ``<out>/report.md`` with the table and the
figures (margins, distributions, example queries). The defaults below are ``configs/demo.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

DEMO_METHODS = ("AdaTriplet-AM", "Triplet")

DEMO_CONFIG: dict = {
    "data": {"synth": {"kind": "knee", "n_subjects": 160, "seed": 0, "image_size": 80},
             "preset": "oai", "image_size": 64, "resize": 72, "in_memory": True, "workers": 0},
    "model": {"name": "resnet18", "embedding_dim": 128, "weights": "none"},
    "method": {"name": "AdaTriplet-AM"},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-4},
    "train": {"epochs": 10, "subjects_per_batch": 12, "images_per_subject": 4,
              "max_batches_per_epoch": 12, "seed": 0, "device": "auto", "threads": 1},
    "val": {"every": 1, "metric": "mAP", "batch_size": 128},
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
    """Train ``methods`` on the synthetic knees and write ``<out>/report.md``; returns its path."""
    from radsearch.training.embed import embed_run, mirror_right_for
    from radsearch.training.engine import train
    from radsearch.training.report import (plot_distributions, plot_margins, plot_queries,
                                           write_report)

    console = console or Console()
    out = Path(out)
    base = demo_config(out, config, overrides)
    started = time.perf_counter()
    runs: dict[str, Path] = {}
    for method in methods:
        cfg = base.model_copy(deep=True)
        cfg.method.name = method
        cfg.run.name = method
        console.print(f"[bold]training {method}[/] ({cfg.train.epochs} epochs) → {cfg.run_dir()}")
        runs[method] = train(cfg)
    from radsearch.cohort import Cohort

    test = Cohort.load(runs[methods[0]] / "cohort.csv").split("test")
    figures = {
        "margins": plot_margins(runs, out / "margins.png"),
        "distributions": plot_distributions(runs[methods[0]], out / "distributions.png",
                                            title=methods[0]),
        "queries": plot_queries(embed_run(runs[methods[0]], test), test, out / "queries.png",
                                mirror_right=mirror_right_for(base, test)),
    }
    reference = untrained_results(base, test)
    minutes = (time.perf_counter() - started) / 60
    synth = base.data.synth
    notes = [
        f"Synthetic knee cohort: {synth.n_subjects} subjects × 2 knees × 7 visits (0–8 years), "
        f"generated at {synth.image_size}² and trained at {base.data.image_size}²; test = site C. "
        f"{base.model.name} from scratch, {base.train.epochs} epochs × ≤ "
        f"{base.train.max_batches_per_epoch} batches of {base.train.subjects_per_batch} × "
        f"{base.train.images_per_subject}, Adam lr {base.optim.lr}. Model selected on validation "
        f"mAP (leave-one-out). Wall time {minutes:.1f} min.",
        "",
        "This is a smoke-scale demonstration (one seed, a few epochs): differences between "
        "methods here are not evidence; see docs/results.md for the multi-seed comparison. "
        f"The row '{UNTRAINED}' is the same network with random weights and no training, "
        "evaluated the same way: at this budget it is a bar the trained models may not clear.",
    ]
    return write_report(out, runs, figures, notes, references={UNTRAINED: reference})


UNTRAINED = "untrained ResNet-18 (reference)"


def untrained_results(config, test) -> dict[str, dict[str, float]]:
    """Per-year test results of the randomly initialised network (seed ``train.seed``)."""
    import torch

    from radsearch.data import build_transforms
    from radsearch.evaluation import evaluate_forensic
    from radsearch.models import create_model
    from radsearch.training.embed import embed_cohort, mirror_right_for

    torch.manual_seed(config.train.seed)
    model = create_model(config.model.name, embedding_dim=config.model.embedding_dim,
                         weights="none", first_conv=config.model.first_conv)
    transform = build_transforms(config.data.preset, train=False,
                                 image_size=config.data.image_size, resize=config.data.resize)
    embeddings = embed_cohort(model, test, transform, batch_size=config.val.batch_size,
                              mirror_right=mirror_right_for(config, test))
    return evaluate_forensic(embeddings, test).groups
