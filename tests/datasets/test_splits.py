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


def test_training_and_synthetic_cohorts_use_the_one_splitter():
    from radsearch.cohort import Cohort
    from radsearch.synth import common, generate_chest, generate_knee
    from radsearch.training import cohorts

    assert not hasattr(common, "assign_split"), "synth keeps its own splitter"
    assert not hasattr(cohorts, "_assign_by_subject"), "training keeps its own splitter"

    def synth_rng(seed, salt):  # the synthetic cohorts' split stream, as they document it
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(10**9 + salt,)))

    knee = generate_knee(12, seed=3, image_size=32, workers=1).cohort.table
    others = sorted(set(knee.loc[knee["site"] != "C", "subject"]))
    want = assign_by_subject(others, {"val": 0.15, "train": 0.85}, synth_rng(3, 1), rest=None)
    assert [want.get(s, "test") for s in knee["subject"]] == list(knee["split"])
    chest = generate_chest(12, seed=4, image_size=32, workers=1).cohort.table
    want = assign_by_subject(sorted(set(chest["subject"])), {"train": 0.7, "val": 0.1, "test": 0.2},
                             synth_rng(4, 2), rest=None)
    assert [want[s] for s in chest["subject"]] == list(chest["split"])
    # training: no split column → test / val / train blocks; no val → val carved from train
    table = knee.drop(columns=["split"])
    got = cohorts.ensure_splits(Cohort(table, root="."), 0.2, 0.25, 7).table["split"]
    want = assign_by_subject(sorted(set(table["subject"])), {"test": 0.25, "val": 0.2},
                             np.random.default_rng(7))
    assert [want[s] for s in table["subject"]] == list(got)
