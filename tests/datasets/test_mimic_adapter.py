"""MIMIC-CXR-JPG adapter on fixtures in the real file formats (metadata, split, labels, reports)."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pytest

from radsearch.cohort import Cohort
from radsearch.datasets import read_mimic
from radsearch.errors import ManifestError

META_HEADER = ("dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,"
               "Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,"
               "ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning")
# 19999987 > 2**24: as float32 it would merge with 19999988.
META = [
    ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "19999987", "50414267", "PA", "21800506",
     "213014.531"),
    ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "19999987", "50414267", "LATERAL", "21800506",
     "213014.531"),
    ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "19999987", "53189527", "PA", "21810507",
     "94210.0"),  # StudyTime without its leading zero: 09:42:10
    ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "19999988", "57375967", "AP", "21520708",
     "224550.171"),
]
SPLIT = [(META[0][0], "50414267", "19999987", "train"),
         (META[1][0], "50414267", "19999987", "train"),
         (META[2][0], "53189527", "19999987", "train"),
         (META[3][0], "57375967", "19999988", "test")]
# MIMIC's own column order is alphabetical; the adapter finds columns by name.
LABEL_NAMES = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
               "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity",
               "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax",
               "Support Devices"]
LABELS = {"50414267": {"No Finding": "1.0"},
          "53189527": {"Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0"}}
REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def _gz(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def _files(tmp_path: Path):
    meta = _gz(tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz", [META_HEADER] + [
        f"{d},{s},{st},CHEST (PA AND LAT),{v},3056,2544,{date},{time},CHEST (PA AND LAT),"
        "postero-anterior,Erect" for d, s, st, v, date, time in META])
    split = _gz(tmp_path / "mimic-cxr-2.0.0-split.csv.gz",
                ["dicom_id,study_id,subject_id,split"] + [",".join(r) for r in SPLIT])
    rows = [f"19999987,{study}," + ",".join(cells.get(n, "") for n in LABEL_NAMES)
            for study, cells in LABELS.items()]
    labels = _gz(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz",
                 ["subject_id,study_id," + ",".join(LABEL_NAMES)] + rows)
    reports = tmp_path / "mimic-cxr-reports"
    report = reports / "files" / "p19" / "p19999987" / "s50414267.txt"
    report.parent.mkdir(parents=True)
    report.write_text(REPORT)
    (report.parent / "s53189527.txt").write_text(
        "FINAL REPORT\n INDICATION: cough\n\n The heart is enlarged.\n")
    return meta, split, labels, reports


def test_metadata_split_labels_reports(tmp_path):
    meta, split, labels, reports = _files(tmp_path)
    t = read_mimic(meta, split=split, labels=labels, reports=reports, policy="u-ones").table
    assert t["subject"].tolist() == ["19999987"] * 3 + ["19999988"]
    assert len(set(Cohort(t).subject_codes())) == 2
    assert t["image"].iloc[0] == ("files/p19/p19999987/s50414267/"
                                  "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg")
    first = dt.datetime(2180, 5, 6, 21, 30, 14, 531000)
    second = dt.datetime(2181, 5, 7, 9, 42, 10)
    np.testing.assert_allclose(t["time"], [0, 0, (second - first).total_seconds() / 86400 / 365.25,
                                           0])
    assert t["split"].tolist() == ["train", "train", "train", "test"]
    assert t["view"].tolist() == ["PA", "LATERAL", "PA", "AP"]
    assert t["labels"].tolist() == ["No Finding", "No Finding", "Cardiomegaly|Edema", ""]
    assert t["report"].iloc[0] == (
        "FINDINGS: There is no focal consolidation, pleural effusion or pneumothorax. Bilateral "
        "nodular opacities that most likely represent nipple shadows.\n"
        "IMPRESSION: No acute cardiopulmonary process.")
    # No FINDINGS / IMPRESSION: the last paragraph (official parser), never the indication; no
    # report file: empty.
    assert t["report"].iloc[2] == "The heart is enlarged."
    assert t["report"].iloc[3] == ""


def test_ignore_policy_lists_uncertain_labels(tmp_path):
    meta, _, labels, _ = _files(tmp_path)
    t = read_mimic(meta, labels=labels, policy="ignore").table
    assert t["labels"].iloc[2] == "Cardiomegaly" and t["uncertain"].iloc[2] == "Edema"


def test_manifest_round_trip_keeps_eight_digit_ids(tmp_path):
    meta, split, labels, _ = _files(tmp_path)
    cohort = read_mimic(meta, split=split, labels=labels, images=tmp_path / "jpg")
    back = Cohort.load(cohort.save(tmp_path / "out" / "mimic.csv"))
    assert back.table["subject"].tolist() == cohort.table["subject"].tolist()
    assert back.image_paths()[0].resolve() == (tmp_path / "jpg" / cohort.table["image"].iloc[0]
                                               .split("jpg/")[1]).resolve()


def test_bad_study_time_names_line(tmp_path):
    lines = [META_HEADER, f"x,19999987,1,d,PA,1,1,21800506,25xx,a,b,c"]
    with pytest.raises(ManifestError, match="line 2: StudyDate '21800506' / StudyTime '25xx'"):
        read_mimic(_gz(tmp_path / "meta.csv.gz", lines))


def test_validate_split_becomes_val_and_unknown_split_is_refused(tmp_path):
    meta, _, _, _ = _files(tmp_path)
    rows = [",".join(r).replace("test", "validate") for r in SPLIT]
    split = _gz(tmp_path / "split.csv.gz", ["dicom_id,study_id,subject_id,split"] + rows)
    assert read_mimic(meta, split=split).table["split"].tolist()[-1] == "val"
    rows[0] = rows[0].replace("train", "holdout")
    bad = _gz(tmp_path / "bad.csv.gz", ["dicom_id,study_id,subject_id,split"] + rows)
    with pytest.raises(ManifestError, match=r"line 2, column 'split': 'holdout'"):
        read_mimic(meta, split=bad)
