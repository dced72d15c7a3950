"""Cohort: load/save round trips, validation errors naming file/line/column, accessors, summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MultiLabelBinarizer

from radsearch.cohort import Cohort
from radsearch.errors import ManifestError

HEADER = "image,subject,time,side,split,labels,kl\n"


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "image": ["a/1.png", "a/2.png", "b/1.png", "b/2.png", "c/1.png"],
        "subject": ["00012", "00012", "10000032", "10000032", "7"],
        "time": [0.0, 1.5, 0.0, 4.0, 2.0],
        "side": ["L", "R", "L", "", "R"],
        "split": ["train", "train", "test", "test", ""],
        "labels": ["No Finding", "Edema|Cardiomegaly", "Edema", "", "Cardiomegaly"],
        "kl": [0, 1, 2, 3, 4],
    })


@pytest.mark.parametrize("name", ["m.csv", "m.csv.gz", "m.parquet"])
def test_save_load_round_trip_keeps_identities_and_paths(tmp_path, name):
    cohort = Cohort(_table(), root=tmp_path)
    out = cohort.save(tmp_path / "sub" / name)
    back = Cohort.load(out)
    assert back.table["subject"].tolist() == ["00012", "00012", "10000032", "10000032", "7"]
    assert back.image_paths()[0].resolve() == (tmp_path / "a/1.png").resolve()
    assert back.table["image"].iloc[0] == "../a/1.png"  # rewritten relative to the new folder
    np.testing.assert_allclose(back.times, [0.0, 1.5, 0.0, 4.0, 2.0])
    assert back.table["kl"].tolist() == [0, 1, 2, 3, 4]


def test_large_numeric_ids_never_pass_through_float(tmp_path):
    # 2**24 + 1 is not representable in float32; as text it must stay distinct from 2**24.
    path = _write(tmp_path / "m.csv", "image,subject,time\nx.png,16777217,0\ny.png,16777216,0\n")
    cohort = Cohort.load(path)
    assert cohort.table["subject"].tolist() == ["16777217", "16777216"]
    assert len(set(cohort.subject_codes())) == 2


@pytest.mark.parametrize("body, needle", [
    ("image,subject\nx.png,1\n", "missing required column(s) time"),
    ("image,subject,time\nx.png,1,0\nx.png,2,1\n",
     "line 3, column 'image': 'x.png' also appears at"),
    ("image,subject,time\nx.png,1,0\ny.png, ,1\n", "line 3, column 'subject': empty value"),
    ("image,subject,time\nx.png,1,0\ny.png,2,soon\n", "line 3, column 'time': 'soon'"),
    ("image,subject,time,split\nx.png,1,0,train\ny.png,2,1,holdout\n",
     "line 3, column 'split': 'holdout' is not one of train, val, test"),
    ("image,subject,time,side\nx.png,1,0,left\n", "line 2, column 'side': 'left'"),
])
def test_invalid_manifest_names_file_line_and_column(tmp_path, body, needle):
    path = _write(tmp_path / "bad.csv", body)
    with pytest.raises(ManifestError) as info:
        Cohort.load(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_float_subjects_in_a_dataframe_are_refused():
    table = pd.DataFrame({"image": ["x"], "subject": [10000032.0], "time": [0.0]})
    with pytest.raises(ManifestError, match="identities are floats"):
        Cohort(table)


def test_missing_manifest_and_folder_lookup(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        Cohort.load(tmp_path / "nope.csv")
    Cohort(_table(), root=tmp_path).save(tmp_path / "knees" / "manifest.csv")
    assert len(Cohort.load(tmp_path / "knees")) == 5  # a folder means the manifest inside


def test_subject_codes_match_numpy_unique():
    cohort = Cohort(_table())
    _, expected = np.unique(cohort.table["subject"].to_numpy(dtype=str), return_inverse=True)
    np.testing.assert_array_equal(cohort.subject_codes(), expected)
    assert cohort.subject_codes().dtype == np.int64


def test_label_matrix_matches_scikit_learn():
    cohort = Cohort(_table())
    matrix, classes = cohort.label_matrix()
    binarizer = MultiLabelBinarizer()
    expected = binarizer.fit_transform([s.split("|") if s else [] for s in _table()["labels"]])
    assert classes == list(binarizer.classes_)
    np.testing.assert_array_equal(matrix, expected.astype(bool))


def test_split_subset_and_has():
    cohort = Cohort(_table())
    test = cohort.split("test")
    assert test.table["image"].tolist() == ["b/1.png", "b/2.png"]
    assert cohort.subset([4]).table["subject"].tolist() == ["7"]
    with pytest.raises(ManifestError, match="split 'val' is empty .*splits present: test, train"):
        cohort.split("val")
    assert cohort.has("labels") and not cohort.has("report")


def test_summary_counts_by_hand():
    s = Cohort(_table()).summary()
    assert s["images"] == 5 and s["subjects"] == 3
    assert s["images_per_subject"] == {"min": 1, "median": 2.0, "max": 2}
    assert s["subjects_with_2plus_images"] == 2
    assert s["time"] == {"min": 0.0, "max": 4.0, "max_span_per_subject": 4.0}
    assert s["split"] == {"train": 2, "test": 2, "": 1}
    assert s["labels"] == {"Edema": 2, "Cardiomegaly": 2, "No Finding": 1}


def test_missing_cells_become_empty_text():
    table = pd.DataFrame({"image": ["x", "y"], "subject": ["1", "2"], "time": [0, 1],
                          "split": ["train", None], "view": [np.nan, "PA"]})
    cohort = Cohort(table)
    assert cohort.table["split"].tolist() == ["train", ""]
    assert cohort.table["view"].tolist() == ["", "PA"]


# ------------------------------------------------------ issue 8, item 2: silent wrong results
def test_a_time_column_holding_dates_is_refused_with_a_pointer_to_date(tmp_path):
    table = pd.DataFrame({"image": ["a.png", "b.png"], "subject": ["P1", "P1"],
                          "time": pd.to_datetime(["2020-01-01", "2022-01-01"])})
    table.to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match=r"column 'time'.*dates.*--date"):
        Cohort.load(tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match=r"line 2, column 'time'.*date.*--date"):
        Cohort.load(_write(tmp_path / "m.csv", "image,subject,time\na.png,P1,2020-01-01\n"))


@pytest.mark.parametrize("spelling", ["./a.png", "sub/../a.png", "{root}/a.png"])
def test_one_file_under_two_spellings_is_a_duplicate(tmp_path, spelling):
    second = spelling.format(root=tmp_path)
    path = _write(tmp_path / "m.csv", f"image,subject,time\na.png,P1,0\n{second},P1,1\n")
    with pytest.raises(ManifestError, match=r"line 3, column 'image'.*same file as line 2"):
        Cohort.load(path)


def test_paths_escaping_the_manifest_folder_are_listed(tmp_path):
    (tmp_path / "in").mkdir()
    path = _write(tmp_path / "in" / "m.csv", "image,subject,time\na.png,P1,0\n"
                  "../../etc/passwd,P1,1\n/etc/shadow,P2,0\nsub/../b.png,P2,1\n")
    cohort = Cohort.load(path)
    assert cohort.outside_root().tolist() == [1, 2]
    with pytest.raises(ManifestError, match=r"line 3, column 'image'.*outside"):
        cohort.require_inside_root()
    assert Cohort.load(path).subset([0, 3]).require_inside_root() is None


def test_parquet_positions_are_rows_not_lines(tmp_path):
    pd.DataFrame({"image": ["a.png", "b.png"], "subject": ["P1", "P1"],
                  "time": ["0", "soon"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match=r"m.parquet, row 1, column 'time'"):
        Cohort.load(tmp_path / "m.parquet")


def test_clear_cohort_folder_refuses_or_removes_only_the_listed_images(tmp_path):
    # issue 8: the overwrite rule lived only in `radsearch synth`
    from radsearch.cohort import clear_cohort_folder
    from radsearch.errors import ConfigError

    out = tmp_path / "cohort"
    clear_cohort_folder(out, overwrite=False)  # missing or empty: nothing to do
    (out / "a").mkdir(parents=True)
    (out / "a" / "1.png").write_bytes(b"x")
    (out / "notes.txt").write_text("mine")
    _write(out / "manifest.csv", "image,subject,time\na/1.png,P1,0\n../outside.png,P1,1\n")
    (tmp_path / "outside.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not empty.*--overwrite"):
        clear_cohort_folder(out, overwrite=False)
    clear_cohort_folder(out, overwrite=True)
    assert sorted(p.name for p in out.rglob("*")) == ["a", "notes.txt"]
    assert (tmp_path / "outside.png").exists()  # never outside the folder
    _write(tmp_path / "file", "x")
    with pytest.raises(ConfigError, match="is a file"):
        clear_cohort_folder(tmp_path / "file", overwrite=True)
