"""Cohort: the one validated table (one row per image) that every stage reads.

Adapters produce it, training / evaluation / indexing consume it. A manifest written by one tool and
read by another gives the same Cohort: columns have fixed dtypes (identities are strings, never
floats), relative image paths resolve against the manifest's folder, and invalid manifests fail at
load time with the file, line and column named.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.errors import ConfigError, ManifestError
from radsearch.io import atomic_path

REQUIRED_COLUMNS = ("image", "subject", "time")
OPTIONAL_COLUMNS = ("side", "view", "study", "split", "labels", "report")
TEXT_COLUMNS = ("image", "subject", *OPTIONAL_COLUMNS)
SPLITS = ("train", "val", "test")
SIDES = ("L", "R")
LABEL_SEPARATOR = "|"
NO_FINDING = "No Finding"


class Cohort:
    """A validated manifest table plus the folder its relative image paths resolve against.

    ``table`` columns: ``image``, ``subject`` (str), ``time`` (float years) and any of ``side``
    (L/R), ``view``, ``study``, ``split`` (train/val/test or empty), ``labels`` (``a|b``),
    ``report``; extra columns (e.g. ``kl``, ``site``, ``age``) are kept as they are.
    """

    def __init__(self, table: pd.DataFrame, root: str | os.PathLike | None = None,
                 source: str = "in-memory table"):
        self.source = source
        self.root = Path(root) if root is not None else None
        self.table = _validate(table, source, self.root)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: str | os.PathLike) -> Cohort:
        """Read a manifest (``.csv``, ``.csv.gz`` or ``.parquet``) and validate it."""
        path = Path(path)
        if path.is_dir():  # `radsearch cohort info knees/` means the manifest inside
            inside = [path / n for n in ("manifest.csv", "manifest.csv.gz", "manifest.parquet")]
            path = next((p for p in inside if p.is_file()), path / "manifest.csv")
        if not path.is_file():
            raise ManifestError(f"{path}: manifest not found. Create one with `radsearch cohort "
                                f"from-<dataset> … --out {path.name}` or `radsearch synth`.")
        try:
            if _is_parquet(path):
                table = pd.read_parquet(path)
            else:
                # Everything as text first: identities such as MIMIC's 8-digit subject_id or
                # "00012" must never pass through float.
                table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
        except Exception as exc:  # pandas / pyarrow raise many types for a broken file
            raise ManifestError(f"{path}: cannot read as a manifest table ({exc}). "
                                "Expected a CSV with a header row or a Parquet file.") from exc
        return cls(table, root=path.parent, source=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the manifest atomically; image paths are rewritten relative to the new folder."""
        path = Path(path)
        table = self.table.copy()
        table["image"] = [_relative_to(p, path.parent.resolve()) for p in self.image_paths()]
        with atomic_path(path) as tmp:
            if _is_parquet(path):
                table.to_parquet(tmp, index=False)
            else:
                table.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
        return path

    # ------------------------------------------------------------ accessors
    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (f"Cohort({len(self)} images, {self.table['subject'].nunique()} subjects, "
                f"source={self.source!r})")

    def has(self, column: str) -> bool:
        """True when the column exists and at least one row fills it."""
        if column not in self.table:
            return False
        col = self.table[column]
        if _is_text(col):
            return bool(((col != "") & col.notna()).any())
        return bool(col.notna().any())

    def image_paths(self) -> list[Path]:
        """Image paths with relative entries resolved against the manifest's folder."""
        root = self.root
        out = []
        for image in self.table["image"]:
            p = Path(image)
            out.append(p if p.is_absolute() or root is None else root / p)
        return out

    def outside_root(self) -> np.ndarray:
        """Row positions whose image lies outside the manifest's folder (``../..``, absolute paths).

        Paths are compared after normalisation, without following links. Adapters given
        ``--images /elsewhere`` write such paths on purpose; a service must not read them.
        """
        if self.root is None:
            return np.flatnonzero(np.zeros(len(self), dtype=bool))
        root = os.path.normpath(os.path.abspath(self.root))
        prefix = root.rstrip(os.sep) + os.sep
        inside = [p == root or p.startswith(prefix) for p in _normal_paths(self.table["image"],
                                                                           self.root)]
        return np.flatnonzero(~np.asarray(inside, dtype=bool))

    def require_inside_root(self) -> None:
        """Raise ManifestError naming the first row whose image lies outside the manifest's folder."""
        rows = self.outside_root()
        if len(rows):
            raise ManifestError(f"{_where(self.source, int(rows[0]))}, column 'image': "
                                f"{self.table['image'].iloc[rows[0]]!r} lies outside the "
                                f"manifest's folder {self.root} ({len(rows)} row(s) in all); "
                                "only images inside it may be read here.")

    @property
    def subjects(self) -> np.ndarray:
        return self.table["subject"].to_numpy(dtype=object)

    @property
    def times(self) -> np.ndarray:
        return self.table["time"].to_numpy(dtype=np.float64)

    def subject_codes(self) -> np.ndarray:
        """Identities as int64 codes 0..n_subjects-1 (sorted by subject string)."""
        codes, _ = pd.factorize(self.table["subject"], sort=True)
        return codes.astype(np.int64)

    def label_sets(self) -> list[frozenset[str]]:
        """Positive findings per row; ``No Finding`` is kept as its own label."""
        if "labels" not in self.table:
            raise ManifestError(f"{self.source}: no 'labels' column; diagnostic retrieval needs "
                                "findings joined by '|' (\"No Finding\" when none).")
        return [frozenset(x for x in s.split(LABEL_SEPARATOR) if x) for s in self.table["labels"]]

    def label_matrix(self, classes: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """Multi-hot matrix (N × C, bool) and the class names of its columns."""
        sets = self.label_sets()
        if classes is None:
            classes = sorted(set().union(*sets)) if sets else []
        index = {c: i for i, c in enumerate(classes)}
        matrix = np.zeros((len(sets), len(classes)), dtype=bool)
        for row, labels in enumerate(sets):
            for label in labels:
                if label in index:
                    matrix[row, index[label]] = True
        return matrix, list(classes)

    # ------------------------------------------------------------- subsets
    def subset(self, rows: np.ndarray | Sequence[int] | pd.Series) -> Cohort:
        """Rows selected by a boolean mask or integer positions, as a new Cohort."""
        rows = np.asarray(rows)
        table = self.table[rows] if rows.dtype == bool else self.table.iloc[rows]
        return Cohort(table.reset_index(drop=True), root=self.root, source=self.source)

    def split(self, name: str) -> Cohort:
        """The rows of one split; an empty split is an error that names the splits present."""
        if name not in SPLITS:
            raise ManifestError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}.")
        if "split" not in self.table:
            raise ManifestError(f"{self.source}: no 'split' column, cannot select split {name!r}.")
        mask = (self.table["split"] == name).to_numpy()
        if not mask.any():
            present = sorted(set(self.table["split"]) - {""}) or ["none"]
            raise ManifestError(f"{self.source}: split {name!r} is empty (splits present: "
                                f"{', '.join(present)}).")
        return self.subset(mask)

    def summary(self) -> dict:
        """Counts a user checks first: images, subjects, images per subject, years, splits, labels."""
        t = self.table
        per_subject = t.groupby("subject").size()
        by_subject = t.groupby("subject")["time"]
        span = by_subject.max() - by_subject.min()
        out: dict = {
            "images": len(t),
            "subjects": int(t["subject"].nunique()),
            "images_per_subject": {"min": int(per_subject.min()) if len(t) else 0,
                                   "median": float(per_subject.median()) if len(t) else 0.0,
                                   "max": int(per_subject.max()) if len(t) else 0},
            "subjects_with_2plus_images": int((per_subject >= 2).sum()),
            "time": {"min": float(t["time"].min()) if len(t) else 0.0,
                     "max": float(t["time"].max()) if len(t) else 0.0,
                     "max_span_per_subject": float(span.max()) if len(t) else 0.0},
        }
        for column in ("split", "side", "view"):
            if self.has(column):
                out[column] = {str(k): int(v) for k, v in t[column].value_counts().items()}
        if self.has("labels"):
            counts: dict[str, int] = {}
            for labels in self.label_sets():
                for label in labels:
                    counts[label] = counts.get(label, 0) + 1
            out["labels"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        if self.has("report"):
            out["with_report"] = int((t["report"] != "").sum())
        return out


def clear_cohort_folder(out: str | os.PathLike, overwrite: bool,
                        manifest_name: str = "manifest.csv") -> None:
    """Make ``out`` ready for a new cohort: refuse to mix two cohorts in one folder.

    A missing or empty folder is fine. Otherwise ``overwrite`` is required, and then only the
    images its manifest lists (inside the folder) and the manifest are removed — never other
    files, never anything outside it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder (it is created if missing).")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"--out {out}: the folder is not empty; choose a new folder, or pass "
                          "--overwrite to replace the cohort there (only the images listed in its "
                          f"{manifest_name} are removed).")
    manifest = out / manifest_name
    if manifest.is_file():
        old = Cohort.load(manifest)
        inside = np.ones(len(old), dtype=bool)
        inside[old.outside_root()] = False
        for path, keep in zip(old.image_paths(), inside):
            if keep and path.is_file():
                path.unlink()
        manifest.unlink()


# ---------------------------------------------------------------- validation
def where(source: str | os.PathLike, row: int) -> str:
    """Human position of a row: text tables count lines (the header is line 1), others rows."""
    source = os.fspath(source)
    if source.lower().removesuffix(".gz").endswith((".csv", ".tsv", ".txt")):
        return f"{source}, line {row + 2}"
    return f"{source}, row {row}"


_where = where


def _normal_paths(images: pd.Series, root: Path | None) -> list[str]:
    """Absolute, normalised spellings (``./a.png``, ``x/../a.png`` and ``/root/a.png`` agree)."""
    base = os.path.abspath(root if root is not None else os.curdir)
    return [os.path.normpath(os.path.join(base, p)) for p in images]


def _validate(table: pd.DataFrame, source: str, root: Path | None = None) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise ManifestError(f"{source}: expected a pandas DataFrame, got {type(table).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing required column(s) {', '.join(missing)}; found "
            f"{', '.join(map(str, table.columns)) or 'no columns'}. A manifest needs image, "
            "subject, time (years) and may have side, view, study, split, labels, report.")
    table = table.reset_index(drop=True).copy()

    for column in TEXT_COLUMNS:
        if column in table:
            table[column] = _as_text(table[column], column, source)

    for column in ("image", "subject"):
        empty = np.flatnonzero((table[column].str.strip() == "").to_numpy())
        if len(empty):
            raise ManifestError(f"{_where(source, int(empty[0]))}, column '{column}': empty value "
                                f"({len(empty)} row(s) in all); every image needs a {column}.")

    dup = table["image"].duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)[:2]
        raise ManifestError(f"{_where(source, int(rows[1]))}, column 'image': "
                            f"{table['image'].iloc[rows[1]]!r} also appears at "
                            f"{_where(source, int(rows[0]))}; each image must be listed once.")
    # relative paths without '.', '..' or '//' segments are already normal: the plain check suffices
    blob = "\n" + "\n".join(table["image"])  # one string search instead of per-row checks
    unusual = any(text in blob for text in ("/.", "//", "\\", "\n.", "\n/"))
    normal = pd.Series(_normal_paths(table["image"], root)) if unusual else None
    dup = normal.duplicated(keep=False).to_numpy() if normal is not None else np.zeros(0, bool)
    if dup.any():
        first = normal[dup].groupby(normal[dup]).head(2).index[:2]
        raise ManifestError(f"{_where(source, int(first[1]))}, column 'image': "
                            f"{table['image'].iloc[first[1]]!r} is the same file as "
                            f"{_where(source, int(first[0])).rsplit(', ', 1)[-1]} "
                            f"({table['image'].iloc[first[0]]!r}); each image must be listed once.")

    _refuse_dates(table["time"], source)
    time = pd.to_numeric(table["time"], errors="coerce")
    bad = np.flatnonzero(~np.isfinite(time.to_numpy(dtype=np.float64, na_value=np.nan)))
    if len(bad):
        value = table["time"].iloc[bad[0]]
        hint = f" It is a date: {DATE_HINT}" if _is_date_text(value) else ""
        raise ManifestError(f"{_where(source, int(bad[0]))}, column 'time': "
                            f"{value!r} is not a finite number of years.{hint}")
    table["time"] = time.astype(np.float64)

    _check_choices(table, "split", SPLITS, source)
    _check_choices(table, "side", SIDES, source)

    for column in table.columns:
        if column not in TEXT_COLUMNS and column != "time" and _is_text(table[column]):
            converted = pd.to_numeric(table[column], errors="coerce")
            if converted.notna().all() and len(converted):
                table[column] = converted
    return table


DATE_HINT = ("build the manifest with `radsearch cohort from-table TABLE --date COLUMN` (time = "
             "years since the subject's first date).")


def _refuse_dates(time: pd.Series, source: str) -> None:
    """Dates in ``time`` would become nanoseconds since 1970 read as years: refuse them."""
    if (pd.api.types.is_datetime64_any_dtype(time) or pd.api.types.is_timedelta64_dtype(time)
            or (len(time) and isinstance(time.iloc[0], (pd.Timestamp, np.datetime64,
                                                         _dt.date)))):
        raise ManifestError(f"{source}, column 'time': holds dates ({time.dtype}), not years; "
                            f"{DATE_HINT}")


def _is_date_text(value: object) -> bool:
    if not isinstance(value, str) or not any(sep in value for sep in "-/.:"):
        return False
    return not pd.isna(pd.to_datetime(value, errors="coerce"))


def _as_text(column: pd.Series, name: str, source: str) -> pd.Series:
    if name == "subject" and pd.api.types.is_float_dtype(column):
        raise ManifestError(f"{source}, column 'subject': identities are floats here, which merges "
                            "large ids; store them as text or integers.")
    # Vectorised: '' for missing cells, str(v) otherwise (a per-cell lambda took seconds at 200k rows).
    missing = column.isna().to_numpy()
    text = column.astype(object).astype(str).to_numpy(dtype=object)
    text[missing] = ""
    return pd.Series(text, index=column.index, dtype=object)


def _is_text(column: pd.Series) -> bool:
    # pandas >= 3 reads text as the "str" dtype, older pandas as object.
    return pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)


def _check_choices(table: pd.DataFrame, column: str, allowed: tuple[str, ...], source: str) -> None:
    if column not in table:
        return
    bad = np.flatnonzero(~table[column].isin((*allowed, "")).to_numpy())
    if len(bad):
        raise ManifestError(f"{_where(source, int(bad[0]))}, column '{column}': "
                            f"{table[column].iloc[bad[0]]!r} is not one of {', '.join(allowed)} "
                            "(or empty).")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _relative_to(path: Path, folder: Path) -> str:
    absolute = path if path.is_absolute() else path.resolve()
    try:
        return os.path.relpath(absolute, folder)
    except ValueError:  # different drive on Windows
        return str(absolute)
