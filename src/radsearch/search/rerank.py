"""Re-ranking a top-K shortlist (never the whole gallery, which does not scale).

* ``qe`` — α-query expansion (Radenović et al., TPAMI 2019): q' = norm(q + Σ_{i≤n} s_iᵅ g_i) over
  the top-n candidates, then the shortlist is re-scored with q'.
* ``dba`` — database-side augmentation: each shortlisted item is replaced by the same weighted mean
  of itself and its n nearest gallery neighbours (from the kNN graph built at index time).
* ``k-reciprocal`` — k-reciprocal encoding (Zhong et al., CVPR 2017) restricted to the shortlist:
  the query's k-reciprocal set is its top-k1 candidates g that would also rank the query within g's
  own top-k1 (g's k1-th neighbour score comes from the precomputed graph); each candidate's set is
  its reciprocal neighbours in the graph. Sets become Gaussian-weighted vectors exp(−d) over item
  ids, and the final distance is (1 − λ)·Jaccard + λ·d with d = 2 − 2·cosine. The local query
  expansion (k2) of the paper is left out. Scores returned are −distance (higher is better).
"""

from __future__ import annotations

import numpy as np

from radsearch.errors import ConfigError

SHORTLIST = 100
QE_N, QE_ALPHA = 5, 3.0
DBA_N = 3
K1, LAMBDA = 20, 0.3


def rerank(index, queries: np.ndarray, ids: np.ndarray, scores: np.ndarray, method: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """Re-order each row of (ids, scores), the index's shortlist for ``queries``."""
    out_ids, out_scores = ids.copy(), scores.copy()
    if method in ("dba", "k-reciprocal") and index.graph is None:
        raise ConfigError(f"{index.path}: no kNN graph for --rerank {method}; run `radsearch "
                          "index graph INDEX` (or build with --graph) first.")
    graph = _graph_lookup(index) if index.graph is not None else None
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
            new = _k_reciprocal(q, cand, scores[row][valid], graph)
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


def _k_reciprocal(q, cand, scores, graph, k1=K1, lam=LAMBDA):
    dist_q = 2.0 - 2.0 * scores
    # the query's k-reciprocal set: top-k1 candidates that would rank q within their own top-k1
    v_q: dict[int, float] = {}
    for item, s, d in zip(cand[:k1], scores[:k1], dist_q[:k1]):
        r = graph["row"].get(int(item))
        kth = graph["scores"][r][min(k1, graph["scores"].shape[1]) - 1] if r is not None else np.inf
        if s >= kth:
            v_q[int(item)] = float(np.exp(-d))
    out = np.empty(len(cand))
    for j, item in enumerate(cand):
        v_g = _graph_set(int(item), graph, k1)
        keys = set(v_q) | set(v_g)
        num = sum(min(v_q.get(x, 0.0), v_g.get(x, 0.0)) for x in keys)
        den = sum(max(v_q.get(x, 0.0), v_g.get(x, 0.0)) for x in keys)
        jaccard = 1.0 - num / den if den > 0 else 1.0
        out[j] = -((1 - lam) * jaccard + lam * dist_q[j])
    return out


def _graph_set(item: int, graph: dict, k1: int) -> dict[int, float]:
    r = graph["row"].get(item)
    out = {item: 1.0}
    if r is None:
        return out
    for nbr, s in zip(graph["neighbours"][r][:k1], graph["scores"][r][:k1]):
        rn = graph["row"].get(int(nbr))
        if nbr >= 0 and rn is not None and item in graph["neighbours"][rn][:k1]:
            out[int(nbr)] = float(np.exp(-(2.0 - 2.0 * s)))
    return out


def rerank_embeddings(embeddings: np.ndarray, gallery: np.ndarray, queries: np.ndarray,
                      method: str, n: int | None = None) -> np.ndarray:
    """α-QE / DBA as embedding transforms for offline evaluation (whole gallery, not a shortlist).

    ``qe`` replaces each query row by norm(q + Σ_{i≤n} s_iᵅ g_i) over its top-n gallery rows;
    ``dba`` replaces each gallery row by norm(g + Σ_{i≤n} s_iᵅ g_i) over its n nearest other
    gallery rows. Dot products of the result are the re-ranked scores.
    """
    if method in (None, "none"):
        return embeddings
    if method not in ("qe", "dba"):
        raise ConfigError(f"--rerank {method!r} for evaluation: use none, qe or dba "
                          "(k-reciprocal needs an index: `radsearch search --rerank`).")
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
        weights = np.clip(np.take_along_axis(sims, top, axis=1), 0, None) ** QE_ALPHA
        out[part] = x[part] + np.einsum("qn,qnd->qd", weights, g[top])
    return out / np.linalg.norm(out, axis=1, keepdims=True)
