"""`radsearch index build | add | remove | info | verify | calibrate | graph | compact`.

Thin commands over :mod:`radsearch.index`; ``--json`` prints the machine-readable result.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from radsearch.errors import ConfigError

index_app = typer.Typer(help="Build and maintain a persistent vector index of a cohort.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the `index` command group to the root app."""
    app.add_typer(index_app, name="index")


def _print(data: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            print(line)


def _run_of(index, run: Path | None) -> Path:
    from radsearch.search.searcher import default_run

    run = run or default_run(index)
    if run is None:
        raise ConfigError(f"{index.path}: the run folder it was built with is not recorded or "
                          "gone; pass --run RUN.")
    return run


@index_app.command("build")
def build_command(
    run: Path = typer.Argument(..., help="Training run folder (its best checkpoint embeds)."),
    manifest: Path | None = typer.Argument(None, help="Manifest of the images to index."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to create (or resume)."),
    dicomweb: str | None = typer.Option(None, "--dicomweb", help="Instead of MANIFEST: pull a "
                                        "PACS over DICOMweb (URL of its root) into INDEX.dicomweb."),
    study_filter: list[str] = typer.Option([], "--study-filter", help="With --dicomweb: QIDO-RS "
                                           "filter KEY=VALUE, e.g. ModalitiesInStudy=DX."),
    pseudonym_key: Path | None = typer.Option(None, "--pseudonym-key", help="With --dicomweb: "
                                              "key file; store HMAC-SHA256 pseudonyms instead of "
                                              "PatientID."),
    backend: str = typer.Option("faiss", "--backend", help="faiss (embedded) or milvus."),
    factory: str | None = typer.Option(None, "--factory",
                                       help="faiss factory string for approximate search, e.g. "
                                            "HNSW32 (default: exact); milvus: index type "
                                            "(FLAT, HNSW, IVF_FLAT)."),
    uri: str | None = typer.Option(None, "--uri", help="milvus: server URI "
                                                       "(default: milvus-lite inside INDEX)."),
    collection: str | None = typer.Option(None, "--collection", help="milvus: collection name."),
    split: str | None = typer.Option(None, "--split", help="Index only this split's rows."),
    only: list[str] = typer.Option([], "--only", help="Index only rows passing FIELD OP VALUE "
                                                      "(repeatable), e.g. time=0."),
    chunk: int = typer.Option(512, "--chunk", help="Images per commit (resume granularity)."),
    graph: int = typer.Option(0, "--graph", help="Also precompute a K-nearest-neighbour graph "
                                                 "for re-ranking (K, e.g. 20)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Embed MANIFEST with RUN's model into INDEX, chunk by chunk (rerun to resume)."""
    from radsearch.datasets.dicomweb import manifest_for_index
    from radsearch.index import build_index, open_index

    manifest = manifest_for_index(manifest, dicomweb, study_filter, out,
                                  pseudonym_key=pseudonym_key)

    result = build_index(run, manifest, out, backend=backend, factory=factory, uri=uri,
                         collection=collection, chunk=chunk, device=device, split=split,
                         only=only)
    if graph:
        with open_index(out, writable=True) as index:
            index.build_graph(graph)
        result["graph_k"] = graph
    _print(result, as_json, [f"{out}: {result['count']} items ({result['added']} added, "
                             f"{result['already_indexed']} already indexed), backend "
                             f"{result['backend']}"])


@index_app.command("add")
def add_command(
    index_path: Path = typer.Argument(..., metavar="INDEX"),
    manifest: Path | None = typer.Argument(None, help="Manifest of the images to add."),
    run: Path | None = typer.Option(None, "--run", help="Run folder (default: the one the index "
                                                        "was built with)."),
    dicomweb: str | None = typer.Option(None, "--dicomweb", help="Instead of MANIFEST: pick up "
                                        "new studies from a PACS over DICOMweb."),
    study_filter: list[str] = typer.Option([], "--study-filter", help="With --dicomweb: QIDO-RS "
                                           "filter KEY=VALUE."),
    pseudonym_key: Path | None = typer.Option(None, "--pseudonym-key", help="With --dicomweb: "
                                              "the key file the index was built with."),
    split: str | None = typer.Option(None, "--split"),
    only: list[str] = typer.Option([], "--only", help="Only rows passing FIELD OP VALUE."),
    chunk: int = typer.Option(512, "--chunk"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a manifest's images (already indexed images are skipped)."""
    from radsearch.datasets.dicomweb import manifest_for_index
    from radsearch.index import build_index, open_index

    manifest = manifest_for_index(manifest, dicomweb, study_filter, index_path,
                                  pseudonym_key=pseudonym_key)

    index = open_index(index_path)
    backend = index.header["backend"]
    run = _run_of(index, run)
    index.close()
    result = build_index(run, manifest, index_path, backend=backend, chunk=chunk, split=split,
                         only=only)
    _print(result, as_json, [f"{index_path}: {result['count']} items ({result['added']} added, "
                             f"{result['already_indexed']} already indexed)"])


@index_app.command("remove")
def remove_command(
    index_path: Path = typer.Argument(..., metavar="INDEX"),
    ids: list[int] = typer.Option([], "--id", help="Item id (repeatable)."),
    subjects: list[str] = typer.Option([], "--subject", help="Remove all images of a subject."),
    images: list[Path] = typer.Option([], "--image", help="Remove an image by its path."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove items by id, subject or image path."""
    import os

    from radsearch.index import item_id, open_index

    if not (ids or subjects or images):
        raise ConfigError("nothing to remove: give --id, --subject or --image.")
    with open_index(index_path, writable=True) as index:
        chosen = list(ids) + [item_id(os.fspath(p.resolve())) for p in images]
        if subjects:
            chosen += index.table.loc[index.table["subject"].isin(subjects), "id"].tolist()
        removed = index.remove(chosen)
        count = len(index)
    _print({"removed": removed, "count": count}, as_json,
           [f"{index_path}: removed {removed} items, {count} left"])


@index_app.command("info")
def info_command(index_path: Path = typer.Argument(..., metavar="INDEX"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Header of the index: backend, dimension, count, model fingerprint, calibration."""
    from radsearch.index import open_index

    info = open_index(index_path, verify=False).info()
    lines = [f"{k}: {json.dumps(v, default=str)}" for k, v in info.items()
             if k not in ("calibration", "fingerprint")]
    lines += [f"fingerprint.{k}: {v}" for k, v in info["fingerprint"].items()]
    cal = info.get("calibration")
    if cal:
        lines.append(f"calibration: N = {cal['n_gallery']}, {cal['n_mated']} mated / "
                     f"{cal['n_nonmated']} non-mated searches, Cllr (in-sample) = "
                     f"{cal['cllr']:.3f}")
        lines += [f"  FPIR {r['target_fpir']}: T = {r['threshold']:.4f}, FNIR = {r['fnir']:.3f}"
                  + ("" if r["reliable"] else " (fewer than 1/FPIR non-mated searches)")
                  for r in cal["thresholds"]]
    else:
        lines.append("calibration: none (run `radsearch index calibrate INDEX MANIFEST`)")
    _print(info, as_json, lines)


@index_app.command("verify")
def verify_command(index_path: Path = typer.Argument(..., metavar="INDEX"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Check every file's sha256 and that the backend holds exactly the indexed items."""
    from radsearch.index import open_index

    index = open_index(index_path, verify=True)
    problems = index.verify()
    if problems:
        raise ConfigError(f"{index_path}: {problems[0]}")
    _print({"ok": True, "count": len(index), "commit": index.header["commit"]}, as_json,
           [f"{index_path}: ok ({len(index)} items, commit {index.header['commit']})"])


@index_app.command("calibrate")
def calibrate_command(
    index_path: Path = typer.Argument(..., metavar="INDEX"),
    manifest: Path = typer.Argument(..., help="Labelled cohort whose identities are held out of "
                                              "the index (first visits become extra gallery, "
                                              "later visits the probes)."),
    run: Path | None = typer.Option(None, "--run", help="Run folder (default: the index's)."),
    split: str | None = typer.Option(None, "--split", help="Use only this split's rows."),
    method: str = typer.Option("isotonic", "--method", help="Score → LR map: isotonic (PAV, "
                                                            "smoothed) or logistic."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fit open-set thresholds (FPIR 0.1/0.01/0.001) and score → log10 LR; store in the index."""
    from radsearch.cohort import Cohort
    from radsearch.index import open_index
    from radsearch.index.calibration import calibrate
    from radsearch.index.embedder import load_embedder

    with open_index(index_path, writable=True) as index:
        run = _run_of(index, run)
        embedder = load_embedder(run)
        index.check_fingerprint(embedder.fingerprint, what=f"run {run}")
        cohort = Cohort.load(manifest)
        if split is not None:
            cohort = cohort.split(split)
        record = calibrate(index, embedder.embed_cohort(cohort), cohort, method=method)
        index.set_calibration(record)
    lines = [f"{index_path}: calibrated on {record['n_mated']} mated and {record['n_nonmated']} "
             f"non-mated searches at N = {record['n_gallery']}; Cllr (in-sample) = "
             f"{record['cllr']:.3f}"]
    lines += [f"  FPIR {r['target_fpir']}: T = {r['threshold']:.4f}, FNIR = {r['fnir']:.3f}"
              + ("" if r["reliable"] else " (fewer than 1/FPIR non-mated searches: unreliable)")
              for r in record["thresholds"]]
    if record.get("warning"):
        lines.append(f"warning: {record['warning']}")
    _print(record, as_json, lines)


@index_app.command("graph")
def graph_command(index_path: Path = typer.Argument(..., metavar="INDEX"),
                  k: int = typer.Option(20, "--k", help="Neighbours per item.")) -> None:
    """Precompute the gallery kNN graph used by --rerank dba / k-reciprocal."""
    from radsearch.index import open_index

    with open_index(index_path, writable=True) as index:
        index.build_graph(k)
    print(f"{index_path}: {k}-NN graph of {len(index)} items stored")


@index_app.command("compact")
def compact_command(index_path: Path = typer.Argument(..., metavar="INDEX")) -> None:
    """Rebuild an approximate (HNSW/IVF) index without its tombstones."""
    from radsearch.index import open_index

    with open_index(index_path, writable=True) as index:
        if hasattr(index, "compact"):
            index.compact()
    print(f"{index_path}: compacted ({len(index)} items)")
