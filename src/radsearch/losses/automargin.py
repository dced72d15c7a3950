"""AutoMargin: epoch-wise margins from the statistics of the previous epoch (adatriplet-spec.md §3).

During an epoch, Δ over **all** triplets and S over **all** unique negative pairs of every batch are
collected (detached, before any thresholding). At the epoch boundary:

    ε ← max(0, mean(Δ) / K_Δ)                 (paper eq. 7)
    β ← 1 − (1 − mean(S_neg)) / K_an           (paper eq. 8)

The ``mean`` rule needs only running sums; the quartile baselines need the raw values:
``q1``: ε = max(0, 25th percentile of Δ), β = 75th percentile of S_neg;
``q2``: ε = max(0, median Δ), β = median S_neg. Margins are constant within an epoch. With
``k_an=None`` only ε is adapted (Triplet-AM) and β keeps its initial value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from radsearch.losses.geometry import TripletGeometry
from radsearch.losses.validation import check_at_least, check_beta, check_choice, check_epsilon

RULES = ("mean", "q1", "q2")


class AutoMargin(nn.Module):
    """Collects batch statistics and sets ε (and β) once per epoch.

    The margins are buffers, so they travel with ``state_dict`` (resume).
    """

    def __init__(self, k_delta: float = 2.0, k_an: float | None = 2.0, epsilon0: float = 0.25,
                 beta0: float = 0.0, rule: str = "mean"):
        super().__init__()
        self.k_delta = check_at_least(k_delta, 1.0, "k_delta")
        self.k_an = None if k_an is None else check_at_least(k_an, 1.0, "k_an")
        self.rule = check_choice(rule, RULES, "rule")
        self.register_buffer("epsilon_", torch.tensor(check_epsilon(epsilon0, "epsilon0"),
                                                      dtype=torch.float64))
        self.register_buffer("beta_", torch.tensor(check_beta(beta0, "beta0"), dtype=torch.float64))
        # running sums of the current epoch (Δ sum, Δ count, S_neg sum, S_neg count); they restart
        # every epoch, so a resumed run (from an epoch boundary) needs only the margins
        self._sums = [0.0, 0.0, 0.0, 0.0]
        self._deltas: list[np.ndarray] = []
        self._neg_sims: list[np.ndarray] = []

    @property
    def epsilon(self) -> float:
        return float(self.epsilon_)

    @property
    def beta(self) -> float:
        return float(self.beta_)

    @torch.no_grad()
    def collect(self, geom: TripletGeometry) -> None:
        """Add one batch's triplet Δ and negative-pair similarities to the epoch statistics."""
        self._add_sums(geom.sums)
        if self.rule != "mean":
            self._deltas.append(geom.triplet_deltas().float().cpu().numpy())
            self._neg_sims.append(geom.neg_pair_sims.detach().float().cpu().numpy())

    @torch.no_grad()
    def collect_values(self, deltas: torch.Tensor, neg_sims: torch.Tensor) -> None:
        """Same as :meth:`collect` from flat tensors (used by tests and custom loops)."""
        self._add_sums((float(deltas.double().sum()), float(deltas.numel()),
                        float(neg_sims.double().sum()), float(neg_sims.numel())))
        if self.rule != "mean":
            self._deltas.append(deltas.detach().float().cpu().numpy())
            self._neg_sims.append(neg_sims.detach().float().cpu().numpy())

    def _add_sums(self, sums: tuple[float, float, float, float]) -> None:
        self._sums = [a + b for a, b in zip(self._sums, sums)]

    @property
    def mean_delta(self) -> float:
        return self._sums[0] / self._sums[1] if self._sums[1] > 0 else float("nan")

    @property
    def mean_neg_sim(self) -> float:
        return self._sums[2] / self._sums[3] if self._sums[3] > 0 else float("nan")

    def step(self) -> None:
        """Epoch boundary: set the margins from this epoch's statistics, then reset them."""
        if self._sums[1] > 0:
            if self.rule == "mean":
                epsilon = self.mean_delta / self.k_delta
            else:
                q = 25.0 if self.rule == "q1" else 50.0
                epsilon = float(np.percentile(np.concatenate(self._deltas), q))
            self.epsilon_.fill_(min(max(0.0, epsilon), np.nextafter(2.0, 0.0)))
        if self.k_an is not None and self._sums[3] > 0:
            if self.rule == "mean":
                beta = 1.0 - (1.0 - self.mean_neg_sim) / self.k_an
            else:
                q = 75.0 if self.rule == "q1" else 50.0
                beta = float(np.percentile(np.concatenate(self._neg_sims), q))
            self.beta_.fill_(min(max(-1.0, beta), 1.0))
        self.reset()

    def reset(self) -> None:
        self._sums = [0.0, 0.0, 0.0, 0.0]
        self._deltas.clear()
        self._neg_sims.clear()

    def extra_repr(self) -> str:
        return (f"k_delta={self.k_delta}, k_an={self.k_an}, rule={self.rule!r}, "
                f"epsilon={self.epsilon:.4f}, beta={self.beta:.4f}")
