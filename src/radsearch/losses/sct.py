"""SCT: selectively contrastive triplet loss (adatriplet-spec.md §4).

Triplets split into hard H = {S_an > S_ap} and easy E = T ∖ H;
L = mean_E softplus(S_an − S_ap + m) + λ·mean_H S_an. Unlike the reference code (NaN when H or E is
empty), an empty set contributes 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radsearch.losses.adatriplet import _masked_mean
from radsearch.losses.geometry import TripletGeometry, batch_geometry
from radsearch.losses.validation import check_at_least


class SCTLoss(nn.Module):
    def __init__(self, margin: float = 0.25, lam: float = 0.5):
        super().__init__()
        self.margin = float(margin)
        self.lam = check_at_least(lam, 0.0, "lam")
        self.last_counts: dict[str, int] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.from_geometry(batch_geometry(embeddings, labels))

    def from_geometry(self, geom: TripletGeometry) -> torch.Tensor:
        hard = geom.neg & (geom.s_an.detach() > geom.s_ap.detach()[:, None])
        easy = geom.neg & ~hard
        self.last_counts = {"mined_triplets": int(geom.neg.sum()),
                            "active_triplets": int(hard.sum())}
        easy_term = _masked_mean(F.softplus(-geom.delta + self.margin), easy, geom.s_ap)
        hard_term = _masked_mean(geom.s_an, hard, geom.s_ap)
        return easy_term + self.lam * hard_term

    def extra_repr(self) -> str:
        return f"margin={self.margin}, lam={self.lam}"
