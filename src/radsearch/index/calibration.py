"""``calibrate``: open-set thresholds and a score → log10 LR map, stored in the index header.

Gallery = the index plus the calibration cohort's first-visit images (years apart = 0) that are not
already indexed; probes = the calibration cohort's later images not in the index. Each probe gives a
mated search (when its identity is in that gallery) and a non-mated search (its identity held out),
see :mod:`radsearch.evaluation.openset`. Thresholds are stored at FPIR 0.1 / 0.01 / 0.001 with
the FNIR each costs, the gallery size N they were measured at, and Cllr (in-sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, DataError
from radsearch.evaluation.openset import (FPIR_TARGETS, OpenSetScores, ScoreCalibration,
                                          calibration_from_dict, fit_calibration,
                                          open_set_scores, summarise)
from radsearch.evaluation.protocols import years_apart
from radsearch.index.base import VectorIndex, now
from radsearch.index.filters import Filter

SHORTLIST = 50


@dataclass
class Decision:
    """Open-set answer at one operating point: is any candidate above the threshold?"""

    match: bool
    threshold: float
    fpir: float          # false-positive identification rate at this threshold (calibration)
    fnir: float          # false-negative identification rate at this threshold (calibration)
    n_gallery: int       # gallery size N the rates were measured at
    message: str


def calibration_scores(index: VectorIndex, vectors: np.ndarray, cohort: Cohort
                       ) -> tuple[OpenSetScores, int]:
    """Open-set scores of the calibration probes against index ∪ calibration gallery, and N."""
    from radsearch.index.build import cohort_items

    items = cohort_items(cohort)
    new = ~items["id"].isin(index.table.index).to_numpy()
    years = years_apart(cohort)
    gallery = np.flatnonzero((years == 0) & new)
    probes = np.flatnonzero((years >= 1) & new)
    if not len(probes):
        raise DataError(f"{cohort.source}: no calibration probes (images ≥ 1 year after the "
                        "subject's first one that are not in the index); use a cohort with "
                        "follow-up visits held out of the index.")
    subjects = items["subject"].to_numpy().astype(str)
    q, qs = vectors[probes], subjects[probes]
    local = open_set_scores(q, qs, vectors[gallery], subjects[gallery])
    mated, nonmated = local.mated.copy(), local.nonmated.copy()
    if len(index):
        found = index.search(q, min(SHORTLIST, len(index)))
        found_subjects = index.table["subject"].reindex(found.ids.ravel()).to_numpy().astype(
            str).reshape(found.ids.shape)
        other = (found_subjects != qs[:, None]) & (found.ids >= 0)
        for row in range(len(q)):
            hits = np.flatnonzero(other[row])
            best = found.scores[row, hits[0]] if len(hits) else index.search(
                q[row], 1, [Filter("subject", "!=", qs[row])]).scores[0, 0]
            nonmated[row] = max(nonmated[row], best)
        indexed = set(index.table["subject"])
        for subject in sorted(set(qs) & indexed):
            rows = np.flatnonzero(qs == subject)
            best = index.search(q[rows], 1, [Filter("subject", "==", subject)]).scores[:, 0]
            mated[rows] = np.fmax(mated[rows], best)
    nonmated[~np.isfinite(nonmated)] = np.nan
    rank1 = np.nan_to_num(mated, nan=-np.inf) > np.nan_to_num(nonmated, nan=-np.inf)
    return OpenSetScores(mated, rank1, nonmated), len(index) + len(gallery)


def calibrate(index: VectorIndex, vectors: np.ndarray, cohort: Cohort,
              targets=FPIR_TARGETS, method: str = "isotonic") -> dict:
    """Fit and return the calibration record (``index.set_calibration`` stores it).

    ``method``: isotonic (default; lower cross-validated Cllr than logistic on the demo and an
    unseen cohort, docs/search.md) or logistic (see :mod:`radsearch.evaluation.openset`).
    """
    scores, n_gallery = calibration_scores(index, vectors, cohort)
    model = fit_calibration(scores, method)
    summary = summarise(scores, n_gallery, targets, calibration=model)
    warning = None
    informative = model.coef > 0 if isinstance(model, ScoreCalibration) else model.informative
    if not informative:
        warning = ("mated top scores are not higher than non-mated ones: the model's scores carry "
                   "no evidence of identity here (LR <= 1 for high scores); train longer")
    return {"created": now(), "source": cohort.source, "rank": 1, "model": model.to_dict(),
            "warning": warning, **summary.to_dict()}


def log10_lr(calibration: dict | None, scores) -> np.ndarray | None:
    if not calibration:
        return None
    return calibration_from_dict(calibration["model"]).log10_lr(scores)


def operating_point(calibration: dict, target_fpir: float) -> dict:
    for row in calibration["thresholds"]:
        if abs(row["target_fpir"] - target_fpir) < 1e-12:
            return row
    present = ", ".join(str(r["target_fpir"]) for r in calibration["thresholds"])
    raise ConfigError(f"--fpir {target_fpir}: the index is calibrated at FPIR {present}; use one "
                      "of them or calibrate again.")


def decide(calibration: dict | None, top_score: float | None, target_fpir: float = 0.01
           ) -> Decision | None:
    """Open-set decision for a search whose best candidate scored ``top_score``."""
    if not calibration:
        return None
    row = operating_point(calibration, target_fpir)
    n = calibration["n_gallery"]
    t = row["threshold"]
    match = top_score is not None and np.isfinite(top_score) and top_score >= t
    if match:
        message = (f"candidate above T = {t:.4f} (FPIR = {row['fpir']:.3g} at N = {n}; "
                   f"FNIR there = {row['fnir']:.3g})")
    else:
        message = f"no candidate above T = {t:.4f} (FPIR = {row['fpir']:.3g} at N = {n})"
    return Decision(bool(match), float(t), float(row["fpir"]), float(row["fnir"]), int(n), message)
