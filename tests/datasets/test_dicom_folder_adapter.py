"""DICOM folder adapter on tiny DICOM files written with pydicom: identity, time, no PHI."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest

from radsearch.datasets import read_dicom_folder
from radsearch.datasets.dicom_folder import pseudonym
from radsearch.errors import DataError

NAME = "DOE^JANE"  # PatientName written by the dicom_archive fixture (conftest.py)

def test_identity_time_and_tags(dicom_archive, caplog):
    caplog.set_level(logging.INFO)
    t = read_dicom_folder(dicom_archive).table
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


def test_threads_give_the_same_cohort(dicom_archive):
    one = read_dicom_folder(dicom_archive, workers=1).table
    three = read_dicom_folder(dicom_archive, workers=3).table
    assert one.equals(three)


def test_pseudonyms_are_stable_and_salted(dicom_archive):
    t = read_dicom_folder(dicom_archive, subject_salt="s3cret").table
    assert set(t["subject"]) == {pseudonym("MRN001", "s3cret"), pseudonym("MRN002", "s3cret")}
    assert pseudonym("MRN001", "s3cret") != pseudonym("MRN001", "other")
    assert not t["subject"].str.contains("MRN").any()


def test_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.bin").write_bytes(b"xx")
    with pytest.raises(DataError, match="no usable DICOM file among 1 file"):
        read_dicom_folder(tmp_path / "empty")
