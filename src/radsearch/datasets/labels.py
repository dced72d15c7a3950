"""The 14 CheXpert labels (CheXpert, MIMIC-CXR) and the policy for uncertain (−1) mentions.

Cells are 1 (positive), 0 (negative), −1 (uncertain) or blank (not mentioned, treated as negative).
Policies: ``u-zeros`` (uncertain → negative), ``u-ones`` (uncertain → positive), ``ignore``
(uncertain is neither: it is left out of ``labels`` and listed in the ``uncertain`` column so that a
diagnostic evaluation can mask it). A row with no positive label gets ``No Finding``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from radsearch.cohort import LABEL_SEPARATOR, NO_FINDING
from radsearch.errors import ConfigError, ManifestError

CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)
POLICIES = ("u-zeros", "u-ones", "ignore")


def check_policy(policy: str) -> str:
    policy = policy.lower().replace("_", "-")
    if policy not in POLICIES:
        raise ConfigError(f"unknown uncertainty policy {policy!r}; use one of "
                          f"{', '.join(POLICIES)}.")
    return policy


_STATES = {"": 0, "1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1}


def label_states(table: pd.DataFrame, source: str) -> np.ndarray:
    """Cells of the 14 label columns as int8: 1, 0, −1, and 0 for blank."""
    states = np.zeros((len(table), len(CHEXPERT_LABELS)), dtype=np.int8)
    for j, name in enumerate(CHEXPERT_LABELS):
        # Plain object strings: mapping pandas' arrow-backed strings cell by cell is ~10× slower.
        text = pd.Series(table[name].to_numpy(dtype=object)).str.strip()
        values = text.map(_STATES)
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):  # e.g. "1.00": fall back to numbers, then complain
            values = pd.to_numeric(text.where(text != "", "0"), errors="coerce")
            bad = np.flatnonzero(~values.isin((1.0, 0.0, -1.0)).to_numpy())
        if len(bad):
            raise ManifestError(f"{source}, line {bad[0] + 2}, column '{name}': "
                                f"{text.iloc[bad[0]]!r} is not 1, 0, -1 or blank.")
        states[:, j] = values.to_numpy(dtype=np.int8)
    return states


def labels_under_policy(states: np.ndarray, policy: str) -> tuple[list[str], list[str]]:
    """``labels`` strings (positives joined by '|', "No Finding" when none) and ``uncertain``."""
    policy = check_policy(policy)
    positive = (states == 1) | ((states == -1) if policy == "u-ones" else False)
    uncertain = (states == -1) if policy == "ignore" else np.zeros_like(positive)
    return _join_rows(positive, NO_FINDING), _join_rows(uncertain, "")


def _join_rows(matrix: np.ndarray, empty: str) -> list[str]:
    """Names of the True columns per row joined by '|' (computed once per distinct row)."""
    names = np.array(CHEXPERT_LABELS, dtype=object)
    bits = matrix.astype(np.int64) @ (1 << np.arange(matrix.shape[1], dtype=np.int64))
    codes, inverse = np.unique(bits, return_inverse=True)
    texts = np.array([LABEL_SEPARATOR.join(names[(code >> np.arange(len(names))) & 1 == 1])
                      or empty for code in codes], dtype=object)
    return texts[inverse.reshape(-1)].tolist()
