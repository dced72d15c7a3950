"""A torch Dataset over a Cohort: one item per manifest row, with the identity as the label.

Pixels come from the files named in the manifest (optionally through an on-disk cache of resized
images) or from an in-memory array aligned with the rows (the synthetic generator's memory mode,
so tests need no files). A missing or broken file raises ``ImageReadError`` naming it, mid-epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from radsearch.cohort import Cohort
from radsearch.data.cache import ImageCache
from radsearch.errors import DataError
from radsearch.images import read_image, require_min_side


def to_unit_float(image: np.ndarray, where: str = "image") -> np.ndarray:
    """uint8 ÷ 255, uint16 ÷ 65535, float kept (must lie in [0, 1]) → float32 (H, W)."""
    array = np.asarray(image)
    if array.ndim != 2:
        raise DataError(f"{where}: expected a 2-D greyscale array, got shape {array.shape}.")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=True)  # never alias the caller's array
        low, high = float(array.min()), float(array.max())
        if not (0.0 <= low and high <= 1.0):
            raise DataError(f"{where}: float pixels span [{low:.3g}, {high:.3g}], expected [0, 1]; "
                            "pass uint8/uint16 arrays or rescale to [0, 1].")
        return array
    raise DataError(f"{where}: pixel dtype {array.dtype} not supported; use uint8, uint16 or "
                    "float in [0, 1].")


class CohortDataset(Dataset):
    """Item ``i`` = (image tensor [1, S, S] float32, subject code (int64), row index ``i``).

    ``transform`` maps a [1, H, W] float tensor in [0, 1] to the network input (see
    ``build_transforms``); ``None`` returns the decoded image. ``images``: optional in-memory
    sequence (uint8 / uint16 / float [0, 1] arrays) aligned with the cohort rows, used instead of
    the files. ``mirror_right``: flip rows whose ``side`` is ``R`` horizontally, so every knee looks
    like a left one (OAI). ``cache_dir``: keep decoded images resized to ``cache_size`` (default:
    the transform's ``resize``, else the original size) as ``.npy`` files there (files only;
    ignored with ``images``).
    """

    def __init__(self, cohort: Cohort,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 images: Sequence[np.ndarray] | np.ndarray | None = None,
                 mirror_right: bool = False, cache_dir: str | os.PathLike | None = None,
                 cache_size: int | None = None) -> None:
        self.cohort = cohort
        self.transform = transform
        self.images = images
        if images is not None and len(images) != len(cohort):
            raise DataError(f"{len(images)} in-memory images for a cohort of {len(cohort)} rows "
                            f"({cohort.source}); pass one image per manifest row, in row order.")
        self.subject_codes = cohort.subject_codes()
        self.paths = cohort.image_paths() if images is None else None
        if mirror_right:
            if not cohort.has("side"):
                raise DataError(f"{cohort.source}: mirror_right needs a 'side' column (L/R); "
                                "add it or pass mirror_right=False.")
            self.mirror = (cohort.table["side"] == "R").to_numpy()
        else:
            self.mirror = np.zeros(len(cohort), dtype=bool)
        # the crop fed to the network: an image smaller than it would be upsampled into mush
        self.min_side = getattr(transform, "image_size", None)
        self.cache: ImageCache | None = None
        if cache_dir is not None and images is None:
            size = cache_size if cache_size is not None else getattr(transform, "resize", None)
            self.cache = ImageCache(cache_dir, size=size)

    def __len__(self) -> int:
        return len(self.cohort)

    def load(self, index: int) -> np.ndarray:
        """Grey levels of row ``index`` as float32 (H, W) in [0, 1], before any transform."""
        if self.images is not None:
            return to_unit_float(self.images[index], where=f"in-memory image of row {index}")
        path = self.paths[index]
        if self.cache is not None:   # the cache stores resized copies: check the original once
            return self.cache.read(path, min_side=self.min_side)
        return require_min_side(read_image(path), path, self.min_side)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} outside a cohort of {len(self)} rows")
        image = torch.from_numpy(np.ascontiguousarray(self.load(index)))[None]
        if self.mirror[index]:
            image = torch.flip(image, dims=[-1])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.subject_codes[index]), index
