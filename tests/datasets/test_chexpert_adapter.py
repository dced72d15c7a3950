"""CheXpert adapter: identity from the path, uncertainty policies, time, real train.csv."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from radsearch.datasets import CHEXPERT_LABELS, read_chexpert
from radsearch.errors import ConfigError, ManifestError

HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)


def _row(path, sex, age, fl, appa, **labels):
    cells = [labels.get(name.replace(" ", "_"), "") for name in CHEXPERT_LABELS]
    return ",".join([path, sex, str(age), fl, appa, *cells])


ROWS = [
    _row("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", "Female", 68,
         "Frontal", "AP", No_Finding="1.0", Pneumothorax="0.0", Support_Devices="1.0"),
    _row("CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg", "Female", 87,
         "Frontal", "AP", Cardiomegaly="-1.0", Lung_Opacity="1.0", Edema="-1.0"),
    _row("CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg", "Female", 83,
         "Frontal", "AP", Lung_Opacity="1.0", Fracture="1.0"),
    _row("CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg", "Female", 83,
         "Lateral", "", Lung_Opacity="1.0", Fracture="1.0"),
    _row("CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg", "Male", 41,
         "Frontal", "PA", Edema="-1.0", Pleural_Effusion="0.0"),
]
VALID = [_row("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", "Male", 73,
              "Frontal", "AP", Cardiomegaly="1.0")]


def _csv(folder: Path, rows, name="train.csv") -> Path:
    path = folder / name
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_identity_study_view_split_and_age_time(tmp_path):
    cohort = read_chexpert([_csv(tmp_path, ROWS), _csv(tmp_path, VALID, "valid.csv")])
    t = cohort.table
    assert t["subject"].tolist() == ["patient00001", "patient00002", "patient00002",
                                     "patient00002", "patient00003", "patient64541"]
    assert t["study"].tolist()[1:4] == ["patient00002/study2", "patient00002/study1",
                                        "patient00002/study1"]
    assert t["view"].tolist() == ["AP", "AP", "AP", "LAT", "PA", "AP"]
    assert t["split"].tolist() == ["train"] * 5 + ["val"]
    np.testing.assert_array_equal(t["time"], [0, 4, 0, 0, 0, 0])  # age − first study's age
    by_study = read_chexpert(_csv(tmp_path, ROWS), time="study").table
    np.testing.assert_array_equal(by_study["time"], [0, 1, 0, 0, 0])


@pytest.mark.parametrize("policy, expected, uncertain", [
    ("u-zeros", ["No Finding|Support Devices", "Lung Opacity", "Lung Opacity|Fracture",
                 "Lung Opacity|Fracture", "No Finding"], None),
    ("u-ones", ["No Finding|Support Devices", "Cardiomegaly|Lung Opacity|Edema",
                "Lung Opacity|Fracture", "Lung Opacity|Fracture", "Edema"], None),
    ("ignore", ["No Finding|Support Devices", "Lung Opacity", "Lung Opacity|Fracture",
                "Lung Opacity|Fracture", "No Finding"],
     ["", "Cardiomegaly|Edema", "", "", "Edema"]),
])
def test_uncertainty_policies(tmp_path, policy, expected, uncertain):
    t = read_chexpert(_csv(tmp_path, ROWS), policy=policy).table
    assert t["labels"].tolist() == expected
    if uncertain is None:
        assert "uncertain" not in t
    else:
        assert t["uncertain"].tolist() == uncertain


def test_images_folder_and_raw_labels(tmp_path):
    t = read_chexpert(_csv(tmp_path, ROWS), images=tmp_path / "data", keep_raw_labels=True).table
    assert Path(t["image"].iloc[0]) == (tmp_path / "data" / "CheXpert-v1.0-small/train/"
                                        "patient00001/study1/view1_frontal.jpg")
    assert t["Cardiomegaly"].tolist()[1] == -1


def test_errors_name_line_and_column(tmp_path):
    rows = list(ROWS)
    rows[2] = rows[2].replace(",1.0,", ",2.0,", 1)
    with pytest.raises(ManifestError, match=r"line 4, column 'Lung Opacity': '2.0'"):
        read_chexpert(_csv(tmp_path, rows))
    rows = [ROWS[0].replace("patient00001/study1/", "p1/")]
    with pytest.raises(ManifestError, match="line 2, column 'Path'"):
        read_chexpert(_csv(tmp_path, rows))
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ManifestError, match="lacks column.*Path"):
        read_chexpert(other)
    with pytest.raises(ConfigError, match="uncertainty policy"):
        read_chexpert(_csv(tmp_path, ROWS), policy="u-maybe")


def test_real_chexpert_train_csv_at_full_scale():
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None:
        pytest.skip("torchxrayvision (test extra) is not installed; it ships the real metadata")
    path = Path(spec.origin).parent / "data" / "chexpert_train.csv.gz"
    t = read_chexpert(path, policy="u-ones").table
    assert len(t) == 223_414
    # Independent reference: the csv module and a regular expression on the path.
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    patients = [re.search(r"(patient\d+)/", r[0]).group(1) for r in rows]
    assert t["subject"].tolist() == patients
    assert t["subject"].nunique() == len(set(patients))
    columns = [header.index(n) for n in CHEXPERT_LABELS]
    for i in range(0, len(rows), 997):  # a spread of rows, label by label
        positives = [n for n, c in zip(CHEXPERT_LABELS, columns) if rows[i][c] in ("1.0", "-1.0")]
        assert t["labels"].iloc[i] == ("|".join(positives) or "No Finding")
    assert t["split"].eq("train").all()

