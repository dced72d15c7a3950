"""Decoded images held in memory as uint8 and augmented a whole batch at a time.

A CPU training step on small images is cheap enough that per-image Python transforms (decode,
resize, noise, rotate, crop, gamma: one torchvision chain per image) become a large share of it.
Here every image of a split is decoded and resized to R × R once (``MemoryImages``: uint8, right
sides already mirrored), and :class:`BatchAugment` applies the paper's augmentations (supplement
Table 1a, as in :func:`radsearch.data.build_transforms`) to a [B, R, R] batch with a few tensor
operations: Gaussian-noise blend (p 0.5, gain ~ U(0, 0.3)), rotation ±10° (p 0.5) and the random
S × S crop as one ``grid_sample``, gamma (p 0.5, γ ~ U(0.5, 1.5)), normalisation. The test-time
path is the centre crop and normalisation of ``build_transforms(train=False)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from radsearch.cohort import Cohort
from radsearch.data.cache import resize_unit_image
from radsearch.data.dataset import to_unit_float
from radsearch.errors import ConfigError, DataError


class MemoryImages:
    """Every row of ``cohort`` decoded, resized to ``resize`` × ``resize``, as uint8 [N, R, R].

    ``images``: optional in-memory arrays aligned with the rows (used instead of the files).
    ``mirror_right``: rows whose ``side`` is ``R`` are flipped left-right once, here.
    ``min_side``: files smaller than the network input crop are refused, naming the file.
    """

    def __init__(self, cohort: Cohort, resize: int, mirror_right: bool = False,
                 images: Sequence[np.ndarray] | None = None, min_side: int | None = None) -> None:
        from radsearch.images import read_image, require_min_side

        if mirror_right and not cohort.has("side"):
            raise DataError(f"{cohort.source}: mirror_right needs a 'side' column (L/R); add it "
                            "or set data.mirror_right=false.")
        mirror = (cohort.table["side"] == "R").to_numpy() if mirror_right else \
            np.zeros(len(cohort), dtype=bool)
        paths = cohort.image_paths() if images is None else None
        pixels = np.empty((len(cohort), resize, resize), dtype=np.uint8)
        for i in range(len(cohort)):
            unit = require_min_side(read_image(paths[i]), paths[i], min_side) if images is None \
                else to_unit_float(images[i], where=f"in-memory image of row {i}")
            if unit.shape != (resize, resize):
                unit = resize_unit_image(unit, resize)
            if mirror[i]:
                unit = unit[:, ::-1]
            pixels[i] = np.rint(unit * 255.0)
        self.pixels = torch.from_numpy(pixels)
        self.labels = torch.from_numpy(cohort.subject_codes().astype(np.int64))
        self.resize = resize

    def __len__(self) -> int:
        return len(self.pixels)

    def mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation of the grey levels in [0, 1] (for ``normalize=auto``)."""
        values = self.pixels.double() / 255.0
        return float(values.mean()), float(values.std())


def centre_offset(size: int, crop: int) -> int:
    """Top/left offset of torchvision's ``CenterCrop``: round((size − crop) / 2)."""
    return int(round((size - crop) / 2.0))


def rotate_crop(x: torch.Tensor, angle: torch.Tensor, offsets: torch.Tensor,
                crop: int) -> torch.Tensor:
    """Rotate each image about its centre by ``angle`` (radians, counter-clockwise as
    torchvision's ``rotate``), then take the ``crop`` × ``crop`` window whose top-left corner is
    ``offsets`` (x, y) — one affine map from output pixel centres to input coordinates
    (``align_corners=False``), zeros outside the image, bilinear."""
    b, _, size, _ = x.shape
    scale = crop / size
    shift = (crop + 2 * offsets) / size - 1.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    theta = torch.cat([rot * scale, rot @ shift.unsqueeze(2)], dim=2)
    grid = F.affine_grid(theta, [b, 1, crop, crop], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class BatchAugment:
    """uint8 [B, R, R] → normalised float [B, 1, S, S]; random per image when ``train``."""

    def __init__(self, image_size: int, mean: float, std: float, *, train: bool = True,
                 rotation_p: float = 0.5, rotation_degrees: float = 10.0, noise_p: float = 0.5,
                 noise_max_gain: float = 0.3, gamma_p: float = 0.5,
                 gamma_range: tuple[float, float] = (0.5, 1.5)) -> None:
        if std <= 0 or not math.isfinite(std):
            raise ConfigError(f"normalisation std={std}: must be a positive number (are all the "
                              "training images blank?).")
        self.image_size, self.mean, self.std, self.train = image_size, mean, std, train
        self.rotation_p, self.rotation_degrees = rotation_p, rotation_degrees
        self.noise_p, self.noise_max_gain = noise_p, noise_max_gain
        self.gamma_p, self.gamma_range = gamma_p, gamma_range

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        size = pixels.shape[-1]
        crop = self.image_size
        if crop > size:
            raise ConfigError(f"data.image_size={crop} is larger than the stored images "
                              f"({size}²); set data.resize >= data.image_size.")
        x = pixels.float().div_(255.0).unsqueeze(1)
        if not self.train:
            top = centre_offset(size, crop)
            x = x[:, :, top:top + crop, top:top + crop]
            return ((x - self.mean) / self.std).contiguous()
        b = x.shape[0]
        # Gaussian-noise blend: (1 − g)·x + g·noise01, noise rescaled to [0, 1] per image
        gain = torch.rand(b) * self.noise_max_gain * (torch.rand(b) < self.noise_p)
        noise = torch.randn_like(x)
        low = noise.amin(dim=(1, 2, 3), keepdim=True)
        high = noise.amax(dim=(1, 2, 3), keepdim=True)
        noise = (noise - low) / (high - low).clamp_min(1e-12)
        g = gain.view(b, 1, 1, 1)
        x = x * (1.0 - g) + g * noise
        angle = (torch.rand(b) * 2 - 1) * math.radians(self.rotation_degrees)
        angle = angle * (torch.rand(b) < self.rotation_p)
        offsets = torch.randint(0, size - crop + 1, (b, 2)).float()   # (x, y) top-left
        x = rotate_crop(x, angle, offsets, crop)
        # gamma x ** γ
        low_g, high_g = self.gamma_range
        gamma = low_g + torch.rand(b) * (high_g - low_g)
        gamma = torch.where(torch.rand(b) < self.gamma_p, gamma, torch.ones(b))
        x = x.clamp_(0.0, 1.0).pow_(gamma.view(b, 1, 1, 1))
        return (x - self.mean) / self.std
