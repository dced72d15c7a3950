"""The optional check of a cohort's image files (adapters never need the images).

``missing_images`` only stats the files; ``unreadable_images`` opens every one and checks its
structure (:func:`radsearch.images.check_image`: header, PNG chunk checksums, JPEG end marker,
DICOM pixel-data length), or decodes it completely with ``full=True``, in worker threads (file
reads and decoders release the GIL, which matters on network shares).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from radsearch.cohort import Cohort
from radsearch.images import check_image
from radsearch.validation import check_count

Progress = Callable[[int, int], None]


def missing_images(cohort: Cohort, progress: Progress | None = None) -> list[int]:
    """Row positions whose image file does not exist (or is empty)."""
    missing = []
    paths = cohort.image_paths()
    for row, path in enumerate(paths):
        if not _usable(path):
            missing.append(row)
        if progress is not None and (row % 1000 == 0 or row == len(paths) - 1):
            progress(row + 1, len(paths))
    return missing


def unreadable_images(cohort: Cohort, workers: int = 4, full: bool = False,
                      progress: Progress | None = None) -> list[tuple[int, str]]:
    """(row, one-line reason) for every image file that is missing, empty, truncated or no image.

    ``full=True`` decodes every pixel with :func:`radsearch.images.read_image` (what training
    does; slower); the default checks headers and structure only.
    """
    check_count(workers, 1, "workers")
    paths = cohort.image_paths()
    problems: list[tuple[int, str]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: check_image(p, full=full), paths, chunksize=64)
        for row, reason in enumerate(results):
            if reason is not None:
                problems.append((row, reason))
            if progress is not None and (row % 256 == 0 or row == len(paths) - 1):
                progress(row + 1, len(paths))
    return problems


def _usable(path: Path) -> bool:
    try:
        return path.stat().st_size > 0 and path.is_file()
    except OSError:
        return False
