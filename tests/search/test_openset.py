"""Open-set metrics against hand-computed cases and independent references."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from radsearch.cohort import Cohort
from radsearch.evaluation.openset import (OpenSetScores, cllr, det_curve, evaluate_open_set,
                                          fit_calibration, fnir, fpir, open_set_scores,
                                          plot_det, summarise, threshold_at_fpir)


def test_threshold_fpir_fnir_by_hand():
    nonmated = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    # FPIR 0.1 on 10 searches allows one false alarm: T just above the 2nd largest (0.9)
    t = threshold_at_fpir(nonmated, 0.1)
    assert 0.9 < t < 0.9 + 1e-6 and fpir(nonmated, t) == pytest.approx(0.1)
    assert fpir(nonmated, 0.9) == pytest.approx(0.2)           # ≥ T counts
    # FPIR 0.01 allows none: T above the largest
    assert threshold_at_fpir(nonmated, 0.01) > 0.95
    scores = OpenSetScores(mated=np.array([0.99, 0.92, 0.85, np.nan]),
                           mate_rank1=np.array([True, True, False, False]),
                           nonmated=np.array([0.5, 0.6, 0.9, 0.3]))
    # at T = 0.91: probe 0 hit, probe 1 hit, probe 2 is outranked (miss); probe 3 has no mate
    assert fnir(scores, 0.91) == pytest.approx(1 / 3)
    assert fnir(scores, 0.95) == pytest.approx(2 / 3)


def test_cllr_by_hand():
    assert cllr(np.zeros(5), np.zeros(7)) == pytest.approx(1.0)           # LR = 1: no information
    # LR 10 for mated, 0.1 for non-mated: ½·(log2(1.1) + log2(1.1))
    assert cllr(np.array([1.0]), np.array([-1.0])) == pytest.approx(math.log2(1.1))
    # one mated at LR 100, one at LR 1; non-mated at LR 0.01
    expected = 0.5 * (0.5 * (math.log2(1.01) + 1.0) + math.log2(1.01))
    assert cllr(np.array([2.0, 0.0]), np.array([-2.0])) == pytest.approx(expected)
    assert cllr(np.array([40.0]), np.array([-40.0])) == pytest.approx(0.0, abs=1e-12)


def test_open_set_scores_equal_a_loop():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(30, 6))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = rng.normal(size=(12, 6))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    gs = [f"s{i % 10}" for i in range(30)]
    qs = [f"s{i}" for i in range(5, 17)]                       # s10..s16 have no mate
    got = open_set_scores(q, qs, g, gs, chunk=5)
    for i in range(12):
        same = [q[i] @ g[j] for j in range(30) if gs[j] == qs[i]]
        other = [q[i] @ g[j] for j in range(30) if gs[j] != qs[i]]
        assert got.nonmated[i] == pytest.approx(max(other))
        if same:
            assert got.mated[i] == pytest.approx(max(same))
            assert got.mate_rank1[i] == (max(same) > max(other))
        else:
            assert np.isnan(got.mated[i]) and not got.mate_rank1[i]


def test_det_points_agree_with_fpir_fnir():
    rng = np.random.default_rng(1)
    scores = OpenSetScores(rng.uniform(0.5, 1, 40), rng.uniform(size=40) > 0.3,
                           rng.uniform(0, 0.8, 40))
    thresholds, fp, fn = det_curve(scores)
    for t, a, b in list(zip(thresholds, fp, fn))[::7]:
        assert a == pytest.approx(fpir(scores.nonmated, t))
        assert b == pytest.approx(fnir(scores, t))


def test_calibration_recovers_the_gaussian_log_lr():
    # equal-variance Gaussians: ln LR(s) = (μ1 − μ0)/σ² · s + const, so the slope is known
    rng = np.random.default_rng(2)
    mated = rng.normal(0.8, 0.05, 20000)
    non = rng.normal(0.6, 0.05, 20000)
    model = fit_calibration(OpenSetScores(mated, np.ones(20000, bool), non))
    assert model.coef == pytest.approx((0.8 - 0.6) / 0.05 ** 2, rel=0.05)
    # LR = 1 (log10 LR = 0) at the midpoint between the means
    assert model.log10_lr(0.7) == pytest.approx(0.0, abs=0.05)
    # and the fit is scikit-learn's balanced logistic regression
    x = np.concatenate([mated, non])[:, None]
    y = np.r_[np.ones(20000), np.zeros(20000)]
    ref = LogisticRegression(class_weight="balanced", C=1e6, max_iter=1000).fit(x, y)
    assert model.coef == pytest.approx(ref.coef_[0, 0], rel=1e-6)
    summary = summarise(OpenSetScores(mated, np.ones(20000, bool), non), 100, calibration=model)
    assert summary.thresholds[0]["fpir"] == pytest.approx(0.1, abs=1e-4)
    assert 0 < summary.cllr < 1


def test_reversed_scores_get_a_neutral_calibration_not_a_reversed_one():
    # mates scoring lower than non-mates (an untrained model): LR = 1 everywhere, Cllr = 1 exactly
    rng = np.random.default_rng(5)
    mated, non = rng.normal(0.6, 0.05, 500), rng.normal(0.8, 0.05, 500)
    scores = OpenSetScores(mated, np.zeros(500, bool), non)
    model = fit_calibration(scores)
    np.testing.assert_array_equal(model.log10_lr(np.array([0.0, 0.5, 1.0])), 0.0)
    assert summarise(scores, 10, calibration=model).cllr == pytest.approx(1.0)


def test_evaluate_open_set_per_years_group_and_det_png(tmp_path):
    rng = np.random.default_rng(3)
    rows, vectors = [], []
    centres = rng.normal(size=(40, 16))
    for s in range(40):
        for year in range(4):
            rows.append({"image": f"{s}_{year}.png", "subject": f"P{s}", "time": float(year)})
            vectors.append(centres[s] + (0.4 + 0.3 * year) * rng.normal(size=16))
    cohort = Cohort(pd.DataFrame(rows))
    result = evaluate_open_set(np.array(vectors, np.float32), cohort)
    assert set(result.groups) == {"1", "2", "3", "all"}
    assert result.n_gallery == 40 and result.groups["all"]["n_nonmated"] == 120
    # drifting further from the first visit makes identification harder
    assert result.groups["1"]["FNIR@FPIR=0.1"] <= result.groups["3"]["FNIR@FPIR=0.1"]
    assert result.groups["all"]["Cllr"] < 1
    plot_det(result, tmp_path / "det.png")
    from PIL import Image
    with Image.open(tmp_path / "det.png") as image:
        assert image.width > 400 and np.asarray(image.convert("L")).std() > 10
