"""A folder of DICOM radiographs (DX / CR) → Cohort, reading a few header tags per file.

Only the tags below are parsed (``stop_before_pixels`` + ``specific_tags``), so a large archive is
indexed without decoding pixels. Identity = PatientID; ``time`` = (StudyDate+StudyTime, else
AcquisitionDateTime, else AcquisitionDate/ContentDate) − the patient's first study, in days /
365.25. PatientName and other PHI are never read into the cohort or the log; logs carry counts only
(paths may contain names). ``subject_salt`` replaces PatientID by a salted SHA-256 pseudonym.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError

from radsearch.cohort import Cohort
from radsearch.datasets._tables import schema_first
from radsearch.errors import DataError, ManifestError

log = logging.getLogger(__name__)

TAGS = ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "StudyDate", "StudyTime",
        "AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime",
        "ViewPosition", "ImageLaterality", "Laterality", "BodyPartExamined", "Modality")
_SKIP_SUFFIXES = (".txt", ".csv", ".json", ".xml", ".png", ".jpg", ".jpeg", ".md", ".gz", ".zip")


def read_dicom_folder(folder: str | os.PathLike, subject_salt: str | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      workers: int = 4) -> Cohort:
    """Cohort of every DICOM file under ``folder`` (any extension; non-DICOM files are skipped).

    Files without PatientID or without any date are skipped and counted in the log. ``workers``
    threads read headers concurrently (it helps on network shares, where reading is I/O bound).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder}: DICOM folder not found.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() not in _SKIP_SUFFIXES and p.name.upper() != "DICOMDIR")
    rows, skipped = [], {"not DICOM": 0, "no PatientID": 0, "no date": 0}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (row, reason) in enumerate(pool.map(_read_header, files), 1):
            if row is not None:
                rows.append(row)
            else:
                skipped[reason] += 1
            if progress is not None:
                progress(done, len(files))
    for reason, count in skipped.items():
        if count:
            log.warning("%s: %d file(s) skipped (%s)", folder, count, reason)
    if not rows:
        raise DataError(f"{folder}: no usable DICOM file among {len(files)} file(s) "
                        f"({', '.join(f'{v} {k}' for k, v in skipped.items() if v) or 'none'}).")
    table = pd.DataFrame(rows)
    if subject_salt is not None:
        table["subject"] = [pseudonym(s, subject_salt) for s in table["subject"]]
    first = table.groupby("subject")["when"].transform("min")
    table["time"] = (table["when"] - first).dt.total_seconds() / (365.25 * 86400.0)
    table = table.sort_values(["subject", "when", "image"], kind="stable").drop(columns="when")
    return Cohort(schema_first(table.reset_index(drop=True)), root=None, source=str(folder))


def pseudonym(patient_id: str, salt: str) -> str:
    """Stable salted pseudonym of a PatientID (16 hex digits)."""
    return hashlib.sha256(f"{salt}\0{patient_id}".encode()).hexdigest()[:16]


def _read_header(path: Path) -> tuple[dict | None, str]:
    """The row of one file, or None and the reason it is skipped."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(TAGS))
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError):
        return None, "not DICOM"
    subject = str(ds.get("PatientID", "") or "").strip()
    if not subject:
        return None, "no PatientID"
    when = _acquired(ds)
    if when is None:
        return None, "no date"
    side = str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "").strip().upper()
    return {
        "image": str(path),
        "subject": subject,
        "when": pd.Timestamp(when),
        "view": str(ds.get("ViewPosition", "") or "").strip(),
        "side": side if side in ("L", "R") else "",
        "study": str(ds.get("StudyInstanceUID", "") or ""),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "") or ""),
        "body_part": str(ds.get("BodyPartExamined", "") or "").strip(),
        "modality": str(ds.get("Modality", "") or "").strip(),
    }, ""


def _acquired(ds: pydicom.Dataset) -> dt.datetime | None:
    """When the image was taken: study date+time, else acquisition / content date(+time)."""
    for date_tag, time_tag in (("StudyDate", "StudyTime"), ("AcquisitionDateTime", None),
                               ("AcquisitionDate", "AcquisitionTime"),
                               ("ContentDate", "ContentTime")):
        text = str(ds.get(date_tag, "") or "").strip()
        if not text:
            continue
        if time_tag is None:  # DT: YYYYMMDDHHMMSS.FFFFFF&ZZXX, any trailing part optional
            stamp = _parse(text.split("+")[0].split("-")[0], "%Y%m%d%H%M%S.%f")
        else:
            clock = str(ds.get(time_tag, "") or "").strip().replace(":", "")
            stamp = _parse(text.replace(".", "").replace("-", "")[:8] + clock, "%Y%m%d%H%M%S.%f")
        if stamp is not None:
            return stamp
    return None


def _parse(text: str, fmt: str) -> dt.datetime | None:
    """Parse a DICOM DA/TM/DT string, padding missing trailing parts (1996, 19960512, 1230)."""
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or len(whole) < 8:
        return None
    whole = whole[:8] + whole[8:].ljust(6, "0")[:6]
    try:
        return dt.datetime.strptime(f"{whole}.{fraction or '0'}"[:21], fmt)
    except ValueError:
        return None


