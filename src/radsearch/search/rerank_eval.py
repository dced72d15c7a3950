"""Re-ranking under the evaluation protocols (`radsearch evaluate --rerank`).

The forensic layout is the protocols' own: gallery = each subject's year-0 images, queries = later
images. One search of query q over the gallery minus ``exclude`` (an open-set non-mated search
leaves out the probe's own identity, so its images cannot help re-rank either):

* ``qe``: q' = norm(q + Σ_{i≤n} s_iᵅ g_i) over q's top-n gallery items; scores q'·g;
* ``dba``: g' = norm(g + Σ_{i≤n} s_iᵅ g_i) over g's top-n other gallery items; scores q·g';
* ``k-reciprocal``: q's top-K shortlist re-ranked by d* (:mod:`radsearch.search.kreciprocal`, the
  gallery kNN graph built here from the gallery embeddings, never a (Q+G)² matrix); shortlisted
  items score ``OFFSET − d*`` (d* ≤ 4 < OFFSET − 1), the rest keep their cosine, so they follow.

For forensic metrics, which depend only on each query's order of the gallery, the scores go through
the unchanged protocol as "embeddings": query row = its gallery scores, gallery row j = e_j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsearch.errors import ConfigError
from radsearch.search.kreciprocal import K1, K2, LAMBDA, GalleryGraph, k_reciprocal_distances
from radsearch.search.rerank import DBA_N, QE_ALPHA, QE_N, SHORTLIST

METHODS = ("none", "qe", "dba", "k-reciprocal")
OFFSET = 10.0


@dataclass
class RerankParams:
    """The swept parameters (defaults: those of `radsearch search`)."""

    alpha: float = QE_ALPHA
    qe_n: int = QE_N
    dba_k: int = DBA_N
    k1: int = K1
    k2: int = K2
    lam: float = LAMBDA
    shortlist: int = SHORTLIST

    def __post_init__(self):
        for name in ("qe_n", "dba_k", "k1", "k2", "shortlist"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                  "at least 1.")
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"--lambda {self.lam}: must lie between 0 and 1.")
        if self.alpha < 0:
            raise ConfigError(f"--qe-alpha {self.alpha}: must be 0 or more.")


def check_method(method: str) -> str:
    method = "k-reciprocal" if method == "kreciprocal" else method
    if method not in METHODS:
        raise ConfigError(f"--rerank {method!r}: use one of {', '.join(METHODS)}.")
    return method


class GallerySearch:
    """Re-ranked searches of one gallery (L2-normalised rows) with ``method``."""

    def __init__(self, gallery: np.ndarray, method: str, params: RerankParams | None = None,
                 max_excluded: int = 0):
        self.g = np.asarray(gallery, np.float64)
        self.g /= np.linalg.norm(self.g, axis=1, keepdims=True)
        self.method, self.p = check_method(method), params or RerankParams()
        # deep enough that excluding up to max_excluded rows still leaves the needed neighbours
        depth = {"dba": self.p.dba_k, "k-reciprocal": max(self.p.k1, self.p.k2 - 1)}.get(
            self.method, 0) + max_excluded
        self.graph = GalleryGraph.exact(self.g, depth) if depth else None

    def scores(self, q: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """Scores of every gallery row for query ``q`` (−inf on excluded rows)."""
        q = np.asarray(q, np.float64) / np.linalg.norm(q)
        keep = np.ones(len(self.g), bool) if exclude is None else ~np.asarray(exclude, bool)
        sims = np.where(keep, self.g @ q, -np.inf)
        if self.method == "none":
            return sims
        if self.method == "qe":
            top = np.argsort(-sims, kind="stable")[:min(self.p.qe_n, int(keep.sum()))]
            expanded = q + ((np.clip(sims[top], 0, None) ** self.p.alpha)[:, None]
                            * self.g[top]).sum(axis=0)
            return np.where(keep, self.g @ (expanded / np.linalg.norm(expanded)), -np.inf)
        if self.method == "dba":
            return np.where(keep, self._augmented(keep) @ q, -np.inf)
        return self._k_reciprocal(q, sims, keep)

    def _neighbours(self, keep: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's top-n kept neighbours from the graph (−1 padded)."""
        nbr, sims = self.graph.neighbours, self.graph.sims
        ok = (nbr >= 0) & keep[np.clip(nbr, 0, None)]
        order = np.argsort(~ok, axis=1, kind="stable")[:, :n]   # kept ones first, order kept
        picked = np.take_along_axis(nbr, order, axis=1)
        valid = np.take_along_axis(ok, order, axis=1)
        return np.where(valid, picked, -1), np.where(valid, np.take_along_axis(sims, order, 1),
                                                     -np.inf)

    def _augmented(self, keep: np.ndarray) -> np.ndarray:
        nbr, sims = self._neighbours(keep, self.p.dba_k)
        w = np.where(nbr >= 0, np.clip(sims, 0, None) ** self.p.alpha, 0.0)
        out = self.g + np.einsum("gn,gnd->gd", w, self.g[np.clip(nbr, 0, None)])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def _k_reciprocal(self, q: np.ndarray, sims: np.ndarray, keep: np.ndarray) -> np.ndarray:
        n_keep = int(keep.sum())
        depth = min(max(self.p.shortlist, self.p.k1, self.p.k2 - 1), n_keep)
        top = np.argsort(-sims, kind="stable")[:depth]
        nbr, nsims = self._neighbours(keep, self.graph.neighbours.shape[1])
        graph = GalleryGraph(nbr, nsims, self.graph.vectors)
        dstar, _ = k_reciprocal_distances(q, top, sims[top], graph, top, self.p.k1, self.p.k2,
                                          self.p.lam)
        out = sims.copy()
        out[top] = OFFSET - dstar
        return out


def forensic_layout(cohort) -> tuple[np.ndarray, np.ndarray]:
    from radsearch.evaluation.protocols import years_apart

    years = years_apart(cohort)
    return np.flatnonzero(years == 0), np.flatnonzero(years >= 1)


def rerank_for_evaluation(arrays: list, cohort, method: str,
                          params: RerankParams | None = None) -> list:
    """`radsearch evaluate --rerank` for the forensic protocol: arrays the protocol scores as is.

    qe / dba become embedding transforms (:func:`rerank_embeddings`, whole gallery); k-reciprocal
    becomes score "embeddings" (module docstring). Ensembles are joined first (mean cosine).
    """
    from radsearch.evaluation.protocols import embedding_matrix
    from radsearch.search.rerank import rerank_embeddings

    method = check_method(method)
    if method == "none":
        return arrays
    params = params or RerankParams()
    gallery, queries = forensic_layout(cohort)
    vectors = embedding_matrix(arrays, len(cohort)).numpy()
    if method in ("qe", "dba"):
        n = params.qe_n if method == "qe" else params.dba_k
        return [rerank_embeddings(vectors, gallery, queries, method, n=n, alpha=params.alpha)]
    search = GallerySearch(vectors[gallery], method, params)
    out = np.zeros((len(cohort), len(gallery)), np.float32)
    out[gallery, np.arange(len(gallery))] = 1.0
    for row in queries:
        out[row] = search.scores(vectors[row])
    return [out]


def open_set_search(vectors: np.ndarray, cohort, method: str, params: RerankParams | None = None):
    """The ``search(probe_row, exclude)`` callable of :func:`evaluate_open_set` for ``method``."""
    gallery, _ = forensic_layout(cohort)
    subjects = cohort.table["subject"].to_numpy().astype(str)
    most = int(np.unique(subjects[gallery], return_counts=True)[1].max(initial=0))
    search = GallerySearch(vectors[gallery], method, params, max_excluded=most)
    return lambda row, exclude: search.scores(vectors[row], exclude)
