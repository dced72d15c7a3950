"""ATH-style hashing model (Fang, Fu, Liu, Medical Image Analysis 2021, "attention-based triplet
hashing"): a CNN whose last conv map is re-weighted by a spatial-attention module, a hash layer
giving K tanh-relaxed bits, and a label head. Retrieval ranks by Hamming distance of the sign codes
(or by cosine of the relaxed codes).

Built on :class:`radsearch.models.mmdl.MMDLModel`: attention replaces the plain pooling of the
image branch, and the hash layer reads the common-space vector, so the same class is the
stand-alone ATH (trained without reports and without the similarity term) and ATH+MMDL (the ATH head
on top of the full MMDL objective, reports included).

The hash layer is a bias-free linear map of the L2-normalised common vector, batch-normalised per
bit without affine terms (bit balance), then tanh. Spatial attention is CBAM's (Woo et al., ECCV
2018): channel-mean and channel-max maps → k × k conv → sigmoid, one weight per cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radsearch.errors import ConfigError
from radsearch.models.mmdl import MMDLModel, conv_map, selective_pool


class SpatialAttention(nn.Module):
    """σ(conv([mean_c F, max_c F])) ⊙ F: re-weights each cell of a [B, C, h, w] map."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def weights(self, fmap: torch.Tensor) -> torch.Tensor:
        """[B, 1, h, w] attention in (0, 1)."""
        stats = torch.cat([fmap.mean(1, keepdim=True), fmap.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(stats))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap * self.weights(fmap)


class ATHModel(MMDLModel):
    """MMDL image/report branches + spatial attention + a ``bits``-bit hash layer on the common
    vector. ``relaxed_codes`` (tanh, training) and ``codes`` (retrieval) read the common vector."""

    def __init__(self, *args, bits: int = 48, attention: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if bits < 1:
            raise ConfigError(f"ath.bits={bits} must be a positive number of bits.")
        self.bits = bits
        self.attention = SpatialAttention() if attention else None
        # no bias + per-bit batch normalisation: each bit splits a batch about in half (bit
        # balance). With a plain biased layer the bias decided every sign at initialisation and
        # the quantisation penalty grew it: one sign code for every image (synthetic chest cohort)
        self.hash = nn.Sequential(nn.Linear(self.dim, bits, bias=False),
                                  nn.BatchNorm1d(bits, affine=False))

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        if self.attention is None:
            return super().image_features(images)
        fmap = self.attention(conv_map(self.backbone, images).float())
        if self.descriptor == "selective":
            return selective_pool(fmap)
        if self.descriptor == "gem":
            return self.gem(fmap)
        return fmap.mean(dim=(2, 3))

    def relaxed_codes(self, common: torch.Tensor) -> torch.Tensor:
        """tanh(BN(W · û)) of the L2-normalised common vector û (the common space's own scale is
        free: the label head reads it unnormalised)."""
        return torch.tanh(self.hash(F.normalize(common.float(), dim=1)))

    @torch.no_grad()
    def codes(self, common: torch.Tensor, binary: bool = True) -> torch.Tensor:
        """Retrieval codes: ±1 sign codes (``binary``) or the relaxed ones. For ±1 codes the dot
        product is K − 2·Hamming, so ranking by cosine is ranking by Hamming distance."""
        h = self.relaxed_codes(common)
        return torch.where(h >= 0, 1.0, -1.0) if binary else h


def hamming_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[Na, Nb] number of differing bits of two code sets (bit = code ≥ 0, as ``codes``)."""
    return ((a[:, None, :] >= 0) != (b[None, :, :] >= 0)).sum(-1)

