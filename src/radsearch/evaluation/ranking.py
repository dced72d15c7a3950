"""Where each relevant gallery item lands in a query's ranking, streamed in bounded memory.

Every rank-based metric (AP, mAP@R, CMC, MRR, precision@k, mAP@k) is a closed-form function of two
counts per relevant item j of a query (see :mod:`radsearch.evaluation.metrics`):

* ``ge_all[j]`` — gallery items (excluded ones aside) scoring at least as high as j: its rank at the
  end of its tie block, 1-based;
* ``ge_rel[j]`` — relevant items scoring at least as high as j.

So no full sort of a row is needed when the relevant items are few (forensic matching): one matrix
product per chunk of queries gives the similarities, the lowest relevant score of each row selects
the few candidates that can outrank a relevant item, and a search over the (sorted) relevant scores
counts them. :func:`sorted_chunks` serves dense relevance (diagnostic retrieval, where half the
database can be relevant) by sorting each row of a chunk instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_MEMORY_MB = 256
_ROW_STRIDE = 1 << 32  # keys: row * 2^32 + order-preserving int32 image of the float score


@dataclass(frozen=True)
class RelevantRanks:
    """Rank counts of every relevant (query, gallery item) pair, flattened over queries."""

    n_queries: int
    query: np.ndarray  # int64 [P]: query index of each relevant pair
    ge_all: np.ndarray  # int64 [P]: items scoring >= this relevant item (its pessimistic rank)
    ge_rel: np.ndarray  # int64 [P]: relevant items scoring >= this relevant item
    n_relevant: np.ndarray  # int64 [n_queries]: R, relevant gallery items per query


def prepare(vectors: np.ndarray | torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """float32 CPU tensor, L2-normalised per row when ``normalize`` (cosine similarity)."""
    tensor = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, torch.Tensor)
                             else vectors).detach().to("cpu", torch.float32)
    if tensor.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [N, D], got shape {tuple(tensor.shape)}")
    if normalize:
        tensor = torch.nn.functional.normalize(tensor, dim=1)
    return tensor.contiguous()


def chunk_rows(n_gallery: int, bytes_per_cell: int, memory_mb: float) -> int:
    """Query rows per chunk so that the chunk's per-cell work arrays stay within ``memory_mb``."""
    return max(1, int(memory_mb * 2**20) // max(1, n_gallery * bytes_per_cell))


# --------------------------------------------------------------------------- identity relevance
def identity_ranks(query: torch.Tensor, gallery: torch.Tensor, query_ids: np.ndarray,
                   gallery_ids: np.ndarray, *, query_groups: np.ndarray | None = None,
                   gallery_groups: np.ndarray | None = None,
                   memory_mb: float = DEFAULT_MEMORY_MB) -> RelevantRanks:
    """Ranks of same-identity gallery items for every query (similarity = dot product).

    A gallery item with the query's identity **and** the query's group is excluded from that
    query's ranking altogether (neither relevant nor impostor): self-matches (group = row index)
    or the leave-one-out rule "same subject, same year and view" (group = code of year and view).
    Identities and groups are int64 codes; they never pass through float.
    """
    n_queries, n_gallery = query.shape[0], gallery.shape[0]
    pair_q, pair_g = _same_identity_pairs(query_ids, gallery_ids)
    excluded = np.zeros(len(pair_q), dtype=bool)
    if query_groups is not None and gallery_groups is not None:
        excluded = np.asarray(query_groups, np.int64)[pair_q] == \
            np.asarray(gallery_groups, np.int64)[pair_g]
    rel_q, rel_g = pair_q[~excluded], pair_g[~excluded]
    ex_q, ex_g = pair_q[excluded], pair_g[excluded]
    n_relevant = np.bincount(rel_q, minlength=n_queries).astype(np.int64)

    # Similarities (4 B) and the candidate mask (1 B) per cell; numpy's comparison and
    # flatnonzero are several times faster than torch's bool reductions here.
    rows = chunk_rows(n_gallery, 5, memory_mb)
    rows = min(rows, max(n_queries, 1))
    scores_buffer = np.empty((rows, n_gallery), dtype=np.float32)
    mask_buffer = np.empty((rows, n_gallery), dtype=bool)
    query_np = query.numpy()
    gallery_t = np.ascontiguousarray(gallery.numpy().T)
    ge_all_parts, ge_rel_parts = [], []
    for start, stop in _chunks(n_queries, rows):
        a, b = np.searchsorted(rel_q, [start, stop])
        if a == b:
            continue
        scores = np.matmul(query_np[start:stop], gallery_t, out=scores_buffer[: stop - start])
        ea, eb = np.searchsorted(ex_q, [start, stop])
        scores[ex_q[ea:eb] - start, ex_g[ea:eb]] = -np.inf
        local_rows = rel_q[a:b] - start
        ge_all, ge_rel = _count_at_least(scores, local_rows, scores[local_rows, rel_g[a:b]],
                                         mask_buffer[: stop - start])
        ge_all_parts.append(ge_all)
        ge_rel_parts.append(ge_rel)
    empty = [np.zeros(0, np.int64)]
    return RelevantRanks(n_queries, rel_q, np.concatenate(ge_all_parts or empty),
                         np.concatenate(ge_rel_parts or empty), n_relevant)


def _same_identity_pairs(query_ids: np.ndarray, gallery_ids: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """All (query, gallery) index pairs sharing an identity, sorted by query index."""
    order = np.argsort(gallery_ids, kind="stable")
    sorted_ids = gallery_ids[order]
    lo = np.searchsorted(sorted_ids, query_ids, side="left")
    hi = np.searchsorted(sorted_ids, query_ids, side="right")
    counts = hi - lo
    pair_q = np.repeat(np.arange(len(query_ids), dtype=np.int64), counts)
    offsets = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts,
                                                                  counts)
    pair_g = order[np.repeat(lo, counts) + offsets].astype(np.int64)
    return pair_q, pair_g


def _order_keys(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64 keys ordered like (row, value): exact, unlike adding a row offset to a float."""
    bits = (values.astype(np.float32) + np.float32(0.0)).view(np.int32).astype(np.int64)
    bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: reverse magnitude order
    return rows.astype(np.int64) * _ROW_STRIDE + bits  # (+ 0.0 above turns -0.0 into +0.0)


def _count_at_least(scores: np.ndarray, rows: np.ndarray, relevant_scores: np.ndarray,
                    mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each relevant (row, score): items of the row with score >= it, and relevant ones."""
    lowest = np.full(scores.shape[0], np.inf, dtype=np.float32)
    np.minimum.at(lowest, rows, relevant_scores)
    # Only items at or above a row's lowest relevant score can precede a relevant item.
    np.greater_equal(scores, lowest[:, None], out=mask)
    flat = np.flatnonzero(mask)
    candidate_rows, candidates = flat // scores.shape[1], scores.reshape(-1)[flat]

    keys = _order_keys(rows, relevant_scores)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    # position just past each row's block of sorted relevant keys
    row_end = np.searchsorted(sorted_keys, (rows[order] + 1) * _ROW_STRIDE - (1 << 31))
    # candidates binned by how many relevant keys (this row's and earlier rows') they reach
    reached = np.searchsorted(sorted_keys, _order_keys(candidate_rows, candidates), side="right")
    cumulative = np.cumsum(np.bincount(reached, minlength=len(keys) + 1))
    ge_all_sorted = cumulative[row_end] - cumulative[np.arange(len(keys))]
    ge_rel_sorted = row_end - np.searchsorted(sorted_keys, sorted_keys, side="left")
    ge_all = np.empty_like(ge_all_sorted)
    ge_all[order] = ge_all_sorted
    ge_rel = np.empty_like(ge_rel_sorted)
    ge_rel[order] = ge_rel_sorted
    return ge_all.astype(np.int64), ge_rel.astype(np.int64)


# ------------------------------------------------------------------------------ dense relevance
@dataclass
class SortedChunk:
    """One chunk of queries with every row sorted by decreasing score and its tie blocks."""

    start: int
    order: np.ndarray  # int64 [c, G]: gallery index at each rank
    block_start: np.ndarray  # int64 [c, G]: first rank of the tie block of each rank
    block_end: np.ndarray  # int64 [c, G]: last rank of the tie block of each rank

    def ranks(self, relevant: np.ndarray, rows: np.ndarray | None = None,
              own: np.ndarray | None = None) -> RelevantRanks:
        """Rank counts of the relevant items of ``rows`` (chunk-local; None = all rows).

        ``relevant``: bool [len(rows), G] in gallery order, or one bool vector [G] shared by the
        rows; ``own``: each row's own gallery index (self-match, never relevant) or None.
        """
        order = self.order if rows is None else self.order[rows]
        rel = relevant[order] if relevant.ndim == 1 else np.take_along_axis(relevant, order, 1)
        if own is not None:
            rel &= order != own[:, None]
        n_gallery = rel.shape[1]
        cumulative = np.cumsum(rel, axis=1, dtype=np.int32)
        flat = np.flatnonzero(rel)
        row = flat // n_gallery
        # end of each relevant item's tie block (block_end may be a broadcast view: index it)
        last = self.block_end[row if rows is None else np.asarray(rows)[row], flat % n_gallery]
        return RelevantRanks(rel.shape[0], row, last + 1,
                             cumulative.reshape(-1)[row * n_gallery + last].astype(np.int64),
                             np.count_nonzero(rel, axis=1).astype(np.int64))

    def ndcg(self, gains: np.ndarray, k: int) -> np.ndarray:
        """nDCG@k per row with gains averaged over tie blocks (scikit-learn's ndcg_score)."""
        k = min(k, gains.shape[1])
        sorted_gains = np.take_along_axis(gains, self.order, 1).astype(np.float64)
        cumulative = np.cumsum(sorted_gains, axis=1)
        start, end = self.block_start[:, :k], self.block_end[:, :k]
        before = np.where(start > 0, np.take_along_axis(cumulative, np.maximum(start - 1, 0), 1),
                          0.0)
        block_mean = (np.take_along_axis(cumulative, end, 1) - before) / (end - start + 1)
        discount = 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)
        dcg = (block_mean * discount).sum(1)
        negated = -gains
        top = np.partition(negated, k - 1, axis=1)[:, :k] if k < gains.shape[1] else negated
        ideal = (-np.sort(top, axis=1) * discount).sum(1)  # best possible order of the gains
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ideal > 0, dcg / ideal, np.nan)


def sorted_chunks(query: torch.Tensor, gallery: torch.Tensor, *,
                  query_in_gallery: np.ndarray | None = None,
                  memory_mb: float = DEFAULT_MEMORY_MB) -> Iterator[SortedChunk]:
    """Yield chunks of fully sorted similarity rows (for dense relevance and nDCG).

    ``query_in_gallery[i]`` = gallery row of query i (or -1): that item is pushed below every
    other one; callers must also drop it from the relevance matrix. numpy's argsort and bool
    reductions are several times faster than torch's here.
    """
    n_queries, n_gallery = query.shape[0], gallery.shape[0]
    # order, block start/end (int64) + the per-relevance work arrays of the metrics
    rows = chunk_rows(n_gallery, 80, memory_mb)
    positions = np.arange(n_gallery)
    query_np, gallery_np = query.numpy(), gallery.numpy()
    for start, stop in _chunks(n_queries, rows):
        negated = -similarities(query_np, gallery_np, start, stop)  # ascending = decreasing
        if query_in_gallery is not None:
            own = np.asarray(query_in_gallery[start:stop], np.int64)
            inside = np.flatnonzero(own >= 0)
            negated[inside, own[inside]] = np.inf
        order = np.argsort(negated, axis=1)  # ties put in index order below
        ordered = np.take_along_axis(negated, order, 1)
        del negated
        differs = ordered[:, 1:] != ordered[:, :-1]
        last = np.ones(ordered.shape, dtype=bool)
        last[:, :-1] = differs
        first = np.ones(ordered.shape, dtype=bool)
        first[:, 1:] = differs
        del ordered, differs
        block_end = np.minimum.accumulate(np.where(last, positions, n_gallery)[:, ::-1],
                                          axis=1)[:, ::-1]
        block_start = np.maximum.accumulate(np.where(first, positions, 0), axis=1)
        block_end = np.ascontiguousarray(block_end)
        _index_order_within_ties(order, block_start, block_end)
        yield SortedChunk(start, order, block_start, block_end)


def _index_order_within_ties(order: np.ndarray, block_start: np.ndarray,
                             block_end: np.ndarray) -> None:
    """Put the items of each tie block in index order (in place), as a stable sort would.

    Metrics never depend on the order inside a tie block, but nDCG's block sums add the gains in
    that order: a fixed order makes its last bits reproducible (and equal to the streamed
    engine's). Tied items are few, so only they are re-sorted.
    """
    rows, ranks = np.nonzero(block_end != block_start)
    if len(rows):
        items = order[rows, ranks]
        order[rows, ranks] = items[np.lexsort((items, block_start[rows, ranks], rows))]


def similarities(query: np.ndarray, gallery: np.ndarray, start: int, stop: int) -> np.ndarray:
    """float32 dot products of query rows start..stop with every gallery row [stop-start, G].

    Always a matrix-matrix product (a single row is doubled): BLAS computes one row through a
    different kernel (gemv), whose last bits can differ, and the engines must agree bit for bit
    whatever their chunk sizes. ``gallery.T`` is passed as a view: no transposed copy.
    """
    if stop - start == 1:
        return np.matmul(query[[start, start]], gallery.T)[:1]
    return np.matmul(query[start:stop], gallery.T)


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)
