"""`radsearch cohort info | validate | from-<dataset>` — thin commands over radsearch.datasets.

Adapters read metadata only; every ``from-*`` command writes the manifest atomically
(:meth:`Cohort.save`) and prints its counts. Warnings of the adapters (rows without a split,
missing report files…) are shown as counts; no patient name or other PHI is ever printed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.table import Table

from radsearch.cli.console import console, log_handler
from radsearch.cohort import Cohort
from radsearch.errors import DataError

cohort_app = typer.Typer(help="Build, inspect and check cohort manifests (one row per image).",
                         no_args_is_help=True)

OUT = typer.Option(..., "--out", "-o", help="Manifest to write (.csv, .csv.gz or .parquet).")


def register(app: typer.Typer) -> None:
    """Add the `cohort` command group to the root app."""
    app.add_typer(cohort_app, name="cohort")


# ------------------------------------------------------------------ inspect
@cohort_app.command("info")
def info_command(
    manifest: Path = typer.Argument(..., help="Manifest file (or a folder holding manifest.csv)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise a manifest: images, subjects, images per subject, years, splits, views, labels."""
    cohort = Cohort.load(manifest)
    if as_json:
        print(json.dumps(cohort.summary(), indent=2))
        return
    print_summary(cohort, title=str(cohort.source))


@cohort_app.command("validate")
def validate_command(
    manifest: Path = typer.Argument(..., help="Manifest file (or a folder holding manifest.csv)."),
    check_files: bool = typer.Option(False, "--check-files",
                                     help="Also open every image file and check it is a whole "
                                          "image (header and structure)."),
    full_decode: bool = typer.Option(False, "--full-decode",
                                     help="With --check-files: decode every pixel (slower)."),
    workers: int = typer.Option(4, "--workers", help="Threads reading the files."),
    show: int = typer.Option(10, help="How many problem rows to list."),
) -> None:
    """Check a manifest against the schema (and, optionally, that its image files are readable)."""
    from radsearch.cohort import where
    from radsearch.datasets.files import unreadable_images

    cohort = Cohort.load(manifest)
    if len(cohort) == 0:
        raise DataError(f"{cohort.source}: the manifest has a header but no images; add rows "
                        "(one per image) or rebuild it with `radsearch cohort from-<dataset>`.")
    console().print(f"[green]ok[/]: {cohort.source} is a valid manifest ({len(cohort)} images, "
                    f"{cohort.table['subject'].nunique()} subjects).")
    err = console(stderr=True)
    outside = cohort.outside_root()
    if len(outside):
        err.print(f"warning: {len(outside)} image path(s) point outside the manifest's folder "
                  f"{cohort.root} (a service refuses them):", highlight=False)
        for row in outside[:show]:
            err.print(f"outside: {cohort.table['image'].iloc[row]} ({where(cohort.source, row)})",
                      highlight=False)
    if not check_files:
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("checking image files", total=len(cohort))
        problems = unreadable_images(cohort, workers=workers, full=full_decode,
                                     progress=lambda done, total: bar.update(task,
                                                                             completed=done))
    if not problems:
        console().print(f"[green]ok[/]: all {len(cohort)} image files are readable.")
        return
    paths = cohort.image_paths()
    for row, reason in problems[:show]:
        err.print(f"unreadable: {paths[row]} ({where(cohort.source, row)}): {reason}",
                  highlight=False)
    raise DataError(f"{cohort.source}: {len(problems)} of {len(cohort)} image file(s) are missing "
                    "or unreadable (listed above). Download or re-copy them, or fix the image "
                    "paths (relative paths resolve against the manifest's folder).")


# ----------------------------------------------------------------- adapters
@cohort_app.command("from-nih")
def from_nih_command(
    data_entry: Path = typer.Option(..., "--data-entry",
                                    help="Data_Entry_2017_v2020.csv (or .csv.gz)."),
    out: Path = OUT,
    images: Path = typer.Option(None, "--images", help="Folder of the PNGs (searched "
                                "recursively: images_001/images/… is fine)."),
    test_list: Path = typer.Option(None, "--test-list", help="Official test_list.txt."),
    train_list: Path = typer.Option(None, "--train-list", help="Official train_val_list.txt."),
    val_fraction: float = typer.Option(0.0, help="Share of training patients moved to val."),
    seed: int = typer.Option(0, help="Seed of the validation draw."),
) -> None:
    """NIH ChestX-ray14: time = Patient Age − age at the first follow-up; official lists → split."""
    from radsearch.datasets import read_nih

    with _adapter_log():
        cohort = read_nih(data_entry, images=images, test_list=test_list, train_list=train_list,
                          val_fraction=val_fraction, seed=seed)
    _save(cohort, out, images_given=images is not None)


@cohort_app.command("from-chexpert")
def from_chexpert_command(
    csv: list[Path] = typer.Option(..., "--csv", help="train.csv and/or valid.csv (repeat)."),
    out: Path = OUT,
    images: Path = typer.Option(None, "--images",
                                help="Folder that contains CheXpert-v1.0(-small)/."),
    policy: str = typer.Option("u-zeros", help="Uncertain (-1) labels: u-zeros, u-ones, ignore."),
    time: str = typer.Option("age", help="time axis: age (years since the first study's age) or "
                             "study (study ordinal − 1)."),
    keep_raw_labels: bool = typer.Option(False, help="Keep the 14 raw label columns."),
) -> None:
    """CheXpert: identity from the path, labels under an uncertainty policy, no dates."""
    from radsearch.datasets import read_chexpert

    with _adapter_log():
        cohort = read_chexpert(csv, images=images, policy=policy, time=time,
                               keep_raw_labels=keep_raw_labels)
    _save(cohort, out, images_given=images is not None)


@cohort_app.command("from-mimic")
def from_mimic_command(
    metadata: Path = typer.Option(..., "--metadata", help="mimic-cxr-2.0.0-metadata.csv.gz"),
    out: Path = OUT,
    split: Path = typer.Option(None, "--split", help="mimic-cxr-2.0.0-split.csv.gz"),
    labels: Path = typer.Option(None, "--labels",
                                help="mimic-cxr-2.0.0-chexpert.csv.gz or -negbio.csv.gz"),
    reports: Path = typer.Option(None, "--reports",
                                 help="Folder containing files/p1X/p…/s….txt (MIMIC-CXR reports)."),
    images: Path = typer.Option(None, "--images",
                                help="Folder containing files/p1X/… of MIMIC-CXR-JPG."),
    policy: str = typer.Option("u-zeros", help="Uncertain (-1) labels: u-zeros, u-ones, ignore."),
    keep_raw_labels: bool = typer.Option(False, help="Keep the 14 raw label columns."),
) -> None:
    """MIMIC-CXR-JPG: time from StudyDate/StudyTime, split, chexpert/negbio labels, report text."""
    from radsearch.datasets import read_mimic

    with _adapter_log():
        cohort = read_mimic(metadata, split=split, labels=labels, reports=reports, images=images,
                            policy=policy, keep_raw_labels=keep_raw_labels)
    _save(cohort, out, images_given=images is not None)


@cohort_app.command("from-oai")
def from_oai_command(
    image_table: Path = typer.Option(..., "--image-table",
                                     help="Per-knee table with columns ID, visit, side, path."),
    out: Path = OUT,
    metadata: Path = typer.Option(None, "--metadata", help="Folder with Enrollees.txt, "
                                  "AllClinical{VV}.txt, kxr_sq_bu{VV}.txt."),
    test_site: str = typer.Option("C", help="Acquisition site used as the test split ('' for "
                                  "none)."),
    val_fraction: float = typer.Option(0.0, help="Share of training participants moved to val."),
    seed: int = typer.Option(0, help="Seed of the validation draw."),
) -> None:
    """OAI knees: time = visit months / 12, side, KL, age, site; site-based test split."""
    from radsearch.datasets import read_oai

    with _adapter_log():
        cohort = read_oai(image_table, metadata_dir=metadata, test_site=test_site or None,
                          val_fraction=val_fraction, seed=seed)
    _save(cohort, out, images_given=True)


@cohort_app.command("from-openi")
def from_openi_command(
    reports: Path = typer.Option(..., "--reports",
                                 help="ecgen-radiology/ folder or NLMCXR_reports.tgz."),
    out: Path = OUT,
    images: Path = typer.Option(None, "--images", help="Folder of the OpenI PNGs."),
) -> None:
    """OpenI (Indiana) reports: report text + MeSH findings, one row per image (no identities)."""
    from radsearch.datasets import read_openi

    with _adapter_log():
        cohort = read_openi(reports, images=images)
    _save(cohort, out, images_given=images is not None)


@cohort_app.command("from-dicom")
def from_dicom_command(
    folder: Path = typer.Argument(..., help="Folder of DICOM files (searched recursively)."),
    out: Path = OUT,
    salt: str = typer.Option(None, "--pseudonymise-salt",
                             help="Replace PatientID by a salted SHA-256 pseudonym."),
    workers: int = typer.Option(4, help="Threads reading headers (helps on network shares)."),
) -> None:
    """Hospital DICOM folder: identity = PatientID, time from StudyDate/Time (no PHI logged)."""
    from rich.progress import Progress

    from radsearch.datasets import read_dicom_folder

    with _adapter_log(), Progress(console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading DICOM headers", total=None)
        cohort = read_dicom_folder(
            folder, subject_salt=salt, workers=workers,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    _save(cohort, out, images_given=True)


@cohort_app.command("from-table")
def from_table_command(
    table: Path = typer.Argument(..., help="Your table (.csv, .tsv or .parquet)."),
    out: Path = OUT,
    image: str = typer.Option("image", help="Column with the image path."),
    subject: str = typer.Option("subject", help="Column with the identity."),
    time: str = typer.Option(None, help="Column with the time in years (e.g. age)."),
    date: str = typer.Option(None, help="Column with a date (time = years since the subject's "
                             "first date)."),
    side: str = typer.Option(None, help="Column with L/R."),
    view: str = typer.Option(None, help="Column with the view (PA/AP/LAT)."),
    study: str = typer.Option(None, help="Column with the study id."),
    split: str = typer.Option(None, help="Column with train/val/test."),
    labels: str = typer.Option(None, help="Column with findings."),
    label_sep: str = typer.Option("|", help="Separator of findings in the labels column."),
    report: str = typer.Option(None, help="Column with report text."),
    images: Path = typer.Option(None, "--images", help="Folder relative image paths live in."),
) -> None:
    """Any table of yours: name the columns; the result is a validated manifest."""
    from radsearch.datasets import read_table_manifest

    columns = {k: v for k, v in dict(side=side, view=view, study=study, split=split,
                                      labels=labels, report=report).items() if v}
    cohort = read_table_manifest(table, image=image, subject=subject, time=time, date=date,
                                 columns=columns, images=images, label_separator=label_sep)
    _save(cohort, out, images_given=True)


# ------------------------------------------------------------------ helpers
def _save(cohort: Cohort, out: Path, images_given: bool) -> None:
    """Write the manifest; without --images the dataset-relative paths are kept as written."""
    if not images_given and cohort.root is None:
        cohort.root = out.parent.resolve()  # bare names stay bare: they resolve beside the manifest
    cohort.save(out)
    print_summary(Cohort.load(out), title=f"wrote {out}")


@contextlib.contextmanager
def _adapter_log() -> Iterator[None]:
    """Show the adapters' warnings (counts of dropped / unmatched rows) on stderr."""
    logger = logging.getLogger("radsearch.datasets")
    handler = log_handler()
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def print_summary(cohort: Cohort, title: str) -> None:
    """A rich table of Cohort.summary(): what a user checks first."""
    s = cohort.summary()
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    per = s["images_per_subject"]
    table.add_row("images", f"{s['images']:,}")
    table.add_row("subjects", f"{s['subjects']:,}")
    table.add_row("images per subject", f"min {per['min']}, median {per['median']:g}, "
                                        f"max {per['max']}")
    table.add_row("subjects with ≥ 2 images", f"{s['subjects_with_2plus_images']:,}")
    t = s["time"]
    table.add_row("time (years)", f"{t['min']:.2f} … {t['max']:.2f}; longest span per subject "
                                  f"{t['max_span_per_subject']:.2f}")
    for column in ("split", "side", "view"):
        if column in s:
            table.add_row(column, _counts(s[column]))
    if "labels" in s:
        shown = list(s["labels"].items())
        text = _counts(dict(shown[:12]))
        table.add_row(f"labels ({len(shown)})", text + (", …" if len(shown) > 12 else ""))
    if "with_report" in s:
        table.add_row("with report", f"{s['with_report']:,}")
    extra = [c for c in cohort.table.columns if c not in ("image", "subject", "time", "side",
                                                          "view", "study", "split", "labels",
                                                          "report")]
    few = [c for c in extra if 0 < cohort.table[c].nunique() <= 8]  # site, kl, sex…: show counts
    for column in few:
        counts = cohort.table[column].value_counts().sort_index()
        table.add_row(str(column), _counts({_label(k): int(v) for k, v in counts.items()}))
    rest = [c for c in extra if c not in few]
    if rest:
        table.add_row("other columns", ", ".join(map(str, rest)))
    console().print(table)


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k or '(none)'} {v:,}" for k, v in counts.items())
