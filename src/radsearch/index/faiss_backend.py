"""FaissIndex: the embedded default backend.

* Exact: ``IndexIDMap2(IndexFlatIP)`` over L2-normalised vectors with the 64-bit item ids; it is
  also the store of record (removal and reconstruction by id).
* Approximate (``factory="HNSW32"``, ``"IVF4096,PQ32"``, …): a second faiss index built from the
  factory string over the same vectors, labelled by insertion position. A search takes a shortlist
  of ``refine × k`` from it and re-scores the shortlist exactly from the store of record. HNSW
  cannot delete, so removals are tombstones (an id selector skips them); ``compact()`` rebuilds the
  approximate index and pays once tombstones exceed ~20 % of it (searches waste that share).
* Filters are id selectors inside faiss; a very selective filter gathers the matching vectors and
  scores them exactly (cheaper than scanning every vector with a selector). If an approximate
  filtered search finds fewer than ``k`` while ``k`` items match, those queries are answered exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from radsearch.errors import ConfigError
from radsearch.index.base import Neighbours, VectorIndex
from radsearch.index.filters import Filter

GATHER_FRACTION = 0.25   # filters passing ≤ this share of items are scored by gathering them
REBUILD_TOMBSTONES = 0.2
EF_SEARCH = 128          # HNSW candidate list at search time (recall vs speed)


def _search(index, queries: np.ndarray, k: int, params=None):
    """faiss search that survives ``faiss.contrib.torch_utils`` (imported by pytorch-metric-learning):
    that module replaces ``Index.search`` with a torch-aware version without ``params`` and keeps
    the original as ``search_numpy``."""
    search = getattr(index, "search_numpy", index.search)
    return search(queries, k) if params is None else search(queries, k, params=params)


def aligned(array: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A C-contiguous float32 copy of ``array`` starting on an ``alignment``-byte boundary.

    numpy only promises 16-byte alignment; faiss searches queries that are not 32-byte aligned
    12-27 % slower (measured with raw ``IndexFlatIP`` at 20k × 128, batched and single query),
    which was most of FaissIndex's gap to raw faiss. One copy of Q × D floats costs far less.
    """
    array = np.asarray(array, dtype=np.float32)
    buffer = np.empty(array.nbytes + alignment, np.uint8)
    start = -buffer.ctypes.data % alignment
    out = buffer[start:start + array.nbytes].view(np.float32).reshape(array.shape)
    out[...] = array
    return out


def _write_faiss(index, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        faiss.write_index(index, str(tmp))
    except RuntimeError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(f"faiss could not write {path.name}") from exc
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of scores [Q, M] with ids [M] or [Q, M]; pads with -1 / -inf."""
    q, m = scores.shape
    out_ids = np.full((q, k), -1, np.int64)
    out_scores = np.full((q, k), -np.inf, np.float32)
    take = min(k, m)
    if take == 0:
        return out_ids, out_scores
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < m else \
        np.tile(np.arange(m), (q, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    out_scores[:, :take] = np.take_along_axis(scores, best, axis=1)
    out_ids[:, :take] = ids[best] if ids.ndim == 1 else np.take_along_axis(ids, best, axis=1)
    return out_ids, out_scores


def new_ann(dim: int, factory: str):
    """The approximate faiss index of a factory string (inner-product metric)."""
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1].rsplit(": ", 1)[-1]
        raise ConfigError(f"--factory {factory!r}: faiss cannot build it ({reason}); see the "
                          "faiss wiki 'The index factory' for valid strings.") from None


class FaissIndex(VectorIndex):
    backend = "faiss"

    def __init__(self, path, header, table, writable, lock):
        super().__init__(path, header, table, writable, lock)
        d = self.dim
        files = header.get("files", {})
        name = next((n for n in files if n.startswith("vectors-")), None)
        self.exact = faiss.read_index(str(self.path / name)) if name else \
            faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        self.factory = header.get("factory")
        self.refine = int(header.get("refine", 4))
        self.ef_search = int(header.get("ef_search", EF_SEARCH))
        self.ann = None
        self.ann_ids = np.zeros(0, np.int64)
        self.alive = np.zeros(0, bool)
        if self.factory:
            ann_name = next((n for n in files if n.startswith("ann-")), None)
            state_name = next((n for n in files if n.startswith("state-")), None)
            if ann_name:
                self.ann = faiss.read_index(str(self.path / ann_name))
                with np.load(self.path / state_name) as state:
                    self.ann_ids, self.alive = state["ids"], state["alive"]
            else:
                self.ann = self._new_ann()

    def _new_ann(self):
        return new_ann(self.dim, self.factory)

    # ------------------------------------------------------------------ writes
    def _add_vectors(self, ids, vectors, table) -> None:
        self.exact.add_with_ids(vectors, ids)
        if self.ann is not None:
            if not self.ann.is_trained:
                try:
                    self.ann.train(vectors)
                except RuntimeError as exc:
                    raise ConfigError(f"--factory {self.factory!r}: training needs more vectors "
                                      f"than the {len(vectors)} of the first batch "
                                      f"({str(exc).strip().splitlines()[-1]}).") from None
            self.ann.add(vectors)
            self.ann_ids = np.concatenate([self.ann_ids, ids])
            self.alive = np.concatenate([self.alive, np.ones(len(ids), bool)])

    def _remove_vectors(self, ids) -> None:
        self.exact.remove_ids(faiss.IDSelectorBatch(ids))
        if self.ann is not None:
            self.alive &= ~np.isin(self.ann_ids, ids)

    def compact(self) -> None:
        """Rebuild the approximate index without tombstones (after many removals)."""
        self._check_writable()
        if self.ann is None:
            return
        ids = self.ids()
        vectors = self._get_vectors(ids) if len(ids) else np.zeros((0, self.dim), np.float32)
        self.ann = self._new_ann()
        self.ann_ids, self.alive = np.zeros(0, np.int64), np.zeros(0, bool)
        if len(ids):
            self.ann.train(vectors) if not self.ann.is_trained else None
            self.ann.add(vectors)
            self.ann_ids, self.alive = ids.copy(), np.ones(len(ids), bool)
        self._dirty = True

    def _save_files(self, commit: int) -> list[str]:
        names = [f"vectors-{commit}.faiss"]
        _write_faiss(self.exact, self.path / names[0])
        if self.ann is not None:
            names += [f"ann-{commit}.faiss", f"state-{commit}.npz"]
            _write_faiss(self.ann, self.path / names[1])
            tmp = self.path / f".state-{commit}.tmp.npz"
            np.savez(tmp, ids=self.ann_ids, alive=self.alive)
            os.replace(tmp, self.path / names[2])
        return names

    # ------------------------------------------------------------------ reads
    def _get_vectors(self, ids) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.exact.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def _allowed(self, filters: list[Filter]) -> np.ndarray | None:
        if not filters:
            return None
        return self.ids()[self.filter_mask(filters)]

    def _search(self, queries, k, filters) -> Neighbours:
        queries = aligned(queries)
        allowed = self._allowed(filters)
        if allowed is not None and not len(allowed):
            return Neighbours(np.full((len(queries), k), -1, np.int64),
                              np.full((len(queries), k), -np.inf, np.float32))
        if self.ann is None or (allowed is not None and len(allowed) <= max(k * self.refine,
                                                                            1000)):
            return self._exact(queries, k, allowed)
        result = self._approximate(queries, k, allowed)
        available = len(self) if allowed is None else len(allowed)
        short = (result.ids[:, :min(k, available)] < 0).any(axis=1)
        if short.any():  # a filtered graph search can strand queries: answer those exactly
            fixed = self._exact(queries[short], k, allowed)
            result.ids[short], result.scores[short] = fixed.ids, fixed.scores
        return result

    def _exact(self, queries, k, allowed) -> Neighbours:
        if allowed is None:
            scores, ids = _search(self.exact, queries, k)
            return Neighbours(ids, np.where(ids >= 0, scores, -np.inf).astype(np.float32))
        if len(allowed) <= GATHER_FRACTION * len(self):
            vectors = self._get_vectors(allowed)
            ids, scores = [], []
            step = max(1, int(2e7 // max(len(allowed), 1)))
            for start in range(0, len(queries), step):
                chunk = queries[start:start + step] @ vectors.T
                i, s = _topk(chunk, allowed, k)
                ids.append(i)
                scores.append(s)
            return Neighbours(np.concatenate(ids), np.concatenate(scores))
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, ids = _search(self.exact, queries, k, params)
        return Neighbours(ids, np.where(ids >= 0, scores, -np.inf).astype(np.float32))

    def _ann_params(self, selector, shortlist: int):
        inner = self.ann
        if isinstance(inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search,
                                                                         shortlist))
        try:
            ivf = faiss.extract_index_ivf(inner)
        except RuntimeError:
            ivf = None
        if ivf is not None:
            return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
        return faiss.SearchParameters(sel=selector)

    def _approximate(self, queries, k, allowed) -> Neighbours:
        mask = self.alive if allowed is None else self.alive & np.isin(self.ann_ids, allowed)
        shortlist = min(k * self.refine, int(mask.sum()))
        selector = None
        if not mask.all():
            self._bitmap = np.packbits(mask, bitorder="little")   # kept alive during the search
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self._bitmap))
        params = self._ann_params(selector, shortlist)
        _, labels = _search(self.ann, queries, shortlist, params)
        ids = np.where(labels >= 0, self.ann_ids[np.maximum(labels, 0)], -1)
        valid = ids >= 0
        vectors = np.zeros((*ids.shape, self.dim), np.float32)
        if valid.any():
            vectors[valid] = self._get_vectors(ids[valid])
        scores = np.einsum("qd,qmd->qm", queries, vectors)
        scores[~valid] = -np.inf
        top_ids, top_scores = _topk(scores, ids, k)
        top_ids[~np.isfinite(top_scores)] = -1
        return Neighbours(top_ids, top_scores)

    def _backend_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.exact.id_map).astype(np.int64)

    def _backend_info(self) -> dict:
        out = {"factory": self.factory or "Flat (exact)"}
        if self.ann is not None:
            tomb = int((~self.alive).sum())
            share = tomb / max(len(self.alive), 1)
            out["tombstones"] = tomb
            out["rebuild_advised"] = share > REBUILD_TOMBSTONES
        return out
