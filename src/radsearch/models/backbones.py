"""Embedding networks: a torchvision backbone, a linear head to D dimensions, L2 normalisation.

One factory, :func:`create_model`, in the spirit of timm: the backbone is named, the head and the
first convolution are adapted for grey radiographs, and pretrained weights come from torchvision
(online), a local file (offline), or nowhere (``weights="none"``).
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from radsearch.errors import ConfigError

# name -> (torchvision constructor, weights enum, attribute of the first conv, attribute of the head)
_BACKBONES: dict[str, tuple[Callable[..., nn.Module], object, str, str]] = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
                 "conv1", "fc"),
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
                 "conv1", "fc"),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
                 "conv1", "fc"),
    "densenet121": (torchvision.models.densenet121,
                    torchvision.models.DenseNet121_Weights.IMAGENET1K_V1,
                    "features.conv0", "classifier"),
}
# CPU-sized plain CNNs (radsearch.models.cnn): random initialisation or a radsearch checkpoint
_PLAIN = ("cnn9", "cnn9small")
MODELS: tuple[str, ...] = tuple(_BACKBONES) + ("cnn9", "cnn9-small")
FIRST_CONV_MODES = ("average", "reinit")


class EmbeddingNet(nn.Module):
    """backbone → Linear(features, D) → L2 normalisation (unit-norm embeddings, cosine = dot)."""

    def __init__(self, backbone: nn.Module, num_features: int, embedding_dim: int, name: str):
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.head = nn.Linear(num_features, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        return F.normalize(self.head(features).float(), dim=1)


def create_model(name: str = "resnet18", embedding_dim: int = 128, in_chans: int = 1,
                 weights: str | os.PathLike | None = "none",
                 first_conv: str = "average") -> EmbeddingNet:
    """Build an :class:`EmbeddingNet`.

    ``weights``: ``"none"`` (random init), ``"imagenet"`` (torchvision download or its cache in
    TORCH_HOME; offline this fails with one line), or a path to a local file holding either a
    torchvision state dict of the backbone or a radsearch checkpoint / EmbeddingNet state dict.
    ``first_conv``: how a 3-channel pretrained stem becomes ``in_chans`` channels — ``"average"``
    averages the RGB filters (scaled so a grey image gives the activations the RGB network gives
    to the same grey image on 3 channels) or ``"reinit"`` (fresh conv, as the reference code did).
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _BACKBONES and key not in _PLAIN:
        raise ConfigError(f"model.name={name!r} is not a known backbone; use one of "
                          f"{', '.join(MODELS)}.")
    if embedding_dim < 1:
        raise ConfigError(f"model.embedding_dim={embedding_dim} must be a positive integer.")
    if in_chans < 1:
        raise ConfigError(f"model.in_chans={in_chans} must be a positive integer.")
    if first_conv not in FIRST_CONV_MODES:
        raise ConfigError(f"model.first_conv={first_conv!r}; use one of "
                          f"{', '.join(FIRST_CONV_MODES)}.")
    if key in _PLAIN:
        return _create_plain(key, embedding_dim, in_chans, weights)
    constructor, weights_enum, conv_attr, head_attr = _BACKBONES[key]
    backbone = constructor(weights=None)
    weights = "none" if weights is None else weights
    wname = str(weights)
    full_state = None
    if wname.lower() == "imagenet":
        backbone.load_state_dict(_download_imagenet(weights_enum, key))
    elif wname.lower() != "none":
        state = _load_local(Path(wname))
        if _is_embedding_state(state):
            full_state = state
        else:
            _load_backbone_state(backbone, state, Path(wname), conv_attr, head_attr)

    num_features = getattr(backbone, head_attr).in_features
    setattr(backbone, head_attr, nn.Identity())
    _adapt_first_conv(backbone, conv_attr, in_chans, first_conv)
    model = EmbeddingNet(backbone, num_features, embedding_dim, key)
    if full_state is not None:
        try:
            model.load_state_dict(full_state)
        except RuntimeError as exc:
            raise ConfigError(f"model.weights={wname}: the checkpoint does not fit {key} with "
                              f"embedding_dim={embedding_dim}, in_chans={in_chans} "
                              f"({str(exc).splitlines()[0]}).") from None
    return model


def _create_plain(key: str, embedding_dim: int, in_chans: int,
                  weights: str | os.PathLike | None) -> EmbeddingNet:
    from radsearch.models.cnn import WIDTHS, PlainCNN

    backbone = PlainCNN(in_chans, WIDTHS[key])
    model = EmbeddingNet(backbone, backbone.num_features, embedding_dim, key)
    wname = "none" if weights is None else str(weights)
    if wname.lower() == "imagenet":
        raise ConfigError(f"model.weights=imagenet: {key} has no ImageNet weights (it is meant to "
                          "train from scratch on a CPU); use model.weights=none or a radsearch "
                          "checkpoint, or model.name=resnet18 for ImageNet weights.")
    if wname.lower() != "none":
        state = _load_local(Path(wname))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"model.weights={wname}: the checkpoint does not fit {key} with "
                              f"embedding_dim={embedding_dim}, in_chans={in_chans} "
                              f"({str(exc).splitlines()[0]}).") from None
    return model


def _download_imagenet(weights_enum, key: str) -> dict[str, torch.Tensor]:
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(f"model.weights=imagenet: cannot download the {key} ImageNet weights "
                          f"({reason}); we are probably offline. Use model.weights=PATH to a local "
                          "torchvision .pth file, or model.weights=none to train from scratch.") \
            from None


def _load_local(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"model.weights={path}: file not found. Give a torchvision state dict "
                          "(.pth), a radsearch checkpoint, 'imagenet' or 'none'.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of many kinds
        raise ConfigError(f"model.weights={path}: cannot read as a PyTorch state dict ({exc}).") \
            from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a radsearch training checkpoint
    if not isinstance(state, dict):
        raise ConfigError(f"model.weights={path}: expected a state dict, got "
                          f"{type(state).__name__}.")
    return state


def _is_embedding_state(state: dict) -> bool:
    return any(k.startswith("backbone.") for k in state) and "head.weight" in state


def _load_backbone_state(backbone: nn.Module, state: dict, path: Path, conv_attr: str,
                         head_attr: str) -> None:
    # The file's classifier is irrelevant (replaced by our head); keep everything else strict.
    state = {k: v for k, v in state.items() if not k.startswith(head_attr + ".")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head_attr + ".")]
    if missing or unexpected:
        raise ConfigError(f"model.weights={path}: not a state dict of this backbone (missing "
                          f"{missing[:3]}, unexpected {unexpected[:3]}).")


def _adapt_first_conv(backbone: nn.Module, conv_attr: str, in_chans: int, mode: str) -> None:
    parent_name, _, attr = conv_attr.rpartition(".")
    parent = backbone.get_submodule(parent_name) if parent_name else backbone
    old: nn.Conv2d = getattr(parent, attr)
    if in_chans == old.in_channels:
        return
    new = nn.Conv2d(in_chans, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                    padding=old.padding, bias=old.bias is not None)
    if mode == "average":
        with torch.no_grad():
            # Mean over RGB × 3 / in_chans: a grey image repeated on the new channels produces
            # exactly the activations of the RGB filters on that grey image repeated on RGB.
            mean = old.weight.mean(dim=1, keepdim=True) * (old.in_channels / in_chans)
            new.weight.copy_(mean.expand(-1, in_chans, -1, -1))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    setattr(parent, attr, new)
