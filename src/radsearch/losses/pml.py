"""Baselines taken from pytorch-metric-learning: Contrastive, SoftTriple and ArcFace.

The proxy losses (SoftTriple, ArcFace) get one class per training subject and their proxies are
trained (returned by ``parameters()``). ``reference_quirks=True`` reproduces the published runs
instead: ``num_classes`` = number of training images and frozen, randomly initialised proxies
(docs/losses.md §4). The reference's weighting of per-sample losses by an unrelated miner is not
reproduced.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance
from torch import nn

from radsearch.errors import ConfigError, DataError
from radsearch.losses.geometry import check_labels


class ContrastiveLoss(nn.Module):
    """PML ContrastiveLoss + PairMarginMiner, Euclidean distance on L2-normalised embeddings."""

    def __init__(self, pos_margin: float = 0.5, neg_margin: float = 0.75):
        super().__init__()
        distance = LpDistance(normalize_embeddings=True, p=2)
        self.loss = pml_losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin,
                                               distance=distance)
        self.miner = pml_miners.PairMarginMiner(pos_margin=pos_margin, neg_margin=neg_margin,
                                                distance=distance)
        self.last_counts: dict[str, int] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = check_labels(embeddings, labels)
        pairs = self.miner(embeddings.float(), labels)
        self.last_counts = {"mined_pos_pairs": int(pairs[0].numel()),
                            "mined_neg_pairs": int(pairs[2].numel())}
        return self.loss(embeddings.float(), labels, pairs)


class _ProxyLoss(nn.Module):
    """A PML classification-style loss with one proxy set per class."""

    def __init__(self, loss: nn.Module, num_classes: int, reference_quirks: bool):
        super().__init__()
        self.loss = loss
        self.num_classes = num_classes
        self.reference_quirks = reference_quirks
        if reference_quirks:
            for parameter in self.loss.parameters():
                parameter.requires_grad_(False)
        self.last_counts: dict[str, int] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = check_labels(embeddings, labels)
        outside = labels[(labels < 0) | (labels >= self.num_classes)]
        if outside.numel():
            raise DataError(f"label {int(outside[0])} is outside 0..{self.num_classes - 1}: proxy "
                            "losses need training subjects coded 0..num_classes-1 "
                            "(num_classes = number of training subjects).")
        return self.loss(embeddings.float(), labels)


def _classes(num_classes: int | None, num_train_images: int | None, reference_quirks: bool,
             name: str) -> int:
    n = num_train_images if reference_quirks else num_classes
    what = "num_train_images" if reference_quirks else "num_classes (training subjects)"
    if n is None or int(n) < 2:
        raise ConfigError(f"{name} needs {what} >= 2, got {n}.")
    return int(n)


def soft_triple_loss(num_classes: int | None, embedding_dim: int, *, centers_per_class: int = 10,
                     la: float = 20.0, gamma: float = 0.1, margin: float = 0.01,
                     reference_quirks: bool = False,
                     num_train_images: int | None = None) -> _ProxyLoss:
    n = _classes(num_classes, num_train_images, reference_quirks, "SoftTriplet")
    loss = pml_losses.SoftTripleLoss(num_classes=n, embedding_size=embedding_dim,
                                     centers_per_class=centers_per_class, la=la, gamma=gamma,
                                     margin=margin)
    return _ProxyLoss(loss, n, reference_quirks)


def arcface_loss(num_classes: int | None, embedding_dim: int, *, margin: float = 28.6,
                 scale: float = 64.0, reference_quirks: bool = False,
                 num_train_images: int | None = None) -> _ProxyLoss:
    n = _classes(num_classes, num_train_images, reference_quirks, "ArcFace")
    loss = pml_losses.ArcFaceLoss(num_classes=n, embedding_size=embedding_dim, margin=margin,
                                  scale=scale)
    return _ProxyLoss(loss, n, reference_quirks)
