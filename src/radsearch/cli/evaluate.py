"""`radsearch evaluate` — score any embeddings (ours or a foundation model's) under a protocol.

Row i of the embeddings (N × D, ``.npy``) belongs to row i of the manifest. Prints the per-year
(forensic) or per-class (diagnostic) table; ``--json`` writes the machine-readable result and
``--table STEM`` writes STEM.md / .csv / .json tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table as RichTable

from radsearch.cli.console import console
from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, DataError
from radsearch.io import write_json

FORENSIC_COLUMNS = ("mAP", "mAP@R", "CMC@1", "CMC@5", "CMC@1_first", "CMC@5_first")
DIAGNOSTIC_COLUMNS = ("mAP@1", "mAP@5", "mAP@10", "mAP@20", "mAP", "P@10", "MRR", "nDCG@10")


def register(app: typer.Typer) -> None:
    """Add the `evaluate` command to the root app."""
    app.command("evaluate")(evaluate_command)


def evaluate_command(
    run: Path | None = typer.Argument(None, help="A training run folder (embeds its test split "
                                                 "with the best checkpoint)."),
    embeddings: list[Path] = typer.Option(
        [], "--embeddings", "-e", help="Embeddings .npy [N, D], row i = manifest row i. Repeat "
                                       "for a k-fold ensemble (mean cosine similarity)."),
    cohort_path: Path | None = typer.Option(None, "--cohort", "-c", help="Manifest of the rows."),
    protocol: str = typer.Option("forensic", "--protocol", "-p",
                                 help="forensic (same subject across years) or diagnostic "
                                      "(same findings)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON here."),
    table_out: Path | None = typer.Option(None, "--table",
                                          help="Write STEM.md, STEM.csv and STEM.json tables."),
    split: str | None = typer.Option(None, "--split", help="Forensic: use only this split's "
                                                           "rows (train/val/test)."),
    view: str | None = typer.Option(None, "--view", help="Use only this view (e.g. PA)."),
    leave_one_out: bool = typer.Option(False, "--leave-one-out",
                                       help="Forensic: query = gallery = all rows, ignoring the "
                                            "subject's images of the same year and view."),
    bands: str | None = typer.Option(None, "--bands", help="Forensic: year bands, e.g. "
                                                           "'4-5,6-8,9-12'."),
    at_least: list[int] = typer.Option([], "--at-least", help="Forensic: add a group of queries "
                                                              "at >= N years (repeatable)."),
    database: str = typer.Option("train", "--database", help="Diagnostic: database split."),
    queries: str = typer.Option("test", "--queries", help="Diagnostic: query split."),
    relevance: str = typer.Option("any", "--relevance",
                                  help="Diagnostic: any (shared label) | exact (same label set); nDCG@10 "
                                       "uses graded Jaccard gain."),
    per_class_relevance: str = typer.Option("class", "--per-class-relevance",
                                            help="Diagnostic per-class rows: class | overall."),
    normalisation: str = typer.Option("dscmr", "--normalisation",
                                      help="Diagnostic mAP@k: dscmr | ath | textbook."),
    logits: Path | None = typer.Option(None, "--logits", help="Diagnostic: label-head logits "
                                                              ".npy [N, classes] for Acc@1/5."),
    det: Path | None = typer.Option(None, "--det", help="Open-set: write the DET curve PNG."),
    rerank: str = typer.Option("none", "--rerank", help="Forensic/open-set: none, qe, dba or "
                                                        "k-reciprocal."),
    qe_alpha: float = typer.Option(3.0, "--qe-alpha", help="QE/DBA: weight = score^alpha."),
    qe_n: int = typer.Option(5, "--qe-n", help="QE: expand with the top-n gallery items."),
    dba_k: int = typer.Option(3, "--dba-k", help="DBA: augment with the k nearest neighbours."),
    k1: int = typer.Option(3, "--k1", help="k-reciprocal: k1 (reciprocal neighbours)."),
    k2: int = typer.Option(3, "--k2", help="k-reciprocal: k2 (local query expansion; 1 = off)."),
    lam: float = typer.Option(0.3, "--lambda", help="k-reciprocal: weight of the original "
                                                    "distance in d* (1 = no re-ranking)."),
    shortlist: int = typer.Option(100, "--shortlist", help="k-reciprocal: re-rank the top-K."),
    calibration: str = typer.Option("isotonic", "--calibration",
                                    help="Open-set: score → LR map for Cllr (isotonic or "
                                         "logistic)."),
) -> None:
    """Evaluate embeddings under the forensic or diagnostic protocol and print the table."""
    from radsearch.evaluation import evaluate_diagnostic, evaluate_forensic, result_table
    from radsearch.evaluation.protocols import split_rows
    from radsearch.search.rerank_eval import RerankParams, check_method

    if protocol not in ("forensic", "diagnostic", "open-set"):
        raise ConfigError(f"--protocol {protocol!r}: use forensic, diagnostic or open-set.")
    rerank = check_method(rerank)
    if protocol == "diagnostic" and rerank != "none":
        raise ConfigError("--rerank is for the forensic and open-set protocols; drop it for "
                          "--protocol diagnostic.")
    params = RerankParams(alpha=qe_alpha, qe_n=qe_n, dba_k=dba_k, k1=k1, k2=k2, lam=lam,
                          shortlist=shortlist)
    arrays, cohort = _inputs(run, embeddings, cohort_path)
    if split is not None and (protocol == "open-set" or rerank != "none"):
        # re-rank / search inside the evaluated split: the gallery the protocol sees
        rows = split_rows(cohort, split)
        arrays, cohort, split = [x[rows] for x in arrays], cohort.subset(rows), None
    if protocol == "open-set":
        return _open_set(arrays, cohort, json_out, det, rerank, params, calibration)
    if protocol == "forensic":
        if rerank != "none":
            if leave_one_out:
                raise ConfigError("--rerank with --leave-one-out: re-ranking needs the gallery = "
                                  "year 0 layout; drop one of them.")
            from radsearch.search.rerank_eval import rerank_for_evaluation
            if view is not None:   # the gallery is the view's year-0 images
                from radsearch.evaluation.protocols import _restrict_view
                rows = _restrict_view(cohort, view)
                arrays, cohort, view = [x[rows] for x in arrays], cohort.subset(rows), None
            arrays = rerank_for_evaluation(arrays, cohort, rerank, params)
        result = evaluate_forensic(arrays if len(arrays) > 1 else arrays[0], cohort,
                                   leave_one_out=leave_one_out, view=view, split=split,
                                   year_bands=[b.strip() for b in bands.split(",") if b.strip()]
                                   if bands else None, at_least=at_least or None)
        columns = FORENSIC_COLUMNS
    else:
        if not cohort.has("labels"):
            raise ConfigError(f"{cohort.source}: no 'labels' column; the diagnostic protocol "
                              "needs findings joined by '|' in a labels column.")
        logit_array = _load_array(logits, "logits") if logits is not None else None
        result = evaluate_diagnostic(arrays if len(arrays) > 1 else arrays[0], cohort,
                                     database=database, queries=queries, relevance=relevance,
                                     per_class_relevance=per_class_relevance,
                                     normalisation=normalisation, logits=logit_array, view=view)
        columns = DIAGNOSTIC_COLUMNS + (("Acc@1", "Acc@5") if logits is not None else ())
    table = result_table(result, [c for c in columns if c in result.groups["all"]], digits=3)
    _print(table, result)
    data = result.to_dict()
    if protocol == "forensic" and run is not None and not embeddings:
        data["references"] = _print_references(run, result)
    if json_out is not None:
        write_json(json_out, data)
        console().print(f"wrote {json_out}")
    if table_out is not None:
        from radsearch.evaluation import write_tables

        for path in write_tables(result_table(result), table_out):
            console().print(f"wrote {path}")


def _open_set(arrays: list, cohort: Cohort, json_out: Path | None, det: Path | None,
              rerank: str, params, calibration: str) -> None:
    """`--protocol open-set`: FNIR at FPIR per years apart, cross-validated Cllr, DET PNG."""
    from radsearch.evaluation.openset import evaluate_open_set, plot_det
    from radsearch.evaluation.protocols import embedding_matrix
    from radsearch.search.rerank_eval import open_set_search

    vectors = embedding_matrix(arrays, len(cohort)).numpy()
    search = None if rerank == "none" else open_set_search(vectors, cohort, rerank, params)
    result = evaluate_open_set(vectors, cohort, calibration=calibration, search=search)
    keys = [k for k in result.groups["all"] if k.startswith("FNIR")] + \
        ["rank1_identification", "Cllr", "n_mated", "n_nonmated"]
    out = console()
    out.print(f"open-set identification, gallery N = {result.n_gallery} (first visits), rank 1; "
              f"re-ranking {rerank}; thresholds set on all non-mated searches; Cllr of the "
              f"{calibration} calibration, cross-validated by subject", markup=False,
              highlight=False)
    out.print("years  " + "  ".join(f"{k:>16}" for k in keys), markup=False, highlight=False)
    for name, group in result.groups.items():
        out.print(f"{name:>5}  " + "  ".join(f"{group[k]:>16.3f}" if isinstance(group[k], float)
                                             else f"{group[k]:>16}" for k in keys),
                  markup=False, highlight=False)
    unreliable = [t for t, ok in result.groups["all"]["FPIR_reliable"].items() if not ok]
    if unreliable:
        out.print(f"FPIR {', '.join(unreliable)}: fewer than 1/FPIR non-mated searches; the "
                  "threshold is the largest non-mated score (FNIR is an upper bound)",
                  markup=False, highlight=False)
    data = result.to_dict()
    data["rerank"] = {"method": rerank, **vars(params)} if rerank != "none" else None
    data["calibration"] = calibration
    if json_out is not None:
        write_json(json_out, data)
        out.print(f"wrote {json_out}", markup=False, highlight=False)
    if det is not None:
        plot_det(result, det)
        out.print(f"wrote {det}", markup=False, highlight=False)


def _inputs(run: Path | None, embeddings: list[Path], cohort_path: Path | None
            ) -> tuple[list[np.ndarray], Cohort]:
    """Embeddings and cohort from files, or from a run folder (``--cohort`` overrides)."""
    cohort = Cohort.load(cohort_path) if cohort_path is not None else None
    if embeddings:
        if cohort is None:
            raise ConfigError("--embeddings needs --cohort MANIFEST (row i of the embeddings "
                              "belongs to row i of the manifest).")
        from radsearch.evaluation.protocols import embedding_matrix

        arrays = [_load_array(path, "embeddings") for path in embeddings]
        for path, array in zip(embeddings, arrays):
            embedding_matrix(array, len(cohort), source=f"{path} (vs {cohort.source})")
        return arrays, cohort
    if run is None:
        raise ConfigError("nothing to evaluate: give --embeddings E.npy --cohort MANIFEST, or a "
                          "training run folder.")
    try:
        from radsearch.training.embed import default_eval_cohort, embed_run
    except ImportError as exc:
        raise ConfigError(f"cannot evaluate run {run}: radsearch.training.embed is not available "
                          f"({exc}); pass --embeddings and --cohort instead.") from exc
    if cohort is None:
        cohort = default_eval_cohort(run)
    return [np.asarray(embed_run(run, cohort, checkpoint="best"))], cohort


def _print_references(run: Path, result) -> dict[str, dict]:
    """Print the trained model beside the run's reference rows; return references.json's content."""
    from radsearch.cli.metric_rows import print_metrics, reference_rows
    from radsearch.training.embed import load_run_config
    from radsearch.training.rundir import RunDir

    run_dir = RunDir(run)
    if not run_dir.references.is_file():
        console().print(f"no reference rows: {run_dir.references} does not exist (`radsearch "
                        "train` writes it when the run has a test split).", markup=False,
                        highlight=False)
        return {}
    name = f"{load_run_config(run).method.name} (trained)"
    print_metrics("all years apart pooled; reference rows from references.json (the run's test "
                  "split)", {name: result.groups["all"], **reference_rows(run_dir)})
    return run_dir.read_json("references")


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found.")
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: {what} must be a NumPy .npy file (np.save(path, array)).")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read as a .npy array ({exc}).") from exc


def _print(table, result) -> None:
    out = console()
    rich_table = RichTable(title=f"{table.title} — gallery {result.n_gallery} images, "
                                 f"{result.n_skipped_queries} queries skipped (no relevant item)")
    for index, name in enumerate(table.header):
        rich_table.add_column(name, justify="left" if index == 0 else "right", no_wrap=True)
    for row in table.rows:
        rich_table.add_row(*row)
    out.print(rich_table)
    if result.protocol == "forensic":
        console().print("CMC@k = multi-match (AdaTriplet tables); CMC@k_first = first match.")
    else:
        console().print(f"relevance: {result.settings['relevance']}; mAP@k normalisation: "
                        f"{result.settings['normalisation']}; per-class rows: "
                        f"{result.settings['per_class_relevance']} relevance.")
