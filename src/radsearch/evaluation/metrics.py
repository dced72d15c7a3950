"""Retrieval metrics in closed form from the rank counts of the relevant items.

For relevant item j of a query with R relevant gallery items, ``a_j`` = items scoring >= j (its rank
at the end of its tie block) and ``r_j`` = relevant items scoring >= j; ``p_j = r_j / a_j`` is the
precision at j's tie block (how scikit-learn's ``average_precision_score`` groups ties). Then

* AP = (1/R) Σ_j p_j;  mAP@R = (1/R) Σ_{a_j ≤ R} p_j;  R-precision = #{a_j ≤ R} / R;
* MRR = 1 / min_j a_j;  P@k = #{a_j ≤ k} / k;
* CMC@k (multi-match, AdaTriplet tables) = (1/R) #{j : a_j − r_j < k}, i.e. fewer than k impostors
  precede match j;  CMC@k_first (conventional) = [min_j a_j ≤ k];
* mAP@k = Σ_{a_j ≤ k} p_j divided by the relevant items found in the top k ("dscmr"), by k ("ath")
  or by min(k, R) ("textbook").

Queries with R = 0 get NaN everywhere and are counted as skipped. docs/evaluation.md has the details.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from radsearch.errors import ConfigError, DataError
from radsearch.evaluation.ranking import (DEFAULT_MEMORY_MB, RelevantRanks, identity_ranks,
                                          prepare, sorted_chunks)

NORMALISATIONS = ("dscmr", "ath", "textbook")
FORENSIC_CMC_KS = (1, 5, 10)


@dataclass
class PerQueryMetrics:
    """Metric values per query (NaN for skipped queries) and R, the relevant items per query."""

    values: dict[str, np.ndarray]
    n_relevant: np.ndarray

    @property
    def evaluated(self) -> np.ndarray:
        return self.n_relevant > 0

    def summary(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """``n_queries`` (evaluated), ``n_skipped`` and the mean of each metric over ``rows``."""
        selected = np.ones(len(self.n_relevant), bool) if rows is None else np.asarray(rows)
        if selected.dtype != bool:
            mask = np.zeros(len(self.n_relevant), bool)
            mask[selected] = True
            selected = mask
        used = selected & self.evaluated
        out: dict[str, float] = {"n_queries": int(used.sum()),
                                 "n_skipped": int((selected & ~self.evaluated).sum())}
        for name, value in self.values.items():
            out[name] = float(value[used].mean()) if used.any() else float("nan")
        return out


@dataclass
class RankSums:
    """Per-query sums over the relevant items from which every metric follows (float64 [n]).

    Sums add the precisions p_j in rank-count order, one after another, however they are built,
    so the metrics come out bit for bit the same.
    """

    n_relevant: np.ndarray  # int64: R
    precision: np.ndarray  # Σ_j p_j
    precision_within_r: np.ndarray  # Σ_{a_j ≤ R} p_j
    count_within_r: np.ndarray  # #{a_j ≤ R}
    first: np.ndarray  # min_j a_j (inf without relevant items)
    impostors_below: dict[int, np.ndarray]  # k → #{a_j − r_j < k}
    count_top: dict[int, np.ndarray]  # k → #{a_j ≤ k}
    precision_top: dict[int, np.ndarray]  # k → Σ_{a_j ≤ k} p_j


def query_metrics(ranks: RelevantRanks, *, cmc_ks: Sequence[int] = FORENSIC_CMC_KS,
                  precision_ks: Sequence[int] = (1,), map_ks: Sequence[int] = (),
                  normalisation: str = "dscmr") -> PerQueryMetrics:
    """Every rank-based metric per query from the rank counts (see the module docstring)."""
    return metrics_from_sums(rank_sums(ranks, cmc_ks, [*precision_ks, *map_ks], map_ks),
                             cmc_ks=cmc_ks, precision_ks=precision_ks, map_ks=map_ks,
                             normalisation=normalisation)


def rank_sums(ranks: RelevantRanks, cmc_ks: Sequence[int], count_ks: Sequence[int],
              sum_ks: Sequence[int]) -> RankSums:
    """:class:`RankSums` of flattened rank counts (pairs in any order)."""
    n = ranks.n_queries
    q, a, r = ranks.query, ranks.ge_all, ranks.ge_rel  # int64: comparisons stay exact
    precision = np.true_divide(r, a) if len(a) else np.zeros(0)  # = float(r) / float(a)

    def count(rows: np.ndarray) -> np.ndarray:  # pairs per query
        return np.bincount(rows, minlength=n).astype(np.float64)

    within_r = a <= ranks.n_relevant[q]
    # The remaining sums read few pairs: select them once. Filtering keeps the pairs' order, so
    # every bincount adds the same numbers in the same order as over all pairs.
    impostors_before = a - r
    few = impostors_before < max(cmc_ks, default=0)
    q_few, impostors_few = q[few], impostors_before[few]
    top = a <= max(count_ks, default=0)
    q_top, a_top, precision_top = q[top], a[top], precision[top]
    return RankSums(
        ranks.n_relevant, np.bincount(q, weights=precision, minlength=n),
        np.bincount(q[within_r], weights=precision[within_r], minlength=n), count(q[within_r]),
        _first_rank(q, a, n), {k: count(q_few[impostors_few < k]) for k in cmc_ks},
        {k: count(q_top[a_top <= k]) for k in count_ks},
        {k: np.bincount(q_top[a_top <= k], weights=precision_top[a_top <= k], minlength=n)
         for k in sum_ks})


def metrics_from_sums(sums: RankSums, *, cmc_ks: Sequence[int] = FORENSIC_CMC_KS,
                      precision_ks: Sequence[int] = (1,), map_ks: Sequence[int] = (),
                      normalisation: str = "dscmr") -> PerQueryMetrics:
    """The closed forms of the module docstring; queries with R = 0 get NaN."""
    if normalisation not in NORMALISATIONS:
        raise ConfigError(f"unknown mAP@k normalisation {normalisation!r}; use one of "
                          f"{', '.join(NORMALISATIONS)}.")
    big_r = sums.n_relevant.astype(np.float64)
    values: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        values["mAP"] = sums.precision / big_r
        values["mAP@R"] = sums.precision_within_r / big_r
        values["R-precision"] = sums.count_within_r / big_r
        values["MRR"] = 1.0 / sums.first
        for k in cmc_ks:
            values[f"CMC@{k}"] = sums.impostors_below[k] / big_r
        for k in cmc_ks:
            values[f"CMC@{k}_first"] = (sums.first <= k).astype(np.float64)
        for k in precision_ks:
            values[f"P@{k}"] = sums.count_top[k] / k
        for k in map_ks:
            values[f"mAP@{k}"] = _normalise_map_at_k(sums.precision_top[k], sums.count_top[k],
                                                     k, big_r, normalisation)
    skipped = sums.n_relevant == 0
    for value in values.values():
        value[skipped] = np.nan
    return PerQueryMetrics(values, sums.n_relevant.copy())


# ----------------------------------------------------------------------------- identities
def encode_identities(*id_arrays: np.ndarray | Sequence) -> list[np.ndarray]:
    """Map identities (int or str) of several sets to shared int64 codes; floats are refused.

    Large integer ids (MIMIC's 8-digit subject_id > 2^24) stay exact: nothing passes through float.
    """
    arrays = [np.asarray(x) for x in id_arrays]
    for array in arrays:
        if array.dtype.kind == "f" or array.dtype.kind == "c":
            raise DataError("identities are floating-point numbers, which merges large ids "
                            "(e.g. 8-digit MIMIC subject_id in float32); pass int64 codes or "
                            "strings, e.g. Cohort.subject_codes().")
        if array.ndim != 1:
            raise DataError(f"identities must be a 1-D array, got shape {array.shape}.")
    if all(a.dtype.kind in "iu" for a in arrays) and all(
            a.dtype.kind == "i" or a.max(initial=0) < 2**63 for a in arrays):
        return [a.astype(np.int64) for a in arrays]
    joined = pd.Series(np.concatenate([a.astype(object) for a in arrays]), dtype=object)
    codes, _ = pd.factorize(joined.map(str), sort=True)
    codes = codes.astype(np.int64)
    out, start = [], 0
    for array in arrays:
        out.append(codes[start:start + len(array)])
        start += len(array)
    return out


# ----------------------------------------------------------------------- public entry points
def identity_retrieval(query: np.ndarray, gallery: np.ndarray, query_ids: np.ndarray | Sequence,
                       gallery_ids: np.ndarray | Sequence, *,
                       query_in_gallery: np.ndarray | None = None, normalize: bool = True,
                       cmc_ks: Sequence[int] = FORENSIC_CMC_KS, precision_ks: Sequence[int] = (1,),
                       map_ks: Sequence[int] = (), normalisation: str = "dscmr",
                       memory_mb: float = DEFAULT_MEMORY_MB) -> PerQueryMetrics:
    """Per-query metrics where a gallery item is relevant iff it has the query's identity.

    Similarity is the cosine (dot product of L2-normalised rows; ``normalize=False`` uses the raw
    dot product). ``query_in_gallery[i]`` is the gallery row of query i itself (or -1): that
    self-match is excluded from the ranking. Memory stays near ``memory_mb`` whatever the sizes.
    """
    q_ids, g_ids = encode_identities(query_ids, gallery_ids)
    _check_lengths(query, q_ids, "query")
    _check_lengths(gallery, g_ids, "gallery")
    query_groups = gallery_groups = None
    if query_in_gallery is not None:
        query_groups = np.asarray(query_in_gallery, np.int64)
        gallery_groups = np.arange(len(g_ids), dtype=np.int64)
    ranks = identity_ranks(prepare(query, normalize), prepare(gallery, normalize), q_ids, g_ids,
                           query_groups=query_groups, gallery_groups=gallery_groups,
                           memory_mb=memory_mb)
    return query_metrics(ranks, cmc_ks=cmc_ks, precision_ks=precision_ks, map_ks=map_ks,
                         normalisation=normalisation)


def relevance_retrieval(query: np.ndarray, gallery: np.ndarray, relevance: np.ndarray, *,
                        gains: np.ndarray | None = None, ndcg_ks: Sequence[int] = (),
                        query_in_gallery: np.ndarray | None = None, normalize: bool = True,
                        cmc_ks: Sequence[int] = (1, 5), precision_ks: Sequence[int] = (1, 5, 10),
                        map_ks: Sequence[int] = (1, 5, 10, 20), normalisation: str = "dscmr",
                        memory_mb: float = DEFAULT_MEMORY_MB) -> PerQueryMetrics:
    """Per-query metrics for an explicit relevance matrix [n_query, n_gallery] (bool).

    ``gains`` (same shape, float ≥ 0, e.g. Jaccard overlap of label sets) adds nDCG@k for
    ``ndcg_ks``. Small problems only (the matrices are dense); the diagnostic protocol builds
    relevance chunk by chunk instead.
    """
    relevance_np = np.asarray(relevance, dtype=bool)
    gains_np = None if gains is None else np.asarray(gains, dtype=np.float64)
    expected = (len(query), len(gallery))
    for name, matrix in (("relevance", relevance_np), ("gains", gains_np)):
        if matrix is not None and matrix.shape != expected:
            raise DataError(f"{name} matrix has shape {matrix.shape}; expected {expected} "
                            "= (queries, gallery items).")
    if not len(query) or not len(gallery):
        raise DataError("relevance_retrieval: no queries or no gallery items.")
    results = dense_retrieval(
        prepare(query, normalize), prepare(gallery, normalize),
        lambda s, e: {"relevance": (None, relevance_np[s:e])},
        None if gains_np is None else (lambda s, e: gains_np[s:e]),
        ndcg_ks=ndcg_ks, query_in_gallery=query_in_gallery, cmc_ks=cmc_ks,
        precision_ks=precision_ks, map_ks=map_ks, normalisation=normalisation,
        memory_mb=memory_mb)
    return results["relevance"]


RelevanceSpec = tuple[np.ndarray | None, np.ndarray]


def dense_retrieval(query: torch.Tensor, gallery: torch.Tensor,
                    relevance_of: Callable[[int, int], dict[str, RelevanceSpec]],
                    gains_of: Callable[[int, int], np.ndarray] | None = None, *,
                    ndcg_ks: Sequence[int] = (), query_in_gallery: np.ndarray | None = None,
                    cmc_ks: Sequence[int] = (1, 5), precision_ks: Sequence[int] = (1, 5, 10),
                    map_ks: Sequence[int] = (1, 5, 10, 20), normalisation: str = "dscmr",
                    memory_mb: float = DEFAULT_MEMORY_MB) -> dict[str, PerQueryMetrics]:
    """Sort-based metrics for several relevance definitions sharing one sort per query chunk.

    ``relevance_of(start, stop)`` gives, per name, ``(rows, relevance)``: the chunk-local rows it
    applies to (None = all) and a bool array [len(rows), n_gallery], or one bool vector
    [n_gallery] shared by those rows. Rows not listed count as skipped for that name. nDCG@k
    (gains from ``gains_of``) is added to every name.
    """
    options = dict(cmc_ks=cmc_ks, precision_ks=precision_ks, map_ks=map_ks,
                   normalisation=normalisation)

    def one_chunk(chunk):
        start, stop = chunk.start, chunk.start + chunk.order.shape[0]
        own = None if query_in_gallery is None else np.asarray(query_in_gallery[start:stop],
                                                                np.int64)
        ndcg: dict[str, np.ndarray] = {}
        if gains_of is not None:
            gains = np.array(gains_of(start, stop), dtype=np.float64)
            if own is not None:
                inside = np.flatnonzero(own >= 0)
                gains[inside, own[inside]] = 0.0
            ndcg = {f"nDCG@{k}": chunk.ndcg(gains, k) for k in ndcg_ks}
        return chunk_results(chunk, relevance_of, own, ndcg, options)

    chunks = sorted_chunks(query, gallery, query_in_gallery=query_in_gallery, memory_mb=memory_mb)
    return collect_results((r for chunk in chunks for r in one_chunk(chunk)), query.shape[0])


ChunkResult = tuple[str, np.ndarray, "PerQueryMetrics"]   # relevance name, query rows, metrics


def chunk_results(chunk, relevance_of: Callable[[int, int], dict[str, RelevanceSpec]],
                  own: np.ndarray | None, ndcg: dict[str, np.ndarray],
                  options: dict) -> list[ChunkResult]:
    """Metrics of one ranked query chunk for every relevance definition (shared by the sorting
    and the streamed engines): ``own`` = each query's own gallery position (-1: none)."""
    start, stop = chunk.start, chunk.start + chunk.order.shape[0]
    out = []
    for name, (rows, relevant) in relevance_of(start, stop).items():
        local_rows = np.arange(stop - start) if rows is None else np.asarray(rows)
        ranks = chunk.ranks(relevant, rows, None if own is None else own[local_rows])
        local = query_metrics(ranks, **options)
        local.values.update({key: value[local_rows] for key, value in ndcg.items()})
        out.append((name, local_rows + start, local))
    return out


def collect_results(results, n_queries: int) -> dict[str, PerQueryMetrics]:
    """Per-chunk results → one PerQueryMetrics per relevance name (rows never listed stay NaN)."""
    values: dict[str, dict[str, np.ndarray]] = {}
    n_relevant: dict[str, np.ndarray] = {}
    for name, target, local in results:
        if name not in values:
            values[name] = {key: np.full(n_queries, np.nan) for key in local.values}
            n_relevant[name] = np.zeros(n_queries, np.int64)
        for key, value in local.values.items():
            value[~local.evaluated] = np.nan
            values[name][key][target] = value
        n_relevant[name][target] = local.n_relevant
    return {name: PerQueryMetrics(values[name], n_relevant[name]) for name in values}


def _first_rank(q: np.ndarray, a: np.ndarray, n: int) -> np.ndarray:
    """Smallest rank count per query (inf for queries without pairs), as float64.

    Pairs listed query by query (both engines do) take a segment minimum; any order works.
    """
    first = np.full(n, np.inf)
    if len(q) and np.all(q[1:] >= q[:-1]):
        bounds = np.searchsorted(q, np.arange(n + 1))
        has = bounds[1:] > bounds[:-1]
        first[has] = np.minimum.reduceat(a, bounds[:-1][has])
    else:
        np.minimum.at(first, q, a)
    return first


def _normalise_map_at_k(summed: np.ndarray, found: np.ndarray, k: int, big_r: np.ndarray,
                        normalisation: str) -> np.ndarray:
    """mAP@k from Σ precision over matches in the top k: by matches found, by k or by min(k,R)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if normalisation == "dscmr":
            return np.where(found > 0, summed / np.maximum(found, 1), 0.0)
        if normalisation == "ath":
            return summed / k
        return summed / np.minimum(k, big_r)


def _check_lengths(embeddings: np.ndarray, ids: np.ndarray, name: str) -> None:
    if len(embeddings) != len(ids):
        raise DataError(f"{name}: {len(embeddings)} embedding rows but {len(ids)} identities; "
                        "row i of the embeddings must belong to identity i.")


# ------------------------------------------------------------------------- classification
def classification_accuracy(logits: np.ndarray, targets: np.ndarray,
                            ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy of a multi-label head: is any of the k highest logits a positive label?

    This is MMDL's "Accuracy (Top-1/Top-5)" (a classification score, not a retrieval hit rate).
    Rows without any positive label are skipped and counted in ``n_skipped``.
    """
    logits_t = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    targets_t = torch.as_tensor(np.asarray(targets, dtype=bool))
    if logits_t.shape != targets_t.shape or logits_t.ndim != 2:
        raise DataError(f"logits {tuple(logits_t.shape)} and label matrix "
                        f"{tuple(targets_t.shape)} must have the same 2-D shape [N, classes].")
    if not torch.isfinite(logits_t).all():
        raise DataError("logits contain NaN or infinite values.")
    usable = targets_t.any(1)
    out: dict[str, float] = {"n_queries": int(usable.sum()), "n_skipped": int((~usable).sum())}
    for k in ks:
        top = torch.topk(logits_t, min(k, logits_t.shape[1]), dim=1).indices
        hit = targets_t.gather(1, top).any(1)
        out[f"Acc@{k}"] = float(hit[usable].double().mean()) if usable.any() else float("nan")
    return out
