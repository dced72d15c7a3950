"""Persistent vector indexes of embeddings + metadata (one contract, faiss or Milvus behind it).

Typical use::

    from radsearch.index import build_index, open_index
    build_index("runs/AdaTriplet-AM-s0", "knees/manifest.csv", "knees.index")
    index = open_index("knees.index")
    hits = index.search(vectors, k=10, filters=["view=PA", "time<=5"])

``radsearch.search.Searcher`` embeds query images and turns these raw hits into typed results.
"""

from __future__ import annotations

import os
from pathlib import Path

from radsearch.errors import ConfigError, RadsearchError
from radsearch.index.base import (FORMAT_VERSION, FingerprintMismatchError, IndexFolderError,
                                  Neighbours, VectorIndex, item_id, new_header, read_header,
                                  read_metadata, verify_files)
from radsearch.index.filters import Filter, parse_filters
from radsearch.index.lock import IndexLockedError, WriterLock

BACKENDS = ("faiss", "milvus")


def _backend_class(name: str):
    if name == "faiss":
        from radsearch.index.faiss_backend import FaissIndex
        return FaissIndex
    if name == "milvus":
        from radsearch.index.milvus_backend import MilvusIndex
        return MilvusIndex
    raise ConfigError(f"--backend {name!r}: use one of {', '.join(BACKENDS)}.")


def create_index(path: str | os.PathLike, dim: int, fingerprint: dict | None = None, *,
                 backend: str = "faiss", factory: str | None = None, uri: str | None = None,
                 collection: str | None = None, refine: int = 4) -> VectorIndex:
    """A new, empty, writable index folder (commit 1). An existing index is an error."""
    path = Path(path)
    cls = _backend_class(backend)
    if backend == "faiss" and factory:
        from radsearch.index.faiss_backend import new_ann
        new_ann(dim, factory)   # refuse a bad factory string before creating anything
    if (path / "header.json").exists():
        raise IndexFolderError(f"{path}: an index already exists there; open it, or choose "
                               "another --out.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise IndexFolderError(f"{path}: exists and is not an empty folder; choose another --out.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RadsearchError(f"{path}: cannot create the index folder ({exc.strerror}).") from None
    lock = WriterLock(path).acquire()
    extra = {"factory": factory, "refine": int(refine)} if backend == "faiss" else \
        {"factory": factory, "uri": uri, "collection": collection or "radsearch"}
    header = new_header(backend, dim, fingerprint, **extra)
    import pandas as pd

    from radsearch.index.base import COLUMNS
    index = cls(path, header, pd.DataFrame(columns=list(COLUMNS)).astype(
        {"id": "int64", "time": "float64"}), True, lock)
    try:
        index.commit()
    except BaseException:
        lock.release()
        raise
    return index


def open_index(path: str | os.PathLike, writable: bool = False, verify: bool = True
               ) -> VectorIndex:
    """Open an index folder; checksums of its files are verified (``verify=False`` skips sha256)."""
    path = Path(path)
    lock = WriterLock(path).acquire() if writable and path.is_dir() else None
    try:
        header = read_header(path)
        verify_files(path, header, checksums=verify)
        meta = next((n for n in header.get("files", {}) if n.startswith("metadata-")), None)
        if meta is None:
            raise IndexFolderError(f"{path}: the header lists no metadata file; rebuild the "
                                   "index.")
        try:
            table = read_metadata(path / meta)
        except Exception as exc:  # sqlite3 / pandas raise many types for a broken file
            raise IndexFolderError(f"{path / meta}: unreadable metadata ({exc}); rebuild the "
                                   "index.") from None
        return _backend_class(header["backend"])(path, header, table, writable, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def build_index(run_dir, manifest, out, **kwargs):
    """Embed a manifest with a run's model into an index folder (resumable); see build.py."""
    from radsearch.index.build import build_index as _build

    return _build(run_dir, manifest, out, **kwargs)


__all__ = ["BACKENDS", "FORMAT_VERSION", "Filter", "FingerprintMismatchError", "IndexFolderError",
           "IndexLockedError", "Neighbours", "VectorIndex", "build_index", "create_index",
           "item_id", "open_index", "parse_filters"]
