"""Open-set identification (NIST FRVT 1:N / ISO/IEC 19795-1 vocabulary) and score calibration.

Every probe gives two searches of the same gallery: a *mated* search (its identity is in the
gallery) and a *non-mated* search (its identity held out: its images are ignored).

* FPIR(T) = share of non-mated searches whose top candidate scores ≥ T (a false alarm);
* FNIR(T) = share of mated searches whose mate is not returned at rank 1 with score ≥ T;
* the threshold at a target FPIR is the smallest T with FPIR(T) ≤ target (strictly above the
  non-mated score that would exceed the target);
* the score → log10 likelihood ratio map is a logistic regression of "mated?" on the top score with
  balanced class weights (equal priors), so its log-odds are ln LR;
* Cllr = ½ [mean over mated log2(1 + 1/LR) + mean over non-mated log2(1 + LR)] (Brümmer): 0 is
  perfect, 1 is an uninformative LR = 1, above 1 is misleading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from radsearch.errors import DataError

FPIR_TARGETS = (0.1, 0.01, 0.001)


@dataclass
class OpenSetScores:
    """Per probe: best mate score (NaN without a mate), rank-1 flag, best non-mate score."""

    mated: np.ndarray
    mate_rank1: np.ndarray
    nonmated: np.ndarray

    @property
    def has_mate(self) -> np.ndarray:
        return np.isfinite(self.mated)

    def subset(self, rows: np.ndarray) -> OpenSetScores:
        return OpenSetScores(self.mated[rows], self.mate_rank1[rows], self.nonmated[rows])

    @classmethod
    def concat(cls, parts: Sequence[OpenSetScores]) -> OpenSetScores:
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("mated", "mate_rank1", "nonmated")))


def open_set_scores(queries: np.ndarray, query_subjects: Sequence, gallery: np.ndarray,
                    gallery_subjects: Sequence, chunk: int = 1024) -> OpenSetScores:
    """Mated and non-mated top scores of each query against a gallery (cosine of L2-normalised)."""
    qs = np.asarray(query_subjects).astype(str)
    gs = np.asarray(gallery_subjects).astype(str)
    mated, nonmated = np.empty(len(qs)), np.empty(len(qs))
    for start in range(0, len(qs), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        same = qs[start:start + chunk, None] == gs[None, :]
        mated[start:start + chunk] = np.where(same, scores, -np.inf).max(axis=1, initial=-np.inf)
        nonmated[start:start + chunk] = np.where(same, -np.inf, scores).max(axis=1,
                                                                             initial=-np.inf)
    mated[~np.isfinite(mated)] = np.nan
    return OpenSetScores(mated, np.nan_to_num(mated, nan=-np.inf) > nonmated, nonmated)


def fpir(nonmated: np.ndarray, threshold: float) -> float:
    nonmated = nonmated[np.isfinite(nonmated)]
    return float((nonmated >= threshold).mean()) if len(nonmated) else float("nan")


def fnir(scores: OpenSetScores, threshold: float) -> float:
    m = scores.has_mate
    if not m.any():
        return float("nan")
    hit = scores.mate_rank1[m] & (scores.mated[m] >= threshold)
    return float(1.0 - hit.mean())


def threshold_at_fpir(nonmated: np.ndarray, target: float) -> float:
    """Smallest threshold T with FPIR(T) ≤ target."""
    if not 0 < target < 1:
        raise DataError(f"FPIR target {target}: must lie strictly between 0 and 1.")
    values = np.sort(nonmated[np.isfinite(nonmated)])[::-1]
    if not len(values):
        raise DataError("no non-mated searches: every probe's identity is the whole gallery.")
    allowed = int(math.floor(target * len(values) + 1e-9))   # false alarms we may keep
    if allowed >= len(values):
        return float(values[-1])
    return float(np.nextafter(values[allowed], np.inf))


def det_curve(scores: OpenSetScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FPIR, FNIR) at every distinct score: the DET curve's points."""
    nm = np.sort(scores.nonmated[np.isfinite(scores.nonmated)])
    m = scores.has_mate
    good = np.sort(np.where(scores.mate_rank1[m], scores.mated[m], -np.inf))
    thresholds = np.unique(np.concatenate([nm, good[np.isfinite(good)]]))
    fp = 1.0 - np.searchsorted(nm, thresholds, side="left") / max(len(nm), 1)
    fn = np.searchsorted(good, thresholds, side="left") / max(len(good), 1)
    return thresholds, fp, fn


def cllr(log10_lr_mated: np.ndarray, log10_lr_nonmated: np.ndarray) -> float:
    """Log-likelihood-ratio cost (bits); computed stably with logaddexp."""
    ln10 = math.log(10.0)
    mated = np.logaddexp(0.0, -np.asarray(log10_lr_mated) * ln10) / math.log(2.0)
    non = np.logaddexp(0.0, np.asarray(log10_lr_nonmated) * ln10) / math.log(2.0)
    return float(0.5 * (mated.mean() + non.mean()))


@dataclass
class ScoreCalibration:
    """log10 LR = (coef · score + intercept) / ln 10."""

    coef: float
    intercept: float

    def log10_lr(self, score) -> np.ndarray:
        return (self.coef * np.asarray(score, dtype=np.float64) + self.intercept) / math.log(10.0)

    def to_dict(self) -> dict:
        return {"kind": "logistic", "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict) -> ScoreCalibration:
        return cls(float(data["coef"]), float(data["intercept"]))


def _training_set(scores: OpenSetScores) -> tuple[np.ndarray, np.ndarray]:
    m = scores.has_mate
    nm = np.isfinite(scores.nonmated)
    x = np.concatenate([scores.mated[m], scores.nonmated[nm]])
    y = np.concatenate([np.ones(int(m.sum())), np.zeros(int(nm.sum()))])
    if m.sum() < 2 or nm.sum() < 2:
        raise DataError(f"calibration needs mated and non-mated searches; got {int(m.sum())} "
                        f"mated and {int(nm.sum())} non-mated (use a cohort with follow-up "
                        "images of several people).")
    return x, y


def fit_calibration(scores: OpenSetScores) -> ScoreCalibration:
    """Logistic regression of mated (1) vs non-mated (0) top scores, equal priors."""
    from sklearn.linear_model import LogisticRegression

    x, y = _training_set(scores)
    model = LogisticRegression(class_weight="balanced", C=1e6, max_iter=1000)
    model.fit(x[:, None], y)
    return ScoreCalibration(float(model.coef_[0, 0]), float(model.intercept_[0]))


@dataclass
class OpenSetSummary:
    n_mated: int
    n_nonmated: int
    n_gallery: int
    thresholds: list[dict] = field(default_factory=list)   # fpir target, threshold, fpir, fnir
    cllr: float | None = None

    def to_dict(self) -> dict:
        return {"n_mated": self.n_mated, "n_nonmated": self.n_nonmated,
                "n_gallery": self.n_gallery, "thresholds": self.thresholds, "cllr": self.cllr}


def summarise(scores: OpenSetScores, n_gallery: int, targets: Sequence[float] = FPIR_TARGETS,
              calibration: ScoreCalibration | None = None,
              thresholds: Sequence[float] | None = None) -> OpenSetSummary:
    """FNIR at each target FPIR (or at given thresholds), and Cllr under ``calibration``."""
    nm = scores.nonmated[np.isfinite(scores.nonmated)]
    rows = []
    for i, target in enumerate(targets):
        t = threshold_at_fpir(nm, target) if thresholds is None else thresholds[i]
        rows.append({"target_fpir": target, "threshold": t, "fpir": fpir(nm, t),
                     "fnir": fnir(scores, t),
                     "reliable": bool(target * len(nm) >= 1.0)})
    value = None
    if calibration is not None and scores.has_mate.any() and len(nm):
        value = cllr(calibration.log10_lr(scores.mated[scores.has_mate]),
                     calibration.log10_lr(nm))
    return OpenSetSummary(int(scores.has_mate.sum()), int(len(nm)), int(n_gallery), rows, value)
