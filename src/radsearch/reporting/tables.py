"""Forensic tables of runs with their reference rows, rendered by radsearch.evaluation.report.

``run_results(run_dirs)`` gathers each run's ``results.json`` and ``references.json``;
``forensic_markdown`` renders the supplement-Table-4 shape (rows = metric × method, columns =
years apart + All, mean ± standard error over seeds) with the best trained mean of each column in
bold — reference rows (chance, raw pixels, untrained network) are shown but never bolded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from radsearch.errors import ConfigError
from radsearch.evaluation import forensic_table
from radsearch.evaluation.report import Table
from radsearch.training.references import LABELS as REFERENCE_LABELS
from radsearch.training.rundir import RunDir

TABLE_METRICS = ("mAP", "mAP@R", "CMC@1")


def run_results(runs: Mapping[str, Sequence[str | Path]],
                references: bool = True) -> dict[str, list[dict]]:
    """label → per-seed result dicts; then each reference label → its per-seed results."""
    out: dict[str, list[dict]] = {}
    refs: dict[str, list[dict]] = {}
    for label, dirs in runs.items():
        for run_dir in dirs:
            run = RunDir(run_dir)
            if not run.results.is_file():
                raise ConfigError(f"{run.path}: no results.json (the cohort has no test split, or "
                                  "the run has not finished).")
            out.setdefault(label, []).append(run.read_json("results"))
            for name, result in run.read_json("references").items():
                refs.setdefault(name, []).append(result)
    if references:
        # one draw per seed of the first method's runs: every method shares the test split
        first = len(next(iter(runs.values()))) if runs else 0
        for name in REFERENCE_LABELS:
            if name in refs:
                out[name] = refs[name][:first]
    return out


def bold_best(table: Table, skip: Sequence[str] = REFERENCE_LABELS) -> Table:
    """Bold the highest mean per (metric, column) among rows whose method is not in ``skip``."""
    header = table.header
    best: dict[tuple[str, str], float] = {}
    for cell in table.values:
        if cell["method"] in skip:
            continue
        key = (cell["metric"], cell["group"])
        best[key] = max(best.get(key, float("-inf")), cell["mean"])
    columns = {("All" if c == "all" else c): i for i, c in enumerate(header)}
    for cell in table.values:
        if cell["method"] in skip or cell["mean"] != best.get((cell["metric"], cell["group"])):
            continue
        col = columns.get("All" if cell["group"] == "all" else cell["group"])
        for row in table.rows:
            if row[0] == cell["metric"] and row[1] == cell["method"] and col is not None:
                if not row[col].startswith("**"):
                    row[col] = f"**{row[col]}**"
    return table


def forensic_markdown(results: Mapping[str, Sequence[dict]],
                      metrics: Sequence[str] = TABLE_METRICS,
                      title: str = "Forensic retrieval on the test split") -> str:
    """The rendered table (percent, mean ± SE over seeds, years-apart columns, best in bold)."""
    table = forensic_table(dict(results), metrics, title=title)
    header = [h if h in ("Metric", "Method", "All") else f"{h} y" for h in table.header]
    table = bold_best(table)
    table.header = header
    return table.markdown()
