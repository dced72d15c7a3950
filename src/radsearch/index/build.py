"""``build_index``: embed a manifest with a run's model into an index, chunk by chunk.

Each chunk is embedded, added and committed, so an interrupted build (Ctrl-C, ``kill -9``) keeps
every finished chunk; running the same command again skips the items already indexed (item ids are
derived from the image paths) and continues.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError
from radsearch.index.base import item_id


def cohort_items(cohort: Cohort) -> pd.DataFrame:
    """Index metadata of a cohort's rows; the key (and so the id) is the resolved image path."""
    table = cohort.table
    paths = [os.fspath(p.resolve()) for p in cohort.image_paths()]
    out = pd.DataFrame({"key": paths, "image": paths,
                        "subject": table["subject"].astype(str).to_numpy(),
                        "time": table["time"].to_numpy(np.float64)})
    for column in ("side", "view", "study", "labels", "report"):
        out[column] = table[column].astype(str).to_numpy() if column in table else ""
    out["id"] = [item_id(k) for k in paths]
    return out


def build_index(run_dir, manifest, out, *, backend: str = "faiss", factory: str | None = None,
                uri: str | None = None, collection: str | None = None, chunk: int = 512,
                checkpoint: str = "best", device: str = "auto", batch_size: int = 64,
                progress: bool | None = None, split: str | None = None,
                only=None) -> dict:
    """Index the rows of ``manifest`` (of one ``split``, passing the ``only`` filters, e.g.
    ``["time=0"]`` for first visits); returns counts for the report."""
    from radsearch.index import create_index, open_index
    from radsearch.index.embedder import load_embedder

    if chunk < 1:
        raise ConfigError(f"--chunk {chunk}: must be >= 1.")
    embedder = load_embedder(run_dir, checkpoint, device, batch_size)
    cohort = Cohort.load(manifest)
    if split is not None:
        cohort = cohort.split(split)
    if only:
        from radsearch.index.filters import combined_mask, parse_filters

        mask = combined_mask(parse_filters(only), cohort_items(cohort))
        if not mask.any():
            raise ConfigError(f"{manifest}: no row passes --only {' '.join(only)}.")
        cohort = cohort.subset(mask)
    out = Path(out)
    if (out / "header.json").exists():
        index = open_index(out, writable=True)
        index.check_fingerprint(embedder.fingerprint, what=f"run {run_dir}")
        if index.header["backend"] != backend:
            index.close()
            raise ConfigError(f"{out}: holds a {index.header['backend']} index, not {backend}; "
                              "choose another --out.")
    else:
        index = create_index(out, embedder.dim, embedder.fingerprint, backend=backend,
                             factory=factory, uri=uri, collection=collection)
        index.header["run"] = os.fspath(Path(run_dir).resolve())
    items = cohort_items(cohort)
    todo = np.flatnonzero(~items["id"].isin(index.table.index).to_numpy())
    already = len(items) - len(todo)
    from tqdm import tqdm

    bar = tqdm(total=len(items), initial=already, unit="img", desc="index build",
               disable=(not sys.stderr.isatty()) if progress is None else not progress,
               file=sys.stderr)
    try:
        for start in range(0, len(todo), chunk):
            rows = todo[start:start + chunk]
            vectors = embedder.embed_cohort(cohort.subset(rows))
            index.add(vectors, items.iloc[rows])
            index.commit()
            bar.update(len(rows))
    finally:
        bar.close()
        index.close(commit=False)
    return {"index": str(out), "added": int(len(todo)), "already_indexed": int(already),
            "count": len(index), "backend": backend}
