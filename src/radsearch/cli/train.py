"""`radsearch train | embed | compare | demo` — thin commands over radsearch.training."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from radsearch.cli.console import console


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("train")(train_command)
    app.command("embed")(embed_command)
    app.command("compare")(compare_command)
    app.command("demo")(demo_command)


def train_command(
    config: Path = typer.Argument(..., help="YAML config (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.epochs=10 "
                                                     "data.manifest=cohort.csv"),
) -> None:
    """Train a forensic matching model; resumes the run folder's last checkpoint if there is one."""
    from radsearch.cli.metric_rows import print_metrics, reference_rows
    from radsearch.training import load_config, train
    from radsearch.training.rundir import RunDir

    cfg = load_config(config, overrides or [])
    main_process = os.environ.get("RANK", "0") == "0"   # torchrun: only rank 0 reports
    if main_process:
        console().print(f"run folder: {cfg.run_dir()}")
    run_dir = train(cfg, report=console().print if main_process else None)
    if not main_process:
        return
    run = RunDir(run_dir)
    summary = run.read_json("summary")
    console().print(f"[green]done[/] {run_dir}  best epoch {summary.get('best_epoch', -1) + 1}, "
                  f"val {cfg.val.metric} {summary.get(f'best_val_{cfg.val.metric}')}")
    if "test" in summary:
        rows = {f"{cfg.method.name} (trained)": summary["test"], **reference_rows(run)}
        print_metrics("test split, all years apart pooled", rows)
    console().print(f"per-year results: `radsearch evaluate {run_dir}`")


def embed_command(
    run: Path = typer.Argument(..., help="Run folder written by `radsearch train`."),
    manifest: Path = typer.Argument(..., help="Cohort manifest to embed."),
    out: Path = typer.Option(..., "--out", help="Output .npy (array) or .npz (embeddings, image, "
                                                "subject)."),
    checkpoint: str = typer.Option("best", help="best, last or a checkpoint file."),
    batch_size: int = typer.Option(64, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
) -> None:
    """Embed every image of a manifest with a trained run's model."""
    from radsearch.cohort import Cohort
    from radsearch.errors import ConfigError
    from radsearch.training.embed import embed_run, save_embeddings

    if out.suffix not in (".npy", ".npz"):  # before the embedding, not after it
        raise ConfigError(f"--out {out}: use a .npy or .npz file name.")
    cohort = Cohort.load(manifest)
    embeddings = embed_run(run, cohort, checkpoint=checkpoint, batch_size=batch_size,
                           device=device)
    save_embeddings(out, embeddings, cohort)
    console().print(f"{embeddings.shape[0]} × {embeddings.shape[1]} embeddings → {out}")


def compare_command(
    config: Path = typer.Argument(..., help="YAML config shared by every run."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides for every run."),
    methods: str = typer.Option(None, "--methods", help="Comma-separated methods, e.g. "
                                "AdaTriplet-AM,Triplet or 'AdaTriplet[epsilon=0.5,beta=0.5]' "
                                "(default: the config's compare.methods)."),
    seeds: int = typer.Option(None, "--seeds", help="Seeds 0..N-1 per method (default: the "
                                                    "config's compare.seeds)."),
    out: Path = typer.Option(None, "--out", help="Folder for the runs and the table "
                                                 "(default <run.out_dir>/compare)."),
) -> None:
    """Train each method for each seed; write a mean ± SE table per years apart, with chance,
    raw-pixel and untrained-network reference rows."""
    from radsearch.training import load_config
    from radsearch.reporting.comparison import compare

    cfg = load_config(config, overrides or [])
    names = _split_methods(methods) if methods else list(cfg.compare.methods)
    path = compare(cfg, names, seeds or cfg.compare.seeds, out,
                   on_run=lambda m, s, d: console().print(f"[green]✓[/] {m} seed {s}: {d}"))
    console().print(path.read_text(encoding="utf-8"), markup=False)
    console().print(f"table: {path}")


def demo_command(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the cohort, runs and report."),
    config: Path = typer.Option(None, "--config", help="Demo config (default: configs/demo.yaml "
                                                       "embedded in the package)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides of the demo config."),
) -> None:
    """Synthesise knees, train AdaTriplet-AM and Triplet on the CPU recipe, write
    demo/report.md (with chance, raw-pixel and untrained-network rows)."""
    from radsearch.reporting.demo import run_demo

    report = run_demo(out, config=config, overrides=overrides or [], console=console())
    console().print(f"[bold green]report:[/] {report}")


def _split_methods(text: str) -> list[str]:
    """Split on commas outside brackets: "A,B[x=1,y=2]" → ["A", "B[x=1,y=2]"]."""
    out, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += char
    out.append(current.strip())
    return [m for m in out if m]
