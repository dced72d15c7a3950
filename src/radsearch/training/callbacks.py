"""What a run writes while it trains: metrics.csv, TensorBoard scalars, per-epoch histograms.

Everything is rewritten atomically at the end of each epoch from the history kept in memory, so a
resumed run continues the same files and a killed run never leaves a torn CSV.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from radsearch.io import atomic_open, write_text
from radsearch.training.rundir import RunDir


class RunLogger:
    """Per-epoch rows (loss, margins, mining counts, validation metrics) → CSV + TensorBoard."""

    def __init__(self, run_dir: RunDir | Path, tensorboard: bool = True):
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run_dir = self.run.path
        self.rows: list[dict[str, float]] = read_metrics(self.run)
        self.histograms: dict[str, np.ndarray] = read_histograms(self.run)
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.run.tensorboard))
            except ImportError:  # tensorboard is a declared dependency; stay usable without it
                self._writer = None

    def keep_until(self, epoch: int) -> None:
        """On resume: forget rows of epochs that were not checkpointed."""
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
        self.histograms = {k: v for k, v in self.histograms.items()
                           if int(k.split("/")[1]) < epoch}

    def log_epoch(self, row: dict[str, float],
                  histograms: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        epoch = int(row["epoch"])
        self.rows.append(row)
        for name, (edges, counts) in (histograms or {}).items():
            self.histograms[f"{name}/{epoch}/edges"] = np.asarray(edges, dtype=np.float64)
            self.histograms[f"{name}/{epoch}/counts"] = np.asarray(counts, dtype=np.float64)
        self._write()
        if self._writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(key, value, epoch)
            for name, (edges, counts) in (histograms or {}).items():
                counts = np.asarray(counts, dtype=np.float64)
                if counts.sum() > 0:
                    edges = np.asarray(edges, dtype=np.float64)
                    centres = (edges[:-1] + edges[1:]) / 2
                    self._writer.add_histogram_raw(
                        f"hist/{name}", min=float(edges[0]), max=float(edges[-1]),
                        num=int(counts.sum()), sum=float((centres * counts).sum()),
                        sum_squares=float((centres ** 2 * counts).sum()),
                        bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(),
                        global_step=epoch)
            self._writer.flush()

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _cell(row.get(k, "")) for k in columns})
        write_text(self.run.metrics, buffer.getvalue())
        with atomic_open(self.run.histograms, "wb") as fh:
            np.savez(fh, **{k.replace("/", "__"): v for k, v in self.histograms.items()})

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _cell(value) -> str | int | float:
    """Counts (epoch, batches) stay integers; floats keep Python's shortest round-trip form."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return value


def _parse(text: str | None) -> int | float:
    if text in ("", None):
        return math.nan
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_metrics(run_dir: RunDir | Path) -> list[dict[str, float]]:
    """metrics.csv as a list of rows (integers stay int, the rest float; empty when absent)."""
    path = RunDir(run_dir).metrics
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def read_histograms(run_dir: RunDir | Path) -> dict[str, np.ndarray]:
    """``{"delta/3/edges": …, "delta/3/counts": …}`` from histograms.npz (empty when absent)."""
    path = RunDir(run_dir).histograms
    if not path.is_file():
        return {}
    with np.load(path) as data:
        return {k.replace("__", "/"): data[k] for k in data.files}


def epoch_histograms(run_dir: Path, name: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-epoch (edges, counts) of one histogram ("delta" or "neg_sim")."""
    hist = read_histograms(run_dir)
    epochs = sorted({int(k.split("/")[1]) for k in hist if k.startswith(name + "/")})
    return {e: (hist[f"{name}/{e}/edges"], hist[f"{name}/{e}/counts"]) for e in epochs}
