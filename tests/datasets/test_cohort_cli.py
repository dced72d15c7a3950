"""`radsearch cohort …` commands as a user runs them (through radsearch.cli.main.main)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from radsearch.cli.main import main
from radsearch.cohort import Cohort

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
NIH_ROWS = ["00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
            "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
            "00000002_000.png,No Finding,0,2,80,M,PA,2500,2048,0.171,0.171"]


def _knees(folder: Path) -> Path:
    """A manifest shaped like radsearch.synth's knees/manifest.csv (extra columns included)."""
    rows = []
    for subject, site in (("K00000", "A"), ("K00001", "C")):
        for months in (0, 12, 96):
            for side in ("L", "R"):
                image = f"{subject}/m{months:03d}_{side}.png"
                (folder / image).parent.mkdir(parents=True, exist_ok=True)
                _png(folder / image)
                rows.append(dict(image=image, subject=subject, time=months / 12, side=side,
                                 view="PA", study=f"{subject}_m{months:03d}",
                                 split="test" if site == "C" else "train", site=site, kl=1,
                                 age=60.5, visit_months=months))
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_info_on_a_knee_manifest(tmp_path, capsys):
    path = _knees(tmp_path / "knees")
    assert main(["cohort", "info", str(path)]) == 0
    out = capsys.readouterr().out
    for text in ("images", "12", "subjects", "train 6, test 6", "L 6, R 6", "0.00 … 8.00",
                 "A 6, C 6"):
        assert text in out
    assert main(["cohort", "info", str(path.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == Cohort.load(path).summary()


def test_validate_reports_missing_files(tmp_path, capsys):
    path = _knees(tmp_path / "knees")
    assert main(["cohort", "validate", str(path), "--check-files"]) == 0
    (tmp_path / "knees" / "K00001" / "m096_R.png").unlink()
    assert main(["cohort", "validate", str(path), "--check-files"]) == 2
    err = capsys.readouterr().err
    assert "m096_R.png" in err and "1 of 12 image file(s) are missing" in err


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,subject,time\nx.png,1,later\n")
    assert main(["cohort", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 'time'" in err and "Traceback" not in err


def test_from_nih_writes_a_manifest_beside_bare_names(tmp_path, capsys):
    entry = tmp_path / "Data_Entry_2017_v2020.csv"
    entry.write_text(NIH_HEADER + "\n" + "\n".join(NIH_ROWS) + "\n")
    test_list = tmp_path / "test_list.txt"
    test_list.write_text("00000002_000.png\n")
    out = tmp_path / "out" / "nih.csv"
    assert main(["cohort", "from-nih", "--data-entry", str(entry), "--test-list", str(test_list),
                 "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    written = pd.read_csv(out, dtype=str)
    assert written["image"].tolist() == ["00000001_000.png", "00000001_001.png",
                                         "00000002_000.png"]
    assert written["split"].tolist() == ["train", "train", "test"]
    cohort = Cohort.load(out)
    assert cohort.image_paths()[0] == out.parent / "00000001_000.png"
    assert not list(out.parent.glob(".*tmp"))  # atomic write left nothing behind


def test_from_table_and_from_dicom(tmp_path, capsys, dicom_archive):
    table = tmp_path / "export.csv"
    table.write_text("file,patient,acquired\nimg/a.png,P1,2020-01-01\nimg/b.png,P1,2022-01-01\n")
    out = tmp_path / "m.parquet"
    assert main(["cohort", "from-table", str(table), "--image", "file", "--subject", "patient",
                 "--date", "acquired", "--out", str(out)]) == 0
    assert Cohort.load(out).table["time"].round(2).tolist() == [0.0, 2.0]
    assert main(["cohort", "from-dicom", str(dicom_archive), "--out", str(tmp_path / "d.csv")]) == 0
    captured = capsys.readouterr()
    assert "DOE" not in captured.out + captured.err + (tmp_path / "d.csv").read_text()
    assert "1 file(s) skipped (no PatientID)" in captured.err


def test_bad_option_values_are_user_errors(tmp_path, capsys):
    csv = tmp_path / "train.csv"
    csv.write_text("Path\n")
    assert main(["cohort", "from-chexpert", "--csv", str(csv), "--policy", "maybe",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "uncertainty policy" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_other_from_commands_write_valid_manifests(tmp_path, capsys):
    labels = ",".join(["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
                       "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                       "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
                       "Support Devices"])
    chexpert = tmp_path / "train.csv"
    chexpert.write_text(f"Path,Sex,Age,Frontal/Lateral,AP/PA,{labels}\n"
                        "CheXpert-v1.0-small/train/patient00007/study1/view1_frontal.jpg,Male,50,"
                        "Frontal,PA,,,-1.0,,,,,,,,,,,\n")
    mimic = tmp_path / "mimic-cxr-2.0.0-metadata.csv"
    mimic.write_text("dicom_id,subject_id,study_id,ViewPosition,StudyDate,StudyTime\n"
                     "abc,10000032,50414267,PA,21800506,213014.531\n")
    knees = tmp_path / "knees.csv"
    knees.write_text("ID,visit,side,path\n9000099,V00,1,a.png\n9000099,V05,2,b.png\n")
    xml = tmp_path / "ecgen-radiology" / "1.xml"
    xml.parent.mkdir()
    xml.write_text('<eCitation><uId id="CXR1"/><MedlineCitation><Article><Abstract>'
                   '<AbstractText Label="FINDINGS">Clear lungs.</AbstractText></Abstract></Article>'
                   '</MedlineCitation><MeSH><major>normal</major></MeSH>'
                   '<parentImage id="CXR1_1_IM-0001-3001"/></eCitation>')
    commands = {
        "chexpert": ["from-chexpert", "--csv", str(chexpert), "--policy", "u-ones"],
        "mimic": ["from-mimic", "--metadata", str(mimic)],
        "oai": ["from-oai", "--image-table", str(knees)],
        "openi": ["from-openi", "--reports", str(xml.parent)],
    }
    expected = {"chexpert": ("patient00007", "Cardiomegaly"), "mimic": ("10000032", None),
                "oai": ("9000099", None), "openi": ("CXR1", "No Finding")}
    for name, args in commands.items():
        out = tmp_path / "out" / f"{name}.csv"
        assert main(["cohort", *args, "--out", str(out)]) == 0, capsys.readouterr().err
        cohort = Cohort.load(out)
        subject, label = expected[name]
        assert cohort.table["subject"].iloc[0] == subject
        if label is not None:
            assert cohort.table["labels"].iloc[0] == label
    oai = Cohort.load(tmp_path / "out" / "oai.csv")
    assert oai.table["side"].tolist() == ["R", "L"] and oai.times.tolist() == [0.0, 3.0]
    assert oai.image_paths()[0].resolve() == (tmp_path / "a.png").resolve()


# ------------------------------------------------------ issue 8, item 2: validate tells the truth
def _png(path: Path, size: int = 8) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), 128).save(path)


def test_check_files_decodes_every_file_and_names_the_broken_ones(tmp_path, capsys):
    folder = tmp_path / "m"
    for name in ("a.png", "b.png", "c.png", "d.png"):
        _png(folder / name)
    whole = (folder / "b.png").read_bytes()
    (folder / "b.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (folder / "c.png").write_text("this is a note, not an image")
    manifest = folder / "manifest.csv"
    manifest.write_text("image,subject,time\na.png,P1,0\nb.png,P1,1\nc.png,P2,0\nd.png,P2,1\n")
    assert main(["cohort", "validate", str(manifest), "--check-files", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "b.png" in err and "c.png" in err and "a.png" not in err and "d.png" not in err
    assert "2 of 4 image file(s) are missing or unreadable" in err


def test_validate_refuses_a_manifest_without_images(tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,subject,time\n")
    assert main(["cohort", "validate", str(manifest)]) == 2
    assert "no images" in capsys.readouterr().err


def test_validate_flags_paths_outside_the_manifest_folder(tmp_path, capsys):
    folder = tmp_path / "m"
    _png(folder / "a.png")
    manifest = folder / "manifest.csv"
    manifest.write_text("image,subject,time\na.png,P1,0\n../../etc/passwd,P1,1\n")
    # flagged, not refused: `--images /data/nih` manifests hold absolute paths on purpose; a
    # service refuses them through Cohort.require_inside_root()
    assert main(["cohort", "validate", str(manifest)]) == 0
    err = capsys.readouterr().err
    assert "1 image path(s) point outside" in err and "line 3" in err and "passwd" in err
