"""Any table of your own (CSV / TSV / Parquet) → Cohort, by naming which column is which.

For hospital exports and datasets without an adapter: point ``image``, ``subject`` and either
``time`` (already in years, e.g. age) or ``date`` (per-subject interval, days / 365.25) at your
columns; the other schema columns are optional. Other columns are kept as extra columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.cohort import DATE_HINT, LABEL_SEPARATOR, OPTIONAL_COLUMNS, Cohort, where
from radsearch.datasets._tables import image_column, read_text_table, schema_first
from radsearch.errors import ConfigError, ManifestError

_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validate": "val", "validation": "val", "test": "test", "testing": "test", "": ""}


def read_table_manifest(path: str | os.PathLike, image: str = "image", subject: str = "subject",
                        time: str | None = None, date: str | None = None,
                        columns: dict[str, str] | None = None,
                        images: str | os.PathLike | None = None,
                        label_separator: str = LABEL_SEPARATOR) -> Cohort:
    """Cohort from a user table. ``columns`` maps schema names (side, view, study, split, labels,
    report) to the table's column names; split names such as validate / validation become val.
    Relative image paths resolve against ``images`` if given, else against the table's folder.
    """
    if (time is None) == (date is None):
        raise ConfigError("give exactly one of time (a column in years) or date (a date column).")
    path = Path(path)
    raw = (pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") and path.is_file()
           else read_text_table(path, "table", sep="\t" if ".tsv" in path.suffixes else ","))
    mapping = {"image": image, "subject": subject, **(columns or {})}
    unknown = set(mapping) - {"image", "subject", *OPTIONAL_COLUMNS}
    if unknown:
        raise ConfigError(f"cannot map {', '.join(sorted(unknown))}: the schema columns are "
                          f"image, subject, {', '.join(OPTIONAL_COLUMNS)}.")
    needed = {**mapping, "time": time or date}
    absent = [f"{k} → {v!r}" for k, v in needed.items() if v not in raw.columns]
    if absent:
        raise ManifestError(f"{path}: column(s) not found: {', '.join(absent)} (the table has "
                            f"{', '.join(map(str, raw.columns))}).")
    table = raw.drop(columns=[c for c in raw.columns if c in ("image", "subject", "time",
                                                            *OPTIONAL_COLUMNS)
                              and c not in needed.values()])
    table = table.rename(columns={v: k for k, v in mapping.items()})
    if time is not None:
        if pd.api.types.is_datetime64_any_dtype(raw[time]):
            raise ManifestError(f"{path}, column {time!r}: holds dates ({raw[time].dtype}), not "
                                f"years; pass it as --date {time} (date={time!r}) instead.")
        table = table.rename(columns={time: "time"})
    else:
        table["time"] = _years_since_first(raw[date], table["subject"], path, date)
        if date != "time":
            table = table.drop(columns=[date])
    if "split" in table:
        table["split"] = _splits(table["split"].astype(str), path)
    if "labels" in table and label_separator != LABEL_SEPARATOR:
        parts = table["labels"].astype(str).str.split(label_separator)
        table["labels"] = parts.map(lambda xs: LABEL_SEPARATOR.join(x.strip() for x in xs
                                                                    if x.strip()))
    if images is not None:
        table["image"] = image_column(table["image"].astype(str), images)
    return Cohort(schema_first(table), root=path.parent, source=str(path))


def _years_since_first(dates: pd.Series, subjects: pd.Series, path: Path, name: str) -> np.ndarray:
    when = pd.to_datetime(dates, errors="coerce", format="mixed")
    bad = np.flatnonzero(when.isna().to_numpy())
    if len(bad):
        raise ManifestError(f"{where(path, int(bad[0]))}, column '{name}': "
                            f"{dates.iloc[bad[0]]!r} is not a date.")
    first = when.groupby(subjects.to_numpy()).transform("min")
    return ((when - first).dt.total_seconds() / (365.25 * 86400.0)).to_numpy()


def _splits(values: pd.Series, path: Path) -> pd.Series:
    normal = values.str.strip().str.lower().map(_SPLIT_NAMES)
    bad = np.flatnonzero(normal.isna().to_numpy())
    if len(bad):
        raise ManifestError(f"{where(path, int(bad[0]))}, column 'split': "
                            f"{values.iloc[bad[0]]!r} is not train, val (validate/validation) or "
                            "test.")
    return normal
