"""Batch geometry shared by every triplet-style loss, its miner and the AutoMargin statistics.

A triplet (a, p, n) is stored as an ordered positive pair (a, p) and a column n of the anchor's
similarity row, so the whole triplet set lives in one (positive pairs × B) matrix
Δ[k, n] = S[a_k, p_k] − S[a_k, n], masked to the negatives of a_k. This is O(B²·m) memory instead of
the O(B³) of a dense triplet cube, and it is computed once per batch for the loss, the mining and the
statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from radsearch.errors import DataError


@dataclass
class TripletGeometry:
    """Cosine similarities of one batch, arranged by ordered positive pair.

    sim: (B, B) cosine similarities. anchor / positive: (P,) indices of the ordered positive pairs.
    s_ap: (P,) S[a, p]. s_an: (P, B) the anchor's similarity row. neg: (P, B) bool, column is a
    negative of the anchor. delta: (P, B) S_ap − S_an (meaningful where ``neg``).
    neg_pair_sims: (Q,) similarities of the unique unordered negative pairs (i < j).
    """

    sim: torch.Tensor
    anchor: torch.Tensor
    positive: torch.Tensor
    s_ap: torch.Tensor
    s_an: torch.Tensor
    neg: torch.Tensor
    delta: torch.Tensor
    neg_pair_sims: torch.Tensor

    @property
    def n_triplets(self) -> int:
        return int(self.neg.sum())

    def triplet_deltas(self) -> torch.Tensor:
        """Δ of every triplet of the batch, flattened (detached use: statistics, plots)."""
        return self.delta[self.neg]


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
    batch = sim.shape[0]
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(batch, dtype=torch.bool, device=sim.device)
    anchor, positive = torch.nonzero(same & ~eye, as_tuple=True)
    if anchor.numel() == 0:
        raise DataError(f"the batch of {batch} embeddings has no positive pair (no subject appears "
                        "twice); use an m-per-subject sampler (m >= 2) so every batch has pairs.")
    s_ap = sim[anchor, positive]
    s_an = sim[anchor]
    neg = ~same[anchor]
    delta = s_ap[:, None] - s_an
    upper_i, upper_j = torch.triu_indices(batch, batch, offset=1, device=sim.device)
    different = labels[upper_i] != labels[upper_j]
    neg_pair_sims = sim[upper_i[different], upper_j[different]]
    return TripletGeometry(sim, anchor, positive, s_ap, s_an, neg, delta, neg_pair_sims)


def batch_geometry(embeddings: torch.Tensor, labels: torch.Tensor) -> TripletGeometry:
    """L2-normalise the embeddings, take cosine similarities and arrange them by positive pair."""
    labels = check_labels(embeddings, labels)
    # AMP gives half precision: similarities and margins are computed in at least float32.
    x = F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=1)
    return similarity_geometry(x @ x.T, labels)
