"""AutoMargin: epoch-wise margins from the statistics of the previous epoch (docs/losses.md §3).

During an epoch, Δ over **all** triplets and S over **all** unique negative pairs of every batch are
collected (detached, before any thresholding). At the epoch boundary:

    ε ← max(0, mean(Δ) / K_Δ)                 (paper eq. 7)
    β ← 1 − (1 − mean(S_neg)) / K_an           (paper eq. 8)

The ``mean`` rule needs only running sums; the quartile baselines need the raw values:
``q1``: ε = max(0, 25th percentile of Δ), β = 75th percentile of S_neg;
``q2``: ε = max(0, median Δ), β = median S_neg. Margins are constant within an epoch. With
``k_an=None`` only ε is adapted (Triplet-AM) and β keeps its initial value.

From a random initialisation the first epoch's mean Δ can be tiny (≈ 0.02 for a random ResNet-18,
whose embeddings are all alike), so the paper's rule — written for ImageNet-initialised networks —
sets ε ≈ 0.01 and mining almost stops for many epochs. Two optional guards (off by default: the
paper's rule): ``warmup_epochs`` keeps ε₀/β₀ for the first E epochs, ``epsilon_floor`` keeps
ε ≥ the floor. See docs/results.md for the ablation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from radsearch.losses.geometry import TripletGeometry
from radsearch.validation import check_at_least, check_beta, check_choice, check_epsilon

RULES = ("mean", "q1", "q2")


class EpochStatistics:
    """Running sums of one epoch's Δ (all triplets) and S (all negative pairs); optionally the
    raw values (quartile rules). One instance is shared by AutoMargin and the epoch monitor."""

    def __init__(self, keep_values: bool = False) -> None:
        self.keep_values = keep_values
        self.reset()

    def reset(self) -> None:
        self.sums = [0.0, 0.0, 0.0, 0.0]   # Δ sum, Δ count, S_neg sum, S_neg count
        self._deltas: list[np.ndarray] = []
        self._neg_sims: list[np.ndarray] = []

    @torch.no_grad()
    def add(self, geom: TripletGeometry) -> None:
        self.sums = [a + b for a, b in zip(self.sums, geom.sums)]
        if self.keep_values:
            self._deltas.append(geom.triplet_deltas().float().cpu().numpy())
            self._neg_sims.append(geom.neg_pair_sims.detach().float().cpu().numpy())

    @torch.no_grad()
    def add_values(self, deltas: torch.Tensor, neg_sims: torch.Tensor) -> None:
        self.sums = [a + b for a, b in zip(self.sums, (
            float(deltas.double().sum()), float(deltas.numel()),
            float(neg_sims.double().sum()), float(neg_sims.numel())))]
        if self.keep_values:
            self._deltas.append(deltas.detach().float().cpu().numpy())
            self._neg_sims.append(neg_sims.detach().float().cpu().numpy())

    @property
    def n_deltas(self) -> float:
        return self.sums[1]

    @property
    def n_neg_sims(self) -> float:
        return self.sums[3]

    @property
    def mean_delta(self) -> float:
        return self.sums[0] / self.sums[1] if self.sums[1] > 0 else float("nan")

    @property
    def mean_neg_sim(self) -> float:
        return self.sums[2] / self.sums[3] if self.sums[3] > 0 else float("nan")

    def deltas(self) -> np.ndarray:
        return np.concatenate(self._deltas) if self._deltas else np.zeros(0, np.float32)

    def neg_sims(self) -> np.ndarray:
        return np.concatenate(self._neg_sims) if self._neg_sims else np.zeros(0, np.float32)


class AutoMargin(nn.Module):
    """Collects batch statistics and sets ε (and β) once per epoch.

    The margins are buffers, so they travel with ``state_dict`` (resume).
    """

    def __init__(self, k_delta: float = 2.0, k_an: float | None = 2.0, epsilon0: float = 0.25,
                 beta0: float = 0.0, rule: str = "mean", warmup_epochs: int = 0,
                 epsilon_floor: float = 0.0):
        super().__init__()
        self.k_delta = check_at_least(k_delta, 1.0, "k_delta")
        self.k_an = None if k_an is None else check_at_least(k_an, 1.0, "k_an")
        self.rule = check_choice(rule, RULES, "rule")
        self.warmup_epochs = int(check_at_least(warmup_epochs, 0, "warmup_epochs"))
        self.epsilon_floor = check_epsilon(epsilon_floor, "epsilon_floor")
        self.register_buffer("epsilon_", torch.tensor(check_epsilon(epsilon0, "epsilon0"),
                                                      dtype=torch.float64))
        self.register_buffer("beta_", torch.tensor(check_beta(beta0, "beta0"), dtype=torch.float64))
        self.register_buffer("epochs_", torch.tensor(0, dtype=torch.int64))  # boundaries passed
        # statistics of the current epoch; they restart every epoch, so a resumed run (from an
        # epoch boundary) needs only the buffers
        self.accumulator = EpochStatistics(keep_values=self.rule != "mean")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the epoch counter existed
        state_dict.setdefault(prefix + "epochs_", torch.tensor(self.warmup_epochs))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def epsilon(self) -> float:
        return float(self.epsilon_)

    @property
    def beta(self) -> float:
        return float(self.beta_)

    def collect(self, geom: TripletGeometry) -> None:
        """Add one batch's triplet Δ and negative-pair similarities to the epoch statistics."""
        self.accumulator.add(geom)

    def collect_values(self, deltas: torch.Tensor, neg_sims: torch.Tensor) -> None:
        """Same as :meth:`collect` from flat tensors (used by tests and custom loops)."""
        self.accumulator.add_values(deltas, neg_sims)

    @property
    def mean_delta(self) -> float:
        return self.accumulator.mean_delta

    @property
    def mean_neg_sim(self) -> float:
        return self.accumulator.mean_neg_sim

    def step(self) -> None:
        """Epoch boundary: set the margins from this epoch's statistics, then reset them.

        During the first ``warmup_epochs`` boundaries the margins keep ε₀/β₀."""
        self.epochs_ += 1
        if int(self.epochs_) <= self.warmup_epochs:
            self.reset()
            return
        stats = self.accumulator
        if stats.n_deltas > 0:
            if self.rule == "mean":
                epsilon = stats.mean_delta / self.k_delta
            else:
                q = 25.0 if self.rule == "q1" else 50.0
                epsilon = float(np.percentile(stats.deltas(), q))
            epsilon = max(self.epsilon_floor, epsilon)
            self.epsilon_.fill_(min(max(0.0, epsilon), np.nextafter(2.0, 0.0)))
        if self.k_an is not None and stats.n_neg_sims > 0:
            if self.rule == "mean":
                beta = 1.0 - (1.0 - stats.mean_neg_sim) / self.k_an
            else:
                q = 75.0 if self.rule == "q1" else 50.0
                beta = float(np.percentile(stats.neg_sims(), q))
            self.beta_.fill_(min(max(-1.0, beta), 1.0))
        self.reset()

    def reset(self) -> None:
        self.accumulator.reset()

    def extra_repr(self) -> str:
        guards = ""
        if self.warmup_epochs or self.epsilon_floor:
            guards = f", warmup_epochs={self.warmup_epochs}, epsilon_floor={self.epsilon_floor}"
        return (f"k_delta={self.k_delta}, k_an={self.k_an}, rule={self.rule!r}{guards}, "
                f"epsilon={self.epsilon:.4f}, beta={self.beta:.4f}")
