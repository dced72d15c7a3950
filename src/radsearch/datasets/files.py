"""The optional check that a cohort's image files exist (adapters never need the images)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from radsearch.cohort import Cohort


def missing_images(cohort: Cohort, progress: Callable[[int, int], None] | None = None) -> list[int]:
    """Row positions whose image file does not exist (or is empty)."""
    missing = []
    paths = cohort.image_paths()
    for row, path in enumerate(paths):
        if not _usable(path):
            missing.append(row)
        if progress is not None and (row % 1000 == 0 or row == len(paths) - 1):
            progress(row + 1, len(paths))
    return missing


def _usable(path: Path) -> bool:
    try:
        return path.stat().st_size > 0 and path.is_file()
    except OSError:
        return False
