"""Index images → PNG for the page: thumbnails and full-size views, grey levels as indexed.

Images are decoded by :func:`radsearch.images.read_image`, so a DICOM is shown through its own
VOI window (window centre/width or VOI LUT) and MONOCHROME1 is inverted, exactly as the model saw
it. Rendered PNGs are cached in memory (LRU) because the page asks for the same candidates again.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

THUMBNAIL_PX = 256
FULL_PX = 2048


def to_png(image: np.ndarray, max_side: int) -> bytes:
    """float [0, 1] (H, W) → 8-bit greyscale PNG no larger than ``max_side`` on its long side."""
    pil = Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), mode="L")
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    pil.save(out, format="PNG", optimize=False)
    return out.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class PngCache:
    """Thread-safe LRU of rendered PNGs keyed by (item id, size), bounded in bytes."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[int, int], render) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        png = render()
        with self._lock:
            self.misses += 1
            if key not in self._items:
                self._items[key] = png
                self._bytes += len(png)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return png
