"""Patient-disjoint validation splits carved out of a training split, reproducibly by seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radsearch.errors import ConfigError


def carve_validation(subjects: pd.Series, split: pd.Series, fraction: float,
                     seed: int = 0) -> pd.Series:
    """Move ``fraction`` of the training subjects (all their images) to ``val``.

    Subjects are drawn from the sorted list of training subjects with ``numpy`` seeded by ``seed``,
    so the same metadata and seed give the same split on any machine.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction {fraction} must be in [0, 1).")
    split = split.copy()
    if fraction == 0.0:
        return split
    train_subjects = np.array(sorted(set(subjects[split == "train"])), dtype=object)
    n_val = int(round(fraction * len(train_subjects)))
    if n_val == 0:
        return split
    chosen = np.random.default_rng(seed).choice(len(train_subjects), size=n_val, replace=False)
    val_subjects = set(train_subjects[chosen])
    split[(split == "train") & subjects.isin(val_subjects)] = "val"
    return split
