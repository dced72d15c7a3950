"""Batch geometry shared by every triplet-style loss, its miner and the AutoMargin statistics.

A triplet (a, p, n) is stored as an ordered positive pair (a, p) and a column n of the anchor's
similarity row, so the whole triplet set lives in one (positive pairs × B) matrix
Δ[k, n] = S[a_k, p_k] − S[a_k, n], masked to the negatives of a_k. That is O(B²·m) memory instead of
the O(B³) of a dense triplet cube, computed once per batch for the loss, the mining and the
statistics.

Only ``sim`` carries gradients. The hinge losses are piecewise linear in S, so with their active
sets fixed (detached) a loss equals Σ W ⊙ S + constant for a weight matrix W; autograd then only sees
normalise → matmul → weighted sum, which keeps a 128-image step around a millisecond on one thread.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from radsearch.errors import DataError


@dataclass
class TripletGeometry:
    """Cosine similarities of one batch, arranged by ordered positive pair.

    sim: (B, B) cosine similarities, attached to the graph. Detached views: anchor / positive
    (P,) indices of the ordered positive pairs; s_ap (P,) S[a, p]; delta (P, B) S_ap − S[a, n];
    neg (P, B) bool, column n is a negative of the anchor; neg_upper (B, B) bool, the unique
    unordered negative pairs i < j; neg_pair_sims their similarities; same (B, B) bool, same
    subject; neg_count (P,) number of negatives of each pair's anchor.
    """

    sim: torch.Tensor
    anchor: torch.Tensor
    positive: torch.Tensor
    s_ap: torch.Tensor
    delta: torch.Tensor
    neg: torch.Tensor
    neg_upper: torch.Tensor
    neg_pair_sims: torch.Tensor
    same: torch.Tensor
    neg_count: torch.Tensor

    @property
    def values(self) -> torch.Tensor:
        return self.sim.detach()

    @property
    def batch_size(self) -> int:
        return self.sim.shape[0]

    @functools.cached_property
    def n_triplets(self) -> int:
        return int(self.neg_count.sum())

    def triplet_deltas(self) -> torch.Tensor:
        """Δ of every triplet of the batch, flattened (quantile statistics)."""
        return self.delta[self.neg]

    @functools.cached_property
    def sums(self) -> tuple[float, float, float, float]:
        """(Σ Δ over all triplets, |T|, Σ S over unique negative pairs, |N|), as Python floats.

        Σ Δ = Σ_k [n_neg(a_k)·S_ap,k − Σ_{n neg of a_k} S[a_k, n]] needs only row sums, O(B²).
        Computed once per batch and shared by AutoMargin and the epoch monitor.
        """
        neg_row_sums = torch.where(self.same, 0.0, self.values).sum(1)
        delta_sum = (self.neg_count * self.s_ap).sum() - neg_row_sums[self.anchor].sum()
        return (float(delta_sum), float(self.n_triplets), float(self.neg_pair_sims.sum()),
                float(self.neg_pair_sims.numel()))

    # ------------------------------------------------------------------ losses as Σ W ⊙ S
    def row_weights(self, per_triplet: torch.Tensor) -> torch.Tensor:
        """(B, B) weights putting ``per_triplet[k, n]`` on S[a_k, n] (summed over k sharing a_k)."""
        weights = torch.zeros_like(self.sim, dtype=per_triplet.dtype)
        return weights.index_add_(0, self.anchor, per_triplet)

    def triplet_weights(self, active: torch.Tensor) -> torch.Tensor:
        """Weights with Σ W ⊙ S = Σ over active triplets of (S_an − S_ap)."""
        active = active.to(self.sim.dtype)
        weights = self.row_weights(active)
        weights[self.anchor, self.positive] -= active.sum(1)
        return weights

    def weighted(self, weights: torch.Tensor) -> torch.Tensor:
        """Σ W ⊙ S, the only differentiable operation of the linear hinge losses."""
        return (weights * self.sim).sum()


def check_labels(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Validate a batch and return labels as an int64 tensor on the embeddings' device."""
    if embeddings.ndim != 2:
        raise DataError(f"embeddings must be a (batch, dim) matrix, got shape "
                        f"{tuple(embeddings.shape)}.")
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise DataError(f"labels must be a vector of {embeddings.shape[0]} subject codes, got shape "
                        f"{tuple(labels.shape)}.")
    if labels.is_floating_point():
        raise DataError("labels are floats; pass integer subject codes (Cohort.subject_codes()), "
                        "float identities merge large ids.")
    return labels.long()


def similarity_geometry(sim: torch.Tensor, labels: torch.Tensor) -> TripletGeometry:
    """Geometry from a precomputed (B, B) similarity matrix (tests feed a leaf tensor here)."""
    return geometry_of_pairs(sim, labels[:, None] == labels[None, :],
                             f"the batch of {len(labels)} embeddings has no positive pair (no "
                             "subject appears twice); use an m-per-subject sampler (m >= 2) so "
                             "every batch has pairs.")


def geometry_of_pairs(sim: torch.Tensor, same: torch.Tensor, no_pair: str) -> TripletGeometry:
    """Arrange ``sim`` by positive pair, given which pairs are "same" (a (B, B) bool mask with a
    true diagonal); ``no_pair`` is the one-line error when the batch has no positive pair."""
    anchor, positive = torch.nonzero(same.triu(1) | same.tril(-1), as_tuple=True)
    if anchor.numel() == 0:
        raise DataError(no_pair)
    with torch.no_grad():
        values = sim.detach()
        s_ap = values[anchor, positive]
        delta = s_ap[:, None] - values[anchor]
        neg = ~same[anchor]
        neg_upper = (~same).triu(1)
        neg_pair_sims = values[neg_upper]
        # counted without summing bools (a bool sum first copies the mask to int64)
        neg_count = (len(same) - torch.count_nonzero(same, dim=1))[anchor]
    return TripletGeometry(sim, anchor, positive, s_ap, delta, neg, neg_upper, neg_pair_sims,
                           same, neg_count)


def batch_geometry(embeddings: torch.Tensor, labels: torch.Tensor) -> TripletGeometry:
    """L2-normalise the embeddings, take cosine similarities and arrange them by positive pair."""
    labels = check_labels(embeddings, labels)
    # AMP gives half precision: similarities and margins are computed in at least float32.
    x = F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=1)
    return similarity_geometry(x @ x.T, labels)


class GeometryLoss(nn.Module):
    """Base of the losses computed on :class:`TripletGeometry`: ``forward`` is written once here.

    A subclass implements ``from_geometry(geom)`` (the training method calls it with a geometry it
    shares with AutoMargin and the epoch monitor) and fills ``last_counts`` (mined / active sets
    of the last batch, for the epoch monitor).
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_counts: dict[str, int] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.from_geometry(batch_geometry(embeddings, labels))

    def from_geometry(self, geom: TripletGeometry) -> torch.Tensor:
        raise NotImplementedError
