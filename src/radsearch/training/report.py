"""Figures and the markdown report of a set of runs (used by ``radsearch demo``).

- margins.png: ε and β per epoch (paper Fig. 3), with mean Δ and mean negative similarity;
- distributions.png: Δ and negative-pair similarity distributions per epoch (Fig. 2b–c);
- queries.png: queries at the largest gap with their top-5 gallery matches (Fig. 1a style).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from radsearch.cohort import Cohort  # noqa: E402
from radsearch.io import atomic_path, write_text  # noqa: E402
from radsearch.training.callbacks import epoch_histograms, read_metrics  # noqa: E402
from radsearch.training.compare import comparison_markdown  # noqa: E402

COLORS = {"AdaTriplet-AM": "tab:red", "Triplet": "tab:blue"}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


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


def plot_queries(embeddings: np.ndarray, cohort: Cohort, path: Path, n_queries: int = 4,
                 k: int = 5, images: np.ndarray | None = None, seed: int = 0,
                 mirror_right: bool = False) -> Path:
    """Query (left) and its top-k gallery images; green frame = same subject, red = another."""
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

    fig, axes = plt.subplots(len(matches), k + 1, figsize=(1.9 * (k + 1), 2.15 * len(matches)),
                             squeeze=False)
    for r, (query, hits) in enumerate(matches):
        for c, row in enumerate([query, *hits]):
            ax = axes[r][c]
            ax.imshow(image(row), cmap="gray", vmin=0, vmax=1 if images is None else 255)
            ax.set_xticks([])
            ax.set_yticks([])
            side = f" {sides[row]}" if sides is not None else ""
            if c == 0:
                ax.set_title(f"query {subjects[row]}{side}\n{times[row]:.0f} y", fontsize=8)
                color, width = "black", 2
            else:
                same = subjects[row] == subjects[query]
                color, width = ("limegreen" if same else "red"), 3
                ax.set_title(f"#{c} {subjects[row]}{side}\n{times[row]:.0f} y", fontsize=8)
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(width)
    fig.suptitle("Latest-visit queries and their top-5 baseline matches (green: same person)",
                 fontsize=10)
    return _save(fig, path)


def write_report(out: Path, runs: dict[str, Path], figures: dict[str, Path],
                 notes: list[str] | None = None,
                 references: dict[str, dict[str, dict[str, float]]] | None = None) -> Path:
    """demo/report.md: per-year table, margin curves, distributions, example queries.

    ``references``: extra table rows (name → result groups), e.g. the untrained network.
    """
    results = {method: [json.loads((Path(run_dir) / "results.json").read_text())]
               for method, run_dir in runs.items()}
    first = next(iter(results.values()))[0]
    for name, groups in (references or {}).items():
        # same test protocol and gallery as the trained runs; only the scores differ
        results[name] = [{**first, "groups": groups}]
    n_queries = {g: int(m.get("n_queries", 0)) for g, m in
                 json.loads((Path(next(iter(runs.values()))) / "results.json").read_text())
                 ["groups"].items()}
    lines = ["# radsearch demo: forensic knee matching across years", ""]
    lines += notes or []
    lines += ["", "## Test-set retrieval per years between query and gallery", "",
              "Queries per group: " + ", ".join(
                  f"{'All' if g == 'all' else g + ' y'}: {n}" for g, n in n_queries.items()), "",
              comparison_markdown(results, [0]), ""]
    captions = {
        "margins": "## AutoMargin over epochs (paper Fig. 3)\n\nε (triplet margin) and β "
                   "(negative-similarity threshold) used in each epoch; AutoMargin sets them from "
                   "the previous epoch's mean Δ and mean negative similarity (right panel). "
                   "Triplet keeps its fixed ε.",
        "distributions": "## Δ and negative-similarity distributions per epoch (Fig. 2b–c)\n\n"
                         "Over all triplets / all negative pairs of each training epoch of "
                         "AdaTriplet-AM: Δ should move right (positives closer than negatives), "
                         "negative similarities should concentrate below β.",
        "queries": "## Example queries (Fig. 1a style)\n\nTest subjects' latest visits against "
                   "the baseline gallery (both knees of every test subject) with the "
                   "AdaTriplet-AM model (right knees shown mirrored, as the network sees them); green "
                   "frames are the same person.",
    }
    for key, figure in figures.items():
        lines += [captions.get(key, f"## {key}"), "", f"![{key}]({Path(figure).name})", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
