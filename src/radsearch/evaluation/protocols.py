"""The two evaluation protocols of the seed papers, on a Cohort and embeddings aligned with its rows.

* Forensic (AdaTriplet, MICCAI 2022): find the same person years later. Gallery = every image at
  0 years apart, queries = images ≥ 1 year apart, relevance = same subject; results per year,
  optional year bands / "at least N years", and "all" pooled per query.
* Diagnostic (MMDL, MICCAI 2021): find radiographs with the same findings. Database = one split,
  queries = another; relevance by shared labels; per-class rows and "all samples".
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, DataError
from radsearch.evaluation.metrics import (FORENSIC_CMC_KS, NORMALISATIONS, PerQueryMetrics,
                                          classification_accuracy, dense_retrieval, query_metrics)
from radsearch.evaluation.ranking import DEFAULT_MEMORY_MB, identity_ranks, prepare
from radsearch.evaluation.streaming import LabelSets, label_set_codes, streamed_retrieval

YEAR_TOLERANCE = 1e-6  # 11.9999999 years (days / 365.25 rounding) still counts as 12
RELEVANCE_MODES = ("any", "exact")
PER_CLASS_RELEVANCE = ("class", "overall")
ENGINES = ("stream", "sort")  # streamed (default) or the row-sorting reference
TIE_RULE = "pessimistic tie blocks (precision at the end of a tie block, as scikit-learn AP)"

Embeddings = np.ndarray | torch.Tensor | Sequence[np.ndarray]


@dataclass
class RetrievalResult:
    """Metrics per group (year, band, class or "all"), ready for tables and JSON."""

    protocol: str
    groups: dict[str, dict[str, float]]
    n_gallery: int
    n_skipped_queries: int
    settings: dict[str, Any] = field(default_factory=dict)
    per_query: PerQueryMetrics | None = field(default=None, repr=False)
    query_rows: np.ndarray | None = field(default=None, repr=False)  # cohort rows of the queries

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``radsearch evaluate --json`` (keys documented in docs/evaluation.md)."""
        return {"protocol": self.protocol, "n_gallery": self.n_gallery,
                "n_skipped_queries": self.n_skipped_queries, "settings": dict(self.settings),
                "groups": {name: dict(values) for name, values in self.groups.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrievalResult:
        """Read back :meth:`to_dict` output (e.g. a results.json of a run)."""
        return cls(data["protocol"], {k: dict(v) for k, v in data["groups"].items()},
                   int(data["n_gallery"]), int(data["n_skipped_queries"]),
                   dict(data.get("settings", {})))


ForensicResult = RetrievalResult
DiagnosticResult = RetrievalResult


# ----------------------------------------------------------------------------------- helpers
def years_apart(cohort: Cohort) -> np.ndarray:
    """floor(time − the subject's earliest time), as int64 (0 = the subject's first year)."""
    table = cohort.table
    earliest = table.groupby("subject")["time"].transform("min").to_numpy(np.float64)
    return np.floor(table["time"].to_numpy(np.float64) - earliest + YEAR_TOLERANCE).astype(
        np.int64)


def embedding_matrix(embeddings: Embeddings, n_rows: int, source: str = "embeddings"
                     ) -> torch.Tensor:
    """Validated float32 tensor whose dot products are cosine similarities.

    A sequence of arrays is a k-fold ensemble: each is L2-normalised, and their concatenation
    scaled by 1/√K gives dot products equal to the mean cosine similarity of the K models
    (the reference's distance averaging, with distance = 1 − cosine).
    """
    models = [embeddings] if isinstance(embeddings, (np.ndarray, torch.Tensor)) else \
        list(embeddings)
    if not models:
        raise DataError(f"{source}: no embedding arrays given.")
    parts = []
    for index, model in enumerate(models):
        name = source if len(models) == 1 else f"{source}[{index}]"
        array = model.detach().cpu().numpy() if isinstance(model, torch.Tensor) else \
            np.asarray(model)
        if array.ndim != 2 or array.dtype.kind not in "fiu":
            raise DataError(f"{name}: expected a numeric 2-D array [N, D], got shape "
                            f"{array.shape} and dtype {array.dtype}.")
        if array.shape[0] != n_rows:
            raise DataError(f"{name}: {array.shape[0]} rows but the cohort has {n_rows}; row i of "
                            "the embeddings must belong to row i of the manifest.")
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(f"{name}: row {bad[0]} contains NaN or infinite values "
                            f"({len(bad)} row(s) in all); re-embed those images or drop them "
                            "from the manifest.")
        zero = np.flatnonzero(~np.any(array != 0, axis=1))
        if len(zero):
            raise DataError(f"{name}: row {zero[0]} is all zeros ({len(zero)} row(s) in all); "
                            "cosine similarity is undefined for it.")
        parts.append(prepare(array.astype(np.float32, copy=False)))
    if len(parts) > 1 and len({p.shape[1] for p in parts}) > 1:
        raise DataError(f"{source}: ensemble members have different dimensions "
                        f"{sorted({p.shape[1] for p in parts})}.")
    joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1) / float(np.sqrt(len(parts)))
    return joined.contiguous()


def _restrict_view(cohort: Cohort, view: str | None) -> np.ndarray:
    if view is None:
        return np.arange(len(cohort))
    if not cohort.has("view"):
        raise ConfigError(f"{cohort.source}: no 'view' column, cannot restrict to view {view!r}; "
                          "drop the view option or add a view column (PA/AP/LAT).")
    rows = np.flatnonzero((cohort.table["view"] == view).to_numpy())
    if not len(rows):
        present = sorted(set(cohort.table["view"]) - {""})
        raise DataError(f"{cohort.source}: no image has view {view!r} (views present: "
                        f"{', '.join(present) or 'none'}).")
    return rows


def split_rows(cohort: Cohort, split: str) -> np.ndarray:
    if not cohort.has("split"):
        raise ConfigError(f"{cohort.source}: no 'split' column, cannot select split {split!r}.")
    rows = np.flatnonzero((cohort.table["split"] == split).to_numpy())
    if not len(rows):
        raise DataError(f"{cohort.source}: split {split!r} has no rows.")
    return rows


def _parse_bands(year_bands: Sequence[tuple[int, int] | str] | None) -> list[tuple[int, int]]:
    bands = []
    for band in year_bands or ():
        try:
            lo, hi = (int(x) for x in band.split("-")) if isinstance(band, str) else \
                (int(band[0]), int(band[1]))
        except (ValueError, TypeError, IndexError) as exc:
            raise ConfigError(f"year band {band!r}: expected 'FIRST-LAST' such as '4-5' or a "
                              "pair of years.") from exc
        if lo > hi or lo < 0:
            raise ConfigError(f"year band {band!r}: need 0 <= first <= last.")
        bands.append((lo, hi))
    return bands


def _group_summaries(per_query: PerQueryMetrics, years: np.ndarray,
                     bands: list[tuple[int, int]], at_least: Sequence[int]
                     ) -> dict[str, dict[str, float]]:
    groups: dict[str, dict[str, float]] = {}
    for year in np.unique(years):
        groups[str(int(year))] = per_query.summary(years == year)
    for lo, hi in bands:
        groups[f"{lo}-{hi}"] = per_query.summary((years >= lo) & (years <= hi))
    for n in at_least:
        groups[f">={n}"] = per_query.summary(years >= n)
    groups["all"] = per_query.summary()
    return groups


# ---------------------------------------------------------------------------------- forensic
def evaluate_forensic(embeddings: Embeddings, cohort: Cohort, *, leave_one_out: bool = False,
                      view: str | None = None, split: str | None = None,
                      year_bands: Sequence[tuple[int, int] | str] | None = None,
                      at_least: int | Sequence[int] | None = None,
                      cmc_ks: Sequence[int] = FORENSIC_CMC_KS,
                      memory_mb: float = DEFAULT_MEMORY_MB) -> RetrievalResult:
    """Forensic matching: is the same subject found among images taken years earlier?

    ``embeddings`` [N, D] (row i = cohort row i) or a list of such arrays (k-fold ensemble, mean
    cosine similarity). Default mode: gallery = images at 0 years apart, queries = images ≥ 1 year
    apart, grouped by years apart. ``leave_one_out``: query = gallery = the whole cohort (a
    validation fold), and a query ignores its subject's images of the same year (and view).
    ``view`` keeps only that view; ``year_bands`` (e.g. ["4-5", "6-8"]) and ``at_least`` (N →
    group ">=N") add pooled groups. ``split`` evaluates only that split's rows (``query_rows``
    still index the whole cohort). Groups "0" (leave-one-out only), "1", …, and "all".
    """
    vectors = embedding_matrix(embeddings, len(cohort))
    if split is not None:
        keep = split_rows(cohort, split)
        result = evaluate_forensic(vectors[torch.from_numpy(keep)], cohort.subset(keep),
                                   leave_one_out=leave_one_out, view=view, year_bands=year_bands,
                                   at_least=at_least, cmc_ks=cmc_ks, memory_mb=memory_mb)
        result.settings["split"] = split
        result.query_rows = keep[result.query_rows]
        return result
    all_years = years_apart(cohort)  # relative to the subject's first image in any view
    rows = _restrict_view(cohort, view)
    sub = cohort.subset(rows) if len(rows) != len(cohort) else cohort
    vectors = vectors[torch.from_numpy(rows)] if len(rows) != len(cohort) else vectors
    subjects = sub.subject_codes()
    years = all_years[rows]
    bands = _parse_bands(year_bands)
    at_least = [int(at_least)] if isinstance(at_least, numbers.Integral) else \
        [int(n) for n in at_least or ()]

    if leave_one_out:
        query_rows = gallery_rows = np.arange(len(sub))
        view_codes = (pd.factorize(sub.table["view"])[0].astype(np.int64) if "view" in sub.table
                      else np.zeros(len(sub), np.int64))
        groups = years * (int(view_codes.max(initial=0)) + 1) + view_codes
        query_groups = gallery_groups = groups
    else:
        gallery_rows = np.flatnonzero(years == 0)
        query_rows = np.flatnonzero(years >= 1)
        query_groups = gallery_groups = None
        if not len(query_rows):
            raise DataError(f"{cohort.source}: no query images — every subject's images are "
                            "less than 1 year after their first one. Use leave_one_out=True "
                            "for a fold without follow-ups.")
    if not len(gallery_rows):
        raise DataError(f"{cohort.source}: the gallery (images at 0 years apart) is empty.")

    ranks = identity_ranks(vectors[torch.from_numpy(query_rows)],
                           vectors[torch.from_numpy(gallery_rows)],
                           subjects[query_rows], subjects[gallery_rows],
                           query_groups=None if query_groups is None else query_groups[query_rows],
                           gallery_groups=None if gallery_groups is None
                           else gallery_groups[gallery_rows],
                           memory_mb=memory_mb)
    per_query = query_metrics(ranks, cmc_ks=cmc_ks, precision_ks=())
    result_groups = _group_summaries(per_query, years[query_rows], bands, at_least)
    settings = {"protocol": "forensic", "relevance": "same subject",
                "similarity": "cosine" if not _is_ensemble(embeddings)
                else f"mean cosine of {len(embeddings)} models",
                "mode": "leave-one-out" if leave_one_out else "gallery = year 0",
                "view": view, "year_bands": [f"{lo}-{hi}" for lo, hi in bands],
                "at_least": at_least, "ties": TIE_RULE,
                "CMC@k": "multi-match (AdaTriplet tables)", "CMC@k_first": "first match"}
    return RetrievalResult("forensic", result_groups, int(len(gallery_rows)),
                           int((~per_query.evaluated).sum()), settings, per_query,
                           rows[query_rows])


def _is_ensemble(embeddings: Embeddings) -> bool:
    return not isinstance(embeddings, (np.ndarray, torch.Tensor)) and len(embeddings) > 1


# -------------------------------------------------------------------------------- diagnostic
def evaluate_diagnostic(embeddings: Embeddings, cohort: Cohort, *, database: str = "train",
                        queries: str = "test", relevance: str = "any",
                        per_class_relevance: str = "class",
                        classes: Sequence[str] | None = None,
                        ks: Sequence[int] = (1, 5, 10, 20), normalisation: str = "dscmr",
                        ndcg_ks: Sequence[int] = (10,), logits: np.ndarray | None = None,
                        view: str | None = None,
                        memory_mb: float = DEFAULT_MEMORY_MB,
                        engine: str = "stream") -> RetrievalResult:
    """Diagnostic retrieval: are radiographs with the same findings ranked first?

    Database = rows of split ``database``, queries = rows of split ``queries`` (the same split:
    each query leaves itself out). ``relevance`` for "all": "any" shared label or "exact" label
    set (binary, as AP needs); nDCG@k always uses the Jaccard overlap as graded gain. Per-class rows average over queries carrying the class, with class-conditional
    relevance (a database item is relevant iff it has the class) or, with
    ``per_class_relevance="overall"``, the overall relevance. ``logits`` [N, classes] (row i =
    cohort row i) add the label head's top-k accuracy to "all". ``engine="sort"`` runs the
    row-sorting reference implementation instead of the streamed one (same results, slower).
    """
    if relevance not in RELEVANCE_MODES:
        graded = (" (graded Jaccard overlap is the gain of nDCG@k, reported in every result; "
                  "AP-based metrics need binary relevance)" if relevance == "jaccard" else "")
        raise ConfigError(f"unknown relevance {relevance!r}; use one of "
                          f"{', '.join(RELEVANCE_MODES)}{graded}.")
    if per_class_relevance not in PER_CLASS_RELEVANCE:
        raise ConfigError(f"unknown per_class_relevance {per_class_relevance!r}; use one of "
                          f"{', '.join(PER_CLASS_RELEVANCE)}.")
    if normalisation not in NORMALISATIONS:
        raise ConfigError(f"unknown mAP@k normalisation {normalisation!r}; use one of "
                          f"{', '.join(NORMALISATIONS)}.")
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}.")
    vectors = embedding_matrix(embeddings, len(cohort))
    labels, class_names = cohort.label_matrix(classes)
    if not cohort.has("split"):
        raise ConfigError(f"{cohort.source}: no 'split' column; diagnostic retrieval needs the "
                          f"database split ({database!r}) and the query split ({queries!r}).")
    in_view = np.zeros(len(cohort), bool)
    in_view[_restrict_view(cohort, view)] = True
    split = cohort.table["split"].to_numpy()
    db_rows = np.flatnonzero((split == database) & in_view)
    q_rows = np.flatnonzero((split == queries) & in_view)
    for name, rows_ in (("database", db_rows), ("query", q_rows)):
        if not len(rows_):
            raise DataError(f"{cohort.source}: the {name} split "
                            f"{database if name == 'database' else queries!r} has no images"
                            f"{'' if view is None else f' with view {view!r}'}.")
    self_index = None
    if database == queries:
        self_index = np.arange(len(q_rows), dtype=np.int64)

    label_q, label_db = labels[q_rows], labels[db_rows]
    label_q_f = torch.from_numpy(label_q.astype(np.float32))
    label_db_f = torch.from_numpy(label_db.astype(np.float32))
    set_codes = label_set_codes(labels)[0]
    codes_q, codes_db = set_codes[q_rows], set_codes[db_rows]
    size_q, size_db = label_q_f.sum(1).double(), label_db_f.sum(1).double()

    def shared(start: int, stop: int) -> torch.Tensor:
        return label_q_f[start:stop] @ label_db_f.T  # labels in common (exact small integers)

    def relevance_of(start: int, stop: int) -> dict[str, tuple[np.ndarray | None, np.ndarray]]:
        if relevance == "exact":
            overall = ((codes_q[start:stop, None] == codes_db[None, :])
                       & label_q[start:stop].any(1)[:, None])
        else:
            overall = (shared(start, stop) > 0).numpy()
        out = {"all": (None, overall)}
        for c, name in enumerate(class_names):  # only the chunk's queries that carry class c
            rows = np.flatnonzero(label_q[start:stop, c])
            if len(rows):
                out[name] = (rows, label_db[:, c] if per_class_relevance == "class"
                             else overall[rows])
        return out

    def jaccard(start: int, stop: int) -> np.ndarray:
        common = shared(start, stop).double()
        union = size_q[start:stop, None] + size_db[None, :] - common
        return torch.where(union > 0, common / union.clamp(min=1), torch.zeros(())).numpy()

    options = dict(ndcg_ks=ndcg_ks, query_in_gallery=self_index, cmc_ks=(1, 5),
                   precision_ks=ks, map_ks=ks, normalisation=normalisation, memory_mb=memory_mb)
    if engine == "stream":
        per_name = streamed_retrieval(vectors[torch.from_numpy(q_rows)],
                                      vectors[torch.from_numpy(db_rows)],
                                      LabelSets(label_q, label_db, self_index),
                                      class_names=class_names, relevance=relevance,
                                      per_class_relevance=per_class_relevance, **options)
    else:
        per_name = dense_retrieval(vectors[torch.from_numpy(q_rows)],
                                   vectors[torch.from_numpy(db_rows)], relevance_of, jaccard,
                                   **options)
    overall_metrics = per_name["all"]
    groups: dict[str, dict[str, float]] = {}
    for c, name in enumerate(class_names):
        if name in per_name:
            groups[name] = per_name[name].summary(labels[q_rows, c])
    groups["all"] = overall_metrics.summary()
    if logits is not None:
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape != (len(cohort), len(class_names)):
            raise DataError(f"logits have shape {logits.shape}; expected ({len(cohort)}, "
                            f"{len(class_names)}) = (cohort rows, classes {class_names}).")
        accuracy = classification_accuracy(logits[q_rows], labels[q_rows])
        groups["all"].update({k: v for k, v in accuracy.items() if k.startswith("Acc@")})
    settings = {"protocol": "diagnostic", "database": database, "queries": queries,
                "relevance": relevance, "per_class_relevance": per_class_relevance,
                "normalisation": normalisation, "ndcg_gain": "Jaccard overlap of label sets",
                "classes": class_names, "view": view, "ties": TIE_RULE,
                "similarity": "cosine" if not _is_ensemble(embeddings)
                else f"mean cosine of {len(embeddings)} models"}
    return RetrievalResult("diagnostic", groups, int(len(db_rows)),
                           int((~overall_metrics.evaluated).sum()), settings, overall_metrics,
                           q_rows)
