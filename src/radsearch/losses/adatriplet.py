"""Triplet and AdaTriplet losses on cosine similarities (adatriplet-spec.md §2).

Two reductions:
- ``"reference"`` (default; the authors' code, which produced the published tables): the triplet
  term is the mean of (ε − Δ) over mined triplets with ε − Δ > 0, the negative term the mean of
  (S_ij − β) over the unique unordered negative pairs with S_ij ≥ β; L = L_trip + λ·L_neg.
- ``"paper"``: eq. (5), L = mean over every triplet of [ε − Δ]₊·[selected] + λ·[S_an − β]₊. With
  ``triplets="all"`` this is exactly the paper's formula and Proposition 2's gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from radsearch.losses.geometry import TripletGeometry, batch_geometry
from radsearch.losses.validation import check_at_least, check_beta, check_choice, check_epsilon

TRIPLET_SELECTIONS = ("semihard", "all", "hard")
REDUCTIONS = ("reference", "paper")


def select_triplets(geom: TripletGeometry, epsilon: float, triplets: str) -> torch.Tensor:
    """Boolean (P, B) mask of the mined triplets: semihard 0 < Δ ≤ ε, all Δ ≤ ε, hard Δ ≤ min(ε, 0)."""
    delta = geom.delta.detach()
    if triplets == "semihard":
        chosen = (delta > 0) & (delta <= epsilon)
    elif triplets == "all":
        chosen = delta <= epsilon
    else:
        chosen = delta <= min(epsilon, 0.0)
    return chosen & geom.neg


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; an empty mask gives 0 still attached to the graph."""
    count = mask.sum()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    if count == 0:
        return total + 0.0 * anchor.sum()
    return total / count


class TripletLoss(nn.Module):
    """Triplet hinge on cosine similarities with a mining rule; the AdaTriplet loss with λ = 0."""

    def __init__(self, epsilon: float = 0.25, triplets: str = "semihard",
                 reduction: str = "reference"):
        super().__init__()
        self.epsilon = check_epsilon(epsilon)
        self.triplets = check_choice(triplets, TRIPLET_SELECTIONS, "triplets")
        self.reduction = check_choice(reduction, REDUCTIONS, "reduction")
        self.last_counts: dict[str, int] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.from_geometry(batch_geometry(embeddings, labels))

    def triplet_term(self, geom: TripletGeometry) -> torch.Tensor:
        hinge = self.epsilon - geom.delta
        mined = select_triplets(geom, self.epsilon, self.triplets)
        active = mined & (hinge.detach() > 0)
        self.last_counts = {"mined_triplets": int(mined.sum()),
                            "active_triplets": int(active.sum())}
        if self.reduction == "reference":
            return _masked_mean(hinge, active, geom.s_ap)
        # paper: per-triplet sum averaged over every triplet of the batch
        return torch.where(active, hinge, torch.zeros_like(hinge)).sum() / geom.neg.sum()

    def from_geometry(self, geom: TripletGeometry) -> torch.Tensor:
        return self.triplet_term(geom)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, triplets={self.triplets!r}, reduction={self.reduction!r}"


class AdaTripletLoss(TripletLoss):
    """AdaTriplet: the triplet term plus λ times a penalty on negatives more similar than β."""

    def __init__(self, epsilon: float = 0.25, beta: float = 0.0, lam: float = 1.0,
                 triplets: str = "semihard", reduction: str = "reference"):
        super().__init__(epsilon, triplets, reduction)
        self.beta = check_beta(beta)
        self.lam = check_at_least(lam, 0.0, "lam")

    def negative_term(self, geom: TripletGeometry) -> torch.Tensor:
        if self.reduction == "reference":
            sims = geom.neg_pair_sims
            active = sims.detach() >= self.beta
            self.last_counts["active_neg_pairs"] = int(active.sum())
            return _masked_mean(sims - self.beta, active, geom.s_ap)
        excess = torch.clamp(geom.s_an - self.beta, min=0.0)
        self.last_counts["active_neg_pairs"] = int(((geom.s_an.detach() > self.beta)
                                                    & geom.neg).sum())
        return torch.where(geom.neg, excess, torch.zeros_like(excess)).sum() / geom.neg.sum()

    def from_geometry(self, geom: TripletGeometry) -> torch.Tensor:
        loss = self.triplet_term(geom)
        if self.lam == 0.0:
            self.last_counts["active_neg_pairs"] = 0
            return loss
        return loss + self.lam * self.negative_term(geom)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, lam={self.lam}"
