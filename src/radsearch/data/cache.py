"""On-disk cache of decoded, resized images, so epochs do not re-decode 1024² PNGs or DICOMs.

One ``.npy`` (uint16, 1/65535 grey-level steps) per (file, size): the key hashes the resolved path,
the file's modification time and byte size and the target size, so an edited or replaced image is
decoded again. Entries are written atomically; several DataLoader workers may fill the cache at
once. A damaged entry is treated as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from radsearch.images import read_image, require_min_side
from radsearch.io import atomic_open

CACHE_VERSION = 1  # bump when the stored format or the resizing changes


def resize_unit_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a float32 [0, 1] (H, W) image to size × size exactly as ``v2.Resize`` does."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    resized = F.resize(tensor, [size, size], antialias=True)
    return resized[0].clamp_(0.0, 1.0).numpy()


class ImageCache:
    """Decoded images resized to ``size`` × ``size`` (``None``: original size) under ``folder``."""

    def __init__(self, folder: str | os.PathLike, size: int | None = 280) -> None:
        self.folder = Path(folder)
        self.size = size

    def key(self, path: Path) -> str:
        """Cache key of the file as it is now (path, mtime, byte size) and the target size."""
        resolved = path.resolve()
        stat = resolved.stat()
        text = f"v{CACHE_VERSION}|{resolved}|{stat.st_mtime_ns}|{stat.st_size}|{self.size}"
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def entry(self, path: Path) -> Path:
        key = self.key(path)
        return self.folder / key[:2] / f"{key}.npy"

    def read(self, path: str | os.PathLike, min_side: int | None = None) -> np.ndarray:
        """The image as float32 (H, W) in [0, 1], decoding and storing it on a miss.

        ``min_side``: an original smaller than the network input is refused on the miss, before
        anything is stored, so a cached entry always comes from a large-enough original."""
        path = Path(path)
        if not path.is_file():
            return read_image(path)  # raises the ImageReadError that names the file
        entry = self.entry(path)
        if entry.is_file():
            try:
                stored = np.load(entry, allow_pickle=False)
                if stored.dtype == np.uint16 and stored.ndim == 2:
                    return stored.astype(np.float32) / np.float32(65535.0)
            except (OSError, ValueError, EOFError):
                pass  # damaged entry: decode again and overwrite it
        image = require_min_side(read_image(path), path, min_side)
        if self.size is not None:
            image = resize_unit_image(image, self.size)
        stored = np.rint(image * 65535.0).astype(np.uint16)
        with atomic_open(entry, "wb") as fh:
            np.save(fh, stored, allow_pickle=False)
        return stored.astype(np.float32) / np.float32(65535.0)
