"""Isotonic (PAV) score → LR calibration against a hand-computed PAV and scikit-learn."""

import math

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from radsearch.errors import ConfigError
from radsearch.evaluation.openset import (IsotonicCalibration, OpenSetScores, ScoreCalibration,
                                          calibration_from_dict, cross_validated_lr,
                                          fit_calibration)


def _scores(mated, non):
    mated, non = np.asarray(mated, float), np.asarray(non, float)
    return OpenSetScores(mated, np.ones(len(mated), bool), non)


def test_pav_by_hand():
    # mated 0.6 0.9 0.95, non-mated 0.1 0.3 0.7, plus a pseudo mated at 0.1 and a pseudo
    # non-mated at 0.95; weights 1/4 per observation of either class (equal priors). Ties first:
    # x 0.1 → ½ (weight ½), 0.3 → 0, 0.6 → 1, 0.7 → 0, 0.9 → 1, 0.95 → ½ (weight ½).
    # PAV pools {0.1, 0.3} → ⅓, {0.6, 0.7} → ½, {0.9, 0.95} → ⅔.
    model = fit_calibration(_scores([0.6, 0.9, 0.95], [0.1, 0.3, 0.7]), "isotonic")
    p = {0.0: 1 / 3, 0.2: 1 / 3, 0.45: 5 / 12, 0.65: 1 / 2, 0.92: 2 / 3, 1.0: 2 / 3}
    for s, post in p.items():
        assert model.log10_lr(s) == pytest.approx(math.log10(post / (1 - post)), abs=1e-12)
    assert model.informative


def test_matches_scikit_learn_and_stays_finite_where_plain_pav_does_not():
    rng = np.random.default_rng(0)
    mated, non = rng.normal(0.8, 0.07, 300), rng.normal(0.6, 0.07, 900)
    model = fit_calibration(_scores(mated, non), "isotonic")
    lowest, highest = min(mated.min(), non.min()), max(mated.max(), non.max())
    x = np.r_[mated, non, lowest, highest]        # the pseudo mated and non-mated searches
    y = np.r_[np.ones(300), np.zeros(900), 1.0, 0.0]
    w = np.where(y == 1, 1 / 301, 1 / 901)
    ref = IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=w)
    grid = np.linspace(0.2, 1.2, 301)
    post = ref.predict(grid)
    np.testing.assert_allclose(model.log10_lr(grid), np.log10(post / (1 - post)), atol=1e-9)
    assert np.isfinite(model.log10_lr(grid)).all()
    assert (np.diff(model.log10_lr(grid)) >= -1e-12).all()           # monotone
    plain = IsotonicRegression(out_of_bounds="clip").fit(
        np.r_[mated, non], np.r_[np.ones(300), np.zeros(900)]).predict(grid)
    assert plain.max() == 1.0 and plain.min() == 0.0                  # LR = ∞ and 0 without it


def test_stored_record_round_trips_and_old_records_are_logistic():
    model = fit_calibration(_scores([0.6, 0.9, 0.95], [0.1, 0.3, 0.7]), "isotonic")
    again = calibration_from_dict(model.to_dict())
    assert isinstance(again, IsotonicCalibration)
    np.testing.assert_array_equal(again.log10_lr([0.2, 0.92]), model.log10_lr([0.2, 0.92]))
    old = calibration_from_dict({"coef": 2.0, "intercept": -1.0})
    assert isinstance(old, ScoreCalibration)
    assert old.log10_lr(1.0) == pytest.approx(1.0 / math.log(10))
    with pytest.raises(ConfigError, match="isotonic"):
        fit_calibration(_scores([0.6, 0.9], [0.1, 0.3]), "spline")


def test_reversed_scores_are_flagged_uninformative():
    model = fit_calibration(_scores([0.1, 0.2, 0.3], [0.7, 0.8, 0.9]), "isotonic")
    assert not model.informative
    np.testing.assert_allclose(model.log10_lr([0.0, 0.5, 1.0]), 0.0, atol=1e-12)


def test_cross_validated_isotonic_lrs_are_finite_out_of_fold():
    rng = np.random.default_rng(1)
    scores = _scores(rng.normal(0.8, 0.1, 200), rng.normal(0.5, 0.1, 200))
    mated, non = cross_validated_lr(scores, np.arange(200) % 37, method="isotonic")
    assert np.isfinite(mated).all() and np.isfinite(non).all()
    assert mated.mean() > 0 > non.mean()
