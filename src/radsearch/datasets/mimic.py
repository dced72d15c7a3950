"""MIMIC-CXR-JPG (+ MIMIC-CXR reports) → Cohort.

Files: ``mimic-cxr-2.0.0-metadata.csv(.gz)`` (one row per image), optionally ``-split.csv.gz``
(train / validate / test, patient-disjoint), ``-chexpert.csv.gz`` or ``-negbio.csv.gz`` (14 labels
per study) and the report folder ``files/p1X/p{subject_id}/s{study_id}.txt``. ``subject_id`` is an
8-digit identity kept as text. Dates are shifted per patient, so only intervals are used: ``time`` =
(StudyDate + StudyTime − the patient's first study) in days / 365.25.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.cohort import Cohort
from radsearch.datasets._tables import image_column, read_text_table, require_columns
from radsearch.datasets.labels import (CHEXPERT_LABELS, check_policy, label_states,
                                        labels_under_policy)
from radsearch.datasets.reports import report_text
from radsearch.errors import ManifestError

log = logging.getLogger(__name__)
_SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def read_mimic(metadata: str | os.PathLike, split: str | os.PathLike | None = None,
               labels: str | os.PathLike | None = None, reports: str | os.PathLike | None = None,
               images: str | os.PathLike | None = None, policy: str = "u-zeros",
               keep_raw_labels: bool = False) -> Cohort:
    """Cohort of MIMIC-CXR-JPG from its metadata (images and reports need not be present).

    ``labels``: the chexpert or negbio CSV (per study); studies it lacks get empty labels.
    ``reports``: folder that contains ``files/`` of MIMIC-CXR reports; FINDINGS and IMPRESSION go to
    ``report`` (missing report files leave it empty). ``images``: folder that contains ``files/`` of
    MIMIC-CXR-JPG; without it ``image`` is the relative ``files/p1X/…/{dicom_id}.jpg``.
    """
    policy = check_policy(policy)
    meta_path = Path(metadata)
    meta = read_text_table(meta_path, "MIMIC-CXR metadata CSV")
    require_columns(meta, ("dicom_id", "subject_id", "study_id", "StudyDate", "StudyTime"),
                    meta_path, "MIMIC-CXR metadata CSV")
    meta = meta.assign(subject_id=_ids(meta["subject_id"]), study_id=_ids(meta["study_id"]))
    when = _study_datetime(meta, meta_path)
    first = when.groupby(meta["subject_id"]).transform("min")
    years = (when - first).dt.total_seconds() / (365.25 * 86400.0)

    relative = ("files/p" + meta["subject_id"].str[:2] + "/p" + meta["subject_id"] + "/s"
                + meta["study_id"] + "/" + meta["dicom_id"] + ".jpg")
    table = pd.DataFrame({
        "image": image_column(relative, images),
        "subject": meta["subject_id"],
        "time": years.to_numpy(dtype=np.float64),
        "view": meta["ViewPosition"] if "ViewPosition" in meta else "",
        "study": meta["study_id"],
        "dicom_id": meta["dicom_id"],
    })
    if split is not None:
        table["split"] = _read_split(Path(split), meta)
    if labels is not None:
        table = _add_labels(table, Path(labels), policy, keep_raw_labels)
    if reports is not None:
        table["report"] = _read_reports(Path(reports), meta)
    order = np.lexsort((table["time"].to_numpy(), table["subject"].to_numpy(dtype=str)))
    return Cohort(table.iloc[order].reset_index(drop=True), root=None, source=str(meta_path))


def _ids(column: pd.Series) -> pd.Series:
    # "10000032" and, from a spreadsheet round trip, "10000032.0": keep the digits, never a float.
    return column.str.strip().str.replace(r"\.0+$", "", regex=True)


def _study_datetime(meta: pd.DataFrame, path: Path) -> pd.Series:
    """StudyDate (YYYYMMDD) + StudyTime (HHMMSS.fff, leading zeros often dropped: 94210.0)."""
    date = meta["StudyDate"].str.strip().str.replace(r"\.0+$", "", regex=True)
    time_text = meta["StudyTime"].str.strip()
    parts = time_text.str.partition(".")
    whole, fraction = parts[0], parts[2]
    hhmmss = whole.where(whole != "", "0").str.zfill(6)
    stamp = pd.to_datetime(date + hhmmss + "." + fraction.where(fraction != "", "0"),
                           format="%Y%m%d%H%M%S.%f", errors="coerce")
    bad = np.flatnonzero(stamp.isna().to_numpy())
    if len(bad):
        row = int(bad[0])
        raise ManifestError(f"{path}, line {row + 2}: StudyDate {meta['StudyDate'].iloc[row]!r} / "
                            f"StudyTime {meta['StudyTime'].iloc[row]!r} is not a date "
                            "(YYYYMMDD) and time (HHMMSS[.fff]).")
    return stamp


def _read_split(path: Path, meta: pd.DataFrame) -> pd.Series:
    table = read_text_table(path, "MIMIC-CXR split CSV")
    require_columns(table, ("dicom_id", "split"), path, "MIMIC-CXR split CSV")
    names = table["split"].str.strip().str.lower()
    unknown = ~names.isin(list(_SPLITS))
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise ManifestError(f"{path}, line {row + 2}, column 'split': {table['split'].iloc[row]!r} "
                            "is not train, validate or test.")
    by_image = pd.Series(names.map(_SPLITS).to_numpy(), index=table["dicom_id"].str.strip())
    split = meta["dicom_id"].map(by_image[~by_image.index.duplicated()])
    if split.isna().any():
        log.warning("%s: %d image(s) of the metadata have no split; kept with none", path,
                    int(split.isna().sum()))
    return split.fillna("")


def _add_labels(table: pd.DataFrame, path: Path, policy: str, keep_raw: bool) -> pd.DataFrame:
    raw = read_text_table(path, "MIMIC-CXR label CSV")
    require_columns(raw, ("study_id", *CHEXPERT_LABELS), path, "MIMIC-CXR label CSV (chexpert or "
                    "negbio)")
    raw["study_id"] = _ids(raw["study_id"])
    raw = raw.drop_duplicates("study_id")
    labels, uncertain = labels_under_policy(label_states(raw, str(path)), policy)
    per_study = pd.DataFrame({"labels": labels, "uncertain": uncertain}, index=raw["study_id"])
    if keep_raw:
        for name in CHEXPERT_LABELS:
            per_study[name] = pd.to_numeric(raw[name], errors="coerce").to_numpy()  # blank → NaN
    if policy != "ignore":
        per_study = per_study.drop(columns="uncertain")
    joined = table.join(per_study, on="study")
    missing = joined["labels"].isna()
    if missing.any():
        log.warning("%s: %d image(s) belong to studies without labels; their labels are empty",
                    path, int(missing.sum()))
    return joined.fillna({c: "" for c in per_study.columns})


def _read_reports(folder: Path, meta: pd.DataFrame) -> list[str]:
    if not folder.is_dir():
        raise ManifestError(f"{folder}: report folder not found; pass the folder that holds "
                            "files/p10/p10000032/s50414267.txt (MIMIC-CXR reports).")
    texts: dict[tuple[str, str], str] = {}
    missing = 0
    for subject, study in set(zip(meta["subject_id"], meta["study_id"])):
        path = folder / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            missing += 1
            text = ""
        texts[subject, study] = report_text(text)
    if missing:
        log.warning("%s: %d study report(s) not found; their report is empty", folder, missing)
    return [texts[key] for key in zip(meta["subject_id"], meta["study_id"])]
