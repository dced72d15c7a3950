"""`radsearch search INDEX QUERY…` — who is this (``--by subject``) / which images look alike.

QUERY = image files (PNG/JPEG/DICOM), folders of images, or a manifest (its rows, with their side).
Prints rank, subject, time, score and — on a calibrated index — the log10 likelihood ratio and
the open-set decision ("no candidate above T (FPIR = x at N = n)").
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from radsearch.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff"}
MANIFEST_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def register(app: typer.Typer) -> None:
    """Add the `search` command to the root app."""
    app.command("search")(search_command)


def expand_queries(queries: list[Path]) -> tuple[list[Path], list[str]]:
    """Image paths and their sides ('' when unknown) from files, folders and manifests."""
    from radsearch.cohort import Cohort

    paths, sides = [], []
    for query in queries:
        if query.is_dir():
            found = sorted(p for p in query.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ConfigError(f"{query}: no PNG/JPEG/DICOM images in this folder.")
            paths += found
            sides += [""] * len(found)
        elif str(query).lower().endswith(MANIFEST_SUFFIXES):
            cohort = Cohort.load(query)
            paths += cohort.image_paths()
            sides += list(cohort.table["side"]) if "side" in cohort.table else [""] * len(cohort)
        elif query.is_file():
            paths.append(query)
            sides.append("")
        else:
            raise ConfigError(f"{query}: query image not found.")
    return paths, sides


def search_command(
    index_path: Path = typer.Argument(..., metavar="INDEX", help="Index folder."),
    queries: list[Path] = typer.Argument(..., metavar="QUERY...",
                                         help="Images, folders of images, or a manifest."),
    k: int = typer.Option(10, "--k", help="Candidates per query."),
    by: str = typer.Option("image", "--by", help="image (similar images) or subject (who is "
                                                 "this: best image per person)."),
    filters: list[str] = typer.Option([], "--filter", help="FIELD OP VALUE, e.g. view=PA, "
                                                           "'time<=5', 'labels~Effusion'."),
    exclude_subjects: list[str] = typer.Option([], "--exclude-subject",
                                               help="Leave this subject out (repeatable)."),
    fuse: bool = typer.Option(False, "--fuse", help="All query images show one person: fuse "
                                                    "them into one query."),
    rerank: str = typer.Option("none", "--rerank", help="none, qe, dba or k-reciprocal."),
    side: str | None = typer.Option(None, "--side", help="L or R for every image-file query "
                                                         "(right knees are mirrored like in "
                                                         "training); manifests carry their own."),
    fpir: float = typer.Option(0.01, "--fpir", help="Operating point of the open-set decision."),
    run: Path | None = typer.Option(None, "--run", help="Run folder (default: the index's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Search INDEX with query images; print candidates and the open-set decision."""
    from radsearch.index import open_index
    from radsearch.search import Searcher

    from radsearch.cli.index import _run_of

    index = open_index(index_path)
    run = _run_of(index, run)
    paths, sides = expand_queries(queries)
    if side is not None:
        if side not in ("L", "R"):
            raise ConfigError(f"--side {side!r}: use L or R.")
        sides = [s or side for s in sides]
    searcher = Searcher(index, run, fpir=fpir)
    results = searcher.search(paths, k, by=by, filters=filters, exclude_subjects=exclude_subjects,
                              fuse=fuse, rerank=rerank, sides=sides)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    calibrated = index.calibration is not None
    for result in results:
        print(f"query: {result.query}")
        head = f"  {'rank':>4}  {'subject':<12} {'time':>6} {'side':<4} {'view':<5} {'score':>7}"
        print(head + (f" {'log10LR':>8}" if calibrated else "") + "  image")
        for h in result.hits:
            line = (f"  {h.rank:>4}  {h.subject:<12} {h.time:>6.2f} {h.side:<4} {h.view:<5} "
                    f"{h.score:>7.4f}")
            if calibrated:
                line += f" {h.log10_lr:>8.2f}"
            print(f"{line}  {h.image}")
        if not result.hits:
            print("  (no item passes the filters)")
        if result.decision is not None:
            print(f"  decision: {result.decision.message}")
        for note in result.notes:
            print(f"  note: {note}")
