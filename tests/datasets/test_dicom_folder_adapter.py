"""DICOM folder adapter on tiny DICOM files written with pydicom: identity, time, no PHI."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radsearch.datasets import read_dicom_folder
from radsearch.datasets.dicom_folder import pseudonym
from radsearch.errors import DataError

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


def _archive(root: Path) -> Path:
    _dicom(root / "a" / "IM0001.dcm", "MRN001", "20150301", "101500")
    _dicom(root / "a" / "IM0002", "MRN001", "20170301", "0930", laterality="L")  # no extension
    _dicom(root / "b" / "x.dcm", "MRN002", None, acquisition="20200102120000.5+0100", view="AP")
    _dicom(root / "b" / "y.dcm", "MRN002", "20210102", None)
    _dicom(root / "c" / "anon.dcm", None, "20200101", "000000")  # no PatientID: skipped
    (root / "c" / "notes.bin").write_bytes(b"not a dicom file at all")
    (root / "README.txt").write_text("scanner export")
    return root


def test_identity_time_and_tags(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    t = read_dicom_folder(_archive(tmp_path / "archive")).table
    assert t["subject"].tolist() == ["MRN001", "MRN001", "MRN002", "MRN002"]
    assert [Path(p).name for p in t["image"]] == ["IM0001.dcm", "IM0002", "x.dcm", "y.dcm"]
    first = (dt.datetime(2017, 3, 1, 9, 30) - dt.datetime(2015, 3, 1, 10, 15)).total_seconds()
    second = (dt.datetime(2021, 1, 2) - dt.datetime(2020, 1, 2, 12, 0, 0, 500000)).total_seconds()
    np.testing.assert_allclose(t["time"], [0, first / 86400 / 365.25, 0,
                                           second / 86400 / 365.25])
    assert t["view"].tolist() == ["PA", "PA", "AP", "PA"]
    assert t["side"].tolist() == ["", "L", "", ""]
    assert t["body_part"].eq("CHEST").all() and t["modality"].eq("DX").all()
    assert t["study"].nunique() == 4
    # No PHI: the name is nowhere in the table or the log; skipped files are only counted.
    assert not t.astype(str).apply(lambda col: col.str.contains("DOE")).to_numpy().any()
    assert "DOE" not in caplog.text and "JANE" not in caplog.text
    assert "1 file(s) skipped (no PatientID)" in caplog.text
    assert "1 file(s) skipped (not DICOM)" in caplog.text


def test_pseudonyms_are_stable_and_salted(tmp_path):
    t = read_dicom_folder(_archive(tmp_path / "archive"), subject_salt="s3cret").table
    assert set(t["subject"]) == {pseudonym("MRN001", "s3cret"), pseudonym("MRN002", "s3cret")}
    assert pseudonym("MRN001", "s3cret") != pseudonym("MRN001", "other")
    assert not t["subject"].str.contains("MRN").any()


def test_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.bin").write_bytes(b"xx")
    with pytest.raises(DataError, match="no usable DICOM file among 1 file"):
        read_dicom_folder(tmp_path / "empty")
