"""The MMDL model: image and report branches projected into one common space, one shared classifier.

Image branch: a backbone from :func:`radsearch.models.create_model` (DenseNet-121 as in the paper,
or a CPU-sized one); its global descriptor is the backbone's own pooling or a learned deep
descriptor of the last conv map (``selective``: cells whose channel-sum activation exceeds the
map's mean, largest connected component, avg ⊕ max pooling of the kept cells; ``gem``:
generalised-mean pooling). Report branch: any :class:`radsearch.models.text.TextEncoder`.

Each branch has its own first projection layer (features → hidden, ReLU); the last projection
layer (hidden → d, d = 512 by default) and the label classifier (d → 14 CheXpert labels) are shared
by both branches, so image and report embeddings live in one space and are read by one head.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from radsearch.errors import ConfigError
from radsearch.models import create_model
from radsearch.models.text import TextEncoder

DESCRIPTORS = ("pool", "selective", "gem")


def conv_map(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Last convolutional feature map [B, C, h, w] of a torchvision ResNet or DenseNet."""
    if hasattr(backbone, "features"):  # DenseNet: features → ReLU (as torchvision's forward)
        return F.relu(backbone.features(images))
    if hasattr(backbone, "layer4"):
        x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(images))))
        return backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))
    raise ConfigError(f"mmdl.descriptor: backbone {type(backbone).__name__} exposes no conv map; "
                      "use mmdl.descriptor=pool.")


def selective_mask(fmap: torch.Tensor) -> torch.Tensor:
    """[B, h, w] bool: cells whose channel-sum activation exceeds its spatial mean, largest
    connected component (4-connectivity) kept; an empty mask falls back to all cells."""
    energy = fmap.detach().float().sum(1)
    above = (energy > energy.mean(dim=(1, 2), keepdim=True)).cpu().numpy()
    keep = np.zeros_like(above)
    for b, m in enumerate(above):
        components, n = ndimage.label(m)
        if n == 0:
            keep[b] = True
            continue
        sizes = np.bincount(components.ravel())[1:]
        keep[b] = components == (1 + int(np.argmax(sizes)))
    return torch.from_numpy(keep).to(fmap.device)


def selective_pool(fmap: torch.Tensor) -> torch.Tensor:
    """avg ⊕ max pooling of the selected cells: [B, 2C]."""
    mask = selective_mask(fmap).unsqueeze(1).to(fmap.dtype)  # [B, 1, h, w]
    avg = (fmap * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp_min(1.0)
    neg = torch.finfo(fmap.dtype).min
    mx = fmap.masked_fill(mask == 0, neg).amax(dim=(2, 3))
    return torch.cat([avg, mx], dim=1)


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al.) with a learnable exponent p."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.clamp_min(self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class MMDLModel(nn.Module):
    """Image branch + optional report branch → common space (shared last layer) → shared classifier.

    ``embed_images`` returns the L2-normalised common-space vectors used for retrieval;
    ``forward_image`` / ``forward_text`` return ``(common, logits)`` for training.
    """

    def __init__(self, backbone: str = "densenet121", num_classes: int = 14, dim: int = 512,
                 hidden: int = 1024, text_encoder: TextEncoder | None = None,
                 descriptor: str = "pool", weights: str = "none", in_chans: int = 1):
        super().__init__()
        if descriptor not in DESCRIPTORS:
            raise ConfigError(f"mmdl.descriptor={descriptor!r}; use one of "
                              f"{', '.join(DESCRIPTORS)}.")
        if dim < 1 or hidden < 1 or num_classes < 1:
            raise ConfigError(f"mmdl: dim={dim}, hidden={hidden}, num_classes={num_classes} must "
                              "be positive integers.")
        net = create_model(backbone, embedding_dim=1, in_chans=in_chans, weights=weights)
        self.backbone = net.backbone  # head removed by create_model: returns pooled features
        self.num_features = net.head.in_features
        self.descriptor = descriptor
        self.gem = GeM() if descriptor == "gem" else None
        feat = self.num_features * (2 if descriptor == "selective" else 1)
        self.image_proj = nn.Sequential(nn.Linear(feat, hidden), nn.ReLU())
        self.text_encoder = text_encoder
        self.text_proj = (nn.Sequential(nn.Linear(text_encoder.out_dim, hidden), nn.ReLU())
                          if text_encoder is not None else None)
        self.shared = nn.Linear(hidden, dim)
        self.classifier = nn.Linear(dim, num_classes)
        self.dim, self.num_classes = dim, num_classes

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Global image descriptor before projection (the D121 baseline retrieves with these)."""
        if self.descriptor == "pool":
            return self.backbone(images).float()
        fmap = conv_map(self.backbone, images).float()
        return selective_pool(fmap) if self.descriptor == "selective" else self.gem(fmap)

    def forward_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        common = self.shared(self.image_proj(self.image_features(images)))
        return common, self.classifier(common)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Common-space image vectors (what the bf16 agreement check of train.precision embeds)."""
        return self.forward_image(images)[0]

    def forward_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.text_encoder is None:
            raise ConfigError("mmdl: this model has no report branch (trained image-only).")
        common = self.shared(self.text_proj(self.text_encoder(texts)))
        return common, self.classifier(common)

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor, space: str = "common") -> torch.Tensor:
        """Unit vectors for retrieval: ``common`` space or backbone ``features`` (D121 baseline)."""
        vectors = self.image_features(images) if space == "features" else \
            self.forward_image(images)[0]
        return F.normalize(vectors.float(), dim=1)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.forward_text(texts)[0].float(), dim=1)
