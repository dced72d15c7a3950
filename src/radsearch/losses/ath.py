"""ATH objective: the label head's BCE (and, for ATH+MMDL, the whole MMDL objective) plus a triplet
loss on the relaxed hash codes and a quantisation penalty pulling them to ±1.

Triplet hashing: every valid (a, p, n) of the batch under the multi-label relevance of the MMDL
stage (positives share ≥ 1 label), pytorch-metric-learning ``TripletMarginLoss`` with squared
Euclidean distance on the codes scaled by 1/(2√K). For ±1 codes that distance is exactly the
Hamming distance divided by K, so the margin is a share of the bits: with the codes unnormalised
and capped at ±1 by tanh, a triplet can only be satisfied by flipping signs. (A triplet on
L2-normalised codes was tried first: it was met by magnitudes alone and, on the synthetic chest
cohort, left 2 distinct sign codes for 2,427 images.) Quantisation: mean (|h| − 1)².
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.distances import LpDistance
from torch import nn

from radsearch.losses.mmdl import MMDLLoss
from radsearch.losses.ranking import multilabel_triplets, relevance_matrix


def quantization_loss(h: torch.Tensor) -> torch.Tensor:
    """Mean (|h| − 1)² over the bits: 0 when every relaxed bit is ±1."""
    return (h.float().abs() - 1.0).pow(2).mean()


class HashTripletLoss(nn.Module):
    """Triplet loss on [B, K] relaxed codes in units of Hamming fraction; margin = share of bits."""

    def __init__(self, margin: float = 0.25):
        super().__init__()
        self.loss = pml_losses.TripletMarginLoss(
            margin=margin, distance=LpDistance(normalize_embeddings=False, p=2, power=2))

    def forward(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scaled = h.float() / (2.0 * h.shape[1] ** 0.5)
        triplets = multilabel_triplets(relevance_matrix(targets.to(h.device)))
        return self.loss(scaled, torch.arange(len(h), device=h.device), indices_tuple=triplets)


class ATHLoss(nn.Module):
    """``base`` (an :class:`MMDLLoss`) + triplet_weight · triplet(codes) + quantization · quant.

    ``codes`` maps the image common vectors to tanh-relaxed codes (``ATHModel.relaxed_codes``)."""

    def __init__(self, base: MMDLLoss, codes: Callable[[torch.Tensor], torch.Tensor],
                 triplet_weight: float = 1.0, margin: float = 0.25, quantization: float = 0.1):
        super().__init__()
        self.base = base
        self.codes = codes
        self.triplet = HashTripletLoss(margin)
        self.triplet_weight, self.quantization = triplet_weight, quantization

    def forward(self, u, logits_u, targets, weights, v=None, logits_v=None, has_report=None
                ) -> dict[str, torch.Tensor]:
        terms = self.base(u, logits_u, targets, weights, v, logits_v, has_report)
        h = self.codes(u)
        terms["hash_triplet"] = self.triplet(h, targets * (weights > 0))
        terms["quantization"] = quantization_loss(h)
        terms["loss"] = (terms["loss"] + self.triplet_weight * terms["hash_triplet"]
                         + self.quantization * terms["quantization"])
        return terms
