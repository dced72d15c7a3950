"""SCT: selectively contrastive triplet loss (docs/losses.md §4).

Triplets split into hard H = {S_an > S_ap} and easy E = T ∖ H;
L = mean_E softplus(S_an − S_ap + m) + λ·mean_H S_an. Unlike the reference code (NaN when H or E is
empty), an empty set contributes 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radsearch.losses.geometry import GeometryLoss, TripletGeometry
from radsearch.validation import check_at_least


class SCTLoss(GeometryLoss):
    def __init__(self, margin: float = 0.25, lam: float = 0.5):
        super().__init__()
        self.margin = float(margin)
        self.lam = check_at_least(lam, 0.0, "lam")

    def from_geometry(self, geom: TripletGeometry) -> torch.Tensor:
        hard = geom.neg & (geom.delta < 0)
        easy = geom.neg & ~hard
        n_hard, n_easy = int(torch.count_nonzero(hard)), int(torch.count_nonzero(easy))
        self.last_counts = {"mined_triplets": geom.n_triplets, "active_triplets": n_hard}
        # softplus is not linear in S: this loss differentiates through the gathered rows
        s_an = geom.sim[geom.anchor]
        s_ap = geom.sim[geom.anchor, geom.positive]
        easy_sum = torch.where(easy, F.softplus(s_an - s_ap[:, None] + self.margin), 0.0).sum()
        hard_sum = torch.where(hard, s_an, 0.0).sum()
        return easy_sum / max(n_easy, 1) + self.lam * hard_sum / max(n_hard, 1)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, lam={self.lam}"
