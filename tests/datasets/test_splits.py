"""One subject-grouped splitter (datasets/splits.py) for adapters, training and synthetic cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radsearch.datasets.splits import assign_by_subject, carve_validation
from radsearch.errors import ConfigError


def test_blocks_of_a_seeded_permutation_by_hand():
    subjects = [f"S{i}" for i in range(10)]
    order = np.random.default_rng(3).permutation(10)  # independent: numpy's permutation itself
    got = assign_by_subject(subjects, {"test": 0.2, "val": 0.3}, np.random.default_rng(3))
    expected = {subjects[i]: "test" for i in order[:2]} | {subjects[i]: "val" for i in order[2:5]} \
        | {subjects[i]: "train" for i in order[5:]}
    assert got == expected
    last_takes_rest = assign_by_subject(subjects, {"train": 0.5, "test": 0.1},
                                        np.random.default_rng(3), rest=None)
    assert sum(v == "test" for v in last_takes_rest.values()) == 5


def test_carve_validation_keeps_subjects_whole_and_is_reproducible():
    subjects = pd.Series([f"P{i // 3}" for i in range(300)])
    split = pd.Series(np.where(np.arange(300) < 240, "train", "test"), dtype=object)
    carved = carve_validation(subjects, split, 0.25, seed=7)
    assert carved.equals(carve_validation(subjects, split, 0.25, seed=7))
    val = set(subjects[carved == "val"])
    assert len(val) == 20  # round(0.25 · 80 training subjects)
    assert not val & set(subjects[carved == "train"])
    assert (carved[split == "test"] == "test").all()
    with pytest.raises(ConfigError, match=r"validation fraction 1.0 must be in \[0, 1\)"):
        carve_validation(subjects, split, 1.0)


def test_the_synthetic_splitter_is_reproduced_exactly():
    # synth/common.assign_split is the copy to retire: the shared one gives the same splits
    common = pytest.importorskip("radsearch.synth.common")
    if not hasattr(common, "assign_split"):
        pytest.skip("synth already uses radsearch.datasets.splits")
    subjects = [f"K{i:05d}" for i in range(97)]
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    rng = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(10**9 + 1,)))
    assert assign_by_subject(subjects, fractions, rng, rest=None) == \
        common.assign_split(5, subjects, fractions, salt=1)


def test_the_training_splitter_is_reproduced_exactly():
    cohorts = pytest.importorskip("radsearch.training.cohorts")
    if not hasattr(cohorts, "_assign_by_subject"):
        pytest.skip("training already uses radsearch.datasets.splits")
    subjects = pd.Series([f"P{i % 41}" for i in range(200)])
    fractions = {"test": 0.2, "val": 0.1}
    mine = assign_by_subject(sorted(set(subjects)), fractions, np.random.default_rng(9))
    theirs = cohorts._assign_by_subject(subjects, np.random.default_rng(9), fractions)
    assert [mine[s] for s in subjects] == theirs
