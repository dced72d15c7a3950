"""NIH ChestX-ray14 → Cohort, from ``Data_Entry_2017(_v2020).csv`` and the official split lists.

Traps handled: the header has 9 names for 11 fields (``OriginalImage[Width,Height]`` spans two), so
columns are taken by position after the names are checked; images are ordered by ``Follow-up #``,
not by the filename suffix (they disagree in ~21% of rows); ``time`` is the integer age difference
Patient Age − the patient's age at the first follow-up (the forensic "year" of the AdaTriplet
paper); identities stay text.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.cohort import Cohort
from radsearch.datasets._tables import locate_images
from radsearch.datasets.splits import carve_validation
from radsearch.errors import DataError, ManifestError

log = logging.getLogger(__name__)

# Name of the first seven fields (alternatives per field) as in the 2017 and v2020 releases.
_FIELDS = (("Image Index",), ("Finding Labels",), ("Follow-up #",), ("Patient ID",),
           ("Patient Age",), ("Patient Gender", "Patient Sex"), ("View Position",))
_COLUMNS = ("image_index", "labels", "follow_up", "patient", "age", "sex", "view")


def read_nih(data_entry: str | os.PathLike, images: str | os.PathLike | None = None,
             test_list: str | os.PathLike | None = None,
             train_list: str | os.PathLike | None = None,
             val_fraction: float = 0.0, seed: int = 0) -> Cohort:
    """Cohort of ChestX-ray14 from its metadata alone (images need not exist yet).

    ``images``: folder holding the PNGs (searched recursively, so ``images_001/images/…`` works);
    without it ``image`` is the bare file name. ``test_list`` / ``train_list``: the official
    ``test_list.txt`` / ``train_val_list.txt``; with one list the other rows get the other split,
    with none every row is kept with no split. ``val_fraction`` moves that share of the training
    patients to ``val`` (seeded).
    """
    path = Path(data_entry)
    table = _read_data_entry(path)
    table = table.sort_values(["patient_number", "follow_up"], kind="stable").reset_index(drop=True)

    first_age = table.groupby("patient", sort=False)["age"].transform("first")
    years = (table["age"] - first_age).astype(np.float64)

    split = _official_split(table["image_index"], test_list, train_list)
    split = carve_validation(table["patient"], split, val_fraction, seed)
    image = (table["image_index"] if images is None
             else locate_images(table["image_index"], images))
    cohort_table = pd.DataFrame({
        "image": image.to_numpy(dtype=object),
        "subject": table["patient"].to_numpy(dtype=object),
        "time": years.to_numpy(),
        "view": table["view"].to_numpy(dtype=object),
        "split": split.to_numpy(dtype=object),
        "labels": table["labels"].to_numpy(dtype=object),
        "follow_up": table["follow_up"].to_numpy(),
        "age": table["age"].to_numpy(),
        "sex": table["sex"].to_numpy(dtype=object),
    })
    return Cohort(cohort_table, root=None, source=str(path))


def _read_data_entry(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"{path}: NIH data entry file not found; pass "
                            "Data_Entry_2017_v2020.csv (or .csv.gz) from the ChestX-ray14 download.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the NIH data entry file ({exc}).") from exc
    header = [h.strip() for h in header]
    for position, names in enumerate(_FIELDS):
        if position >= len(header) or header[position] not in names:
            got = header[position] if position < len(header) else "nothing"
            raise ManifestError(f"{path}: field {position + 1} of the header is {got!r}, expected "
                                f"{' or '.join(map(repr, names))}; is this Data_Entry_2017.csv?")
    # Text columns as str; Follow-up # and Patient Age parsed by the C reader when they are plain
    # integers (the fast path), checked cell by cell only when they are not.
    text = {c: str for c in ("image_index", "labels", "patient", "sex", "view")}
    table = pd.read_csv(path, header=None, skiprows=1, usecols=range(len(_COLUMNS)),
                        names=list(_COLUMNS), dtype=text, keep_default_na=False, na_values=[],
                        encoding="utf-8-sig")
    empty = np.flatnonzero(((table["image_index"] == "") | (table["patient"] == "")).to_numpy())
    if len(empty):
        raise ManifestError(f"{path}, line {empty[0] + 2}: empty Image Index or Patient ID.")
    dup = np.flatnonzero(table["image_index"].duplicated().to_numpy())
    if len(dup):  # checked here, where rows still have their line numbers
        raise ManifestError(f"{path}, line {dup[0] + 2}: Image Index "
                            f"{table['image_index'].iloc[dup[0]]!r} is listed twice.")
    if not pd.api.types.is_integer_dtype(table["follow_up"]):
        table["follow_up"] = _integers(table["follow_up"].astype(str), path, "Follow-up #")
    if not pd.api.types.is_integer_dtype(table["age"]):
        # The first release wrote ages as "058Y"; v2020 writes 58.
        raw = table["age"].astype(str)
        table["age"] = _integers(raw.str.extract(r"^\s*(\d+)", expand=False).fillna(""), path,
                                 "Patient Age", raw=raw)
    table["patient_number"] = _integers(table["patient"], path, "Patient ID")
    return table


def _integers(text: pd.Series, path: Path, field: str, raw: pd.Series | None = None) -> pd.Series:
    values = pd.to_numeric(text, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        shown = (raw if raw is not None else text).iloc[bad[0]]
        raise ManifestError(f"{path}, line {bad[0] + 2}, field '{field}': {shown!r} is not a whole "
                            "number.")
    return values.astype(np.int64)


def read_image_list(path: str | os.PathLike) -> list[str]:
    """File names of an official list (``test_list.txt`` / ``train_val_list.txt``), one a line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: split list not found; pass test_list.txt / "
                            "train_val_list.txt from the ChestX-ray14 download.")
    with open(path, encoding="utf-8-sig") as fh:
        return [line.strip() for line in fh if line.strip()]


def _official_split(names: pd.Series, test_list, train_list) -> pd.Series:
    split = pd.Series("", index=names.index, dtype=object)
    lists = {name: (read_image_list(p), p) for name, p in (("test", test_list),
                                                           ("train", train_list)) if p is not None}
    for name, (listed, list_path) in lists.items():
        known = names.isin(listed)
        unknown = len(set(listed)) - int(known.sum())
        if known.sum() == 0:
            raise DataError(f"{list_path}: none of its {len(listed)} names is in the data entry "
                            "file; is it the list of this dataset?")
        if unknown:
            log.warning("%s: %d listed image(s) are not in the data entry file", list_path, unknown)
        split[known] = name
    if len(lists) == 1:  # the official lists partition the data set
        (given,) = lists
        split[split == ""] = "train" if given == "test" else "test"
    elif len(lists) == 2:
        in_both = names.isin(lists["test"][0]) & names.isin(lists["train"][0])
        if in_both.any():
            raise DataError(f"{names[in_both].iloc[0]} is in both {test_list} and {train_list}; "
                            "the lists must be disjoint.")
        unlisted = int((split == "").sum())
        if unlisted:
            log.warning("%d image(s) are in neither list; they are kept with no split", unlisted)
    return split
