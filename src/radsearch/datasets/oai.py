"""Osteoarthritis Initiative (knee radiographs) → Cohort.

Inputs: a per-knee image table (``ID, visit, side, path``: pre-cropped knee images from a separate
localiser) and, optionally, the OAI folder of pipe-separated ASCII files: ``Enrollees.txt``
(``V00SITE``, site A–E), ``AllClinical{VV}.txt`` (``V{VV}AGE``) and ``kxr_sq_bu{VV}.txt``
(``ID|SIDE|READPRJ|…|V{VV}XRKL``; SIDE 1 = right, 2 = left). Identity = participant ``ID`` (both
knees share it); ``time`` = visit months / 12; ``split`` = test for the test site (C in the AdaTriplet
protocol), train for the others, with an optional seeded share of participants moved to val.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.cohort import Cohort
from radsearch.datasets._tables import find_column, read_text_table
from radsearch.datasets.splits import carve_validation
from radsearch.errors import ConfigError, ManifestError

log = logging.getLogger(__name__)

# Visits with knee radiographs (docs/data.md): code → months since baseline.
VISIT_MONTHS = {"V00": 0, "V01": 12, "V03": 24, "V05": 36, "V06": 48, "V08": 72, "V10": 96}
SITES = ("A", "B", "C", "D", "E")


def read_oai(image_table: str | os.PathLike, metadata_dir: str | os.PathLike | None = None,
             test_site: str | None = "C", val_fraction: float = 0.0, seed: int = 0) -> Cohort:
    """Cohort of OAI knees from the per-knee image table and (optionally) the OAI ASCII files.

    Relative ``path`` entries resolve against the image table's folder. Without ``metadata_dir``
    there is no site (so no split), age or KL grade.
    """
    if test_site is not None and test_site not in SITES:
        raise ConfigError(f"test site {test_site!r} is not one of {', '.join(SITES)}.")
    table_path = Path(image_table)
    knees = _read_image_table(table_path)
    visits = knees["visit"]
    table = pd.DataFrame({
        "image": knees["path"],
        "subject": knees["ID"],
        "time": visits.map(VISIT_MONTHS).to_numpy(dtype=np.float64) / 12.0,
        "side": knees["side"],
        "view": "PA",
        "study": knees["ID"] + "_" + visits,
        "visit": visits,
        "visit_months": visits.map(VISIT_MONTHS).astype(np.int64),
    })
    if metadata_dir is not None:
        folder = Path(metadata_dir)
        if not folder.is_dir():
            raise ManifestError(f"{folder}: OAI metadata folder not found; pass the folder with "
                                "Enrollees.txt, AllClinical00.txt…, kxr_sq_bu00.txt….")
        table["site"] = table["subject"].map(_sites(folder)).fillna("")
        table["age"] = _per_visit(folder, "allclinical", "AGE", table, by_side=False)
        table["kl"] = _per_visit(folder, "kxr_sq_bu", "XRKL", table, by_side=True)
        if test_site is not None and (table["site"] != "").any():
            split = pd.Series(np.where(table["site"] == test_site, "test", "train"), dtype=object)
            split[table["site"] == ""] = ""
            table["split"] = carve_validation(table["subject"], split, val_fraction, seed)
    order = np.lexsort((table["side"].to_numpy(dtype=str), table["time"].to_numpy(),
                        table["subject"].to_numpy(dtype=str)))
    return Cohort(table.iloc[order].reset_index(drop=True), root=table_path.parent,
                  source=str(table_path))


def _read_image_table(path: Path) -> pd.DataFrame:
    raw = read_text_table(path, "OAI knee image table", sep=None)
    columns = {name: find_column(raw, candidates) for name, candidates in (
        ("ID", ("ID", "participant", "subject")), ("visit", ("visit", "VISIT")),
        ("side", ("side", "SIDE")), ("path", ("path", "image", "file")))}
    missing = [k for k, v in columns.items() if v is None]
    if missing:
        raise ManifestError(f"{path}: the knee image table needs columns ID, visit, side, path; "
                            f"missing {', '.join(missing)} (found: {', '.join(raw.columns)}).")
    knees = pd.DataFrame({k: raw[v].str.strip() for k, v in columns.items()})
    knees["visit"] = [_visit_code(v, path, row) for row, v in enumerate(knees["visit"])]
    knees["side"] = [_side(v, path, row) for row, v in enumerate(knees["side"])]
    return knees


def _visit_code(text: str, path: Path, row: int) -> str:
    match = re.fullmatch(r"[Vv]?0*(\d{1,2})", text)
    code = f"V{int(match.group(1)):02d}" if match else text
    if code not in VISIT_MONTHS:
        raise ManifestError(f"{path}, line {row + 2}, column 'visit': {text!r} is not one of the "
                            f"radiograph visits {', '.join(VISIT_MONTHS)} (months "
                            f"{', '.join(map(str, VISIT_MONTHS.values()))}).")
    return code


def _side(text: str, path: Path | None, row: int) -> str:
    """OAI SIDE: 1 = right, 2 = left ("1", "1: Right", "Right", "R")."""
    key = text.split(":")[0].strip().upper()
    side = {"1": "R", "2": "L", "R": "R", "L": "L", "RIGHT": "R", "LEFT": "L"}.get(key)
    if side is None:
        where = f"{path}, line {row + 2}, column 'side'" if path else "SIDE"
        raise ManifestError(f"{where}: {text!r} is not 1 (right), 2 (left), R or L.")
    return side


def _oai_file(folder: Path, stem: str) -> Path | None:
    """The file ``stem``.txt in the folder, any capitalisation (Enrollees.txt, enrollees.txt)."""
    for path in folder.iterdir():
        if path.name.lower() == f"{stem}.txt":
            return path
    return None


def _number(text: pd.Series) -> pd.Series:
    """OAI cells: '2', '2: 2', '61'; missing values start with '.' ('.: Missing Form')."""
    return pd.to_numeric(text.str.extract(r"^\s*(-?\d+(?:\.\d+)?)", expand=False), errors="coerce")


def _sites(folder: Path) -> pd.Series:
    path = _oai_file(folder, "enrollees")
    if path is None:
        log.warning("%s: no Enrollees.txt; sites (and the site split) are unknown", folder)
        return pd.Series(dtype=object)
    enrollees = read_text_table(path, "OAI enrollees file", sep="|")
    site_col = find_column(enrollees, ("V00SITE",))
    if site_col is None or "ID" not in enrollees:
        raise ManifestError(f"{path}: the OAI enrollees file needs columns ID and V00SITE.")
    site = enrollees[site_col].str.split(":").str[0].str.strip().str.upper()
    return pd.Series(site.where(site.isin(SITES), "").to_numpy(),
                     index=enrollees["ID"].str.strip()).loc[lambda s: ~s.index.duplicated()]


def _per_visit(folder: Path, stem: str, field: str, table: pd.DataFrame,
               by_side: bool) -> np.ndarray:
    """``V{VV}{field}`` from ``{stem}{VV}.txt`` for each row's visit (NaN where absent)."""
    out = np.full(len(table), np.nan)
    for code in sorted(set(table["visit"])):
        path = _oai_file(folder, f"{stem}{code[1:]}")
        if path is None:
            log.warning("%s: no %s%s.txt; %s is empty for visit %s", folder, stem, code[1:],
                        field, code)
            continue
        values = read_text_table(path, f"OAI {stem} file", sep="|")
        column = find_column(values, (f"{code}{field}",))
        if column is None or "ID" not in values or (by_side and "SIDE" not in values):
            raise ManifestError(f"{path}: needs columns ID{', SIDE' if by_side else ''} and "
                                f"{code}{field}.")
        values = values.assign(ID=values["ID"].str.strip(), value=_number(values[column]))
        if by_side:
            values["side"] = [_side(v, path, row) for row, v in enumerate(values["SIDE"])]
            if "READPRJ" in values:  # several reading projects: the lowest project number wins
                values = values.assign(prj=_number(values["READPRJ"])).sort_values(
                    "prj", kind="stable")
            values = values.dropna(subset=["value"]).drop_duplicates(["ID", "side"])
            lookup = values.set_index(["ID", "side"])["value"]
            rows = np.flatnonzero((table["visit"] == code).to_numpy())
            keys = pd.MultiIndex.from_arrays([table["subject"].iloc[rows],
                                              table["side"].iloc[rows]])
            out[rows] = lookup.reindex(keys).to_numpy(dtype=np.float64)
        else:
            lookup = values.dropna(subset=["value"]).drop_duplicates("ID").set_index("ID")["value"]
            rows = np.flatnonzero((table["visit"] == code).to_numpy())
            out[rows] = lookup.reindex(table["subject"].iloc[rows]).to_numpy(dtype=np.float64)
    return out
