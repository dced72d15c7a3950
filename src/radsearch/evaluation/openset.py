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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from radsearch.errors import ConfigError, DataError

FPIR_TARGETS = (0.1, 0.01, 0.001)
CALIBRATION_METHODS = ("logistic", "isotonic")


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


def searched_open_set_scores(search: SearchFn, probes: np.ndarray, probe_subjects: np.ndarray,
                             gallery: np.ndarray, gallery_subjects: np.ndarray) -> OpenSetScores:
    """Open-set scores from two searches per probe: the whole gallery (mated: the mate's best
    score, and is it above every non-mate there?) and the gallery without its identity."""
    mated, rank1, nonmated = (np.full(len(probes), np.nan), np.zeros(len(probes), bool),
                              np.full(len(probes), np.nan))
    for i, (row, subject) in enumerate(zip(probes, probe_subjects)):
        own = gallery_subjects == subject
        full = search(int(row), np.zeros(len(gallery), bool))
        if own.any():
            mated[i] = full[own].max()
            rank1[i] = mated[i] > full[~own].max(initial=-np.inf)
        other = search(int(row), own)[~own]
        nonmated[i] = other.max() if len(other) else np.nan
    return OpenSetScores(mated, rank1, nonmated)


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


@dataclass
class IsotonicCalibration:
    """log10 LR = log10(p / (1 − p)), p = the PAV posterior (equal priors) interpolated at the
    score between the fitted points ``x`` (increasing) and clipped outside them."""

    x: np.ndarray
    p: np.ndarray

    def log10_lr(self, score) -> np.ndarray:
        p = np.interp(np.asarray(score, dtype=np.float64), self.x, self.p)
        return np.log10(p) - np.log10(1.0 - p)

    @property
    def informative(self) -> bool:
        return bool(self.p[-1] > self.p[0])

    def to_dict(self) -> dict:
        return {"kind": "isotonic", "x": [float(v) for v in self.x],
                "p": [float(v) for v in self.p]}

    @classmethod
    def from_dict(cls, data: dict) -> IsotonicCalibration:
        return cls(np.asarray(data["x"], np.float64), np.asarray(data["p"], np.float64))


def calibration_from_dict(data: dict) -> ScoreCalibration | IsotonicCalibration:
    """The stored score → LR map (``kind`` logistic or isotonic)."""
    if data.get("kind", "logistic") == "isotonic":
        return IsotonicCalibration.from_dict(data)
    return ScoreCalibration.from_dict(data)


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


def fit_calibration(scores: OpenSetScores, method: str = "logistic"
                    ) -> ScoreCalibration | IsotonicCalibration:
    """Logistic regression (or isotonic, PAV) of mated (1) vs non-mated (0) top scores, equal
    priors."""
    from sklearn.linear_model import LogisticRegression

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method {method!r}: use logistic or isotonic.")
    x, y = _training_set(scores)
    if method == "isotonic":
        return fit_isotonic(x, y)
    model = LogisticRegression(class_weight="balanced", C=1e6, max_iter=1000)
    model.fit(x[:, None], y)
    coef = float(model.coef_[0, 0])
    if coef <= 0:
        # higher scores would mean "less likely the same person": the scores carry no usable
        # evidence, so every score gets LR = 1 (log10 LR 0) rather than a reversed, misleading one
        return ScoreCalibration(0.0, 0.0)
    return ScoreCalibration(coef, float(model.intercept_[0]))


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> IsotonicCalibration:
    """PAV fit with balanced class weights plus one pseudo observation of each class at the far
    end (a mated one at the lowest score, a non-mated one at the highest)."""
    from sklearn.isotonic import IsotonicRegression

    n_mated, n_non = int(y.sum()) + 1, int((1 - y).sum()) + 1
    x = np.concatenate([x, [x.min(), x.max()]])
    y = np.concatenate([y, [1.0, 0.0]])
    weights = np.where(y == 1, 1.0 / n_mated, 1.0 / n_non)
    model = IsotonicRegression(increasing=True, out_of_bounds="clip")
    model.fit(x, y, sample_weight=weights)
    return IsotonicCalibration(np.asarray(model.X_thresholds_, np.float64),
                               np.asarray(model.y_thresholds_, np.float64))


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
              calibration: ScoreCalibration | IsotonicCalibration | None = None,
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


# ------------------------------------------------------------------ protocol on a cohort
@dataclass
class OpenSetResult:
    """Per years-apart group: FNIR at each FPIR target (thresholds set on all non-mated
    searches), Cllr of a subject-grouped cross-validated calibration, and the DET points."""

    groups: dict[str, dict]
    n_gallery: int
    targets: tuple[float, ...]
    scores: OpenSetScores = field(repr=False)
    years: np.ndarray = field(repr=False)
    log10_lr: tuple[np.ndarray, np.ndarray] = field(repr=False)

    def to_dict(self) -> dict:
        return {"protocol": "open-set", "n_gallery": self.n_gallery,
                "fpir_targets": list(self.targets), "rank": 1, "groups": self.groups}


def cross_validated_lr(scores: OpenSetScores, groups: np.ndarray, folds: int = 5,
                       method: str = "logistic") -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold log10 LRs of every mated and non-mated score (folds by subject)."""
    mated_lr = np.full(len(groups), np.nan)
    non_lr = np.full(len(groups), np.nan)
    unique = np.unique(groups)
    fold_of = {g: i % folds for i, g in enumerate(np.random.default_rng(0).permutation(unique))}
    fold = np.array([fold_of[g] for g in groups])
    for f in range(min(folds, len(unique))):
        test = fold == f
        model = fit_calibration(scores.subset(np.flatnonzero(~test)), method)
        mated_lr[test] = model.log10_lr(scores.mated[test])
        non_lr[test] = model.log10_lr(scores.nonmated[test])
    return mated_lr, non_lr


SearchFn = Callable[[int, np.ndarray], np.ndarray]


def evaluate_open_set(embeddings, cohort, targets: Sequence[float] = FPIR_TARGETS,
                      folds: int = 5, calibration: str = "isotonic",
                      search: SearchFn | None = None) -> OpenSetResult:
    """Open-set identification on a cohort with the forensic layout: gallery = first visits
    (0 years apart), probes = later visits, each probe searched mated and non-mated.

    ``search(cohort_row, exclude)`` → scores of every gallery image (−inf where ``exclude``, a
    mask over the gallery, holds) replaces plain cosine, e.g. a re-ranked search: the non-mated
    search then runs on the gallery without the probe's identity, not on the mated one's scores.
    """
    from radsearch.evaluation.protocols import embedding_matrix, years_apart

    vectors = embedding_matrix(embeddings, len(cohort)).numpy()
    years = years_apart(cohort)
    gallery, probes = np.flatnonzero(years == 0), np.flatnonzero(years >= 1)
    if not len(probes):
        raise DataError(f"{cohort.source}: no probes (images ≥ 1 year after the subject's "
                        "first one).")
    subjects = cohort.table["subject"].to_numpy().astype(str)
    if search is None:
        scores = open_set_scores(vectors[probes], subjects[probes], vectors[gallery],
                                 subjects[gallery])
    else:
        scores = searched_open_set_scores(search, probes, subjects[probes], gallery,
                                          subjects[gallery])
    nm = scores.nonmated[np.isfinite(scores.nonmated)]
    thresholds = [threshold_at_fpir(nm, t) for t in targets]
    mated_lr, non_lr = cross_validated_lr(scores, subjects[probes], folds, calibration)
    probe_years = years[probes]
    out: dict[str, dict] = {}
    for name, rows in [*((str(int(y)), probe_years == y) for y in np.unique(probe_years)),
                       ("all", np.ones(len(probes), bool))]:
        part = scores.subset(np.flatnonzero(rows))
        m = rows & scores.has_mate
        group = {"n_mated": int(part.has_mate.sum()), "n_nonmated": int(rows.sum())}
        for t, thr in zip(targets, thresholds):
            group[f"FNIR@FPIR={t:g}"] = fnir(part, thr)
        group["rank1_identification"] = float(part.mate_rank1[part.has_mate].mean()) \
            if part.has_mate.any() else float("nan")
        group["Cllr"] = cllr(mated_lr[m], non_lr[rows]) if m.any() else float("nan")
        out[name] = group
    out["all"]["thresholds"] = {f"{t:g}": thr for t, thr in zip(targets, thresholds)}
    out["all"]["FPIR_reliable"] = {f"{t:g}": bool(t * len(nm) >= 1) for t in targets}
    return OpenSetResult(out, int(len(gallery)), tuple(targets), scores, probe_years,
                         (mated_lr, non_lr))


def plot_det(result: OpenSetResult, path) -> None:
    """DET curve (FNIR vs FPIR, log axes) per years-apart group, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from radsearch.io import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    groups = [g for g in result.groups if g != "all"] + ["all"]
    for name in groups:
        rows = np.ones(len(result.years), bool) if name == "all" else \
            result.years == int(name)
        _, fp, fn = det_curve(result.scores.subset(np.flatnonzero(rows)))
        keep = fp > 0
        label = "all" if name == "all" else f"{name} year{'' if str(name) == '1' else 's'} apart"
        ax.step(fp[keep], fn[keep], where="post", label=label,
                linewidth=2.4 if name == "all" else 1.2, color="black" if name == "all" else None)
    for t in result.targets:
        ax.axvline(t, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("FPIR (non-mated searches with a candidate ≥ T)")
    ax.set_ylabel("FNIR (mated searches without the mate at rank 1 ≥ T)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Open-set identification DET, gallery N = {result.n_gallery}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
