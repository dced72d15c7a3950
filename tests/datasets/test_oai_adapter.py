"""OAI adapter on fixtures in the OAI ASCII formats (pipe-separated, SIDE 1 = right, 2 = left)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radsearch.cohort import Cohort
from radsearch.datasets import VISIT_MONTHS, read_oai
from radsearch.errors import ConfigError, ManifestError

KNEES = """ID,visit,side,path
9000099,V00,R,crops/9000099_V00_R.png
9000099,V00,L,crops/9000099_V00_L.png
9000099,V01,1,crops/9000099_V01_R.png
9000099,10,2,crops/9000099_V10_L.png
9000296,V00,L,crops/9000296_V00_L.png
9000296,V03,L,crops/9000296_V03_L.png
9000622,V00,R,crops/9000622_V00_R.png
"""
ENROLLEES = """ID|VERSION|P02SEX|V00SITE|P02RACE
9000099|2.2.3|2: Female|C|1: White or Caucasian
9000296|2.2.3|1: Male|A: Columbus|1: White or Caucasian
9000622|2.2.3|1: Male|E|2: Black or African American
"""
CLINICAL = {"00": "ID|VERSION|V00AGE|V00WOMKP\n9000099|2.2.3|59|1\n9000296|2.2.3|69|0\n"
                  "9000622|2.2.3|.: Missing Form/Incomplete Workbook|0\n",
            "01": "ID|VERSION|V01AGE\n9000099|2.2.3|60\n",
            "03": "ID|VERSION|V03AGE\n9000296|2.2.3|71\n",
            "10": "ID|VERSION|V10AGE\n9000099|2.2.3|67\n"}
# Two reading projects for 9000099's right knee: the lower READPRJ number wins.
KL = {"00": "ID|SIDE|READPRJ|VERSION|V00XRKL|V00XRJSM\n"
             "9000099|1: Right|37|2.2.3|3|1\n9000099|1: Right|15|2.2.3|2|1\n"
             "9000099|2: Left|15|2.2.3|0|0\n9000296|2: Left|15|2.2.3|1|0\n",
      "01": "ID|SIDE|READPRJ|VERSION|V01XRKL\n9000099|1|15|2.2.3|2\n",
      "10": "ID|SIDE|READPRJ|VERSION|V10XRKL\n"
            "9000099|2|15|2.2.3|.: Missing Form/Incomplete Workbook\n"}


def _oai(tmp_path: Path) -> tuple[Path, Path]:
    table = tmp_path / "knees.csv"
    table.write_text(KNEES)
    meta = tmp_path / "OAI"
    meta.mkdir()
    (meta / "Enrollees.txt").write_text(ENROLLEES)
    for vv, text in CLINICAL.items():
        (meta / f"AllClinical{vv}.txt").write_text(text)
    for vv, text in KL.items():
        (meta / f"kxr_sq_bu{vv}.txt").write_text(text)
    return table, meta


def test_visits_sides_kl_age_site_and_split(tmp_path):
    table, meta = _oai(tmp_path)
    cohort = read_oai(table, metadata_dir=meta)
    t = cohort.table
    key = [f"{s}_{v}_{side}" for s, v, side in zip(t["subject"], t["visit"], t["side"])]
    assert key == ["9000099_V00_L", "9000099_V00_R", "9000099_V01_R", "9000099_V10_L",
                   "9000296_V00_L", "9000296_V03_L", "9000622_V00_R"]
    np.testing.assert_allclose(t["time"], [0, 0, 1, 8, 0, 2, 0])
    assert t["visit_months"].tolist() == [0, 0, 12, 96, 0, 24, 0]
    np.testing.assert_array_equal(t["kl"], [0, 2, 2, np.nan, 1, np.nan, np.nan])
    np.testing.assert_array_equal(t["age"], [59, 59, 60, 67, 69, 71, np.nan])
    assert t["site"].tolist() == ["C"] * 4 + ["A", "A", "E"]
    assert t["split"].tolist() == ["test"] * 4 + ["train"] * 3
    assert t["view"].eq("PA").all()
    assert cohort.image_paths()[0] == tmp_path / "crops/9000099_V00_L.png"


def test_round_trip_and_summary(tmp_path):
    table, meta = _oai(tmp_path)
    cohort = read_oai(table, metadata_dir=meta, test_site="A")
    back = Cohort.load(cohort.save(tmp_path / "manifests" / "oai.csv"))
    assert back.image_paths()[0].resolve() == (tmp_path / "crops/9000099_V00_L.png").resolve()
    summary = back.summary()
    assert summary["split"] == {"train": 5, "test": 2}
    assert summary["side"] == {"L": 4, "R": 3}
    assert summary["time"]["max_span_per_subject"] == 8.0


def test_without_metadata_there_is_no_split(tmp_path):
    table, _ = _oai(tmp_path)
    t = read_oai(table).table
    assert "split" not in t and "kl" not in t and len(t) == 7


def test_validation_share_moves_whole_participants(tmp_path):
    table, meta = _oai(tmp_path)
    t = read_oai(table, metadata_dir=meta, val_fraction=0.5, seed=0).table
    assert (t["split"] == "val").sum() in (1, 2)  # one of the two training participants
    assert t.groupby("subject")["split"].nunique().max() == 1


def test_visit_codes_and_errors(tmp_path):
    assert VISIT_MONTHS == {"V00": 0, "V01": 12, "V03": 24, "V05": 36, "V06": 48, "V08": 72,
                            "V10": 96}
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,visit,side,path\n9000099,V02,R,x.png\n")
    with pytest.raises(ManifestError, match=r"line 2, column 'visit': 'V02'"):
        read_oai(bad)
    bad.write_text("ID,visit,side,path\n9000099,V00,3,x.png\n")
    with pytest.raises(ManifestError, match=r"line 2, column 'side': '3'"):
        read_oai(bad)
    bad.write_text("ID,visit,path\n9000099,V00,x.png\n")
    with pytest.raises(ManifestError, match="needs columns ID, visit, side, path; missing side"):
        read_oai(bad)
    with pytest.raises(ConfigError, match="test site 'Z'"):
        read_oai(bad, test_site="Z")
