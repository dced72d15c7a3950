"""Augmentations of the AdaTriplet paper (supplement Table 1a) as a torchvision.transforms.v2 chain.

Train: resize R×R → Gaussian-noise blend (p 0.5, gain ~ U(0, 0.3)) → rotation ±10° (p
``rotation_p``; the table says 1, the authors' code used 0.5) → random crop S → gamma (p 0.5,
γ ~ U(0.5, 1.5)) → normalise. Test: resize R×R → centre crop S → normalise. Inputs are greyscale
tensors [1, H, W] float32 in [0, 1] as produced by ``radsearch.images.read_image``.

torchvision has no noise *blend* (``v2.GaussianNoise`` adds noise, it does not mix the image with a
noise image) and no random gamma (only ``v2.functional.adjust_gamma``), so those two are small v2
transforms here; the rest, including the random application, is torchvision's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from radsearch.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """Per-dataset normalisation (mean/std of the [0, 1] grey levels)."""

    mean: float
    std: float


PRESETS: dict[str, Preset] = {
    "oai": Preset(mean=0.4996, std=0.3089),  # knee radiographs (OAI), from the paper
    "cxr": Preset(mean=0.5, std=0.5),        # chest radiographs (ChestX-ray14 / CheXpert / MIMIC)
}


class GaussianNoiseBlend(v2.Transform):
    """Mix the image with a Gaussian noise image: (1 − g)·x + g·noise, g ~ U(0, max_gain).

    The noise image is per-pixel N(0, 1) rescaled to [0, 1] by its own min and max, so the result
    stays in [0, 1]; one gain is drawn per call.
    """

    def __init__(self, max_gain: float = 0.3) -> None:
        super().__init__()
        if not 0.0 <= max_gain <= 1.0:
            raise ConfigError(f"noise blend max_gain={max_gain} must lie in [0, 1].")
        self.max_gain = max_gain

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"gain": float(torch.empty(()).uniform_(0.0, self.max_gain))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or not inpt.is_floating_point():
            return inpt
        gain = params["gain"]
        noise = torch.randn_like(inpt)
        low, high = torch.aminmax(noise)
        # gain · (noise − low) / (high − low), in place: one pass fewer over the image
        noise.sub_(low).mul_(gain / (high - low).clamp_min(1e-12))
        return noise.add_(inpt, alpha=1.0 - gain)


class RandomGamma(v2.Transform):
    """Gamma correction x ** γ with γ ~ U(low, high), via ``v2.functional.adjust_gamma``."""

    def __init__(self, gamma_range: tuple[float, float] = (0.5, 1.5)) -> None:
        super().__init__()
        low, high = gamma_range
        if not 0.0 < low <= high:
            raise ConfigError(f"gamma_range={gamma_range} must satisfy 0 < low <= high.")
        self.gamma_range = (float(low), float(high))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"gamma": float(torch.empty(()).uniform_(*self.gamma_range))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, torch.Tensor) and inpt.is_floating_point():
            inpt = inpt.clamp(0.0, 1.0)  # interpolation may leave tiny negatives; pow would NaN
        return F.adjust_gamma(inpt, params["gamma"])


class XrayTransform(v2.Compose):
    """The composed pipeline, remembering how it was built (the image cache reads ``resize``)."""

    def __init__(self, transforms: list, *, preset: str, train: bool, image_size: int,
                 resize: int) -> None:
        super().__init__(transforms)
        self.preset, self.train, self.image_size, self.resize = preset, train, image_size, resize

    def __repr__(self) -> str:
        steps = ", ".join(type(t).__name__ for t in self.transforms)
        return (f"XrayTransform(preset={self.preset!r}, train={self.train}, "
                f"resize={self.resize}, image_size={self.image_size}: {steps})")


def build_transforms(preset: str = "oai", train: bool = True, image_size: int = 256,
                     resize: int = 280, rotation_p: float = 0.5, rotation_degrees: float = 10.0,
                     noise_p: float = 0.5, noise_max_gain: float = 0.3, gamma_p: float = 0.5,
                     gamma_range: tuple[float, float] = (0.5, 1.5),
                     normalize: bool = True, mean: float | None = None,
                     std: float | None = None) -> XrayTransform:
    """The train or test pipeline of a preset: tensor [1, H, W] in [0, 1] → tensor [1, S, S].

    ``image_size`` is the crop S fed to the network, ``resize`` the square side R resized to first
    (R ≥ S). ``normalize=False`` keeps [0, 1] grey levels (for looking at augmented images).
    ``mean`` / ``std`` replace the preset's normalisation (e.g. statistics of the training split).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown transform preset {preset!r}; use one of "
                          f"{', '.join(PRESETS)}.")
    if image_size < 8 or resize < image_size:
        raise ConfigError(f"image_size={image_size}, resize={resize}: need 8 <= image_size <= "
                          "resize (the crop is taken from the resized image).")
    for name, p in (("rotation_p", rotation_p), ("noise_p", noise_p), ("gamma_p", gamma_p)):
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{name}={p} must be a probability in [0, 1].")
    stats = PRESETS[preset]
    if mean is not None or std is not None:
        stats = Preset(mean=stats.mean if mean is None else float(mean),
                       std=stats.std if std is None else float(std))
        if not stats.std > 0:
            raise ConfigError(f"normalisation std={stats.std} must be positive.")
    steps: list = [v2.Resize((resize, resize), antialias=True)]
    if train:
        steps += [
            v2.RandomApply([GaussianNoiseBlend(noise_max_gain)], p=noise_p),
            v2.RandomApply([v2.RandomRotation(rotation_degrees,
                                              interpolation=v2.InterpolationMode.BILINEAR)],
                           p=rotation_p),
            v2.RandomCrop(image_size),
            v2.RandomApply([RandomGamma(gamma_range)], p=gamma_p),
        ]
    else:
        steps.append(v2.CenterCrop(image_size))
    if normalize:
        steps.append(v2.Normalize(mean=[stats.mean], std=[stats.std]))
    return XrayTransform(steps, preset=preset, train=train, image_size=image_size, resize=resize)
