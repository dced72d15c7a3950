"""Subject-grouped splits: every image of a subject lands in the same split, reproducibly by seed.

One rule for every place that makes a split (adapters' ``--val-fraction``, the training engine's
missing splits, the synthetic cohorts): shuffle the distinct subjects with ``rng.permutation``,
then give consecutive blocks of round(fraction · n) subjects to each split name in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from radsearch.validation import check_fraction


def assign_by_subject(subjects: Sequence[str], fractions: Mapping[str, float],
                      rng: np.random.Generator, rest: str | None = "train") -> dict[str, str]:
    """Distinct ``subjects`` (in a canonical order the caller chooses) → split name.

    Blocks of round(fraction · n) shuffled subjects go to the names of ``fractions`` in order;
    the subjects left over go to ``rest`` — or, with ``rest=None``, the last name takes them
    (its own fraction is then only nominal).
    """
    names = list(fractions)
    for name in names:
        check_fraction(fractions[name], f"{name} fraction")
    n = len(subjects)
    order = rng.permutation(n)
    counts = [int(round(fractions[name] * n)) for name in names]
    if rest is None and names:
        counts[-1] = n - sum(counts[:-1])
    out: dict[str, str] = {}
    start = 0
    for name, count in zip(names, counts):
        count = max(count, 0)
        for i in order[start:start + count]:
            out[subjects[i]] = name
        start += count
    if rest is not None:
        for i in order[start:]:
            out[subjects[i]] = rest
    return out


def carve_validation(subjects: pd.Series, split: pd.Series, fraction: float,
                     seed: int = 0) -> pd.Series:
    """Move ``fraction`` of the training subjects (all their images) to ``val``.

    The sorted training subjects are split by :func:`assign_by_subject` with
    ``numpy.random.default_rng(seed)``, so the same metadata and seed give the same split on any
    machine.
    """
    check_fraction(fraction, "validation fraction", upper_open=True)
    split = split.copy()
    if fraction == 0.0:
        return split
    train_subjects = sorted(set(subjects[split == "train"]))
    chosen = assign_by_subject(train_subjects, {"val": fraction}, np.random.default_rng(seed))
    val_subjects = {s for s, name in chosen.items() if name == "val"}
    split[(split == "train") & subjects.isin(val_subjects)] = "val"
    return split
