"""ChestX-ray14 test scale (12,450 × 13,137): exactness across many chunks (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import average_precision_score

from radsearch.evaluation import identity_retrieval, relevance_retrieval


@pytest.mark.slow
def test_full_scale_forensic_metrics_are_exact():
    rng = np.random.default_rng(0)
    n_ids, dim = 2797, 128
    centre = rng.normal(size=(n_ids, dim)).astype(np.float32)
    g_ids = np.concatenate([np.arange(n_ids), rng.integers(0, n_ids, 13137 - n_ids)])
    q_ids = rng.integers(0, n_ids, 12450)
    gallery = centre[g_ids] + 1.3 * rng.normal(size=(len(g_ids), dim)).astype(np.float32)
    query = centre[q_ids] + 1.3 * rng.normal(size=(len(q_ids), dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    query /= np.linalg.norm(query, axis=1, keepdims=True)

    streamed = identity_retrieval(query, gallery, q_ids, g_ids, memory_mb=32)  # ~60 chunks
    pick = rng.choice(len(q_ids), 200, replace=False)
    scores = query[pick] @ gallery.T
    expected = [average_precision_score(g_ids == q_ids[i], scores[j]) for j, i in enumerate(pick)]
    np.testing.assert_allclose(streamed.values["mAP"][pick], expected, rtol=1e-9)

    subset = slice(0, 1500)  # the sort-based path agrees on every metric
    dense = relevance_retrieval(query[subset], gallery, q_ids[subset, None] == g_ids[None, :],
                                cmc_ks=(1, 5, 10), precision_ks=(1,), map_ks=())
    for name, value in dense.values.items():
        np.testing.assert_allclose(value, streamed.values[name][subset], rtol=1e-12)

    calc = AccuracyCalculator(include=("mean_average_precision_at_r", "precision_at_1",
                                       "mean_reciprocal_rank"), k=None, device=None)
    ref = calc.get_accuracy(query[subset], q_ids[subset], gallery, g_ids)
    ours = identity_retrieval(query[subset], gallery, q_ids[subset], g_ids).summary()
    assert ours["mAP@R"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)
    assert ours["P@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["MRR"] == pytest.approx(ref["mean_reciprocal_rank"], abs=1e-6)
