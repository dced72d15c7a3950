"""`radsearch synth …` as a user runs it: files appear, the manifest loads, errors are one line."""

from __future__ import annotations

import numpy as np
from PIL import Image

from radsearch.cli.main import main
from radsearch.cohort import Cohort
from radsearch.synth.sheet import contact_sheet


def test_synth_knee_writes_a_loadable_cohort(tmp_path, capsys):
    # a path longer than a terminal line: it must still be printed whole, ready to copy
    out = tmp_path / ("a-rather-long-folder-name-for-the-cohort-" * 3) / "knees"
    code = main(["synth", "knee", "--subjects", "3", "--out", str(out), "--seed", "4",
                 "--image-size", "64", "--workers", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "manifest.csv") in printed and "42 images of 3 subjects" in printed
    cohort = Cohort.load(out / "manifest.csv")
    assert len(cohort) == 42 and cohort.table.subject.nunique() == 3
    assert Image.open(cohort.image_paths()[0]).size == (64, 64)


def test_synth_chest_with_report_fraction(tmp_path, capsys):
    out = tmp_path / "chest"
    code = main(["synth", "chest", "-n", "3", "-o", str(out), "--image-size", "48",
                 "--report-fraction", "0", "--workers", "1"])
    assert code == 0
    cohort = Cohort.load(out / "manifest.csv")
    assert (cohort.table.report == "").all() and cohort.has("labels")
    assert "with a report" in capsys.readouterr().out


def test_out_of_range_knob_is_a_one_line_error(tmp_path, capsys):
    code = main(["synth", "knee", "-n", "2", "-o", str(tmp_path / "k"), "--similarity", "1.7"])
    assert code == 2
    err = capsys.readouterr().err
    assert "subject_similarity" in err and "Traceback" not in err
    assert not (tmp_path / "k" / "manifest.csv").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["synth", "chest", "-n", "2", "-o", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_contact_sheet_layout(tmp_path):
    tiles = [[np.full((32, 32), 40 * (r + c), np.uint8) for c in range(3)] for r in range(2)]
    path = contact_sheet(tiles, [["a", "b", "c"], ["d", "e", "f"]], tmp_path / "s.png", tile=50)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[1] == 4 + 3 * 54 and sheet.shape[0] > 2 * 54
    # column 2 holds the tiles of both rows, each 50 px tall with its own grey level
    column = sheet[:, 4 + 2 * 54 + 25]
    assert column[4 + 25] == 80
    assert (column == 80).sum() == 50 and (column == 120).sum() == 50


def test_phantom_contact_sheets_are_small_pngs(tmp_path):
    from radsearch.synth.sheet import chest_sheet, knee_sheet

    knee = np.asarray(Image.open(knee_sheet(tmp_path / "k.png", image_size=64, tile=64)))
    chest = np.asarray(Image.open(chest_sheet(tmp_path / "c.png", image_size=64, tile=64)))
    assert knee.shape[1] > 7 * 64 and knee.shape[0] > 8 * 64  # 7 visits x (4 subjects x 2 knees)
    assert chest.shape[0] > 6 * 64
    assert knee.std() > 20 and chest.std() > 20  # radiographs drawn, not blank tiles
    assert (tmp_path / "k.png").stat().st_size < 1_000_000


def test_synth_refuses_a_non_empty_folder_and_overwrite_replaces_the_old_cohort(tmp_path, capsys):
    out = tmp_path / "knees"
    args = ["synth", "knee", "--out", str(out), "--image-size", "32", "--workers", "1"]
    assert main([*args, "--subjects", "3"]) == 0
    keep = out / "notes.txt"
    keep.write_text("mine")
    assert main([*args, "--subjects", "2"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert len(Cohort.load(out / "manifest.csv")) == 42  # nothing was touched
    assert main([*args, "--subjects", "2", "--overwrite"]) == 0
    cohort = Cohort.load(out / "manifest.csv")
    pngs = sorted(p.resolve() for p in out.rglob("*.png"))
    assert pngs == sorted(p.resolve() for p in cohort.image_paths())  # no stale images left
    assert len(cohort) == 28 and keep.read_text() == "mine"
