"""The layout of a run folder, in one place.

Everything that reads or writes a run (engine, embedding, comparison, reports, demo) asks
:class:`RunDir` for a path instead of spelling file names, so the layout can change in one file.

    <run>/config.yaml         resolved config (the run can be re-created from it)
    <run>/cohort.csv          the cohort with its train / val / test split
    <run>/preprocessing.json  normalisation, crop and mirroring the model was trained with
    <run>/last.pt             model + loss + optimiser state after the last finished epoch (resume)
    <run>/best.pt             model + loss state (no optimiser) of the best validation epoch
    <run>/metrics.csv         one row per epoch; histograms.npz: Δ / S_neg histograms per epoch
    <run>/results.json        per-year test results of best.pt
    <run>/references.json     chance, raw pixels and the untrained network on the same test split
    <run>/summary.json        best epoch, its validation metric, the test "All" metrics
    <run>/tensorboard/        TensorBoard scalars and histograms
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from radsearch.errors import ConfigError


class RunDir:
    """Paths of one run folder (nothing is created until something is written)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def cohort(self) -> Path:
        return self.path / "cohort.csv"

    @property
    def preprocessing(self) -> Path:
        return self.path / "preprocessing.json"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def histograms(self) -> Path:
        return self.path / "histograms.npz"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def references(self) -> Path:
        return self.path / "references.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def checkpoint(self, name: str = "best") -> Path:
        """``best`` (falling back to ``last`` before the first validation), ``last`` or a file."""
        if name in ("best", "last"):
            path = self.best if name == "best" else self.last
            if name == "best" and not path.is_file():
                path = self.last
        else:
            path = Path(name)
        if not path.is_file():
            raise ConfigError(f"{path}: checkpoint not found; the run has not finished an epoch "
                              "yet (resume it with `radsearch train` on the same config).")
        return path

    def require(self) -> RunDir:
        """Refuse a folder that is not a run (no config.yaml), with what to do."""
        if not self.config.is_file():
            raise ConfigError(f"{self.path}: not a radsearch run folder (no config.yaml). Train "
                              "one with `radsearch train CONFIG`.")
        return self

    def read_json(self, name: str) -> dict[str, Any]:
        """``results`` / ``summary`` / ``references`` / ``preprocessing`` ({} when absent)."""
        path = getattr(self, name)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
