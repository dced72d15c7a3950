"""ATH objective: the label head's BCE (and, for ATH+MMDL, the whole MMDL objective) plus a triplet
loss on the relaxed hash codes and a quantisation penalty pulling them to ±1.

Triplets follow the multi-label relevance of the MMDL stage (positives share ≥ 1 label; every valid
(a, p, n) of the batch, pytorch-metric-learning ``TripletMarginLoss`` on L2-normalised codes, whose
distances rank like Hamming distances once the codes are binary). Quantisation: mean (|h| − 1)².
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from radsearch.losses.mmdl import MMDLLoss
from radsearch.losses.ranking import MultiLabelRankingLoss


def quantization_loss(h: torch.Tensor) -> torch.Tensor:
    """Mean (|h| − 1)² over the bits: 0 when every relaxed bit is ±1."""
    return (h.float().abs() - 1.0).pow(2).mean()


class ATHLoss(nn.Module):
    """``base`` (an :class:`MMDLLoss`) + triplet_weight · triplet(codes) + quantization · quant.

    ``codes`` maps the image common vectors to tanh-relaxed codes (``ATHModel.relaxed_codes``)."""

    def __init__(self, base: MMDLLoss, codes: Callable[[torch.Tensor], torch.Tensor],
                 triplet_weight: float = 1.0, margin: float = 0.25, quantization: float = 0.1):
        super().__init__()
        self.base = base
        self.codes = codes
        self.triplet = MultiLabelRankingLoss("triplet", margin=margin)
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
