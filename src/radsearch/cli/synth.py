"""`radsearch synth knee|chest|sheet`: write synthetic phantom cohorts (PNGs + manifest.csv)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from radsearch.cli.console import console
from radsearch.errors import ConfigError

synth_app = typer.Typer(help="Synthetic longitudinal radiograph cohorts (knee and chest phantoms).",
                        no_args_is_help=True)

SUBJECTS = typer.Option(300, "--subjects", "-n", help="Number of subjects.")
OUT = typer.Option(..., "--out", "-o", help="Folder for the PNGs and manifest.csv.")
SEED = typer.Option(0, "--seed", help="Random seed; the same seed gives the same cohort.")
SIZE = typer.Option(256, "--image-size", help="Image side in pixels.")
SIMILARITY = typer.Option(0.35, "--similarity", help="0 = very distinct anatomies, 1 = near-identical.")
CHANGE = typer.Option(1.0, "--change-per-year", help="Amount of disease / ageing drift per year.")
NOISE = typer.Option(1.0, "--noise", help="Acquisition variation (pose, exposure, noise, blur).")
WORKERS = typer.Option(None, "--workers", help="Processes (default: one per core).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace a cohort already in --out (only the "
                         "images its manifest lists are removed).")
FLAGS = {"subject_similarity": "--similarity", "change_per_year": "--change-per-year",
         "acquisition_noise": "--noise", "replacement_rate": "--replacement-rate",
         "finding_rate": "--finding-rate", "report_fraction": "--report-fraction",
         "n_subjects": "--subjects", "image_size": "--image-size"}


def register(app: typer.Typer) -> None:
    """Add `radsearch synth …` to the root app."""
    app.add_typer(synth_app, name="synth")


@synth_app.command("knee")
def knee(subjects: int = SUBJECTS, out: Path = OUT, seed: int = SEED, image_size: int = SIZE,
         similarity: float = SIMILARITY, change_per_year: float = CHANGE, noise: float = NOISE,
         replacement_rate: float = typer.Option(0.5, "--replacement-rate",
                                                help="Share of severe knees later replaced."),
         workers: int | None = WORKERS, overwrite: bool = OVERWRITE) -> None:
    """Bilateral knee films at 0-96 months (KL grades, osteoarthritis, replacements)."""
    from radsearch.synth import generate_knee

    _check_out(out, overwrite)
    with _progress(subjects, "knees") as advance, _flag_names():
        synth = generate_knee(subjects, seed=seed, image_size=image_size, out_dir=out,
                              workers=workers, progress=advance, subject_similarity=similarity,
                              change_per_year=change_per_year, acquisition_noise=noise,
                              replacement_rate=replacement_rate)
    t = synth.cohort.table
    kl = " / ".join(f"{int((t.kl == g).sum())}" for g in range(5))
    _done(synth.manifest, f"{len(t)} images of {t.subject.nunique()} subjects ({_splits(t)}); "
          f"KL 0-4: {kl}; replaced knees: {t[t.tkr == 1].groupby(['subject', 'side']).ngroups}")


@synth_app.command("chest")
def chest(subjects: int = SUBJECTS, out: Path = OUT, seed: int = SEED, image_size: int = SIZE,
          similarity: float = SIMILARITY, change_per_year: float = CHANGE, noise: float = NOISE,
          finding_rate: float = typer.Option(1.0, "--finding-rate",
                                             help="How often acute findings appear."),
          report_fraction: float = typer.Option(1.0, "--report-fraction",
                                                help="Share of studies with a report."),
          from_openi: str | None = typer.Option(
              None, "--from-openi", help="Instead: one phantom per real OpenI report, drawn from "
              "its MeSH findings; 'auto' = NLMCXR_reports.tgz from torchxrayvision, or a path "
              "to it / the ecgen-radiology folder (offline). --subjects is then ignored."),
          workers: int | None = WORKERS, overwrite: bool = OVERWRITE) -> None:
    """Frontal chest films over years with the 14 CheXpert findings and reports."""
    from radsearch.synth import generate_chest

    _check_out(out, overwrite)
    if from_openi is not None:
        _chest_from_openi(from_openi, out, seed, image_size, workers)
        return
    with _progress(subjects, "chests") as advance, _flag_names():
        synth = generate_chest(subjects, seed=seed, image_size=image_size, out_dir=out,
                               report_fraction=report_fraction, workers=workers, progress=advance,
                               subject_similarity=similarity, change_per_year=change_per_year,
                               acquisition_noise=noise, finding_rate=finding_rate)
    t = synth.cohort.table
    normal = int((t.labels == "No Finding").sum())
    _done(synth.manifest, f"{len(t)} images, {t.study.nunique()} studies of "
          f"{t.subject.nunique()} subjects ({_splits(t)}); {normal} images with No Finding; "
          f"{int((t.report != '').sum())} images with a report")


def _chest_from_openi(source: str, out: Path, seed: int, image_size: int,
                      workers: int | None) -> None:
    from radsearch.synth.chest_openi import generate_openi_chest, openi_reports_source

    path = openi_reports_source() if source == "auto" else Path(source)
    with _progress(None, "reports") as advance:
        synth = generate_openi_chest(path, seed=seed, image_size=image_size, out_dir=out,
                                     workers=workers, progress=advance)
    t = synth.cohort.table
    normal = int((t.labels == "No Finding").sum())
    _done(synth.manifest, f"{len(t)} real OpenI reports, one phantom each ({_splits(t)}); "
          f"{normal} with No Finding")


@synth_app.command("sheet")
def sheet(out: Path = typer.Option(Path("docs/images"), "--out", "-o",
                                   help="Folder for synth_knee.png and synth_chest.png."),
          seed: int = SEED) -> None:
    """Contact sheets of both phantoms (the pictures in docs/synth.md)."""
    from radsearch.synth.sheet import chest_sheet, knee_sheet

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder for the contact sheets.")
    out_console = console()
    for name, make in (("synth_knee.png", knee_sheet), ("synth_chest.png", chest_sheet)):
        path = make(out / name, seed=seed)
        out_console.print(f"wrote {path}")


@contextlib.contextmanager
def _flag_names() -> Iterator[None]:
    """Name the command-line flag next to the Python knob in a ConfigError."""
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        for name, flag in FLAGS.items():
            message = re.sub(rf"\b{name}\b", f"{name} ({flag})", message, count=1)
        raise ConfigError(message) from None


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to mix two cohorts in one folder; ``--overwrite`` removes the old cohort's images."""
    from radsearch.cohort import clear_cohort_folder

    clear_cohort_folder(out, overwrite)


class _progress:
    """A rich progress bar over subjects; yields the callback the generators call."""

    def __init__(self, total: int, what: str):
        self.bar = Progress(TextColumn(f"generating {what}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("subjects"), TimeElapsedColumn(), transient=True,
                            console=console(stderr=True))
        self.total = total

    def __enter__(self):
        task = self.bar.add_task("synth", total=self.total)

        def advance(k: int = 1) -> None:
            if not self.bar.live.is_started:  # shown once work is under way, not for bad input
                self.bar.start()
            self.bar.advance(task, k)
        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _splits(table) -> str:
    counts = table["split"].value_counts()
    return ", ".join(f"{name} {int(counts.get(name, 0))}" for name in ("train", "val", "test"))


def _done(manifest: Path | None, summary: str) -> None:
    out = console()
    out.print(f"manifest: [bold]{manifest}[/]", highlight=False)
    out.print(summary, highlight=False)
