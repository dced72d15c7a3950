"""The VectorIndex contract: a self-describing index folder of L2-normalised embeddings + metadata.

Folder layout (every backend)::

    INDEX/header.json          format version, backend, metric, dim, count, created, model
                               fingerprint, calibration, and the sha256 + size of every data file
    INDEX/metadata-<n>.sqlite  one row per item (id, subject, time, side, view, study, labels, …)
    INDEX/<backend files>-<n>  e.g. vectors-<n>.faiss; Milvus keeps vectors in its own store
    INDEX/.lock                single-writer lock

Memory: only the columns that filters and ranking by subject need stay in RAM (``RAM_COLUMNS``:
id, time, and subject/side/view/study/labels as pandas categoricals, a few bytes per item); the
long per-item text (``DISK_COLUMNS``: key, image path, report) is read from the commit's SQLite
file on demand, for the hits a search returns (``items``). A committed SQLite file never changes
(the next commit writes a new one), so it is opened read-only and immutable.

Commits are atomic: commit ``n`` writes new files with suffix ``n`` and then replaces
``header.json`` (write-then-rename). A reader or a ``kill -9`` at any moment therefore sees commit
``n-1`` or ``n``, never a mix. Files of commit ``n-1`` are kept so that a reader that has just read
the previous header still finds them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from radsearch.errors import ConfigError, DataError, RadsearchError
from radsearch.index.filters import Filter, parse_filters
from radsearch.index.lock import WriterLock
from radsearch.io import atomic_path, fsync_folder, write_json

FORMAT_VERSION = 1
HEADER = "header.json"
METRIC = "cosine (inner product of L2-normalised vectors)"
TEXT_COLUMNS = ("key", "image", "subject", "side", "view", "study", "labels", "report")
COLUMNS = ("id", "key", "image", "subject", "time", "side", "view", "study", "labels", "report")
CATEGORY_COLUMNS = ("subject", "side", "view", "study", "labels")
RAM_COLUMNS = ("id", "subject", "time", "side", "view", "study", "labels")
DISK_COLUMNS = ("key", "image", "report")


class IndexFolderError(RadsearchError):
    """An index folder is missing, corrupted, or of another format version."""


class FingerprintMismatchError(RadsearchError):
    """A query would be embedded with another model or preprocessing than the index."""


@dataclass
class Neighbours:
    """Raw search output: ``ids`` [Q, k] int64 (-1 = no item) and ``scores`` [Q, k] (cosine)."""

    ids: np.ndarray
    scores: np.ndarray


def item_id(key: str) -> int:
    """Stable 63-bit id of an item key (by default its image path): re-adding is idempotent."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little") >> 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def items_table(items: pd.DataFrame | list[dict] | None, n: int) -> pd.DataFrame:
    """Normalise item metadata to COLUMNS (ids from ``id`` or from ``key``/``image``)."""
    table = pd.DataFrame(items) if items is not None else pd.DataFrame(index=range(n))
    table = table.reset_index(drop=True)
    if len(table) != n:
        raise DataError(f"{len(table)} metadata rows for {n} vectors; give one row per vector.")
    for column in TEXT_COLUMNS:
        if column not in table:
            table[column] = ""
        table[column] = table[column].fillna("").astype(str)
    if (table["key"] == "").any():
        table["key"] = np.where(table["key"] == "", table["image"], table["key"])
    if "id" not in table or table["id"].isna().any():
        if (table["key"] == "").any():
            raise DataError("items need an 'id', a 'key' or an 'image' path to identify them.")
        table["id"] = [item_id(k) for k in table["key"]]
    table["id"] = table["id"].astype(np.int64)
    if "time" not in table:
        table["time"] = np.nan
    table["time"] = pd.to_numeric(table["time"], errors="coerce").astype(np.float64)
    if table["id"].duplicated().any():
        dup = table.loc[table["id"].duplicated(), "key"].iloc[0]
        raise DataError(f"item {dup!r} appears twice in one batch; give each item once.")
    return table[list(COLUMNS)]


class VectorIndex(ABC):
    """Embeddings with metadata, searchable by cosine similarity with metadata filters.

    Open with :func:`radsearch.index.open_index`, create with :func:`radsearch.index.create_index`.
    Writes (``add``, ``upsert``, ``remove``, ``set_calibration``) become visible to other processes
    at ``commit()``; ``with open_index(path, writable=True) as index:`` commits on success.
    """

    backend: ClassVar[str]

    def __init__(self, path: Path, header: dict, table: pd.DataFrame, writable: bool,
                 lock: WriterLock | None):
        self.path = Path(path)
        self.header = header
        self.table = ram_table(table)   # RAM_COLUMNS, indexed by id
        self._pending = items_table(None, 0).set_index("id", drop=False)   # added, uncommitted
        self._deleted: list[np.ndarray] = []   # ids removed since the last commit
        self._meta = MetadataReader(self.path, header)
        self.writable = writable
        self._lock = lock
        self._dirty = False
        self.graph: dict[str, np.ndarray] | None = None   # gallery kNN graph (re-ranking)
        name = next((n for n in header.get("files", {}) if n.startswith("graph-")), None)
        if name:
            with np.load(self.path / name) as data:
                self.graph = {key: data[key] for key in data.files}

    # ------------------------------------------------------------------ backend hooks
    @abstractmethod
    def _add_vectors(self, ids: np.ndarray, vectors: np.ndarray, table: pd.DataFrame) -> None: ...

    @abstractmethod
    def _remove_vectors(self, ids: np.ndarray) -> None: ...

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, filters: list[Filter]) -> Neighbours: ...

    @abstractmethod
    def _get_vectors(self, ids: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _save_files(self, commit: int) -> list[str]:
        """Write the backend's files for ``commit`` into the folder; return their names."""

    def _backend_info(self) -> dict:
        return {}

    @abstractmethod
    def _backend_ids(self) -> np.ndarray:
        """Every item id the vector store holds (for ``verify``)."""

    def verify(self) -> list[str]:
        """Problems found between the metadata and the vector store (empty list: consistent)."""
        stored = np.sort(self._backend_ids())
        mine = np.sort(self.ids())
        if len(stored) != len(mine):
            return [f"the vector store holds {len(stored)} items, the metadata {len(mine)}; "
                    "rebuild the index."]
        if not np.array_equal(stored, mine):
            return ["the vector store and the metadata hold different item ids; rebuild the "
                    "index."]
        return []

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.header["dim"])

    @property
    def fingerprint(self) -> dict:
        return dict(self.header.get("fingerprint") or {})

    @property
    def calibration(self) -> dict | None:
        return self.header.get("calibration")

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, item: int) -> bool:
        return int(item) in self.table.index

    def ids(self) -> np.ndarray:
        return self.table["id"].to_numpy(np.int64)

    # ------------------------------------------------------------------ writes
    def _check_writable(self) -> None:
        if not self.writable:
            raise RadsearchError(f"{self.path}: index opened read-only; open it with "
                                 "writable=True to change it.")

    def _vectors(self, vectors: np.ndarray, n_rows: int | None = None) -> np.ndarray:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise DataError(f"{self.path}: vectors of shape {array.shape}, but the index holds "
                            f"{self.dim}-dimensional embeddings.")
        if not np.isfinite(array).all():
            raise DataError(f"{self.path}: vectors contain NaN or infinite values.")
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        if (norms == 0).any():
            raise DataError(f"{self.path}: vector {int(np.flatnonzero(norms[:, 0] == 0)[0])} is "
                            "all zeros; cosine similarity is undefined for it.")
        return np.ascontiguousarray(array / norms)

    def add(self, vectors: np.ndarray, items: pd.DataFrame | list[dict] | None = None
            ) -> np.ndarray:
        """Add new items; an id already present is an error (use ``upsert``). Returns the ids."""
        self._check_writable()
        vectors = self._vectors(vectors)
        table = items_table(items, len(vectors))
        present = table["id"].isin(self.table.index)
        if present.any():
            raise DataError(f"{self.path}: item {table.loc[present, 'key'].iloc[0]!r} is already "
                            "in the index; use upsert to replace it or remove it first.")
        ids = table["id"].to_numpy(np.int64)
        self._add_vectors(ids, vectors, table)
        self.graph = None   # stale: rebuilt by build_graph
        self.table = stack_rows([self.table, ram_table(table)])
        pending = table.set_index("id", drop=False)
        pending.index.name = None
        self._pending = pending if not len(self._pending) else pd.concat([self._pending, pending])
        self._dirty = True
        return ids

    def upsert(self, vectors: np.ndarray, items: pd.DataFrame | list[dict] | None = None
               ) -> np.ndarray:
        """Add items, replacing those whose id is already present."""
        self._check_writable()
        vectors = self._vectors(vectors)
        table = items_table(items, len(vectors))
        old = table["id"][table["id"].isin(self.table.index)].to_numpy(np.int64)
        if len(old):
            self.remove(old)
        return self.add(vectors, table)

    def remove(self, ids) -> int:
        """Remove items by id; returns how many were present."""
        self._check_writable()
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        present = ids[np.isin(ids, self.table.index.to_numpy())]
        if len(present):
            self._remove_vectors(present)
            self.graph = None
            self._drop_rows(present)
        return int(len(present))

    def _drop_rows(self, ids: np.ndarray) -> None:
        """Forget the metadata of ``ids`` (all present); the SQLite rows go at the next commit."""
        self.table = self.table.drop(index=ids)
        self._pending = self._pending.drop(index=ids[np.isin(ids, self._pending.index)])
        self._deleted.append(np.asarray(ids, np.int64))
        self._dirty = True

    def build_graph(self, k: int = 20, batch: int = 4096) -> None:
        """Precompute every item's top-``k`` neighbours (for re-ranking a shortlist)."""
        self._check_writable()
        ids = self.ids()
        nbr = np.full((len(ids), k), -1, np.int64)
        sim = np.full((len(ids), k), -np.inf, np.float32)
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            found = self.search(self.get_vectors(chunk), min(k + 1, len(ids)))
            for row, item in enumerate(chunk):
                others = found.ids[row] != item
                keep = found.ids[row][others][:k]
                nbr[start + row, :len(keep)] = keep
                sim[start + row, :len(keep)] = found.scores[row][others][:k]
        self.graph = {"ids": ids, "neighbours": nbr, "scores": sim}
        self._dirty = True

    def set_calibration(self, calibration: dict | None) -> None:
        self._check_writable()
        self.header["calibration"] = calibration
        self._dirty = True

    # ------------------------------------------------------------------ reads
    def search(self, queries: np.ndarray, k: int = 10, filters=None) -> Neighbours:
        """Top-``k`` items per query by cosine similarity among items passing ``filters``.

        Filters run inside the backend; when at least ``k`` items pass them, exactly ``k`` come
        back (rows are padded with id -1 / score -inf only when fewer items match).
        """
        if k < 1:
            raise ConfigError(f"k={k}: ask for at least one result.")
        queries = self._vectors(queries)
        filters = parse_filters(filters)
        if not len(self.table):
            return Neighbours(np.full((len(queries), k), -1, np.int64),
                              np.full((len(queries), k), -np.inf, np.float32))
        return self._search(queries, k, filters)

    def items(self, ids) -> pd.DataFrame:
        """Metadata rows of ``ids`` in order (ids not in the index are dropped)."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        rows = self.table.index.get_indexer(ids)   # hash lookups: O(len(ids)), not O(index size)
        rows = rows[rows >= 0]
        # numpy takes per column: pandas' iloc/astype/reindex cost ~10 ms per call at 10 rows,
        # more than the search itself, and items() runs once per query row
        ids = self.table["id"].to_numpy(np.int64)[rows]
        out = {"id": ids, "time": self.table["time"].to_numpy(np.float64)[rows]}
        for column in CATEGORY_COLUMNS:
            values = self.table[column].array
            out[column] = values.categories.take(values.codes[rows]).to_numpy(object)
        out.update(self._disk_rows(ids))
        return pd.DataFrame({c: out[c] for c in COLUMNS})

    def _disk_rows(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """DISK_COLUMNS of present ``ids`` in order: uncommitted rows from memory, the rest from
        the last commit's SQLite file (one indexed lookup per id, in batches)."""
        found = {int(r[0]): r[1:] for r in self._meta.rows(ids, DISK_COLUMNS)}
        if len(self._pending):
            new = self._pending.loc[ids[np.isin(ids, self._pending.index)], list(DISK_COLUMNS)]
            found.update(zip(new.index.tolist(), new.itertuples(index=False, name=None)))
        blank = ("",) * len(DISK_COLUMNS)
        table = [found.get(int(i), blank) for i in ids]
        return {c: np.array([row[j] if row[j] is not None else "" for row in table], dtype=object)
                for j, c in enumerate(DISK_COLUMNS)}

    def filter_mask(self, filters: list[Filter]) -> np.ndarray:
        """Rows of ``self.table`` passing every filter (fields held on disk are asked of SQLite)."""
        mask = np.ones(len(self.table), dtype=bool)
        for f in filters:
            if f.field in self.table.columns:
                mask &= f.mask(self.table)
                continue
            hits = self._meta.matching(f)
            if len(self._pending):
                pending = self._pending["id"].to_numpy(np.int64)
                hits = np.concatenate([hits[~np.isin(hits, pending)],
                                       pending[f.mask(self._pending)]])
            mask &= np.isin(self.ids(), hits)
        return mask

    def get_vectors(self, ids) -> np.ndarray:
        """Stored (normalised) vectors of ``ids``, in order."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        missing = ids[~np.isin(ids, self.table.index.to_numpy())]
        if len(missing):
            raise DataError(f"{self.path}: item id {int(missing[0])} is not in the index.")
        return self._get_vectors(ids)

    def check_fingerprint(self, fingerprint: dict, what: str = "the query model") -> None:
        """Refuse, in one line, to mix embeddings of another model or preprocessing."""
        mine = self.fingerprint
        for key in sorted(set(mine) | set(fingerprint)):
            if mine.get(key) != fingerprint.get(key):
                raise FingerprintMismatchError(
                    f"{self.path}: {what} differs from the index's model in {key} "
                    f"({fingerprint.get(key)!r} vs {mine.get(key)!r}); search with the run the "
                    "index was built with, or build a new index.")

    def info(self) -> dict:
        """The header (without file checksums) plus live counts."""
        out = {k: v for k, v in self.header.items() if k != "files"}
        out["path"] = str(self.path)
        out["count"] = len(self)
        out["subjects"] = int(self.table["subject"].nunique()) if len(self) else 0
        out.update(self._backend_info())
        return out

    # ------------------------------------------------------------------ commits
    def commit(self) -> int:
        """Publish all writes atomically; returns the commit number."""
        self._check_writable()
        try:
            return self._commit()
        except OSError as exc:
            raise RadsearchError(f"{self.path}: cannot write the index ({exc.strerror or exc}); "
                                 "free disk space or fix the folder's permissions, then rerun "
                                 "(the last commit is intact).") from None

    def _commit(self) -> int:
        n = int(self.header.get("commit", 0)) + 1
        names = self._save_files(n)
        meta = f"metadata-{n}.sqlite"
        deleted = np.concatenate(self._deleted) if self._deleted else np.zeros(0, np.int64)
        write_metadata(self.path / meta, self._pending, self._meta.path, deleted)
        names.append(meta)
        if self.graph is not None:
            tmp = self.path / f".graph-{n}.tmp.npz"
            np.savez(tmp, **self.graph)
            os.replace(tmp, self.path / f"graph-{n}.npz")
            names.append(f"graph-{n}.npz")
        self.header["graph_k"] = None if self.graph is None else \
            int(self.graph["neighbours"].shape[1])
        previous = set(self.header.get("files", {}))
        self.header.update({"commit": n, "count": len(self), "updated": now(),
                            "files": {name: {"sha256": sha256_file(self.path / name),
                                             "size": (self.path / name).stat().st_size}
                                      for name in names}})
        write_json(self.path / HEADER, self.header)
        fsync_folder(self.path)
        self._meta.close()
        self._meta = MetadataReader(self.path, self.header)
        self._pending = self._pending.iloc[:0]
        self._deleted = []
        self._collect_garbage(keep=set(names) | previous)
        self._dirty = False
        return n

    def _collect_garbage(self, keep: set[str]) -> None:
        for child in self.path.iterdir():
            if child.is_file() and child.name not in keep and child.name != HEADER \
                    and not child.name.startswith("."):
                if child.name.split("-")[0] in ("metadata", "vectors", "ann", "state", "graph"):
                    child.unlink(missing_ok=True)

    def close(self, commit: bool | None = None) -> None:
        if self.writable and self._dirty and commit is not False:
            self.commit()
        self._meta.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)


# ---------------------------------------------------------------------- files
def write_metadata(path: Path, new: pd.DataFrame, previous: Path | None = None,
                   deleted: np.ndarray | None = None) -> None:
    """The next commit's SQLite file: a copy of ``previous`` without ``deleted`` plus ``new`` rows
    (the items table is never rebuilt from memory, which holds only RAM_COLUMNS)."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        if previous is not None:
            shutil.copyfile(previous, tmp)
        con = sqlite3.connect(tmp)
        try:
            with con:
                if previous is None:
                    new[list(COLUMNS)].iloc[:0].to_sql("items", con, index=False)
                    con.execute("CREATE UNIQUE INDEX items_id ON items(id)")
                    con.execute("CREATE INDEX items_subject ON items(subject)")
                if deleted is not None and len(deleted):
                    con.executemany("DELETE FROM items WHERE id = ?",
                                    ((int(i),) for i in np.unique(deleted)))
                if len(new):
                    new[list(COLUMNS)].to_sql("items", con, index=False, if_exists="append",
                                              chunksize=10_000)
        finally:
            con.close()


def ram_table(table: pd.DataFrame) -> pd.DataFrame:
    """RAM_COLUMNS of an items table, text as categoricals, indexed by id."""
    if list(table.columns) == list(RAM_COLUMNS) and all(
            isinstance(table[c].dtype, pd.CategoricalDtype) for c in CATEGORY_COLUMNS):
        return table
    columns = {"id": np.asarray(table["id"] if "id" in table else [], np.int64),
               "time": np.asarray(table["time"] if "time" in table else [], np.float64)}
    for column in CATEGORY_COLUMNS:
        values = table[column].fillna("").astype(str) if column in table else \
            pd.Series("", index=table.index, dtype=object)
        columns[column] = pd.Categorical(values.to_numpy(object))
    return _frame(columns)


def _frame(columns: dict) -> pd.DataFrame:
    out = pd.DataFrame({c: columns[c] for c in RAM_COLUMNS}, copy=False)
    out.index = pd.Index(out["id"].to_numpy(np.int64))
    return out


def stack_rows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of several ram_table frames, one after the other, keeping the text categorical
    (``pd.concat`` of categoricals with other categories would turn them into Python objects)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    columns = {c: np.concatenate([p[c].to_numpy() for p in parts]) for c in ("id", "time")}
    for column in CATEGORY_COLUMNS:
        columns[column] = union_categoricals([p[column] for p in parts])
    return _frame(columns)


def read_metadata(path: Path, chunk: int = 50_000) -> pd.DataFrame:
    """The in-memory part of the items table (RAM_COLUMNS), read in chunks so that a 1M-row
    archive never holds its text as Python objects: each chunk's text becomes categoricals."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    parts = [ram_table(pd.DataFrame({"id": [], "time": []}))]
    try:
        for part in pd.read_sql(f"SELECT {', '.join(RAM_COLUMNS)} FROM items", con,
                                chunksize=chunk):
            parts.append(ram_table(part))
    finally:
        con.close()
    return stack_rows(parts)


class MetadataReader:
    """Read-only access to the SQLite file of the header's commit (thread-safe; no file: empty).

    The file stays open for the index's lifetime: a later commit may delete it from the folder,
    but the open handle still reads the commit this index was opened at.
    """

    BATCH = 500   # ids per IN (…) query, under SQLite's parameter limit

    def __init__(self, folder: Path, header: dict):
        name = next((n for n in header.get("files", {}) if n.startswith("metadata-")), None)
        self.path = Path(folder) / name if name else None
        self._con = None if self.path is None else sqlite3.connect(
            f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    def _query(self, sql: str, params) -> list[tuple]:
        if self._con is None:
            return []
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def rows(self, ids: np.ndarray, columns) -> list[tuple]:
        """(id, *columns) rows of ``ids`` found in the file, in no particular order."""
        found = []
        unique = np.unique(ids).tolist()
        for start in range(0, len(unique), self.BATCH):
            chunk = unique[start:start + self.BATCH]
            found += self._query(f"SELECT id, {', '.join(columns)} FROM items WHERE id IN "
                                 f"({', '.join('?' * len(chunk))})", chunk)
        return found

    def matching(self, f: Filter) -> np.ndarray:
        """Ids whose row passes filter ``f`` (text fields kept on disk, e.g. image)."""
        clause, params = f.sql()
        return np.array([r[0] for r in self._query(f"SELECT id FROM items WHERE {clause}",
                                                   params)], dtype=np.int64)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def read_header(path: Path) -> dict:
    header_path = Path(path) / HEADER
    if not Path(path).is_dir():
        raise IndexFolderError(f"{path}: index folder not found; create it with `radsearch index "
                               "build RUN MANIFEST --out {path}`.")
    if not header_path.is_file():
        raise IndexFolderError(f"{path}: not a radsearch index (no {HEADER}); build one with "
                               "`radsearch index build`.")
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise IndexFolderError(f"{header_path}: unreadable or truncated ({exc}); restore the "
                               "folder from a backup or rebuild the index.") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise IndexFolderError(f"{header_path}: format version {header.get('format_version')!r}, "
                               f"this radsearch reads version {FORMAT_VERSION}; rebuild the index.")
    return header


def verify_files(path: Path, header: dict, checksums: bool = True) -> None:
    """Every data file of the commit exists with its recorded size (and sha256)."""
    for name, record in header.get("files", {}).items():
        file = Path(path) / name
        if not file.is_file():
            raise IndexFolderError(f"{file}: missing from the index folder (commit "
                                   f"{header.get('commit')}); restore it or rebuild the index.")
        if file.stat().st_size != record["size"]:
            raise IndexFolderError(f"{file}: {file.stat().st_size} bytes, the header records "
                                   f"{record['size']} (truncated?); restore it or rebuild.")
        if checksums and sha256_file(file) != record["sha256"]:
            raise IndexFolderError(f"{file}: sha256 differs from the header (corrupted); restore "
                                   "it or rebuild the index.")


def new_header(backend: str, dim: int, fingerprint: dict | None, **extra: Any) -> dict:
    return {"format_version": FORMAT_VERSION, "backend": backend, "metric": METRIC,
            "dim": int(dim), "count": 0, "created": now(), "updated": now(), "commit": 0,
            "fingerprint": dict(fingerprint or {}), "calibration": None, **extra, "files": {}}
