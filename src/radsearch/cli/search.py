"""`radsearch search INDEX QUERY…` — who is this (``--by subject``) / which images look alike.

QUERY = image files (PNG/JPEG/DICOM), folders of images, or a manifest (its rows, with their side).
Prints rank, subject, time, score and — on a calibrated index — the log10 likelihood ratio and
the open-set decision ("no candidate above T (FPIR = x at N = n)").
``--text "small left pleural effusion"`` instead of images: an index built from an MMDL run with a
report encoder returns the images nearest to the text.
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
    queries: list[Path] = typer.Argument(None, metavar="[QUERY]...",
                                         help="Images, folders of images, or a manifest."),
    text: list[str] = typer.Option([], "--text", help="Search by report text instead of images "
                                   "(repeatable), e.g. 'small left pleural effusion'; needs an "
                                   "index built from an MMDL run with a report encoder."),
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
    """Search INDEX with query images (or --text); print candidates and the open-set decision."""
    from radsearch.index import open_index
    from radsearch.search import Searcher

    from radsearch.cli.index import _run_of

    queries = queries or []
    if text and queries:
        raise ConfigError("give query images or --text, not both.")
    if not text and not queries:
        raise ConfigError("no query: give image files, folders or a manifest, or --text TEXT.")
    if text and (side is not None or fuse):
        raise ConfigError("--side and --fuse apply to image queries, not to --text.")
    index = open_index(index_path)
    run = _run_of(index, run)
    searcher = Searcher(index, run, fpir=fpir)
    if text:
        results = searcher.search_text(text, k, by=by, filters=filters,
                                       exclude_subjects=exclude_subjects, rerank=rerank)
    else:
        paths, sides = expand_queries(queries)
        if side is not None:
            if side not in ("L", "R"):
                raise ConfigError(f"--side {side!r}: use L or R.")
            sides = [s or side for s in sides]
        results = searcher.search(paths, k, by=by, filters=filters,
                                  exclude_subjects=exclude_subjects, fuse=fuse, rerank=rerank,
                                  sides=sides)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for result in results:
        calibrated = any(h.log10_lr is not None for h in result.hits)
        print(f"query: {result.query}")
        head = f"  {'rank':>4}  {'subject':<12} {'time':>6} {'side':<4} {'view':<5} {'score':>7}"
        print(head + (f" {'log10LR':>8}" if calibrated else "") + ("  labels" if text else "")
              + "  image")
        for h in result.hits:
            line = (f"  {h.rank:>4}  {h.subject:<12} {h.time:>6.2f} {h.side:<4} {h.view:<5} "
                    f"{h.score:>7.4f}")
            if calibrated:
                line += f" {h.log10_lr:>8.2f}"
            if text:  # what a text query is about: the findings of each image
                line += f"  {'|'.join(h.labels) or '-'}"
            print(f"{line}  {h.image}")
        if not result.hits:
            print("  (no item passes the filters)")
        if result.decision is not None:
            print(f"  decision: {result.decision.message}")
        for note in result.notes:
            print(f"  note: {note}")


def text_eval_command(
    run: Path = typer.Argument(..., help="MMDL run folder trained with reports."),
    index_path: Path | None = typer.Option(None, "--index", help="Index to search (default: a "
                                           "temporary index of the run's training images)."),
    ks: str = typer.Option("1,5,10", "--k", help="Comma-separated k of precision@k."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Text → image class-based precision@k through the index (one test report per study as the
    query; relevant = shares a CheXpert label), beside the trainer's in-memory figure."""
    import tempfile

    import torch

    from radsearch.index import build_index, open_index
    from radsearch.index.embedder import is_mmdl_run, load_embedder
    from radsearch.search import Searcher
    from radsearch.search.text_eval import text_search_precision
    from radsearch.training.mmdl import text_to_image_precision

    try:
        k_values = tuple(int(k) for k in ks.split(",") if k.strip())
    except ValueError:
        raise ConfigError(f"--k {ks!r}: give comma-separated whole numbers, e.g. 1,5,10.") from None
    if not is_mmdl_run(run):
        raise ConfigError(f"{run}: not an MMDL run folder (no model.pt); train one with "
                          "`radsearch mmdl train`.")
    embedder = load_embedder(run, device="cpu")
    if not embedder.has_text:
        embedder.embed_text([])          # the one-line refusal: no report encoder
    cohort = embedder.cohort
    with tempfile.TemporaryDirectory(prefix="radsearch-text-eval-") as scratch:
        if index_path is None:
            index_path = Path(scratch) / "train.index"
            build_index(run, embedder.config.data.manifest, index_path, split="train",
                        device="cpu", progress=False)
            where = "a temporary index of the training images"
        else:
            where = str(index_path)
        searcher = Searcher(open_index(index_path), run, device="cpu")
        through_index = text_search_precision(searcher, cohort, k_values)
        searcher.index.close()
    vectors = embedder.embed_cohort(cohort)
    reference = text_to_image_precision(embedder.model, cohort, vectors, torch.device("cpu"),
                                        ks=k_values)
    if as_json:
        print(json.dumps({"index": through_index, "reference": reference}, indent=2))
        return
    print(f"text -> image, class-based precision@k: one test report per study as the query, "
          f"{where} as the database, relevant = shares a CheXpert label")
    for name, figures in (("through the index", through_index),
                          ("reference (training.mmdl.text_to_image_precision)", reference)):
        cells = "  ".join(f"P@{k} {figures[f'P@{k}']:.4f}" for k in k_values)
        print(f"  {cells}  n_queries {figures['n_queries']}  {name}")
    print(f"  chance (random order): {through_index['chance']:.4f}")
    if through_index["n_near_ties"]:
        print(f"  note: {through_index['n_near_ties']} queries have candidates within float32 "
              "rounding of each other at a cut-off k; there faiss and torch may order them "
              "differently")
