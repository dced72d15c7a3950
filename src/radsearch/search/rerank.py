"""Re-ranking a top-K shortlist (never the whole gallery, which does not scale).

* ``qe`` — α-query expansion (Radenović et al., TPAMI 2019): q' = norm(q + Σ_{i≤n} s_iᵅ g_i) over
  the top-n candidates, then the shortlist is re-scored with q'.
* ``dba`` — database-side augmentation: each shortlisted item is replaced by the same weighted mean
  of itself and its n nearest gallery neighbours (from the kNN graph built at index time).
* ``k-reciprocal`` — k-reciprocal encoding with Jaccard distance and local query expansion
  (Zhong et al., CVPR 2017; :mod:`radsearch.search.kreciprocal`) over the shortlist, with the
  gallery items' neighbours read from the kNN graph built at index time. Scores returned are
  −d* (higher is better); exact for the shortlist when the graph holds at least k1 neighbours.
"""

from __future__ import annotations

import numpy as np

from radsearch.errors import ConfigError
from radsearch.search.kreciprocal import K1, K2, LAMBDA, GalleryGraph, k_reciprocal_distances

SHORTLIST = 100
QE_N, QE_ALPHA = 5, 3.0
DBA_N = 3


def rerank(index, queries: np.ndarray, ids: np.ndarray, scores: np.ndarray, method: str,
           k1: int = K1, k2: int = K2, lam: float = LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """Re-order each row of (ids, scores), the index's shortlist for ``queries``."""
    out_ids, out_scores = ids.copy(), scores.copy()
    if method in ("dba", "k-reciprocal") and index.graph is None:
        raise ConfigError(f"{index.path}: no kNN graph for --rerank {method}; run `radsearch "
                          "index graph INDEX` (or build with --graph) first.")
    graph = _graph_lookup(index) if index.graph is not None else None
    knn = _gallery_graph(index, ids) if method == "k-reciprocal" else None
    for row in range(len(ids)):
        valid = ids[row] >= 0
        cand = ids[row][valid]
        if not len(cand):
            continue
        vectors = index.get_vectors(cand)
        q = queries[row]
        if method == "qe":
            new = _alpha_qe(q, vectors, scores[row][valid])
        elif method == "dba":
            new = _dba_scores(index, q, cand, vectors, graph)
        else:
            rows = knn.row_of(cand)
            new = -k_reciprocal_distances(q, rows, scores[row][valid], knn, rows, k1, k2, lam)[0]
        order = np.argsort(-new, kind="stable")
        out_ids[row, :len(cand)] = cand[order]
        out_scores[row, :len(cand)] = new[order]
    return out_ids, out_scores


def _alpha_qe(q, vectors, scores, n=QE_N, alpha=QE_ALPHA):
    top = np.clip(scores[:n], 0, None) ** alpha
    expanded = q + (top[:, None] * vectors[:n]).sum(axis=0)
    expanded /= max(np.linalg.norm(expanded), 1e-12)
    return vectors @ expanded


def _graph_lookup(index) -> dict:
    g = index.graph
    return {"row": {int(i): r for r, i in enumerate(g["ids"])}, "neighbours": g["neighbours"],
            "scores": g["scores"]}


def _dba_scores(index, q, cand, vectors, graph, n=DBA_N):
    augmented = vectors.copy()
    for j, item in enumerate(cand):
        r = graph["row"].get(int(item))
        if r is None:
            continue
        nbr = graph["neighbours"][r][:n]
        nbr = nbr[nbr >= 0]
        w = np.clip(graph["scores"][r][:len(nbr)], 0, None) ** QE_ALPHA
        if len(nbr):
            augmented[j] = vectors[j] + (w[:, None] * index.get_vectors(nbr)).sum(axis=0)
    augmented /= np.maximum(np.linalg.norm(augmented, axis=1, keepdims=True), 1e-12)
    return augmented @ q


class _IndexGraph(GalleryGraph):
    """The index's kNN graph as :class:`GalleryGraph` rows; shortlisted items added after the
    graph was built get rows without neighbours."""

    def __init__(self, index, extra_ids: np.ndarray):
        import pandas as pd

        g = index.graph
        ids = np.concatenate([g["ids"], extra_ids]).astype(np.int64)
        self._rows = pd.Index(ids)
        pad = np.full((len(extra_ids), g["neighbours"].shape[1]), -1, np.int64)
        nbr = self._rows.get_indexer(np.concatenate([g["neighbours"], pad]).ravel())
        sims = np.concatenate([g["scores"], np.full(pad.shape, -np.inf, g["scores"].dtype)])
        super().__init__(nbr.reshape(len(ids), -1), sims,
                         lambda rows: index.get_vectors(ids[np.asarray(rows)]))

    def row_of(self, item_ids: np.ndarray) -> np.ndarray:
        return self._rows.get_indexer(np.asarray(item_ids, np.int64))


def _gallery_graph(index, ids: np.ndarray) -> _IndexGraph:
    shortlisted = np.unique(ids[ids >= 0])
    extra = shortlisted[~np.isin(shortlisted, index.graph["ids"])]
    return _IndexGraph(index, extra)


def rerank_embeddings(embeddings: np.ndarray, gallery: np.ndarray, queries: np.ndarray,
                      method: str, n: int | None = None, alpha: float = QE_ALPHA) -> np.ndarray:
    """α-QE / DBA as embedding transforms for offline evaluation (whole gallery, not a shortlist).

    ``qe`` replaces each query row by norm(q + Σ_{i≤n} s_iᵅ g_i) over its top-n gallery rows;
    ``dba`` replaces each gallery row by norm(g + Σ_{i≤n} s_iᵅ g_i) over its n nearest other
    gallery rows. Dot products of the result are the re-ranked scores.
    """
    if method in (None, "none"):
        return embeddings
    if method not in ("qe", "dba"):
        raise ConfigError(f"re-ranking by embedding transform: {method!r} is not qe or dba.")
    x = np.asarray(embeddings, dtype=np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = x.copy()
    g = x[gallery]
    rows = queries if method == "qe" else gallery
    n = n or (QE_N if method == "qe" else DBA_N)
    for start in range(0, len(rows), 1024):
        part = rows[start:start + 1024]
        sims = x[part] @ g.T
        if method == "dba":   # a gallery image is not its own neighbour
            sims[np.arange(len(part)), start + np.arange(len(part))] = -np.inf
        top = np.argsort(-sims, axis=1)[:, :n]
        weights = np.clip(np.take_along_axis(sims, top, axis=1), 0, None) ** alpha
        out[part] = x[part] + np.einsum("qn,qnd->qd", weights, g[top])
    return out / np.linalg.norm(out, axis=1, keepdims=True)
