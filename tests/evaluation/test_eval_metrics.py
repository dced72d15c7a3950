"""Metrics against scikit-learn, pytorch-metric-learning and hand-computed rankings."""

from __future__ import annotations

import numpy as np
import pytest
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import average_precision_score, ndcg_score

from radsearch.errors import DataError
from radsearch.evaluation import (classification_accuracy, encode_identities, identity_retrieval,
                                  relevance_retrieval)


def _scores_as_vectors(scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """A query [1, 0] and gallery rows [s, 0]: raw dot products equal the given scores."""
    gallery = np.array([[s, 0.0] for s in scores])
    return np.array([[1.0, 0.0]]), gallery


def _normalised(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------- hand-made rankings
def test_multi_match_and_first_match_cmc_differ_as_defined():
    # ranking: impostor, MATCH, impostor, impostor, MATCH  (scores 0.9 … 0.5)
    query, gallery = _scores_as_vectors([0.9, 0.8, 0.7, 0.6, 0.5])
    m = identity_retrieval(query, gallery, [7], [1, 7, 2, 3, 7], normalize=False,
                           cmc_ks=(1, 2, 4), precision_ks=(1, 2, 5))
    v = {k: float(x[0]) for k, x in m.values.items()}
    # impostors before the matches: 1 and 3
    assert v["CMC@1"] == 0.0 and v["CMC@2"] == 0.5 and v["CMC@4"] == 1.0
    assert v["CMC@1_first"] == 0.0 and v["CMC@2_first"] == 1.0 and v["CMC@4_first"] == 1.0
    assert v["mAP"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert v["mAP@R"] == pytest.approx((1 / 2) / 2)
    assert v["R-precision"] == pytest.approx(1 / 2)
    assert v["MRR"] == pytest.approx(1 / 2)
    assert (v["P@1"], v["P@2"], v["P@5"]) == pytest.approx((0.0, 0.5, 0.4))


def test_ties_are_grouped_like_scikit_learn():
    scores = [0.8, 0.8, 0.5, 0.5, 0.5, 0.25]
    ids = [7, 1, 7, 7, 2, 3]  # tie blocks {MATCH, imp}, {MATCH, MATCH, imp}, {imp}
    query, gallery = _scores_as_vectors(scores)
    m = identity_retrieval(query, gallery, [7], ids, normalize=False, cmc_ks=(1, 2, 3))
    v = {k: float(x[0]) for k, x in m.values.items()}
    expected_ap = (1 / 2 + 3 / 5 + 3 / 5) / 3
    assert v["mAP"] == pytest.approx(expected_ap)
    assert v["mAP"] == pytest.approx(average_precision_score(np.array(ids) == 7, scores))
    # tied items count as ranked before: impostors before the matches = 1, 2, 2
    assert (v["CMC@1"], v["CMC@2"], v["CMC@3"]) == pytest.approx((0.0, 1 / 3, 1.0))
    assert (v["CMC@1_first"], v["CMC@2_first"]) == (0.0, 1.0)
    assert v["mAP@R"] == pytest.approx((1 / 2) / 3)
    assert v["MRR"] == pytest.approx(1 / 2)


def test_map_at_k_normalisations():
    # relevant at ranks 1 and 3 of the top 5; R = 4 (two more at ranks 8 and 9)
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    ids = [7, 1, 7, 2, 3, 4, 5, 7, 7]
    query, gallery = _scores_as_vectors(scores)
    relevance = (np.array(ids) == 7)[None, :]
    summed = 1 + 2 / 3
    for normalisation, expected in (("dscmr", summed / 2), ("ath", summed / 5),
                                    ("textbook", summed / 4)):
        m = relevance_retrieval(query, gallery, relevance, normalize=False, map_ks=(1, 5),
                                normalisation=normalisation)
        assert m.values["mAP@5"][0] == pytest.approx(expected)
        assert m.values["mAP@1"][0] == pytest.approx(1.0)  # k = 1: all three coincide
    only_second = np.zeros_like(relevance)
    only_second[0, 1] = True
    m = relevance_retrieval(query, gallery, only_second, normalize=False, map_ks=(1,),
                            normalisation="dscmr")
    assert m.values["mAP@1"][0] == 0.0  # nothing found in the top 1 → 0, not NaN


def test_lone_queries_are_skipped_and_counted():
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(20, 4))
    query = rng.normal(size=(3, 4))
    m = identity_retrieval(query, gallery, [0, 99, 1], np.arange(20) % 5)
    assert np.isnan(m.values["mAP"][1]) and not np.isnan(m.values["mAP"][0])
    summary = m.summary()
    assert summary["n_queries"] == 2 and summary["n_skipped"] == 1
    assert summary["mAP"] == pytest.approx(np.mean(m.values["mAP"][[0, 2]]))


def test_self_match_is_excluded_when_queries_are_in_the_gallery():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(40, 6))
    ids = rng.integers(0, 12, size=40)
    ids[0] = 1000  # a subject with a single image: nothing left to find once self is removed
    m = identity_retrieval(emb, emb, ids, ids, query_in_gallery=np.arange(40))
    s = _normalised(emb) @ _normalised(emb).T
    for i in range(40):
        keep = np.arange(40) != i
        relevant = ids[keep] == ids[i]
        if not relevant.any():
            assert np.isnan(m.values["mAP"][i])
            continue
        assert m.values["mAP"][i] == pytest.approx(average_precision_score(relevant, s[i, keep]))
    assert m.summary()["n_skipped"] >= 1


# ------------------------------------------------------------------- library cross-checks
@pytest.mark.parametrize("seed", [0, 1])
def test_average_precision_equals_scikit_learn_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    # small integer vectors, raw dot product: exact scores with many ties
    query = rng.integers(-1, 2, size=(50, 4)).astype(np.float64)
    gallery = rng.integers(-1, 2, size=(300, 4)).astype(np.float64)
    q_ids, g_ids = rng.integers(0, 25, size=50), rng.integers(0, 25, size=300)
    scores = query @ gallery.T
    relevance = q_ids[:, None] == g_ids[None, :]
    expected = np.array([average_precision_score(relevance[i], scores[i])
                         if relevance[i].any() else np.nan for i in range(50)])
    streamed = identity_retrieval(query, gallery, q_ids, g_ids, normalize=False, memory_mb=0.01)
    dense = relevance_retrieval(query, gallery, relevance, normalize=False, memory_mb=0.01)
    np.testing.assert_allclose(streamed.values["mAP"], expected, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(dense.values["mAP"], expected, rtol=1e-12, equal_nan=True)
    for name in ("mAP@R", "CMC@1", "CMC@5", "CMC@1_first", "CMC@5_first", "MRR", "P@1"):
        np.testing.assert_array_equal(streamed.values[name], dense.values[name])


@pytest.mark.parametrize("query_is_reference", [False, True])
def test_matches_pytorch_metric_learning_on_tie_free_data(query_is_reference):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 16))
    g_ids = rng.integers(0, 40, size=400)
    gallery = _normalised(centres[g_ids] + 1.5 * rng.normal(size=(400, 16)))
    if query_is_reference:
        query, q_ids, own = gallery, g_ids, np.arange(400)
    else:
        q_ids = rng.integers(0, 45, size=150)  # ids 40..44 are lone queries
        query = _normalised(centres[q_ids % 40] + 1.5 * rng.normal(size=(150, 16)))
        own = None
    calc = AccuracyCalculator(include=("mean_average_precision_at_r", "precision_at_1",
                                       "mean_reciprocal_rank", "mean_average_precision",
                                       "r_precision"), k=None, device=None)
    ref = calc.get_accuracy(query, q_ids, gallery, g_ids, ref_includes_query=query_is_reference)
    ours = identity_retrieval(query, gallery, q_ids, g_ids, query_in_gallery=own).summary()
    assert ours["mAP@R"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)
    assert ours["P@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["MRR"] == pytest.approx(ref["mean_reciprocal_rank"], abs=1e-6)
    assert ours["mAP"] == pytest.approx(ref["mean_average_precision"], abs=1e-6)
    assert ours["R-precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours["n_skipped"] == (0 if query_is_reference else int((q_ids >= 40).sum()))


@pytest.mark.parametrize("k", [3, 10])
def test_ndcg_equals_scikit_learn_with_tied_scores(k):
    rng = np.random.default_rng(4)
    query = rng.integers(-1, 2, size=(30, 3)).astype(np.float64)
    gallery = rng.integers(-1, 2, size=(80, 3)).astype(np.float64)
    gains = rng.integers(0, 4, size=(30, 80)) / 3.0
    gains[:, 0] = 0.5  # every query has something relevant
    m = relevance_retrieval(query, gallery, gains > 0, gains=gains, ndcg_ks=(k,),
                            normalize=False)
    expected = [ndcg_score(gains[i:i + 1], (query @ gallery.T)[i:i + 1], k=k) for i in range(30)]
    np.testing.assert_allclose(m.values[f"nDCG@{k}"], expected, rtol=1e-12)


def test_streaming_does_not_depend_on_chunk_size():
    rng = np.random.default_rng(5)
    query, gallery = rng.normal(size=(97, 8)), rng.normal(size=(211, 8))
    q_ids, g_ids = rng.integers(0, 30, 97), rng.integers(0, 30, 211)
    small = identity_retrieval(query, gallery, q_ids, g_ids, memory_mb=0.005)
    large = identity_retrieval(query, gallery, q_ids, g_ids)
    for name, value in large.values.items():
        np.testing.assert_array_equal(small.values[name], value)


# --------------------------------------------------------------------------- identities
def test_large_integer_ids_are_never_merged():
    big = 2**24  # float32 cannot tell 2^24 from 2^24 + 1
    a, b = encode_identities(np.array([big, big + 1]), np.array([big + 1, big, big]))
    assert a.dtype == np.int64 and list(a) == [big, big + 1] and list(b) == [big + 1, big, big]
    query, gallery = _scores_as_vectors([0.9, 0.8, 0.7])
    m = identity_retrieval(query, gallery, [big], [big + 1, big, big], normalize=False)
    assert m.values["CMC@1_first"][0] == 0.0 and m.n_relevant[0] == 2


def test_string_ids_share_codes_and_float_ids_are_refused():
    a, b = encode_identities(["p10", "p02"], ["p02", "p10", "p99"])
    assert a[0] == b[1] and a[1] == b[0] and len(set(b)) == 3
    with pytest.raises(DataError, match="floating-point"):
        encode_identities(np.array([1.0, 2.0]), np.array([1, 2]))


# ------------------------------------------------------------------------ classification
def test_classification_top_k_accuracy_by_hand():
    logits = np.array([[3.0, 2.0, 1.0, 0.0],
                       [0.0, 3.0, 2.0, 1.0],
                       [9.0, 8.0, 7.0, 6.0],
                       [1.0, 1.0, 1.0, 1.0]])
    targets = np.array([[1, 0, 0, 0],    # top-1 hit
                        [1, 0, 0, 0],    # in top 4 only
                        [0, 0, 1, 0],    # in top 3
                        [0, 0, 0, 0]],   # no label: skipped
                       dtype=bool)
    acc = classification_accuracy(logits, targets, ks=(1, 3))
    assert acc["n_queries"] == 3 and acc["n_skipped"] == 1
    assert acc["Acc@1"] == pytest.approx(1 / 3)
    assert acc["Acc@3"] == pytest.approx(2 / 3)
    with pytest.raises(DataError):
        classification_accuracy(logits[:, :3], targets)
