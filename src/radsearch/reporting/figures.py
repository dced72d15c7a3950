"""Figures of a set of runs (used by ``radsearch demo``).

- learning.png: validation mAP per epoch of each run against the reference lines;
- margins.png: ε and β per epoch (paper Fig. 3), with mean Δ and mean negative similarity;
- distributions.png: Δ and negative-pair similarity distributions per epoch (Fig. 2b–c);
- queries.png: queries at the largest gap with their top-5 gallery matches and the rank of the
  true match (Fig. 1a style).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from radsearch.cohort import Cohort  # noqa: E402
from radsearch.io import atomic_path  # noqa: E402
from radsearch.training.callbacks import epoch_histograms, read_metrics  # noqa: E402

COLORS = {"AdaTriplet-AM": "tab:red", "Triplet": "tab:blue"}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_learning_curves(runs: dict[str, Path], path: Path,
                         references: dict[str, float] | None = None,
                         metric: str = "mAP") -> Path:
    """Validation ``metric`` (%) per epoch of every run; ``references``: label → horizontal line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, run_dir in runs.items():
        rows = [r for r in read_metrics(run_dir) if np.isfinite(r.get(f"val_{metric}", np.nan))]
        if rows:
            ax.plot([r["epoch"] + 1 for r in rows], [100 * r[f"val_{metric}"] for r in rows],
                    marker="o", ms=3, label=name, color=COLORS.get(name))
    styles = ["--", ":", "-."]
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(100 * value, ls=styles[i % 3], color="grey", lw=1.2, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Learning curves: validation {metric} (leave-one-out) per epoch")
    return _save(fig, path)


def plot_margins(runs: dict[str, Path], path: Path) -> Path:
    """ε and β of every run per epoch; mean Δ and mean negative similarity beside them."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("epsilon", "margin ε (triplet term)"), ("beta", "threshold β (negative term)"),
              ("mean_delta", "statistics of the epoch")]
    for name, run_dir in runs.items():
        rows = read_metrics(run_dir)
        if not rows:
            continue
        epochs = np.array([r["epoch"] for r in rows]) + 1
        color = COLORS.get(name)
        for ax, (key, _) in zip(axes[:2], panels[:2]):
            values = np.array([r.get(key, np.nan) for r in rows])
            if np.isfinite(values).any():
                ax.plot(epochs, values, marker="o", ms=3, label=name, color=color)
        for key, style, label in (("mean_delta", "-", "mean Δ"),
                                  ("mean_neg_sim", "--", "mean S(neg)")):
            values = np.array([r.get(key, np.nan) for r in rows])
            if np.isfinite(values).any():
                axes[2].plot(epochs, values, style, marker="o", ms=3, color=color,
                             label=f"{label} – {name}")
    for ax in axes[:2]:
        ax.set_ylim(bottom=0)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, path)


def plot_distributions(run_dir: Path, path: Path, title: str = "") -> Path:
    """Per-epoch densities of Δ = S_ap − S_an over all triplets and of S over negative pairs."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, (key, label) in zip(axes, (("delta", "Δ = S(a,p) − S(a,n), all triplets"),
                                       ("neg_sim", "S(a,n), all negative pairs"))):
        per_epoch = epoch_histograms(run_dir, key)
        cmap = plt.get_cmap("viridis")
        n = max(len(per_epoch), 1)
        for i, (epoch, (edges, counts)) in enumerate(sorted(per_epoch.items())):
            total = counts.sum()
            if total <= 0:
                continue
            widths = np.diff(edges)
            density = counts / (total * widths)
            centres = (edges[:-1] + edges[1:]) / 2
            ax.plot(centres, density, color=cmap(i / max(n - 1, 1)), lw=1.4,
                    label=f"epoch {epoch + 1}")
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def top_matches(embeddings: np.ndarray, cohort: Cohort, n_queries: int = 4, k: int = 5,
                seed: int = 0) -> list[tuple[int, list[int]]]:
    """(query row, top-k gallery rows): gallery = each subject's first visit, queries the latest."""
    table = cohort.table
    first = table.groupby("subject")["time"].transform("min").to_numpy()
    gallery = np.flatnonzero(table["time"].to_numpy() == first)
    gap = table["time"].to_numpy() - first
    candidates = np.flatnonzero(gap == gap.max())
    rng = np.random.default_rng(seed)
    queries = rng.choice(candidates, size=min(n_queries, len(candidates)), replace=False)
    sims = embeddings[queries] @ embeddings[gallery].T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return [(int(q), [int(gallery[j]) for j in row]) for q, row in zip(queries, order)]


def true_match_rank(embeddings: np.ndarray, cohort: Cohort, query: int) -> int:
    """1-based rank of the first same-subject image in the baseline gallery of ``query``."""
    table = cohort.table
    first = table.groupby("subject")["time"].transform("min").to_numpy()
    gallery = np.flatnonzero(table["time"].to_numpy() == first)
    sims = embeddings[gallery] @ embeddings[query]
    same = cohort.subjects[gallery] == cohort.subjects[query]
    if not same.any():
        return 0
    best_same = sims[same].max()
    return int((sims > best_same).sum()) + 1


def plot_queries(embeddings: np.ndarray, cohort: Cohort, path: Path, n_queries: int = 4,
                 k: int = 5, images: np.ndarray | None = None, seed: int = 0,
                 mirror_right: bool = False, title: str = "") -> Path:
    """Query (left) and its top-k gallery images; green frame = same subject, red = another.

    Tiles are large enough to see the anatomy; each query's title gives the rank at which its
    true match (the same person's baseline image) was found.
    """
    from radsearch.images import read_image

    matches = top_matches(embeddings, cohort, n_queries, k, seed)
    paths = cohort.image_paths()
    subjects = cohort.subjects
    times = cohort.times
    sides = cohort.table["side"].to_numpy() if cohort.has("side") else None

    def image(row: int) -> np.ndarray:
        pixels = images[row] if images is not None else read_image(paths[row])
        # as the network sees it: right knees mirrored to look like left ones
        return pixels[:, ::-1] if mirror_right and sides is not None and sides[row] == "R" \
            else pixels

    tile = 2.6
    fig, axes = plt.subplots(len(matches), k + 1, figsize=(tile * (k + 1), (tile + 0.55) *
                                                           len(matches)), squeeze=False)
    for r, (query, hits) in enumerate(matches):
        rank = true_match_rank(embeddings, cohort, query)
        for c, row in enumerate([query, *hits]):
            ax = axes[r][c]
            ax.imshow(image(row), cmap="gray", vmin=0, vmax=1 if images is None else 255)
            ax.set_xticks([])
            ax.set_yticks([])
            side = f" {sides[row]}" if sides is not None else ""
            if c == 0:
                ax.set_title(f"QUERY {subjects[row]}{side}, year {times[row]:.0f}\n"
                             f"true match at rank {rank}", fontsize=10, fontweight="bold")
                color, width = "black", 3
            else:
                same = subjects[row] == subjects[query]
                color, width = ("limegreen" if same else "red"), 5
                ax.set_title(f"#{c} {subjects[row]}{side}, year {times[row]:.0f}"
                             + ("  ✓" if same else ""), fontsize=10)
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(width)
    fig.suptitle(title or f"Latest-visit queries and their top-{k} baseline matches "
                 "(green frame: the same person)", fontsize=12)
    fig.tight_layout()
    return _save(fig, path)
