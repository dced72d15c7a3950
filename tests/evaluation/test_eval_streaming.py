"""The streamed diagnostic engine: its parts against numpy, and every metric bit for bit against the
row-sorting reference (``engine="sort"``) and scikit-learn on cases with ties, queries without
relevant items and k larger than the database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from radsearch.cohort import Cohort
from radsearch.evaluation import RelevantRanks, evaluate_diagnostic, query_metrics
from radsearch.evaluation.metrics import metrics_from_sums, rank_sums
from radsearch.evaluation.ranking import similarities
from radsearch.evaluation.streaming import _RowSums, ordered_keys, radix_rank

CLASSES = ["Edema", "Effusion", "Fracture", "Mass", "No Finding"]


def _cohort(rng: np.random.Generator, n: int, test_only: str | None = "Mass") -> Cohort:
    """Random label sets (some empty); ``test_only`` never occurs in the database split, so
    queries carrying only it have no relevant item."""
    split = np.where(rng.random(n) < 0.3, "test", "train")
    labels = []
    for s in split:
        pool = [c for c in CLASSES if s == "test" or c != test_only]
        k = rng.integers(0, 3)
        labels.append("|".join(sorted(rng.choice(pool, size=k, replace=False))))
    table = pd.DataFrame({"image": [f"i{i}.png" for i in range(n)],
                          "subject": [f"p{i}" for i in range(n)], "time": np.zeros(n),
                          "labels": labels, "split": split})
    return Cohort(table)


def _embeddings(rng: np.random.Generator, n: int, ties: bool) -> np.ndarray:
    if ties:  # few distinct similarities: large tie blocks, also across the top k
        emb = rng.integers(-1, 2, size=(n, 3)).astype(float)
        emb[~emb.any(1)] = 1.0
        return emb
    return rng.normal(size=(n, 6))


def _assert_same(new, ref) -> None:
    """Every group, metric and per-query value identical (NaN where the reference has NaN)."""
    assert new.groups.keys() == ref.groups.keys()
    for name, metrics in ref.groups.items():
        assert new.groups[name].keys() == metrics.keys(), name
        for key, value in metrics.items():
            got = new.groups[name][key]
            assert got == value or (np.isnan(got) and np.isnan(value)), (name, key, got, value)
    for key, value in ref.per_query.values.items():
        np.testing.assert_array_equal(new.per_query.values[key], value, err_msg=key)
    assert new.n_skipped_queries == ref.n_skipped_queries


# ----------------------------------------------------------------------------------- parts
def test_keys_order_like_decreasing_floats_and_tie_exactly_on_equal_floats():
    rng = np.random.default_rng(0)
    special = np.array([np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, 1.0, -1.0],
                       np.float32)
    x = np.concatenate([special, rng.normal(size=500).astype(np.float32),
                        rng.integers(-3, 4, 200).astype(np.float32) / 4])
    keys = ordered_keys(x.copy())
    i, j = rng.integers(0, len(x), (2, 20000))
    np.testing.assert_array_equal(keys[i] < keys[j], x[i] > x[j])
    np.testing.assert_array_equal(keys[i] == keys[j], x[i] == x[j])  # -0.0 == +0.0 included


@pytest.mark.parametrize("ties", [False, True])
def test_radix_rank_equals_a_stable_argsort(ties):
    rng = np.random.default_rng(1)
    n = 5000
    x = (rng.integers(-20, 20, n) / 8 if ties else rng.permutation(n) / n - 0.5)
    x = x.astype(np.float32)
    codes = rng.integers(0, 2**32, n, dtype=np.uint64)
    ranked_codes, block_end = radix_rank(ordered_keys(x.copy()), codes, np.arange(n))
    order = np.argsort(-x, kind="stable")
    np.testing.assert_array_equal(ranked_codes, codes[order].astype(np.intp))
    ranked = x[order]
    expected_end = np.searchsorted(-ranked, -ranked, side="right") - 1  # last equal rank
    if ties:
        np.testing.assert_array_equal(block_end, expected_end)
    else:
        assert block_end is None and np.array_equal(expected_end, np.arange(n))


def test_one_row_product_equals_its_row_in_a_larger_product():
    # BLAS takes a different kernel for a single row; the engines must not depend on chunk sizes
    rng = np.random.default_rng(2)
    query = rng.normal(size=(9, 64)).astype(np.float32)
    gallery = rng.normal(size=(3000, 64)).astype(np.float32)
    whole = similarities(query, gallery, 0, 9)
    for i in range(9):
        np.testing.assert_array_equal(similarities(query, gallery, i, i + 1)[0], whole[i])


@pytest.mark.parametrize("ties", [False, True])
def test_prefix_sums_of_ranked_rows_equal_the_pair_sums_bit_for_bit(ties):
    # _RowSums (binary searches + one running sum per ranked row) vs rank_sums over all pairs
    rng = np.random.default_rng(3)
    n_gallery, rows = 3000, 12
    cmc_ks, count_ks, sum_ks = (1, 5, 10), (1, 5, 10, 20, 5000), (1, 5, 10, 20, 5000)
    collected = _RowSums(rows, cmc_ks, count_ks, sum_ks)
    pairs = []
    for row in range(rows):
        relevant = rng.random(n_gallery) < [0.0, 0.001, 0.3, 0.9][row % 4]
        block_end = None
        if ties:  # random tie blocks of 1-6 ranks
            ends = np.cumsum(rng.integers(1, 7, n_gallery))
            ends = ends[ends <= n_gallery] - 1
            ends[-1] = n_gallery - 1
            block_end = ends[np.searchsorted(ends, np.arange(n_gallery))]
        collected.add(row, relevant, block_end)
        index = np.flatnonzero(relevant)
        last = index if block_end is None else block_end[index]
        cumulative = np.cumsum(relevant)
        pairs.append((np.full(len(index), row), last + 1, cumulative[last]))
    q, a, r = (np.concatenate(x).astype(np.int64) for x in zip(*pairs))
    ranks = RelevantRanks(rows, q, a, r, np.bincount(q, minlength=rows))
    options = dict(cmc_ks=cmc_ks, precision_ks=count_ks, map_ks=sum_ks, normalisation="ath")
    expected = metrics_from_sums(rank_sums(ranks, cmc_ks, count_ks, sum_ks), **options)
    got = metrics_from_sums(collected.sums(), **options)
    assert got.values.keys() == expected.values.keys()
    for key, value in expected.values.items():
        np.testing.assert_array_equal(got.values[key], value, err_msg=key)
    assert np.isnan(got.values["mAP"][0])  # row 0 has no relevant item


# ---------------------------------------------------------------------- engine vs reference
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("database, queries", [("train", "test"), ("train", "train")])
def test_streamed_engine_equals_the_reference_bit_for_bit(ties, database, queries):
    rng = np.random.default_rng(4)
    cohort = _cohort(rng, 260)
    emb = _embeddings(rng, 260, ties)
    n_db = int((cohort.table["split"] == database).sum())
    combinations = [("any", "class", "dscmr"), ("any", "overall", "ath"),
                    ("exact", "class", "textbook"), ("exact", "overall", "dscmr")]
    for relevance, per_class, normalisation in combinations:
        options = dict(database=database, queries=queries, relevance=relevance,
                       per_class_relevance=per_class, normalisation=normalisation,
                       ks=(1, 5, 20, n_db + 50),  # k beyond the database too
                       ndcg_ks=(1, 10, n_db + 50), memory_mb=0.01)  # chunks of 1-2 rows
        ref = evaluate_diagnostic(emb, cohort, engine="sort", **options)
        _assert_same(evaluate_diagnostic(emb, cohort, **options), ref)
        assert ref.n_skipped_queries > 0  # queries whose only labels are absent, or none
    options["memory_mb"] = 256  # one large chunk
    _assert_same(evaluate_diagnostic(emb, cohort, **options), ref)


def test_streamed_engine_does_not_depend_on_threads():
    import torch

    rng = np.random.default_rng(5)
    cohort = _cohort(rng, 400)
    emb = _embeddings(rng, 400, ties=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = evaluate_diagnostic(emb, cohort, memory_mb=0.02)
        torch.set_num_threads(3)
        _assert_same(evaluate_diagnostic(emb, cohort, memory_mb=0.02), one)
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- scikit-learn
@pytest.mark.parametrize("ties", [False, True])
def test_streamed_engine_against_scikit_learn(ties):
    rng = np.random.default_rng(6)
    cohort = _cohort(rng, 200, test_only=None)
    emb = _embeddings(rng, 200, ties)
    matrix, classes = cohort.label_matrix()
    q = np.flatnonzero(cohort.table["split"] == "test")
    db = np.flatnonzero(cohort.table["split"] == "train")
    k_big = len(db) + 7
    result = evaluate_diagnostic(emb, cohort, ks=(1, 5, k_big), ndcg_ks=(3, 10, k_big))
    x = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    scores = (x[q] @ x[db].T).astype(np.float64)
    shared = matrix[q].astype(int) @ matrix[db].T.astype(int)
    union = matrix[q].sum(1)[:, None] + matrix[db].sum(1)[None, :] - shared
    jaccard = np.where(union > 0, shared / np.maximum(union, 1), 0.0)
    values = result.per_query.values
    for i in range(len(q)):
        relevant = shared[i] > 0
        if not relevant.any():
            assert np.isnan(values["mAP"][i]) and np.isnan(values["nDCG@10"][i])
            continue
        assert values["mAP"][i] == pytest.approx(
            average_precision_score(relevant, scores[i]), rel=1e-12)
        for k in (3, 10, k_big):
            assert values[f"nDCG@{k}"][i] == pytest.approx(
                ndcg_score(jaccard[i:i + 1], scores[i:i + 1], k=k), rel=1e-12)
        if not ties:  # without ties, the ranking is the order of the scores
            ranked = relevant[np.argsort(-scores[i], kind="stable")]
            for k in (1, 5, k_big):
                assert values[f"P@{k}"][i] == ranked[:k].sum() / k
            assert values["MRR"][i] == 1 / (np.argmax(ranked) + 1)
            big_r = relevant.sum()
            assert values["R-precision"][i] == ranked[:big_r].sum() / big_r
    assert result.n_skipped_queries == int((~(shared > 0).any(1)).sum())
    for c, name in enumerate(classes):  # class-conditional relevance
        rows = np.flatnonzero(matrix[q, c])
        if len(rows):
            expected = np.mean([average_precision_score(matrix[db, c], scores[i]) for i in rows])
            assert result.groups[name]["mAP"] == pytest.approx(expected, rel=1e-12)


def test_query_metrics_unchanged_for_pairs_in_any_order():
    # the forensic path lists pairs by gallery order within a query: MRR etc. must not care
    rng = np.random.default_rng(7)
    q = np.sort(rng.integers(0, 20, 600))
    a = rng.integers(1, 100, 600)
    r = np.minimum(a, rng.integers(1, 30, 600))
    ranks = RelevantRanks(22, q, a, r, np.bincount(q, minlength=22))
    shuffled = rng.permutation(600)
    sorted_q = query_metrics(ranks, precision_ks=(1, 5), map_ks=(5,))
    any_order = query_metrics(RelevantRanks(22, q[shuffled], a[shuffled], r[shuffled],
                                            ranks.n_relevant), precision_ks=(1, 5), map_ks=(5,))
    for key in ("MRR", "CMC@1", "CMC@5", "P@1", "P@5", "R-precision"):
        np.testing.assert_array_equal(any_order.values[key], sorted_q.values[key])
    first = np.full(22, np.inf)
    np.minimum.at(first, q, a)
    np.testing.assert_array_equal(sorted_q.values["MRR"][:20], 1 / first[:20])
    assert np.isnan(sorted_q.values["MRR"][20:]).all()


def test_reference_ranking_puts_ties_in_index_order():
    # the fixed order inside tie blocks makes nDCG's block sums reproducible to the last bit
    import torch

    from radsearch.evaluation.ranking import sorted_chunks

    rng = np.random.default_rng(8)
    query = rng.integers(-1, 2, size=(7, 3)).astype(np.float32)
    gallery = rng.integers(-1, 2, size=(400, 3)).astype(np.float32)
    chunk = next(sorted_chunks(torch.from_numpy(query), torch.from_numpy(gallery)))
    expected = np.argsort(-(query @ gallery.T), axis=1, kind="stable")
    np.testing.assert_array_equal(chunk.order, expected)
