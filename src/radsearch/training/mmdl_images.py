"""Decoded training images for the MMDL trainer: in RAM for a small cohort, a file-backed uint8
array (a memory-mapped ``.npy``) above a memory budget — MIMIC-CXR at 224 px is ~11 GB.

The file is built once per (image list with each file's size and mtime, image size): rows are
decoded by the same :func:`load_images` as the in-RAM path, in chunks,
into a temporary that is renamed into place (:func:`radsearch.io.atomic_path`), so an interrupted
build never leaves a half-written cache. It is then opened read-only (``np.load(mmap_mode="r")``):
batches index it exactly like the in-RAM array (``images[rows]``) and the OS page cache keeps what
fits. A damaged or mismatching file is rebuilt (by a rename, so a process still mapping the old
file keeps reading it; never truncate the file in place while a run maps it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from radsearch.cohort import Cohort
from radsearch.data.cache import resize_unit_image
from radsearch.errors import ConfigError
from radsearch.images import read_image
from radsearch.io import atomic_path
from radsearch.training.mmdl_options import MMDLImages

CACHE_VERSION = 1  # bump when load_images' decoding or resizing changes
CHUNK = 512        # rows decoded between writes


def load_images(cohort: Cohort, size: int) -> np.ndarray:
    """Every image decoded once, resized to size × size, as uint8 [N, size, size]."""
    out = np.empty((len(cohort), size, size), np.uint8)
    for i, path in enumerate(cohort.image_paths()):
        out[i] = np.round(resize_unit_image(read_image(path), size) * 255.0).astype(np.uint8)
    return out


def cache_key(cohort: Cohort, size: int) -> str:
    """Hash of the image size and every image's resolved path, byte size and mtime."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}|{size}".encode())
    for path in cohort.image_paths():
        resolved = path.resolve()
        stat = resolved.stat()
        digest.update(f"|{resolved}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def cache_folder(cohort: Cohort, options: MMDLImages) -> Path:
    if options.cache_dir:
        return Path(options.cache_dir)
    if cohort.root is None:
        raise ConfigError("images.cache_dir is not set and the cohort has no manifest folder; "
                          "give images.cache_dir=PATH for the file-backed image array.")
    return Path(cohort.root) / ".radsearch-cache" / "mmdl-images"


def _open(path: Path, shape: tuple[int, int, int]) -> np.ndarray | None:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return array if array.shape == shape and array.dtype == np.uint8 else None


def file_backed_images(cohort: Cohort, size: int, folder: str | Path, log=print) -> np.ndarray:
    """Read-only memory-mapped uint8 [N, size, size], decoded into ``folder`` on first use."""
    shape = (len(cohort), size, size)
    path = Path(folder) / f"images-{size}px-{cache_key(cohort, size)[:20]}.npy"
    if path.is_file():
        array = _open(path, shape)
        if array is not None:
            return array
        log(f"{path}: damaged or stale image cache; decoding again")
    log(f"decoding {len(cohort)} images once into {path} ({np.prod(shape) / 2**30:.2f} GiB)")
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        for start in range(0, len(cohort), CHUNK):
            rows = np.arange(start, min(start + CHUNK, len(cohort)))
            out[rows] = load_images(cohort.subset(rows), size)
        out.flush()
        del out
    array = _open(path, shape)
    if array is None:  # pragma: no cover - the file was just written
        raise ConfigError(f"{path}: the image cache could not be read back.")
    return array


def training_images(cohort: Cohort, size: int, options: MMDLImages | None = None,
                    log=print) -> np.ndarray:
    """In-RAM array when it fits ``options.ram_budget_gb`` (or ``mode=ram``), else file-backed."""
    options = options or MMDLImages()
    nbytes = len(cohort) * size * size
    if options.mode == "ram" or (options.mode == "auto"
                                 and nbytes <= options.ram_budget_gb * 2**30):
        return load_images(cohort, size)
    return file_backed_images(cohort, size, cache_folder(cohort, options), log=log)
