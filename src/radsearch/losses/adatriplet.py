"""Triplet and AdaTriplet losses on cosine similarities (docs/losses.md §2).

Two reductions:
- ``"reference"`` (default; the authors' code, which produced the published tables): the triplet
  term is the mean of (ε − Δ) over mined triplets with ε − Δ > 0, the negative term the mean of
  (S_ij − β) over the unique unordered negative pairs with S_ij ≥ β; L = L_trip + λ·L_neg.
- ``"paper"``: eq. (5), L = mean over every triplet of [ε − Δ]₊·[selected] + λ·[S_an − β]₊. With
  ``triplets="all"`` this is exactly the paper's formula and Proposition 2's gradients.
"""

from __future__ import annotations

import torch

from radsearch.losses.geometry import GeometryLoss, TripletGeometry
from radsearch.validation import check_at_least, check_beta, check_choice, check_epsilon

TRIPLET_SELECTIONS = ("semihard", "all", "hard")
REDUCTIONS = ("reference", "paper")


def select_triplets(geom: TripletGeometry, epsilon: float, triplets: str) -> torch.Tensor:
    """Boolean (P, B) mask of the mined triplets: semihard 0 < Δ ≤ ε, all Δ ≤ ε, hard Δ ≤ min(ε, 0)."""
    upper = epsilon if triplets != "hard" else min(epsilon, 0.0)
    chosen = geom.neg & (geom.delta <= upper)
    if triplets == "semihard":
        chosen &= geom.delta > 0
    return chosen


class TripletLoss(GeometryLoss):
    """Triplet hinge on cosine similarities with a mining rule; the AdaTriplet loss with λ = 0."""

    def __init__(self, epsilon: float = 0.25, triplets: str = "semihard",
                 reduction: str = "reference"):
        super().__init__()
        self.epsilon = check_epsilon(epsilon)
        self.triplets = check_choice(triplets, TRIPLET_SELECTIONS, "triplets")
        self.reduction = check_choice(reduction, REDUCTIONS, "reduction")

    def triplet_term(self, geom: TripletGeometry) -> torch.Tensor:
        """Σ over active triplets of (ε − Δ), divided by the active count (reference) or |T| (paper)."""
        mined = select_triplets(geom, self.epsilon, self.triplets)
        active = mined & (geom.delta < self.epsilon)
        n_active = int(torch.count_nonzero(active))
        self.last_counts = {"mined_triplets": int(torch.count_nonzero(mined)), "active_triplets": n_active}
        hinge_sum = geom.weighted(geom.triplet_weights(active)) + self.epsilon * n_active
        if self.reduction == "reference":
            return hinge_sum / max(n_active, 1)
        return hinge_sum / max(geom.n_triplets, 1)  # no triplet (one subject): 0, as reference

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
        """Reference: mean of (S_ij − β) over unique negative pairs with S_ij ≥ β.
        Paper: Σ over every triplet of [S_an − β]₊, divided by |T|."""
        if self.reduction == "reference":
            active = geom.neg_upper & (geom.sim.detach() >= self.beta)
            n_active = int(torch.count_nonzero(active))
            self.last_counts["active_neg_pairs"] = n_active
            excess_sum = geom.weighted(active.to(geom.sim.dtype)) - self.beta * n_active
            return excess_sum / max(n_active, 1)
        s_an = geom.s_ap[:, None] - geom.delta
        active = geom.neg & (s_an > self.beta)
        n_active = int(torch.count_nonzero(active))
        self.last_counts["active_neg_pairs"] = n_active
        excess_sum = geom.weighted(geom.row_weights(active.to(geom.sim.dtype)))
        return (excess_sum - self.beta * n_active) / max(geom.n_triplets, 1)

    def from_geometry(self, geom: TripletGeometry) -> torch.Tensor:
        loss = self.triplet_term(geom)
        if self.lam == 0.0:
            self.last_counts["active_neg_pairs"] = 0
            return loss
        return loss + self.lam * self.negative_term(geom)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, lam={self.lam}"
