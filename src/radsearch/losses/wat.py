"""WAT: triplet loss with a per-triplet adaptive margin (docs/losses.md §4).

m = (2 − 2Δ)/(4 − k) + k with Δ detached; hinge (m − Δ)₊ over all triplets with Δ ≤ m, averaged
over the triplets with a positive hinge. Since m − Δ > 0 ⇔ Δ < ε* = (2 + 4k − k²)/(6 − k), its
gradient equals a fixed-margin triplet hinge with margin ε* over all triplets.
"""

from __future__ import annotations

import torch

from radsearch.errors import ConfigError
from radsearch.losses.geometry import GeometryLoss, TripletGeometry
from radsearch.validation import check_at_least


def equivalent_margin(k: float) -> float:
    """The fixed margin ε* whose triplet hinge has WAT's gradient."""
    return (2.0 + 4.0 * k - k * k) / (6.0 - k)


class WATLoss(GeometryLoss):
    def __init__(self, k: float = 0.1):
        super().__init__()
        self.k = check_at_least(k, 0.0, "k")
        if self.k >= 4.0:
            raise ConfigError(f"k={self.k} is out of range: WAT's margin (2 − 2Δ)/(4 − k) + k needs "
                              "0 <= k < 4.")

    def from_geometry(self, geom: TripletGeometry) -> torch.Tensor:
        """Mean over active triplets of (m − Δ); m is detached, so Σ(m − Δ) = Σ m + Σ W ⊙ S."""
        margin = (2.0 - 2.0 * geom.delta) / (4.0 - self.k) + self.k
        mined = geom.neg & (geom.delta <= margin)
        active = mined & (geom.delta < margin)
        n_active = int(torch.count_nonzero(active))
        self.last_counts = {"mined_triplets": int(torch.count_nonzero(mined)), "active_triplets": n_active}
        margin_sum = (margin * active).sum()
        return (geom.weighted(geom.triplet_weights(active)) + margin_sum) / max(n_active, 1)

    def extra_repr(self) -> str:
        return f"k={self.k}"
