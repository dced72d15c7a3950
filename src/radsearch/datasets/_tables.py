"""Reading the dataset's own metadata tables with errors that name the file and the missing column.

Everything is read as text first: identities such as MIMIC's 8-digit ``subject_id`` or OAI's 7-digit
``ID`` must never pass through float.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from radsearch.errors import ManifestError


def read_text_table(path: str | os.PathLike, what: str, sep: str | None = ",") -> pd.DataFrame:
    """Read a CSV / pipe-separated file (``.gz`` allowed), every cell a string ('' = empty)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: {what} not found; check the path (see docs/data.md for the "
                            "files each adapter expects).")
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[],
                            engine="c" if sep is not None and len(sep) == 1 else "python")
    except Exception as exc:  # pandas raises many types for a broken file
        raise ManifestError(f"{path}: cannot read the {what} ({exc}).") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table


def require_columns(table: pd.DataFrame, columns: Iterable[str], path: str | os.PathLike,
                    what: str) -> None:
    """Raise a ManifestError listing the columns a dataset file lacks and the ones it has."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = ", ".join(map(str, table.columns[:20])) or "no columns"
        raise ManifestError(f"{path}: the {what} lacks column(s) {', '.join(missing)} (found: "
                            f"{found}). Is this the right file?")


def find_column(table: pd.DataFrame, candidates: Iterable[str]) -> str | None:
    """The first column whose name matches one of ``candidates``, ignoring case and spaces."""
    normal = {str(c).replace(" ", "").lower(): c for c in table.columns}
    for name in candidates:
        hit = normal.get(name.replace(" ", "").lower())
        if hit is not None:
            return hit
    return None


def image_column(relative: pd.Series, images: str | os.PathLike | None) -> pd.Series:
    """Image paths: the dataset-relative path, under ``images`` when a folder is given."""
    if images is None:
        return relative.astype(str)
    # Absolute, so the folder means the same whatever the manifest's own folder is.
    prefix = os.fspath(Path(images).expanduser().resolve())
    return prefix + os.sep + relative.astype(str)


def locate_images(names: pd.Series, folder: str | os.PathLike) -> pd.Series:
    """Paths of files named ``names`` anywhere under ``folder`` (e.g. NIH's images_001/images/).

    The folder is walked once; names not found (or a folder that does not exist yet, when splits
    are planned before the download) get the flat path ``folder/name``, which `radsearch cohort
    validate --check-files` reports as missing.
    """
    folder = Path(folder).expanduser().resolve()
    found: dict[str, str] = {}
    if folder.is_dir():
        wanted = set(names)
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name in wanted and name not in found:
                    found[name] = os.path.join(dirpath, name)
    flat = os.fspath(folder) + os.sep
    return pd.Series([found.get(n, flat + n) for n in names], index=names.index, dtype=object)


def schema_first(table: pd.DataFrame) -> pd.DataFrame:
    """Columns in manifest order: image, subject, time, side, view, study, split, labels, report,
    then the extra columns as they came."""
    order = ("image", "subject", "time", "side", "view", "study", "split", "labels", "report")
    first = [c for c in order if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]
