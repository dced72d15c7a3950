"""Re-ranking against hand-written formulas (α-QE, DBA); k-reciprocal: test_kreciprocal.py."""

import numpy as np
import pytest

from radsearch.errors import ConfigError
from radsearch.index import create_index
from radsearch.search import rerank as rr


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def index(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 12))
    vectors = _unit(centres[np.arange(60) % 6] + 0.6 * rng.normal(size=(60, 12))).astype("f4")
    ix = create_index(tmp_path / "ix", 12)
    ids = ix.add(vectors, [{"image": f"{i}.png", "subject": f"S{i % 6}"} for i in range(60)])
    return ix, vectors, ids


def test_alpha_qe_matches_the_formula(index):
    ix, vectors, ids = index
    q = _unit(vectors[0] + 0.5)[None].astype("f4")
    found = ix.search(q, 30)
    new_ids, new_scores = rr.rerank(ix, q, found.ids, found.scores, "qe")
    top = ix.get_vectors(found.ids[0])
    s = found.scores[0]
    expanded = _unit(q[0] + ((s[:5] ** 3)[:, None] * top[:5]).sum(0))
    expected = top @ expanded
    order = np.argsort(-expected, kind="stable")
    assert (new_ids[0] == found.ids[0][order]).all()
    np.testing.assert_allclose(new_scores[0], expected[order], atol=1e-5)


def test_dba_and_k_reciprocal_need_the_graph_and_permute_the_shortlist(index):
    ix, vectors, ids = index
    q = vectors[:3]
    found = ix.search(q, 20)
    with pytest.raises(ConfigError, match="graph"):
        rr.rerank(ix, q, found.ids, found.scores, "k-reciprocal")
    ix.build_graph(10)
    for method in ("dba", "k-reciprocal"):
        new_ids, new_scores = rr.rerank(ix, q, found.ids, found.scores, method)
        for row in range(3):
            assert sorted(new_ids[row]) == sorted(found.ids[row])
            assert (np.diff(new_scores[row]) <= 1e-9).all()


def test_graph_is_the_brute_force_knn(index):
    ix, vectors, ids = index
    ix.build_graph(5)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    assert (ix.graph["neighbours"] == ids[expected]).all()


def test_rerank_embeddings_qe_and_dba_formulas():
    rng = np.random.default_rng(1)
    x = _unit(rng.normal(size=(10, 4))).astype("f4")
    gallery, queries = np.arange(6), np.arange(6, 10)
    qe = rr.rerank_embeddings(x, gallery, queries, "qe", n=2)
    sims = x[6] @ x[gallery].T
    top = np.argsort(-sims)[:2]
    expected = _unit(x[6] + ((np.clip(sims[top], 0, None) ** 3)[:, None] * x[top]).sum(0))
    np.testing.assert_allclose(qe[6], expected, atol=1e-6)
    np.testing.assert_allclose(qe[gallery], x[gallery], atol=1e-6)
    dba = rr.rerank_embeddings(x, gallery, queries, "dba", n=1)
    sims = x[0] @ x[gallery].T
    sims[0] = -np.inf
    j = int(np.argmax(sims))
    np.testing.assert_allclose(dba[0], _unit(x[0] + max(sims[j], 0) ** 3 * x[j]), atol=1e-6)
    with pytest.raises(ConfigError, match="k-reciprocal"):
        rr.rerank_embeddings(x, gallery, queries, "k-reciprocal")


def test_reranked_search_reports_lrs_of_cosine_scores(index):
    """The calibration was fitted on cosine scores: with --rerank the order changes, but each
    candidate's log10 LR and the decision still come from its cosine with the query."""
    from radsearch.evaluation.openset import OpenSetScores, fit_calibration
    from radsearch.index.calibration import log10_lr
    from radsearch.search import Searcher

    ix, vectors, ids = index
    rng = np.random.default_rng(1)
    mated, nonmated = rng.normal(0.8, 0.1, 400), rng.normal(0.4, 0.1, 400)
    model = fit_calibration(OpenSetScores(mated, np.ones(400, bool), nonmated), "logistic")
    calibration = {"model": model.to_dict(), "n_gallery": len(ix),
                   "thresholds": [{"target_fpir": 0.01, "threshold": 0.6, "fpir": 0.01,
                                   "fnir": 0.1}]}
    ix.set_calibration(calibration)
    ix.build_graph(10)
    q = _unit(vectors[3] + 0.3 * rng.normal(size=12)).astype("f4")[None]
    for method in ("qe", "dba", "k-reciprocal"):
        (result,) = Searcher(ix).search_vectors(q, 8, rerank=method)
        hit_ids = [h.id for h in result.hits]
        cosines = ix.get_vectors(hit_ids) @ q[0]
        np.testing.assert_allclose([h.log10_lr for h in result.hits],
                                   log10_lr(calibration, cosines), atol=1e-4)
        assert result.decision.match == (cosines.max() >= 0.6)
