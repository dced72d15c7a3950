"""`radsearch mmdl train | compare` — diagnostic retrieval trained with reports (MMDL)."""

from __future__ import annotations

from pathlib import Path

import typer

from radsearch.cli.console import console

mmdl_app = typer.Typer(help="Diagnostic retrieval with reports (MMDL): train, compare.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `radsearch mmdl …` to the root app."""
    from radsearch.cli.search import text_eval_command  # text → image search lives with search

    mmdl_app.command("text-eval")(text_eval_command)
    app.add_typer(mmdl_app, name="mmdl")


def _log(message: str) -> None:
    console().print(message, highlight=False)


@mmdl_app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="YAML config (see configs/mmdl-*.yaml)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. "
                                                     "data.report_fraction=0.5"),
    out: Path = typer.Option(None, "--out", help="Run folder (default: run.out_dir)."),
) -> None:
    """Train one MMDL model and evaluate image→image retrieval (train = database, test = queries)."""
    from radsearch.training.mmdl import TABLE_METRICS, load_mmdl_config
    from radsearch.training.mmdl_compare import train_or_finetune

    cfg = load_mmdl_config(config, overrides or [])
    run = out or Path(cfg.run.out_dir)
    result = train_or_finetune(cfg, run, log=_log)
    groups = result["diagnostic"]["groups"]["all"]
    console().print(f"[green]done[/] {run}: " + ", ".join(f"{m} {groups[m]:.3f}"
                                                        for m in TABLE_METRICS), highlight=False)


@mmdl_app.command("compare")
def compare_command(
    config: Path = typer.Argument(..., help="YAML config with a compare.methods section."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides for every method."),
    out: Path = typer.Option(Path("runs/mmdl-compare"), "--out", help="Folder of the runs and "
                                                                       "of comparison.md/json."),
    seeds: int = typer.Option(None, "--seeds", help="Seeds per method (default compare.seeds)."),
    only: str = typer.Option(None, "--only", help="Comma-separated subset of compare.methods "
                                                  "(e.g. to split the work over processes)."),
    table_only: bool = typer.Option(False, "--table-only", help="Train nothing: tabulate the "
                                    "methods whose seeds have all finished."),
) -> None:
    """Train every method × seed (finished runs are reused) and write the comparison table."""
    from radsearch.errors import ConfigError
    from radsearch.training.mmdl import load_mmdl_config
    from radsearch.training.mmdl_compare import compare_mmdl

    cfg = load_mmdl_config(config, overrides or [])
    methods = dict(cfg.compare.methods)
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in methods]
        if unknown:
            raise ConfigError(f"--only {unknown[0]!r}: not in compare.methods "
                              f"({', '.join(methods)}).")
        methods = {n: methods[n] for n in names}
    path = compare_mmdl(cfg, out, seeds=seeds, methods=methods, log=_log, train=not table_only)
    console().print(path.read_text(encoding="utf-8"), highlight=False, markup=False)
    console().print(f"table: {path}", highlight=False)


@mmdl_app.command("finetune")
def finetune_command(
    run: Path = typer.Argument(..., help="Trained MMDL run folder to continue (the parent)."),
    overrides: list[str] = typer.Argument(None, help="stage.* overrides, e.g. stage.epochs=3"),
    loss: str = typer.Option("smoothap", "--loss", help="triplet | fastap | smoothap | "
                                                        "adatriplet (multi-label relevance)."),
    out: Path = typer.Option(..., "--out", help="Folder of the fine-tuned run."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON only."),
) -> None:
    """Ranking-loss stage (extension B): fine-tune RUN's image branch (Adam 5e-6, batch 64)."""
    import json

    from radsearch.training.mmdl import TABLE_METRICS
    from radsearch.training.mmdl_finetune import finetune_from_run

    result = finetune_from_run(run, loss, out, overrides or [],
                               log=(lambda m: None) if as_json else _log)
    groups = result["diagnostic"]["groups"]["all"]
    if as_json:
        print(json.dumps({"run": str(out), "parent_run": str(run), "loss": loss,
                          **{m: groups[m] for m in TABLE_METRICS}}))
        return
    console().print(f"[green]done[/] {out}: " + ", ".join(f"{m} {groups[m]:.3f}"
                                                        for m in TABLE_METRICS), highlight=False)


@mmdl_app.command("reports-vs-labels")
def reports_vs_labels_command(
    manifest: Path = typer.Argument(..., help="Cohort manifest with labels, split and report."),
) -> None:
    """How much of the labels the reports already state (TF-IDF + logistic regression, train →
    test): near 1 means reports add little beyond the labels the image branch is trained on."""
    from radsearch.cohort import Cohort
    from radsearch.training.mmdl import report_label_recovery

    scores = report_label_recovery(Cohort.load(manifest))
    console().print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in scores.items()), highlight=False)


@mmdl_app.command("spread")
def spread_command(
    runs: list[Path] = typer.Argument(..., help="Run folders written by `radsearch mmdl`."),
) -> None:
    """Collapse check of each run's retrieval space on the test images: mean pairwise cosine (1 =
    every image at one point) and the effective number of dimensions used."""
    import numpy as np
    import torch

    from radsearch.training.mmdl import embed_all, embedding_spread, load_images, load_mmdl_run

    cohort = images = None
    size = None
    for run in runs:
        model, cfg, cohort = load_mmdl_run(run, cohort)
        if images is None or size != cfg.data.image_size:
            size = cfg.data.image_size
            test = np.flatnonzero(cohort.table["split"].to_numpy() == "test")
            images = load_images(cohort.subset(test), size)
        space = "features" if cfg.loss.kind == "classifier" else "common"
        vectors, _ = embed_all(model, images, space, torch.device("cpu"))
        spread = embedding_spread(vectors)
        console().print(f"{run}: mean cosine {spread['mean_cosine']:.3f}, effective dims "
                      f"{spread['effective_dims']:.1f}", highlight=False)
