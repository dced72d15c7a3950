"""CheXpert (``train.csv`` / ``valid.csv``) → Cohort.

Identity is ``patientNNNNN`` from the path (there is no patient column); the study is
``patientNNNNN/studyN``. CheXpert has no dates: ``time`` is, by default, the patient's Age minus
their age at their first study (whole years; ages are capped at 90, so for older patients every
interval reads 0), or with ``time="study"`` the study ordinal − 1 (an order, not years). ``split``
follows the folder in the path: train → train, valid → val, test → test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from radsearch.cohort import Cohort
from radsearch.datasets._tables import (image_column, read_text_table, require_columns,
                                         schema_first)
from radsearch.datasets.labels import (CHEXPERT_LABELS, check_policy, label_states,
                                        labels_under_policy)
from radsearch.errors import ConfigError, ManifestError

_PATH = r"(?:^|/)(?P<folder>train|valid|test)/(?P<patient>patient\d+)/(?P<study>study(?P<n>\d+))/"
_FOLDER_SPLIT = {"train": "train", "valid": "val", "test": "test"}
TIME_MODES = ("age", "study")


def read_chexpert(csvs: str | os.PathLike | Sequence[str | os.PathLike],
                  images: str | os.PathLike | None = None, policy: str = "u-zeros",
                  time: str = "age", keep_raw_labels: bool = False) -> Cohort:
    """Cohort of CheXpert from one or more of its CSV files (metadata only).

    ``images``: the folder that contains ``CheXpert-v1.0(-small)/``; without it ``image`` is the
    ``Path`` column as written. ``policy``: u-zeros / u-ones / ignore for uncertain (−1) labels.
    ``keep_raw_labels`` keeps the 14 label columns (1/0/−1/blank) as extra columns.
    """
    policy = check_policy(policy)
    if time not in TIME_MODES:
        raise ConfigError(f"unknown CheXpert time {time!r}; use 'age' or 'study'.")
    paths = [csvs] if isinstance(csvs, (str, os.PathLike)) else list(csvs)
    if not paths:
        raise ConfigError("read_chexpert needs at least one CSV (train.csv, valid.csv).")
    parts = [_read_one(Path(p), policy, keep_raw_labels) for p in paths]
    table = pd.concat(parts, ignore_index=True)

    if time == "age":
        first_age = table.groupby("subject")["age_for_time"].transform("min")
        table["time"] = (table["age_for_time"] - first_age).astype(np.float64)
    else:
        table["time"] = (table["study_number"] - 1).astype(np.float64)
    table = table.drop(columns="age_for_time")
    table["image"] = image_column(table["image"], images)
    source = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    return Cohort(schema_first(table), root=None, source=source)


def _read_one(path: Path, policy: str, keep_raw_labels: bool) -> pd.DataFrame:
    raw = read_text_table(path, "CheXpert CSV")
    require_columns(raw, ("Path", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS), path,
                    "CheXpert CSV")
    parsed = _parse_paths(raw["Path"])
    bad = np.flatnonzero(parsed["patient"].isna().to_numpy())
    if len(bad):
        raise ManifestError(f"{path}, line {bad[0] + 2}, column 'Path': "
                            f"{raw['Path'].iloc[bad[0]]!r} has no train|valid|test/patientNNNNN/"
                            "studyN/ part to take the identity from.")
    age = pd.to_numeric(raw["Age"], errors="coerce")
    if age.isna().any():
        row = int(np.flatnonzero(age.isna().to_numpy())[0])
        raise ManifestError(f"{path}, line {row + 2}, column 'Age': {raw['Age'].iloc[row]!r} is "
                            "not a number.")
    lateral = raw["Frontal/Lateral"].str.strip().str.lower() == "lateral"
    view = raw["AP/PA"].str.strip().where(~lateral, "LAT")
    labels, uncertain = labels_under_policy(label_states(raw, str(path)), policy)
    table = pd.DataFrame({
        "image": raw["Path"].str.strip(),
        "subject": parsed["patient"],
        "view": view,
        "study": parsed["patient"] + "/" + parsed["study"],
        "split": parsed["folder"].map(_FOLDER_SPLIT),
        "labels": labels,
        "age": age.to_numpy(),
        "age_for_time": age.to_numpy(),
        "study_number": parsed["n"].astype(np.int64),
        "sex": raw["Sex"] if "Sex" in raw else "",
    })
    if policy == "ignore":
        table["uncertain"] = uncertain
    if keep_raw_labels:
        for name in CHEXPERT_LABELS:
            table[name] = pd.to_numeric(raw[name], errors="coerce").to_numpy()  # blank → NaN
    return table


def _parse_paths(paths: pd.Series) -> pd.DataFrame:
    """folder / patient / study / n of each Path (pyarrow's regex engine: fast at 200k rows)."""
    found = pc.extract_regex(pa.array(paths.to_numpy(dtype=object), type=pa.string()), _PATH)
    # flatten() (unlike field()) keeps the nulls of rows that did not match.
    fields = dict(zip((f.name for f in found.type), found.flatten()))
    return pd.DataFrame({name: fields[name].to_numpy(zero_copy_only=False)
                         for name in ("folder", "patient", "study", "n")}, index=paths.index)
