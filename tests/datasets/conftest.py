"""Shared fixtures of the dataset-adapter tests: a tiny DICOM archive written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

NAME = "DOE^JANE"


def _dicom(path: Path, patient_id: str | None, study_date: str | None = None,
           study_time: str | None = None, acquisition: str | None = None, view: str = "PA",
           laterality: str | None = None) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.PatientName = NAME
    ds.PatientBirthDate = "19500101"
    if patient_id is not None:
        ds.PatientID = patient_id
    if study_date is not None:
        ds.StudyDate = study_date
    if study_time is not None:
        ds.StudyTime = study_time
    if acquisition is not None:
        ds.AcquisitionDateTime = acquisition
    ds.ViewPosition = view
    if laterality:
        ds.ImageLaterality = laterality
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = 4, 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(16, dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_archive(root: Path) -> Path:
    """Five DX files of two patients (one without PatientID) and two non-DICOM files."""
    _dicom(root / "a" / "IM0001.dcm", "MRN001", "20150301", "101500")
    _dicom(root / "a" / "IM0002", "MRN001", "20170301", "0930", laterality="L")  # no extension
    _dicom(root / "b" / "x.dcm", "MRN002", None, acquisition="20200102120000.5+0100", view="AP")
    _dicom(root / "b" / "y.dcm", "MRN002", "20210102", None)
    _dicom(root / "c" / "anon.dcm", None, "20200101", "000000")  # no PatientID: skipped
    (root / "c" / "notes.bin").write_bytes(b"not a dicom file at all")
    (root / "README.txt").write_text("scanner export")
    return root



@pytest.fixture
def dicom_archive(tmp_path) -> Path:
    """Folder of DICOM files whose PatientName is NAME (which must never leak)."""
    return write_archive(tmp_path / "archive")
