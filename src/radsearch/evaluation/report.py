"""Seed aggregation (mean ± standard error) and the tables of the papers as Markdown, CSV and JSON.

* :func:`forensic_table` — AdaTriplet supplement Tables 4/5: methods × metrics, columns = years + All.
* :func:`diagnostic_table` — MMDL Table S2: metrics × methods (group "all").
* :func:`per_class_table` — MMDL Tables S3/S4: classes + "All samples" × methods for one metric.

Every table carries its settings stamp (protocol, relevance, normalisation, ties): a first line in
Markdown, columns in CSV, a ``settings`` object in JSON.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radsearch.errors import ConfigError, DataError
from radsearch.evaluation.protocols import RetrievalResult
from radsearch.io import write_json, write_text

COUNT_KEYS = ("n_queries", "n_skipped")


@dataclass(frozen=True)
class MeanSE:
    """Mean over seeds, its standard error (sample std / √n; NaN for one seed) and n seeds."""

    mean: float
    se: float
    n: int

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        if math.isnan(self.mean):
            return "—"
        text = f"{self.mean * scale:.{digits}f}"
        if self.n > 1 and not math.isnan(self.se):
            text += f" ± {self.se * scale:.{digits}f}"
        return text


@dataclass
class SeedAggregate:
    """Per group and metric: mean ± standard error over seeds; settings of the first result."""

    groups: dict[str, dict[str, MeanSE]]
    settings: dict[str, Any]
    n_seeds: int

    def to_dict(self) -> dict[str, Any]:
        return {"n_seeds": self.n_seeds, "settings": self.settings,
                "groups": {g: {m: {"mean": v.mean, "se": v.se, "n": v.n} for m, v in ms.items()}
                           for g, ms in self.groups.items()}}


ResultLike = RetrievalResult | Mapping[str, Any]


def _as_result(result: ResultLike) -> RetrievalResult:
    return result if isinstance(result, RetrievalResult) else RetrievalResult.from_dict(
        dict(result))


def aggregate_seeds(results: Sequence[ResultLike]) -> SeedAggregate:
    """Mean ± standard error (ddof = 1) of every group/metric over the seeds that report it."""
    parsed = [_as_result(r) for r in results]
    if not parsed:
        raise DataError("aggregate_seeds: no results given (one per seed expected).")
    protocols = {r.protocol for r in parsed}
    if len(protocols) > 1:
        raise DataError(f"aggregate_seeds: results mix protocols {sorted(protocols)}.")
    groups: dict[str, dict[str, MeanSE]] = {}
    for name in _ordered_groups(parsed):
        metrics: list[str] = []
        for r in parsed:
            for m in r.groups.get(name, {}):
                if m not in metrics:
                    metrics.append(m)
        groups[name] = {}
        for m in metrics:
            values = np.array([r.groups[name][m] for r in parsed
                               if name in r.groups and m in r.groups[name]], dtype=np.float64)
            values = values[~np.isnan(values)]
            n = len(values)
            mean = float(values.mean()) if n else float("nan")
            se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            groups[name][m] = MeanSE(mean, se, n)
    return SeedAggregate(groups, dict(parsed[0].settings), len(parsed))


def _ordered_groups(results: Sequence[RetrievalResult]) -> list[str]:
    """Numeric years first, then bands / thresholds, then class names, "all" last."""
    names: list[str] = []
    for r in results:
        for g in r.groups:
            if g not in names:
                names.append(g)
    years = sorted((g for g in names if g.isdigit()), key=int)
    others = [g for g in names if not g.isdigit() and g != "all"]
    return years + others + (["all"] if "all" in names else [])


def _aggregate(runs: Sequence[ResultLike] | SeedAggregate | ResultLike) -> SeedAggregate:
    if isinstance(runs, SeedAggregate):
        return runs
    if isinstance(runs, (RetrievalResult, Mapping)):
        return aggregate_seeds([runs])
    return aggregate_seeds(list(runs))


# ---------------------------------------------------------------------------- table building
@dataclass
class Table:
    """A rendered-agnostic table: header, rows of cells, and the settings stamp."""

    title: str
    header: list[str]
    rows: list[list[str]]
    settings: dict[str, Any]
    values: list[dict[str, Any]]  # machine form: one record per cell

    def markdown(self) -> str:
        stamp = "; ".join(f"{k}: {_plain(v)}" for k, v in self.settings.items())
        lines = [f"**{self.title}** — {stamp}", "",
                 "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        stamp_keys = list(self.settings)
        writer.writerow([*self.header, *stamp_keys])
        stamp = [_plain(self.settings[k]) for k in stamp_keys]
        for row in self.rows:
            writer.writerow([*row, *stamp])
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "settings": self.settings, "cells": self.values}

    def write(self, path: str | os.PathLike) -> Path:
        """Write by extension: .md, .csv or .json (atomically)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".md":
            write_text(path, self.markdown())
        elif suffix == ".csv":
            write_text(path, self.csv())
        elif suffix == ".json":
            write_json(path, self.to_dict())
        else:
            raise ConfigError(f"{path}: unknown table format; use a .md, .csv or .json file name.")
        return path


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _column_name(group: str) -> str:
    return {"all": "All"}.get(group, group)


def _stamp(aggregates: Mapping[str, SeedAggregate], keys: Sequence[str]) -> dict[str, Any]:
    first = next(iter(aggregates.values())).settings
    out = {k: first.get(k) for k in keys if k in first}
    out["values"] = "mean ± standard error over seeds"
    return out


def _add_cell(row: list[str], values: list[dict[str, Any]], method: str, agg: SeedAggregate,
              metric: str, group: str, scale: float, digits: int) -> None:
    """Append one "mean ± SE" cell to ``row`` and its machine record to ``values``."""
    cell = agg.groups.get(group, {}).get(metric)
    row.append(cell.format(scale, digits) if cell else "—")
    if cell:
        values.append({"metric": metric, "method": method, "group": group,
                       "mean": cell.mean, "se": cell.se, "n_seeds": cell.n})


def forensic_table(methods: Mapping[str, Sequence[ResultLike] | SeedAggregate],
                   metrics: Sequence[str] = ("mAP", "mAP@R", "CMC@1"), *,
                   percent: bool = True, digits: int = 1,
                   title: str = "Forensic retrieval") -> Table:
    """AdaTriplet supplement Table 4/5 shape: one row per (metric, method), columns years + All.

    ``methods`` maps a method name to its per-seed results (or a ready :class:`SeedAggregate`).
    Cells are "mean ± SE" (in % with ``percent``).
    """
    aggregates = {name: _aggregate(runs) for name, runs in methods.items()}
    if not aggregates:
        raise DataError("forensic_table: no methods given.")
    groups = [g for g in _ordered_groups([_groups_only(a) for a in aggregates.values()])]
    header = ["Metric", "Method", *(_column_name(g) for g in groups)]
    rows, values = [], []
    scale = 100.0 if percent else 1.0
    for metric in metrics:
        for name, agg in aggregates.items():
            row = [metric, name]
            for g in groups:
                _add_cell(row, values, name, agg, metric, g, scale, digits)
            rows.append(row)
    settings = _stamp(aggregates, ("protocol", "relevance", "mode", "view", "ties"))
    settings["scale"] = "percent" if percent else "fraction"
    settings["CMC@k"] = "multi-match; CMC@k_first = first match"
    return Table(title, header, rows, settings, values)


def diagnostic_table(methods: Mapping[str, Sequence[ResultLike] | SeedAggregate],
                     metrics: Sequence[str] = ("mAP@1", "mAP@5", "mAP@10", "mAP@20", "mAP",
                                               "Acc@1", "Acc@5"), *,
                     group: str = "all", digits: int = 3,
                     title: str = "Diagnostic retrieval") -> Table:
    """MMDL Table S2 shape: rows = metrics ("mAP" is mAP@all), columns = methods."""
    aggregates = {name: _aggregate(runs) for name, runs in methods.items()}
    if not aggregates:
        raise DataError("diagnostic_table: no methods given.")
    header = ["Metric", *aggregates]
    rows, values = [], []
    for metric in metrics:
        row = ["mAP@all" if metric == "mAP" else metric]
        for name, agg in aggregates.items():
            _add_cell(row, values, name, agg, metric, group, 1.0, digits)
        rows.append(row)
    settings = _stamp(aggregates, ("protocol", "database", "queries", "relevance",
                                   "normalisation", "ties"))
    return Table(title, header, rows, settings, values)


def per_class_table(methods: Mapping[str, Sequence[ResultLike] | SeedAggregate],
                    metric: str = "mAP", *, digits: int = 3,
                    title: str | None = None) -> Table:
    """MMDL Tables S3/S4 shape: rows = classes + "All samples", columns = methods."""
    aggregates = {name: _aggregate(runs) for name, runs in methods.items()}
    if not aggregates:
        raise DataError("per_class_table: no methods given.")
    groups = [g for g in _ordered_groups([_groups_only(a) for a in aggregates.values()])
              if g != "all"] + ["all"]
    header = ["Class", *aggregates]
    rows, values = [], []
    for g in groups:
        row = ["All samples" if g == "all" else g]
        for name, agg in aggregates.items():
            _add_cell(row, values, name, agg, metric, g, 1.0, digits)
        rows.append(row)
    settings = _stamp(aggregates, ("protocol", "database", "queries", "relevance",
                                   "per_class_relevance", "normalisation", "ties"))
    settings["metric"] = metric
    return Table(title or f"Per-class {metric}", header, rows, settings, values)


def _groups_only(aggregate: SeedAggregate) -> RetrievalResult:
    return RetrievalResult(str(aggregate.settings.get("protocol", "")),
                           {g: {} for g in aggregate.groups}, 0, 0)


def result_table(result: RetrievalResult, metrics: Sequence[str] | None = None,
                 digits: int = 4) -> Table:
    """One result as a table: rows = groups (years / classes, then All), columns = metrics."""
    groups = _ordered_groups([result])
    if metrics is None:
        metrics = [m for m in next(iter(result.groups.values())) if m not in COUNT_KEYS]
    label = "Years apart" if result.protocol == "forensic" else "Class"
    header = [label, "n_queries", *metrics]
    rows, values = [], []
    for g in groups:
        data = result.groups[g]
        name = ("All" if result.protocol == "forensic" else "All samples") if g == "all" else g
        row = [name, str(int(data.get("n_queries", 0)))]
        for m in metrics:
            value = data.get(m, float("nan"))
            row.append("—" if value is None or math.isnan(value) else f"{value:.{digits}f}")
            values.append({"metric": m, "group": g, "value": value})
        rows.append(row)
    keys = ("protocol", "relevance", "mode", "view", "database", "queries", "normalisation")
    settings = {k: result.settings[k] for k in keys if k in result.settings}
    settings["n_gallery"] = result.n_gallery
    settings["n_skipped_queries"] = result.n_skipped_queries
    return Table(f"{result.protocol.capitalize()} retrieval", header, rows, settings, values)


def write_tables(table: Table, stem: str | os.PathLike) -> list[Path]:
    """Write ``stem``.md, ``stem``.csv and ``stem``.json."""
    stem = Path(stem)
    return [table.write(stem.with_suffix(ext)) for ext in (".md", ".csv", ".json")]
