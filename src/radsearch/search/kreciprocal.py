"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) of one query's shortlist, without a |U|² matrix.

Each query p is re-ranked on its own: the universe is U = {p} ∪ G (the gallery; other queries are
never in it, as in a search service). With d(x, y) = 2 − 2·cos(x, y) (squared Euclidean distance
of unit vectors) and N(x, k) = x followed by its k nearest others in U (x ranks first at distance
0; the authors' code convention):

* R(x, k) = {y ∈ N(x, k) : x ∈ N(y, k)}  (k-reciprocal neighbours);
* R*(x) = R(x, k1) ∪ R(q, ⌊k1/2⌉) for every q ∈ R(x, k1) with
  |R(q, ⌊k1/2⌉) ∩ R(x, k1)| > ⅔ |R(q, ⌊k1/2⌉)|  (expansion; ">" as in the authors' code);
* V_x[y] = exp(−d(x, y)) for y ∈ R*(x), else 0  (Eq. 7 of the paper, not re-normalised);
* local query expansion: V_x ← mean of V_y over the k2 nearest y of x, x included (k2 = 1: none);
* d_J(p, g) = 1 − Σ_y min(V_p[y], V_g[y]) / Σ_y max(V_p[y], V_g[y])  (Jaccard via the sparse V);
* d*(p, g) = (1 − λ)·d_J(p, g) + λ·d(p, g).

A gallery item's neighbours come from the gallery kNN graph (its M nearest other gallery items,
computed once), with p slotted in where its similarity ranks; vectors are fetched only for the
items the sets touch, and only the shortlist gets d*. This equals the dense formula over U for
every shortlisted item when M ≥ max(k1, k2 − 1) and p's own ranking is known to depth
max(k1, k2 − 1) (tests/search/test_kreciprocal.py checks it against a dense implementation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# chosen on the demo validation split (docs/results.md, "Re-ranking (issue 9)"); the paper's
# k1 = 20, k2 = 6 (person re-ID: many gallery images per identity) cost 6.5 points of mAP on an
# unseen knee cohort, whose gallery holds one image per knee
K1, K2, LAMBDA = 3, 3, 0.3
QUERY = -1                    # p's node id; gallery items are rows 0 … G−1


@dataclass
class GalleryGraph:
    """Row r's nearest other gallery rows (best first, −1 padded), their similarities, and the
    vectors of any rows (a callable, so an index can fetch them lazily)."""

    neighbours: np.ndarray
    sims: np.ndarray
    vectors: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def exact(cls, vectors: np.ndarray, m: int, chunk: int = 1024) -> GalleryGraph:
        """Brute-force top-``m`` graph of L2-normalised ``vectors``, ``chunk`` rows at a time."""
        n = len(vectors)
        m = max(0, min(m, n - 1))
        nbr = np.full((n, m), -1, np.int64)
        sims = np.full((n, m), -np.inf, np.result_type(vectors.dtype, np.float32))
        for start in range(0, n, chunk):
            s = vectors[start:start + chunk] @ vectors.T
            s[np.arange(len(s)), start + np.arange(len(s))] = -np.inf   # not its own neighbour
            top = np.argsort(-s, axis=1, kind="stable")[:, :m]
            nbr[start:start + len(s)] = top
            sims[start:start + len(s)] = np.take_along_axis(s, top, axis=1)
        return cls(nbr, sims, lambda rows: vectors[rows])


class _Query:
    """Memoised N, R, R*, V for one query over U = {p} ∪ G."""

    def __init__(self, q: np.ndarray, top_rows: np.ndarray, top_sims: np.ndarray,
                 graph: GalleryGraph, k1: int, k2: int):
        self.q, self.graph, self.k1, self.k2 = q, graph, k1, k2
        self.top = [int(r) for r in top_rows]
        self.sim_p = {int(r): float(s) for r, s in zip(top_rows, top_sims)}
        self._vec: dict[int, np.ndarray] = {}
        self._memo: dict[tuple, object] = {}

    # similarities -----------------------------------------------------------------------
    def _vector(self, row: int) -> np.ndarray:
        if row not in self._vec:
            self._vec[row] = np.asarray(self.graph.vectors(np.array([row])), np.float64)[0]
        return self._vec[row]

    def query_sim(self, row: int) -> float:
        if row not in self.sim_p:
            self.sim_p[row] = float(self._vector(row) @ self.q)
        return self.sim_p[row]

    def dist(self, x: int, y: int) -> float:
        if x == y:
            return 0.0
        if QUERY in (x, y):
            return 2.0 - 2.0 * self.query_sim(y if x == QUERY else x)
        return 2.0 - 2.0 * float(self._vector(x) @ self._vector(y))

    # the sets ---------------------------------------------------------------------------
    def nearest(self, x: int, k: int) -> list[int]:
        """N(x, k): x, then its k nearest others in U."""
        key = ("N", x, k)
        if key not in self._memo:
            if x == QUERY:
                out = [QUERY, *self.top[:k]]
            else:
                row_n, row_s = self.graph.neighbours[x], self.graph.sims[x]
                valid = row_n >= 0
                row_n, row_s = row_n[valid], row_s[valid]
                # p ranks before gallery items of equal similarity (it comes first in U)
                at = int(np.count_nonzero(row_s > self.query_sim(x)))
                others = [int(r) for r in row_n[:at]] + [QUERY] + [int(r) for r in row_n[at:]]
                out = [x, *others[:k]]
            self._memo[key] = out
        return self._memo[key]

    def _nearest_set(self, x: int, k: int) -> set[int]:
        key = ("Nset", x, k)
        if key not in self._memo:
            self._memo[key] = set(self.nearest(x, k))
        return self._memo[key]

    def reciprocal(self, x: int, k: int) -> list[int]:
        key = ("R", x, k)
        if key not in self._memo:
            self._memo[key] = [y for y in self.nearest(x, k) if x in self._nearest_set(y, k)]
        return self._memo[key]

    def expanded(self, x: int) -> list[int]:
        base = self.reciprocal(x, self.k1)
        half = int(np.around(self.k1 / 2))
        out, members = list(base), set(base)
        for q in base:
            cand = self.reciprocal(q, half)
            if len(members.intersection(cand)) > 2 / 3 * len(cand):
                for y in cand:
                    if y not in out:
                        out.append(y)
        return out

    def encoding(self, x: int) -> dict[int, float]:
        key = ("V", x)
        if key not in self._memo:
            members = self.expanded(x)
            self._memo[key] = dict(zip(members, np.exp(-self.distances(x, members)).tolist()))
        return self._memo[key]

    def distances(self, x: int, ys: list[int]) -> np.ndarray:
        """d(x, y) for every y (one matrix product for the gallery pairs)."""
        out = np.empty(len(ys))
        batch = []
        for i, y in enumerate(ys):
            if x == QUERY or y in (x, QUERY):
                out[i] = self.dist(x, y)
            else:
                batch.append(i)
        if batch:
            vecs = np.stack([self._vector(ys[i]) for i in batch])
            out[batch] = 2.0 - 2.0 * (vecs @ self._vector(x))
        return out

    def expanded_encoding(self, x: int) -> dict[int, float]:
        """V_x after local query expansion over x's k2 nearest (x included)."""
        if self.k2 <= 1:
            return self.encoding(x)
        key = ("Vqe", x)
        if key not in self._memo:
            members = self.nearest(x, self.k2 - 1)
            total: dict[int, float] = {}
            for y in members:
                for z, w in self.encoding(y).items():
                    total[z] = total.get(z, 0.0) + w
            self._memo[key] = {z: w / len(members) for z, w in total.items()}
        return self._memo[key]

    def jaccard(self, row: int) -> float:
        vp, vg = self.expanded_encoding(QUERY), self.expanded_encoding(row)
        keys = vp.keys() | vg.keys()
        num = sum(min(vp.get(z, 0.0), vg.get(z, 0.0)) for z in keys)
        den = sum(max(vp.get(z, 0.0), vg.get(z, 0.0)) for z in keys)
        return 1.0 - num / den if den > 0 else 1.0


def k_reciprocal_distances(q: np.ndarray, top_rows: np.ndarray, top_sims: np.ndarray,
                           graph: GalleryGraph, shortlist: np.ndarray, k1: int = K1,
                           k2: int = K2, lam: float = LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """(d*, d_J) of ``shortlist`` rows for query vector ``q``.

    ``top_rows``/``top_sims``: q's nearest gallery rows, best first (at least max(k1, k2 − 1)
    deep for the exact formula); ``graph``: the gallery kNN graph.
    """
    state = _Query(np.asarray(q, np.float64), np.asarray(top_rows), np.asarray(top_sims), graph,
                   int(k1), int(k2))
    jac = np.array([state.jaccard(int(r)) for r in shortlist])
    dist = np.array([state.dist(QUERY, int(r)) for r in shortlist])
    return (1.0 - lam) * jac + lam * dist, jac
