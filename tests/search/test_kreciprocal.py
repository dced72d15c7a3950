"""k-reciprocal re-ranking against a dense (|U|² matrix) implementation of Zhong et al.'s formulas
written here independently, and a case computed by hand."""

import math

import numpy as np
import pytest

from radsearch.index import create_index
from radsearch.search import rerank as rr
from radsearch.search.kreciprocal import GalleryGraph, k_reciprocal_distances
from radsearch.search.rerank_eval import GallerySearch, RerankParams


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def dense_reference(p, gallery, k1, k2, lam):
    """d* and d_J of p against every gallery row over U = [p; gallery] with the full matrix."""
    x = np.vstack([p[None], gallery]).astype(np.float64)
    dist = 2.0 - 2.0 * x @ x.T
    np.fill_diagonal(dist, 0.0)
    rank = np.argsort(dist, axis=1, kind="stable")
    n = len(x)

    def recip(i, k):
        return [j for j in rank[i, :k + 1] if i in rank[j, :k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        expansion = set(r)
        for q in r:
            cand = recip(q, int(np.around(k1 / 2)))
            if len(set(cand) & set(r)) > 2 / 3 * len(cand):
                expansion |= set(cand)
        idx = sorted(expansion)
        v[i, idx] = np.exp(-dist[i, idx])
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jac = 1.0 - np.minimum(v[0], v[1:]).sum(1) / np.maximum(v[0], v[1:]).sum(1)
    return (1 - lam) * jac + lam * dist[0, 1:], jac


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(8, 10))
    gallery = _unit(centres[np.arange(48) % 8] + 0.7 * rng.normal(size=(48, 10)))
    queries = _unit(centres[[0, 3, 5, 7]] + 0.7 * rng.normal(size=(4, 10)))
    return gallery, queries


@pytest.mark.parametrize("k1,k2,lam", [(5, 1, 0.0), (6, 3, 0.3), (20, 6, 0.3), (3, 2, 0.9)])
def test_whole_gallery_equals_the_dense_formula(data, k1, k2, lam):
    gallery, queries = data
    graph = GalleryGraph.exact(gallery, max(k1, k2 - 1))   # the graph depth the formula needs
    for q in queries:
        sims = gallery @ q
        order = np.argsort(-sims, kind="stable")
        got, jac = k_reciprocal_distances(q, order, sims[order], graph, order, k1, k2, lam)
        want, want_jac = dense_reference(q, gallery, k1, k2, lam)
        np.testing.assert_allclose(jac, want_jac[order], atol=1e-12)
        np.testing.assert_allclose(got, want[order], atol=1e-12)


def test_shortlist_is_exact_on_its_items(data):
    gallery, queries = data
    graph = GalleryGraph.exact(gallery, 10)
    for q in queries:
        sims = gallery @ q
        top = np.argsort(-sims, kind="stable")[:12]          # shortlist K = 12 ≥ k1 = 8
        got, _ = k_reciprocal_distances(q, top, sims[top], graph, top, k1=8, k2=4, lam=0.3)
        want, _ = dense_reference(q, gallery, 8, 4, 0.3)
        np.testing.assert_allclose(got, want[top], atol=1e-12)


def test_by_hand_on_the_circle():
    # unit vectors at angles (degrees): query 0, gallery 10, 30, 100; k1 = 1, no expansion
    # (⌊1/2⌉ = 0), k2 = 1. N(p) = {p, g0}; N(g0) = {g0, p}: reciprocal, so V_p = {p: 1, g0: e^-d}
    # and V_g0 = {g0: 1, p: e^-d} with d = 2 − 2 cos 10°: d_J = 1 − 2e^-d / 2. g1's nearest is g0,
    # whose nearest is p, and g2's is g1 (not reciprocal): their sets share nothing with V_p.
    def at(deg):
        return np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])

    gallery = np.stack([at(10), at(30), at(100)])
    q = at(0)
    d = [2 - 2 * math.cos(math.radians(a)) for a in (10, 30, 100)]
    graph = GalleryGraph.exact(gallery, 2)
    rows = np.arange(3)
    got, jac = k_reciprocal_distances(q, rows, gallery @ q, graph, rows, k1=1, k2=1, lam=0.5)
    np.testing.assert_allclose(jac, [1 - math.exp(-d[0]), 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(got, [0.5 * (1 - math.exp(-d[0])) + 0.5 * d[0],
                                     0.5 + 0.5 * d[1], 0.5 + 0.5 * d[2]], atol=1e-12)


def test_index_rerank_uses_the_graph_and_matches_the_dense_formula(tmp_path, data):
    gallery, queries = data
    ix = create_index(tmp_path / "ix", gallery.shape[1])
    ids = ix.add(gallery.astype("f4"), [{"image": f"{i}.png", "subject": f"S{i % 8}"}
                                         for i in range(len(gallery))])
    ix.build_graph(10)
    found = ix.search(queries.astype("f4"), 30)
    new_ids, new_scores = rr.rerank(ix, queries.astype("f4"), found.ids, found.scores,
                                    "k-reciprocal", k1=8, k2=3, lam=0.3)
    g32 = ix.get_vectors(ids).astype(np.float64)            # the stored (float32) vectors
    for row, q in enumerate(queries.astype("f4").astype(np.float64)):
        want, _ = dense_reference(q, g32, 8, 3, 0.3)
        by_id = dict(zip(ids, want))
        np.testing.assert_allclose(-new_scores[row], [by_id[i] for i in new_ids[row]], atol=1e-5)
        assert sorted(new_ids[row]) == sorted(found.ids[row])


def test_gallery_search_without_the_excluded_rows_is_the_smaller_gallery(data):
    gallery, queries = data
    exclude = np.arange(48) % 8 == 0                            # one identity held out
    params = RerankParams(k1=6, k2=3, lam=0.3, shortlist=100)
    search = GallerySearch(gallery, "k-reciprocal", params, max_excluded=int(exclude.sum()))
    kept = gallery[~exclude]
    for q in queries:
        got = search.scores(q, exclude)
        assert np.isneginf(got[exclude]).all()
        want, _ = dense_reference(q, kept, 6, 3, 0.3)
        np.testing.assert_allclose(got[~exclude], 10.0 - want, atol=1e-12)


@pytest.mark.parametrize("method", ["qe", "dba"])
def test_gallery_search_qe_dba_equal_the_embedding_transforms(data, method):
    gallery, queries = data
    x = np.vstack([gallery, queries])
    g_rows, q_rows = np.arange(48), np.arange(48, 52)
    params = RerankParams(alpha=2.0, qe_n=4, dba_k=2)
    n = 4 if method == "qe" else 2
    t = rr.rerank_embeddings(x, g_rows, q_rows, method, n=n, alpha=2.0)
    search = GallerySearch(gallery, method, params)
    for i, row in enumerate(q_rows):
        np.testing.assert_allclose(search.scores(queries[i]), t[g_rows] @ t[row], atol=1e-5)
