"""Method registry: the paper's method names → loss + margin schedule with published settings.

``build_method("AdaTriplet-AM", preset="oai")`` returns a :class:`Method`, the one object a training
loop needs: call it on a batch for the loss, optimise ``trainable_parameters()`` too (class proxies),
read ``epoch_stats()`` / ``epoch_histograms()`` for logging and call ``on_epoch_end()`` after the last
batch of every epoch (AutoMargin sets the next epoch's margins there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from radsearch.errors import ConfigError
from radsearch.losses.adatriplet import AdaTripletLoss, TripletLoss
from radsearch.losses.automargin import AutoMargin, EpochStatistics
from radsearch.losses.geometry import TripletGeometry, batch_geometry
from radsearch.losses.pml import ContrastiveLoss, arcface_loss, soft_triple_loss
from radsearch.losses.sct import SCTLoss
from radsearch.losses.wat import WATLoss

PRESETS = ("oai", "cxr")
DELTA_RANGE = (-2.0, 2.0)
SIM_RANGE = (-1.0, 1.0)
HISTOGRAM_BINS = 100


@dataclass(frozen=True)
class Recipe:
    """How to build one named method: a loss builder, an optional AutoMargin rule, defaults."""

    build: Callable[..., nn.Module]
    defaults: dict[str, Any]
    per_preset: dict[str, dict[str, Any]] = field(default_factory=dict)
    automargin: str | None = None  # None, or the AutoMargin rule "mean" / "q1" / "q2"
    adapt_beta: bool = False
    proxies: bool = False

    def params(self, preset: str) -> dict[str, Any]:
        return {**self.defaults, **self.per_preset.get(preset, {})}


_TRIPLET = {"triplets": "semihard", "reduction": "reference"}
_ADA_FIXED = {"lam": 1.0, **_TRIPLET}


# AutoMargin guards for random initialisations (radsearch.losses.automargin); 0 = the paper's rule
_AM_GUARDS = {"warmup_epochs": 0, "epsilon_floor": 0.0}


def _ada_am(rule: str) -> Recipe:
    return Recipe(AdaTripletLoss, {"epsilon0": 0.25, "beta0": 0.0, "k_delta": 2.0, "k_an": 2.0,
                                   **_AM_GUARDS, **_ADA_FIXED},
                  {"cxr": {"k_an": 4.0}}, automargin=rule, adapt_beta=True)


def _triplet_am(rule: str) -> Recipe:
    return Recipe(TripletLoss, {"epsilon0": 0.25, "k_delta": 2.0, **_AM_GUARDS, **_TRIPLET},
                  automargin=rule)


METHODS: dict[str, Recipe] = {
    "AdaTriplet-AM": _ada_am("mean"),
    "AdaTriplet-Q1": _ada_am("q1"),
    "AdaTriplet-Q2": _ada_am("q2"),
    "AdaTriplet": Recipe(AdaTripletLoss, {"epsilon": 0.5, "beta": 0.5, **_ADA_FIXED},
                         {"cxr": {"beta": 0.75}}),
    "Triplet-AM": _triplet_am("mean"),
    "Triplet-Q1": _triplet_am("q1"),
    "Triplet-Q2": _triplet_am("q2"),
    "Triplet": Recipe(TripletLoss, {"epsilon": 0.25, **_TRIPLET}, {"cxr": {"epsilon": 0.5}}),
    "Contrastive": Recipe(ContrastiveLoss, {"pos_margin": 0.5, "neg_margin": 0.75}),
    "WAT": Recipe(WATLoss, {"k": 0.1}),
    "SCT": Recipe(SCTLoss, {"margin": 0.25, "lam": 0.5}),
    "SoftTriplet": Recipe(soft_triple_loss, {"centers_per_class": 10, "la": 20.0, "gamma": 0.1,
                                             "margin": 0.01, "reference_quirks": False},
                          proxies=True),
    "ArcFace": Recipe(arcface_loss, {"margin": 14.3, "scale": 64.0, "reference_quirks": False},
                      {"cxr": {"margin": 28.6}}, proxies=True),
}


def _histogram(values: torch.Tensor, value_range: tuple[float, float],
               mask: torch.Tensor | None = None) -> np.ndarray:
    """Fixed-bin int64 counts; cells outside ``mask`` go to an overflow bin that is dropped.

    Detached logging data, counted with numpy: torch's CPU bincount is several times slower.
    """
    low, high = value_range
    array = values.detach().cpu().numpy()
    keep = np.isfinite(array)  # a diverging model gives NaN: not counted in any bin
    if mask is not None:
        keep &= mask.cpu().numpy()
    scaled = (np.where(keep, array, low) - low) * (HISTOGRAM_BINS / (high - low))
    bins = np.clip(scaled.astype(np.intp), 0, HISTOGRAM_BINS - 1)
    bins[~keep] = HISTOGRAM_BINS
    return np.bincount(bins.ravel(), minlength=HISTOGRAM_BINS + 1)[:HISTOGRAM_BINS]


class EpochMonitor:
    """Running statistics of one epoch for logging: means, mined counts and histograms.

    The Δ / S_neg means come from an :class:`EpochStatistics`; with AutoMargin it is the
    AutoMargin's own (one accumulator: the logged means are exactly the ones the margins use, and
    the batch is added once, by AutoMargin); otherwise the monitor owns and fills it.
    """

    def __init__(self, stats: EpochStatistics | None = None) -> None:
        self.owns_stats = stats is None
        self.accumulator = stats if stats is not None else EpochStatistics()
        self.reset()

    def reset(self) -> None:
        self.batches = 0
        self.loss_sum = 0.0
        self.accumulator.reset()
        self.counts: dict[str, float] = {}
        self.delta_hist = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self.sim_hist = np.zeros(HISTOGRAM_BINS, dtype=np.int64)

    @torch.no_grad()
    def update(self, geom: TripletGeometry, loss: torch.Tensor, counts: dict[str, int]) -> None:
        self.batches += 1
        self.loss_sum += float(loss.detach())
        if self.owns_stats:
            self.accumulator.add(geom)
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0.0) + value
        self.delta_hist += _histogram(geom.delta, DELTA_RANGE, mask=geom.neg)
        self.sim_hist += _histogram(geom.neg_pair_sims, SIM_RANGE)

    def stats(self) -> dict[str, float]:
        n = max(self.batches, 1)
        out = {
            "batches": float(self.batches),
            "loss": self.loss_sum / n,
            "mean_delta": self.accumulator.mean_delta,
            "mean_neg_sim": self.accumulator.mean_neg_sim,
        }
        out.update({key: value / n for key, value in self.counts.items()})
        return out

    def histograms(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            "delta": (np.linspace(*DELTA_RANGE, HISTOGRAM_BINS + 1), self.delta_hist.copy()),
            "neg_sim": (np.linspace(*SIM_RANGE, HISTOGRAM_BINS + 1), self.sim_hist.copy()),
        }


class Method(nn.Module):
    """A named training objective: loss, optional AutoMargin schedule and per-epoch statistics."""

    def __init__(self, name: str, preset: str, loss: nn.Module, params: dict[str, Any],
                 automargin: AutoMargin | None = None):
        super().__init__()
        self.name = name
        self.preset = preset
        self.loss = loss
        self.automargin = automargin
        self.params = dict(params)
        self.monitor = EpochMonitor(automargin.accumulator if automargin is not None else None)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.automargin is not None:  # margins are constant within an epoch
            self.loss.epsilon = self.epsilon
            if self.automargin.k_an is not None:
                self.loss.beta = self.beta
        if hasattr(self.loss, "from_geometry"):
            geom = batch_geometry(embeddings, labels)
            value = self.loss.from_geometry(geom)
        else:
            value = self.loss(embeddings, labels)
            with torch.no_grad():
                geom = batch_geometry(embeddings.detach(), labels)
        if self.automargin is not None:
            self.automargin.collect(geom)
        self.monitor.update(geom, value, self.loss.last_counts)
        return value

    @property
    def epsilon(self) -> float | None:
        """The triplet margin in force (AutoMargin's when it drives it); None without one."""
        if self.automargin is not None:
            return self.automargin.epsilon
        return getattr(self.loss, "epsilon", None)

    @property
    def beta(self) -> float | None:
        """The negative-pair threshold in force; None for losses without one (e.g. Triplet-AM)."""
        if self.automargin is not None and self.automargin.k_an is not None:
            return self.automargin.beta
        return getattr(self.loss, "beta", None)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Loss parameters the optimiser must update (class proxies); empty for pair losses."""
        return [p for p in self.parameters() if p.requires_grad]

    def epoch_stats(self) -> dict[str, float]:
        """This epoch so far: margins in use, mean Δ, mean negative similarity, mined counts."""
        stats = self.monitor.stats()
        stats["epsilon"] = float("nan") if self.epsilon is None else self.epsilon
        stats["beta"] = float("nan") if self.beta is None else self.beta
        return stats

    def epoch_histograms(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Histograms of Δ over all triplets and of negative-pair similarities (Fig. 2b–c)."""
        return self.monitor.histograms()

    def on_epoch_end(self) -> None:
        """Epoch boundary: AutoMargin sets the next epoch's margins; statistics restart."""
        if self.automargin is not None:
            self.automargin.step()
        self.monitor.reset()

    def extra_repr(self) -> str:
        return f"name={self.name!r}, preset={self.preset!r}"


def build_method(name: str, preset: str = "oai", *, num_classes: int | None = None,
                 embedding_dim: int = 128, num_train_images: int | None = None,
                 **overrides: Any) -> Method:
    """Build a method by its paper name with the published hyper-parameters of ``preset``.

    ``overrides`` replace individual settings (e.g. ``epsilon=0.1``, ``k_an=4``); unknown keys and
    out-of-range values raise :class:`radsearch.errors.ConfigError`.
    """
    if name not in METHODS:
        close = [m for m in METHODS if m.lower() == name.lower()]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown method {name!r}.{hint} Available: {', '.join(METHODS)}.")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    recipe = METHODS[name]
    params = recipe.params(preset)
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ConfigError(f"{name} has no setting {', '.join(map(repr, unknown))}; "
                          f"its settings are {', '.join(params)}.")
    params.update(overrides)

    loss_kwargs = dict(params)
    automargin = None
    if recipe.automargin is not None:
        automargin = AutoMargin(k_delta=loss_kwargs.pop("k_delta"),
                                k_an=loss_kwargs.pop("k_an") if recipe.adapt_beta else None,
                                epsilon0=loss_kwargs.pop("epsilon0"),
                                beta0=loss_kwargs.pop("beta0", 0.0),
                                rule=recipe.automargin,
                                warmup_epochs=loss_kwargs.pop("warmup_epochs"),
                                epsilon_floor=loss_kwargs.pop("epsilon_floor"))
        loss_kwargs["epsilon"] = automargin.epsilon
        if recipe.adapt_beta:
            loss_kwargs["beta"] = automargin.beta
    if recipe.proxies:
        loss = recipe.build(num_classes, embedding_dim, num_train_images=num_train_images,
                            **loss_kwargs)
    else:
        try:
            loss = recipe.build(**loss_kwargs)
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{name}: {exc}") from exc
    return Method(name, preset, loss, params, automargin)
