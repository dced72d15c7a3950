"""Diagnostic retrieval at archive scale: a radix ranking per row and label-set lookup tables.

The row-sorting reference (:func:`radsearch.evaluation.metrics.dense_retrieval`) argsorts every
float similarity row, builds a dense relevance and gain matrix per chunk, gathers them in rank
order and lists every (query, relevant item) pair — at MIMIC-CXR scale (~3.3k test queries ×
220k database images) several minutes on 2 cores (docs/benchmarks.md). Here, per query row:

* **ranking**: each float32 similarity becomes an order-preserving uint32 key (equal floats, and
  only they, share a key); two stable argsorts of its 16-bit halves — which numpy runs as O(n)
  radix sorts — rank the row (a least-significant-digit radix sort), several times faster than a
  comparison argsort of 220k floats. Tie blocks are runs of equal neighbouring keys;
* **relevance without a dense matrix**: "shares ≥ 1 label", "same label set", "has class c" and
  the Jaccard gain of nDCG depend only on the pair (query label set, database label set). The
  database's label-set codes ride along the two radix passes, so each relevance definition is a
  lookup in a small table [query, database label set] (one product of label-set bit matrices);
* **counting instead of listing pairs**: along a ranked row, the rank counts of the relevant
  items (items and relevant items scoring at least as high, whole tie block included) never
  decrease, so every "how many / how much up to rank k, up to R, up to k impostors" is a binary
  search plus one running sum of the precisions, added in the reference's order (identical
  floats);
* **nDCG@k** reads only the top ranks (the tie blocks reaching into the top k) and takes its
  ideal DCG from the database's label-set counts, cached per query label set.

Tie policy (the reference's and scikit-learn's ``average_precision_score`` / ``ndcg_score``):
items with equal float32 similarity form one block; each of them is ranked at the block's end
(precision counted there), and nDCG averages the gains over the block. Inside a block items are in
database order in both engines, so even nDCG's block sums agree to the last bit. The self-match of
a query in its own database scores below every other item and is never relevant (gain 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from radsearch.evaluation.metrics import (PerQueryMetrics, RankSums, collect_results,
                                          metrics_from_sums)
from radsearch.evaluation.ranking import DEFAULT_MEMORY_MB, _chunks, chunk_rows, similarities

# bytes per (query, database item) cell of a chunk: its similarities (and room for one row's
# work arrays); large chunks stream the database through the matrix product fewer times
_BYTES_PER_CELL = 8


def label_set_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Code of each row's label set, the first row of each set and the set sizes (row counts).

    Rows are packed into integers first: ``np.unique(axis=0)`` on the bool matrix is a slow
    lexicographic sort (half a second for 50k rows).
    """
    packed = np.packbits(np.asarray(labels, dtype=bool), axis=1)
    words = -(-packed.shape[1] // 8)
    padded = np.zeros((packed.shape[0], words * 8), dtype=np.uint8)
    padded[:, :packed.shape[1]] = packed
    keys = padded.view(np.uint64)
    if words == 1:
        _, first, codes, counts = np.unique(keys[:, 0], return_index=True, return_inverse=True,
                                            return_counts=True)
    else:
        _, first, codes, counts = np.unique(keys, axis=0, return_index=True, return_inverse=True,
                                            return_counts=True)
    return codes.ravel().astype(np.int64), first, counts


class LabelSets:
    """The database's label sets and, per chunk of queries, relevance and gain lookup tables.

    Tables have one column per database label set plus a last column for "excluded" (a query's
    own database row): never relevant, gain 0. ``own[i]`` = database row of query i or -1.
    """

    def __init__(self, label_q: np.ndarray, label_db: np.ndarray, own: np.ndarray | None = None):
        self.label_q = np.asarray(label_q, dtype=bool)
        label_db = np.asarray(label_db, dtype=bool)
        self.own = own
        code_db, first, self.set_counts = label_set_codes(label_db)
        self.sets = label_db[first]  # [S, C]
        self.excluded = len(first)  # code of the "excluded" column
        self.code_db = code_db.astype(np.uint64)  # packed beside the keys by radix_rank
        self.set_sizes = self.sets.sum(1).astype(np.float64)
        self.has_class = np.concatenate([self.sets, np.zeros((1, self.sets.shape[1]), bool)])
        self._sets_f = self.sets.T.astype(np.float32)
        self._ideal: dict[tuple[bytes, int, int], float] = {}

    def tables(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shares ≥ 1 label, same label set, Jaccard gain) of rows start..stop × label sets.

        "Same label set" needs a non-empty query set, as the reference's exact relevance.
        """
        labels = self.label_q[start:stop]
        common = (labels.astype(np.float32) @ self._sets_f).astype(np.float64)  # exact counts
        size_q = labels.sum(1).astype(np.float64)[:, None]
        union = size_q + self.set_sizes[None, :] - common
        extra = np.zeros((stop - start, 1))
        shares = np.concatenate([common > 0, extra > 0], axis=1)
        same = np.concatenate([(common == size_q) & (union == size_q) & (size_q > 0),
                               extra > 0], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(union > 0, common / np.maximum(union, 1.0), 0.0)
        return shares, same, np.concatenate([gain, extra], axis=1)

    def ideal(self, start: int, stop: int, k: int) -> np.ndarray:
        """Best possible DCG@k of each query (its top-k gains over the database, sorted)."""
        out = np.empty(stop - start)
        for i in range(start, stop):
            own_set = -1
            if self.own is not None and self.own[i] >= 0:
                own_set = int(self.code_db[self.own[i]])
            key = (self.label_q[i].tobytes(), own_set, k)
            if key not in self._ideal:
                self._ideal[key] = self._ideal_dcg(self.label_q[i], own_set, k)
            out[i - start] = self._ideal[key]
        return out

    def _ideal_dcg(self, labels: np.ndarray, own_set: int, k: int) -> float:
        common = (self.sets & labels).sum(1).astype(np.float64)
        union = labels.sum() + self.set_sizes - common
        with np.errstate(divide="ignore", invalid="ignore"):
            gains = np.where(union > 0, common / np.maximum(union, 1.0), 0.0)
        counts = self.set_counts.copy()
        if own_set >= 0:
            counts[own_set] -= 1
        order = np.argsort(-gains, kind="stable")
        top = np.repeat(gains[order], counts[order])[:k]
        if len(top) < k:
            top = np.concatenate([top, np.zeros(k - len(top))])
        return float((top * _discount(k)).sum())


def streamed_retrieval(query: torch.Tensor, gallery: torch.Tensor, sets: LabelSets, *,
                       class_names: Sequence[str], relevance: str = "any",
                       per_class_relevance: str = "class", ndcg_ks: Sequence[int] = (),
                       query_in_gallery: np.ndarray | None = None,
                       cmc_ks: Sequence[int] = (1, 5), precision_ks: Sequence[int] = (1, 5, 10),
                       map_ks: Sequence[int] = (1, 5, 10, 20), normalisation: str = "dscmr",
                       memory_mb: float = DEFAULT_MEMORY_MB, threads: int | None = None
                       ) -> dict[str, PerQueryMetrics]:
    """The diagnostic protocol's metrics; same results as the reference
    (:func:`~radsearch.evaluation.metrics.dense_retrieval` with dense label relevance).

    Names: "all" (``relevance`` "any" shared label or "exact" label set) and each class name
    (queries carrying the class; relevant = has the class, or the overall relevance with
    ``per_class_relevance="overall"``). nDCG@k (Jaccard gain) is added to every name. Chunks run
    on ``threads`` threads (default: torch's intra-op thread count), each within ``memory_mb``.
    """
    n_queries, n_gallery = query.shape[0], gallery.shape[0]
    threads = max(1, min(int(threads or torch.get_num_threads()), 8))
    # enough chunks to keep every thread busy, none larger than memory_mb
    rows_per_chunk = min(chunk_rows(n_gallery, _BYTES_PER_CELL, memory_mb),
                         max(2, -(-n_queries // (4 * threads))))
    query_np, gallery_np = query.numpy(), gallery.numpy()
    options = dict(cmc_ks=cmc_ks, precision_ks=precision_ks, map_ks=map_ks,
                   normalisation=normalisation)
    ndcg_ks = [int(k) for k in ndcg_ks]
    ks = (cmc_ks, [*precision_ks, *map_ks], map_ks)  # what _RowSums counts and sums
    positions = np.arange(n_gallery, dtype=np.int64)

    def one_chunk(bounds: tuple[int, int]) -> list:
        start, stop = bounds
        scores = similarities(query_np, gallery_np, start, stop)
        own = None if query_in_gallery is None else np.asarray(query_in_gallery[start:stop],
                                                                np.int64)
        if own is not None:
            inside = np.flatnonzero(own >= 0)
            scores[inside, own[inside]] = -np.inf  # below every other item, as in the reference
        shares, same, gain = sets.tables(start, stop)
        overall_table = shares if relevance == "any" else same
        labels = sets.label_q[start:stop]
        sums = {"all": _RowSums(stop - start, *ks)}
        sums.update({name: _RowSums(int(labels[:, c].sum()), *ks)
                     for c, name in enumerate(class_names) if labels[:, c].any()})
        dcg = {k: np.empty(stop - start) for k in ndcg_ks}
        for i in range(stop - start):
            # label-set code at each rank
            codes, block_end = radix_rank(ordered_keys(scores[i]), sets.code_db, positions)
            if own is not None and own[i] >= 0:  # the own row, the only -inf, ranks last
                codes[-1] = sets.excluded
            overall = overall_table[i].take(codes)
            sums["all"].add(i, overall, block_end)
            for c in np.flatnonzero(labels[i]):
                relevant = (sets.has_class[:, c].take(codes) if per_class_relevance == "class"
                            else overall)
                sums[class_names[c]].add(i, relevant, block_end)
            for k in ndcg_ks:
                dcg[k][i] = _row_dcg(gain[i], codes, block_end, k)
        ndcg = {}
        for k in ndcg_ks:
            ideal = sets.ideal(start, stop, min(k, n_gallery))
            with np.errstate(divide="ignore", invalid="ignore"):
                ndcg[f"nDCG@{k}"] = np.where(ideal > 0, dcg[k] / ideal, np.nan)
        out = []
        for name, collected in sums.items():
            rows = np.asarray(collected.rows, np.int64)
            local = metrics_from_sums(collected.sums(), **options)
            local.values.update({key: value[rows] for key, value in ndcg.items()})
            out.append((name, rows + start, local))
        return out

    # numpy's sorts, gathers and matrix products release the GIL: threads share the cores
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return collect_results((r for results in pool.map(one_chunk, _chunks(n_queries,
                                                                             rows_per_chunk))
                                for r in results), n_queries)


def ordered_keys(scores: np.ndarray) -> np.ndarray:
    """uint32 keys ascending like decreasing score; equal floats, and only they, share a key.

    From the float32 bits b (after + 0.0, which turns −0.0 into +0.0): a negative float's bits
    already grow as the float falls; a non-negative float's are flipped in their low 31 bits,
    and its sign bit 0 puts every one of them before the negative floats.
    """
    bits = (scores + np.float32(0.0)).view(np.int32)
    flip = bits >> 31  # -1 for negative floats, 0 otherwise
    np.invert(flip, out=flip)
    flip &= 0x7FFFFFFF
    bits ^= flip
    return bits.view(np.uint32)


def radix_rank(keys: np.ndarray, codes: np.ndarray, positions: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """``codes`` (uint64 < 2^32) in rank order for one row of :func:`ordered_keys`, and each
    rank's tie-block end (None when the row has no tie).

    Key and code travel packed in one uint64 (key in the high half) through two stable passes
    on the key's 16-bit halves — numpy sorts 16-bit keys stably by radix, in O(n) — so ties stay
    in database order and each pass moves one array.
    """
    packed = keys.astype(np.uint64)
    packed <<= np.uint64(32)
    packed |= codes
    packed = packed.take(np.argsort((keys & np.uint32(0xFFFF)).astype(np.uint16),
                                    kind="stable"))
    packed = packed.take(np.argsort((packed >> np.uint64(48)).astype(np.uint16), kind="stable"))
    ranked_codes = (packed & np.uint64(0xFFFFFFFF)).astype(np.intp)
    packed >>= np.uint64(32)  # the ranked keys
    tied = np.flatnonzero(packed[1:] == packed[:-1])  # rank p ties with rank p + 1
    if not len(tied):
        return ranked_codes, None
    # runs of consecutive tied ranks: each rank of a run ends its block one past the run's end
    breaks = np.flatnonzero(np.diff(tied) != 1)
    run_last = np.append(tied[breaks], tied[-1])
    block_end = positions.copy()
    block_end[tied] = run_last[np.searchsorted(run_last, tied)] + 1
    return ranked_codes, block_end


class _RowSums:
    """:class:`~radsearch.evaluation.metrics.RankSums` of one relevance definition, filled row
    by row from relevance in rank order: along a ranked row the rank counts a_j, r_j and the
    impostors a_j − r_j never decrease, so every "how many / how much up to k" is a prefix — a
    binary search and one running sum of the precisions (added in the reference's order)."""

    def __init__(self, n_rows: int, cmc_ks: Sequence[int], count_ks: Sequence[int],
                 sum_ks: Sequence[int]):
        self.rows: list[int] = []
        self.ks = [np.asarray(ks, np.int64) for ks in (cmc_ks, count_ks, sum_ks)]
        self.n_relevant = np.zeros(n_rows, np.int64)
        self.totals = np.zeros((3, n_rows))  # Σ p, Σ_{a ≤ R} p, #{a ≤ R}
        self.first = np.full(n_rows, np.inf)
        self.by_k = [np.zeros((len(ks), n_rows)) for ks in self.ks]

    def add(self, row: int, relevant: np.ndarray, block_end: np.ndarray | None) -> None:
        at = len(self.rows)
        self.rows.append(row)
        index = np.flatnonzero(relevant)  # ranks of the relevant items, increasing
        n_relevant = len(index)
        self.n_relevant[at] = n_relevant
        if not n_relevant:
            return
        ge_rel = np.arange(1, n_relevant + 1, dtype=np.int64)
        if block_end is None:
            last = index
        else:
            last = block_end.take(index)
            moved = np.flatnonzero(last != index)  # not at its block's end: count the block
            ge_rel[moved] = np.searchsorted(index, last[moved], side="right")
        ge_all = last + 1
        running = np.cumsum(np.true_divide(ge_rel, ge_all))  # Σ p one after another

        def running_at(counts: np.ndarray) -> np.ndarray:
            return np.where(counts > 0, running.take(np.maximum(counts - 1, 0)), 0.0)

        within_r = np.searchsorted(ge_all, n_relevant, side="right")
        self.totals[:, at] = running[-1], running_at(np.asarray(within_r)), within_r
        self.first[at] = ge_all[0]
        cmc_ks, count_ks, sum_ks = self.ks
        self.by_k[0][:, at] = np.searchsorted(ge_all - ge_rel, cmc_ks, side="left")
        self.by_k[1][:, at] = np.searchsorted(ge_all, count_ks, side="right")
        self.by_k[2][:, at] = running_at(np.searchsorted(ge_all, sum_ks, side="right"))

    def sums(self) -> RankSums:
        cmc_ks, count_ks, sum_ks = (ks.tolist() for ks in self.ks)
        return RankSums(self.n_relevant, *self.totals, self.first,
                        dict(zip(cmc_ks, self.by_k[0])), dict(zip(count_ks, self.by_k[1])),
                        dict(zip(sum_ks, self.by_k[2])))


def _row_dcg(gain: np.ndarray, codes: np.ndarray, block_end: np.ndarray | None, k: int
             ) -> float:
    """DCG@k of one ranked row with gains averaged over tie blocks (scikit-learn's ndcg_score),
    reading only the top ranks; the same arithmetic as the reference's."""
    k = min(k, len(codes))
    reach = k if block_end is None else int(block_end[k - 1]) + 1  # blocks reaching the top k
    end = np.arange(k, dtype=np.int64) if block_end is None else block_end[:k]
    cumulative = np.cumsum(gain.take(codes[:reach]))
    if block_end is None:
        block_start = end
    else:
        first = np.ones(reach, dtype=bool)
        first[1:] = block_end[1:reach] != block_end[:reach - 1]
        block_start = np.maximum.accumulate(np.where(first, np.arange(reach), 0))[:k]
    before = np.where(block_start > 0, cumulative.take(np.maximum(block_start - 1, 0)), 0.0)
    block_mean = (cumulative.take(end) - before) / (end - block_start + 1)
    return float((block_mean * _discount(k)).sum())


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)
