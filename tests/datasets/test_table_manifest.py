"""Generic table adapter: map your columns to the schema; dates become per-subject years."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from radsearch.datasets import read_table_manifest
from radsearch.errors import ConfigError, ManifestError

TABLE = """file,patient,acquired,lat,set,findings,scanner
img/a.png,P01,2019-03-01,L,training,"Edema; Effusion",X1
img/b.png,P01,2021-03-01 12:00,R,training,,X1
img/c.png,P02,2020-07-15,L,validation,Nodule,X2
img/d.png,P03,2018-01-01,R,test,Edema,X2
"""


def _table(tmp_path, text=TABLE, name="export.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_columns_mapped_and_dates_to_years(tmp_path):
    cohort = read_table_manifest(_table(tmp_path), image="file", subject="patient", date="acquired",
                                 columns={"side": "lat", "split": "set", "labels": "findings"},
                                 label_separator=";")
    t = cohort.table
    expected = (dt.datetime(2021, 3, 1, 12) - dt.datetime(2019, 3, 1)).total_seconds()
    np.testing.assert_allclose(t["time"], [0, expected / 86400 / 365.25, 0, 0])
    assert t["split"].tolist() == ["train", "train", "val", "test"]
    assert t["labels"].tolist() == ["Edema|Effusion", "", "Nodule", "Edema"]
    assert t["scanner"].tolist() == ["X1", "X1", "X2", "X2"]  # extra columns kept
    assert cohort.image_paths()[0] == tmp_path / "img/a.png"


def test_time_column_in_years_and_parquet(tmp_path):
    frame = pd.DataFrame({"image": ["x.png", "y.png"], "subject": ["1", "1"], "age": [40, 43.5]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    t = read_table_manifest(path, time="age").table
    assert t["time"].tolist() == [40.0, 43.5]


@pytest.mark.parametrize("kwargs, error, needle", [
    (dict(image="file", subject="patient"), ConfigError, "exactly one of time"),
    (dict(image="path", subject="patient", date="acquired"), ManifestError,
     "column(s) not found: image → 'path'"),
    (dict(image="file", subject="patient", date="acquired", columns={"kl": "lat"}), ConfigError,
     "cannot map kl"),
])
def test_mapping_errors(tmp_path, kwargs, error, needle):
    with pytest.raises(error) as info:
        read_table_manifest(_table(tmp_path), **kwargs)
    assert needle in str(info.value)


def test_bad_cells_name_the_line(tmp_path):
    text = TABLE.replace("2020-07-15", "someday")
    with pytest.raises(ManifestError, match=r"line 4, column 'acquired': 'someday'"):
        read_table_manifest(_table(tmp_path, text), image="file", subject="patient",
                            date="acquired")
    text = TABLE.replace("validation", "holdout")
    with pytest.raises(ManifestError, match=r"line 4, column 'split': 'holdout'"):
        read_table_manifest(_table(tmp_path, text), image="file", subject="patient",
                            date="acquired", columns={"split": "set"})


def test_a_date_column_given_as_time_is_refused(tmp_path):
    # issue 8: datetime64 used to be read as nanoseconds since 1970 and treated as years
    pd.DataFrame({"file": ["a.png", "b.png"], "patient": ["P1", "P1"],
                  "acquired": pd.to_datetime(["2020-01-01", "2022-01-01"])}
                 ).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ManifestError, match=r"dates.*--date"):
        read_table_manifest(tmp_path / "t.parquet", image="file", subject="patient",
                            time="acquired")
    back = read_table_manifest(tmp_path / "t.parquet", image="file", subject="patient",
                               date="acquired")
    assert back.table["time"].round(2).tolist() == [0.0, 2.0]


def test_parquet_cells_are_named_by_row_not_line(tmp_path):
    pd.DataFrame({"file": ["a.png", "b.png"], "patient": ["P1", "P1"],
                  "acquired": ["2020-01-01", "someday"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ManifestError, match=r"t.parquet, row 1, column 'acquired'"):
        read_table_manifest(tmp_path / "t.parquet", image="file", subject="patient",
                            date="acquired")
