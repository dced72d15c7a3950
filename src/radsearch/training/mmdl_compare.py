"""`radsearch mmdl compare`: every method × seed trained (or fine-tuned, for ranking-stage
methods) and tabulated with paired-bootstrap differences against a reference and the issue's
decision rule. Apart from training so that the trainer and the fine-tuning stage, which builds on
the trainer, never import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, DataError
from radsearch.io import write_json, write_text
from radsearch.training.mmdl import (TABLE_METRICS, MMDLConfig, load_mmdl_config, read_results,
                                     train_mmdl)
from radsearch.training.mmdl_finetune import finetune_mmdl
from radsearch.training.mmdl_images import training_images
from radsearch.training.rundir import RunDir


def train_or_finetune(config: MMDLConfig, out_dir, **kwargs) -> dict[str, Any]:
    """One run: a ranking stage (``stage.loss`` set) continues its parent; else a full training."""
    if config.stage.loss != "none":
        return finetune_mmdl(config, out_dir, **kwargs)
    return train_mmdl(config, out_dir, **kwargs)


def compare_mmdl(config: MMDLConfig, out_dir: str | Path, seeds: int | None = None,
                 methods: dict[str, list[str]] | None = None, log=print,
                 train: bool = True) -> Path:
    """Train every method × seed (a finished run is reused) and write ``comparison.md/json``
    (differences against ``compare.reference`` when it is among ``methods``, else the first).

    Seed s sets both ``train.seed`` and ``data.pairing_seed`` (which studies keep a report). Images
    are decoded once for all runs. ``train=False`` only tabulates the methods whose runs are all
    finished (the others are named in the log).
    """
    out = Path(out_dir)
    methods = methods or config.compare.methods
    n_seeds = seeds or config.compare.seeds
    base = config.model_dump()
    cohort = images = None
    if not train:
        done = {n: o for n, o in methods.items()
                if all(RunDir(out / n / f"seed{s}").results.is_file() for s in range(n_seeds))}
        for name in methods.keys() - done.keys():
            log(f"left out (not every seed finished): {name}")
        if not done:
            raise DataError(f"{out}: no method has all {n_seeds} seeds finished.")
        methods = done
    for name, overrides in methods.items():
        for seed in range(n_seeds):
            run = out / name / f"seed{seed}"
            if RunDir(run).results.is_file():
                continue
            cfg = load_mmdl_config(base=base, overrides=[*overrides, f"train.seed={seed}",
                                                         f"data.pairing_seed={seed}"])
            if cohort is None:
                cohort = Cohort.load(cfg.data.manifest) if cfg.data.manifest else None
                if cohort is None:
                    raise ConfigError("data.manifest is not set; give data.manifest=PATH.")
                images = training_images(cohort, cfg.data.image_size, cfg.images, log=log)
            log(f"== {name} seed {seed}")
            train_or_finetune(cfg, run, cohort=cohort, images=images, log=log)
    results = {name: [read_results(out / name / f"seed{s}") for s in range(n_seeds)]
               for name in methods}
    reference = config.compare.reference if config.compare.reference in methods \
        else next(iter(methods))
    summary = summarise(results, reference, config.compare.bootstrap)
    write_json(out / "comparison.json", summary)
    write_text(out / "comparison.md", comparison_markdown(summary))
    return out / "comparison.md"


def paired_bootstrap(diffs: np.ndarray, n_boot: int = 2000, seed: int = 0
                     ) -> tuple[float, float, float]:
    """Mean over seeds of the per-query difference [seeds, queries] and its 95 % percentile
    interval, resampling queries (the same resample in every seed: the queries are shared)."""
    rng = np.random.default_rng(seed)
    n = diffs.shape[1]
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = diffs[:, idx].mean(axis=2).mean(axis=0)  # [n_boot]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(diffs.mean()), float(lo), float(hi)


def summarise(results: dict[str, list[dict]], reference: str, n_boot: int = 2000,
              metric: str = "mAP@10") -> dict[str, Any]:
    """Mean ± SE per method and metric; for each method vs ``reference``: the per-seed difference
    of ``metric`` and the paired bootstrap interval over queries (all seeds pooled)."""
    out: dict[str, Any] = {"reference": reference, "metric": metric, "methods": {}}
    ref_runs = results[reference]
    for name, runs in results.items():
        row: dict[str, Any] = {}
        for m in TABLE_METRICS:
            vals = np.array([r["diagnostic"]["groups"]["all"][m] for r in runs], float)
            row[m] = {"mean": float(vals.mean()), "se": float(vals.std(ddof=1) / np.sqrt(len(vals)))
                      if len(vals) > 1 else 0.0, "seeds": vals.tolist()}
        t2i = [r.get("text_to_image", {}).get("P@10") for r in runs]
        if all(v is not None for v in t2i):
            row["text_P@10"] = float(np.mean(t2i))
        row["n_train_with_report"] = runs[0]["settings"]["n_train_with_report"]
        data = runs[0]["settings"].get("data", {})
        row["report_fraction"] = float(data.get("report_fraction", 0.0)) \
            if runs[0]["settings"].get("text_encoder") else 0.0
        row["shuffled"] = bool(data.get("shuffle_reports", False))
        spreads = [r["spread"] for r in runs if "spread" in r]
        if spreads:
            row["spread"] = {k: float(np.mean([sp[k] for sp in spreads])) for k in spreads[0]}
        row["train_seconds"] = float(np.mean([r["settings"]["train_seconds"] for r in runs]))
        if name != reference:
            for m in (metric, "Acc@1"):
                if m in runs[0]["per_query"]:
                    d = np.array([np.asarray(r["per_query"][m], float)
                                  - np.asarray(q["per_query"][m], float)
                                  for r, q in zip(runs, ref_runs)])
                    d = d[:, ~np.isnan(d).any(axis=0)]
                    mean, lo, hi = paired_bootstrap(d, n_boot)
                    per_seed = d.mean(axis=1).tolist()
                    ci: list[float] | None = [lo, hi]
                else:  # a classification metric without per-query values: per-seed only
                    per_seed = [r["diagnostic"]["groups"]["all"][m]
                                - q["diagnostic"]["groups"]["all"][m]
                                for r, q in zip(runs, ref_runs)]
                    mean, ci = float(np.mean(per_seed)), None
                row[f"delta {m}"] = {"mean": mean, "ci": ci, "per_seed": per_seed,
                                     "every_seed": bool(all(x > 0 for x in per_seed)),
                                     "ci_excludes_0": bool(ci is not None
                                                           and (ci[0] > 0 or ci[1] < 0))}
        out["methods"][name] = row
    _decide(out, metric)
    return out


def _gains(delta: dict[str, Any] | None) -> bool:
    """A gain: positive in every seed and a paired bootstrap interval entirely above 0."""
    return bool(delta and delta["every_seed"] and delta["ci"] and delta["ci"][0] > 0)


def _decide(summary: dict[str, Any], metric: str) -> None:
    """The issue's decision rule per report arm: a gain counts only if it holds in every seed, its
    paired bootstrap interval excludes 0 and no shuffled-report control in the table gains too."""
    methods = summary["methods"]
    has_control = any(r.get("shuffled") for r in methods.values())
    control_gains = any(_gains(r.get(f"delta {metric}")) for r in methods.values()
                        if r.get("shuffled"))
    for row in methods.values():
        delta = row.get(f"delta {metric}")
        if delta is None or not row.get("report_fraction"):
            continue
        if row.get("shuffled"):
            row["verdict"] = "control gains" if _gains(delta) else "control: no gain"
        elif not _gains(delta):
            row["verdict"] = "no gain"
        else:
            row["verdict"] = ("no (control gains too)" if control_gains else "gain") \
                if has_control else "undecided (no shuffled control)"


def comparison_markdown(summary: dict[str, Any]) -> str:
    ref, metric = summary["reference"], summary["metric"]
    head = ["method", *TABLE_METRICS, f"Δ{metric} vs {ref} [95% CI]", "Δ per seed",
            "ΔAcc@1", "verdict", "mean cos", "text→image P@10", "train s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary["methods"].items():
        cells = [name] + [f"{row[m]['mean']:.3f} ± {row[m]['se']:.3f}" for m in TABLE_METRICS]
        for m in (metric, "Acc@1"):
            d = row.get(f"delta {m}")
            cell = "—" if d is None else f"{d['mean']:+.3f}" + (
                f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d["ci"] else " (per-seed mean)")
            cells.append(cell)
            if m == metric:
                cells.append("—" if d is None else " ".join(f"{x:+.3f}" for x in d["per_seed"]))
        cells.append(row.get("verdict", "—"))
        cells.append(f"{row['spread']['mean_cosine']:.3f}" if "spread" in row else "—")
        cells.append(f"{row['text_P@10']:.3f}" if "text_P@10" in row else "—")
        cells.append(f"{row['train_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + sweep_markdown(summary)


def sweep_markdown(summary: dict[str, Any]) -> str:
    """Pairing-fraction sweep: the reference (p = 0) and the unshuffled report arms named
    ``*-p<fraction>`` with nothing else changed, by p."""
    ref, metric = summary["reference"], summary["metric"]
    methods = summary["methods"]
    arms = [(0.0, ref)] + sorted(
        (r["report_fraction"], n) for n, r in methods.items()
        if n != ref and r.get("report_fraction") and not r.get("shuffled")
        and n.rsplit("-p", 1)[-1] == f"{r['report_fraction']:g}")
    if len(arms) < 2:
        return ""
    lines = ["", f"| p (share of training studies with a report) | method | {metric} | "
             f"Δ{metric} [95% CI] | Δ per seed |", "|---|---|---|---|---|"]
    for p, name in arms:
        row, d = methods[name], methods[name].get(f"delta {metric}")
        delta = "—" if d is None else f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
        per_seed = "—" if d is None else " ".join(f"{x:+.3f}" for x in d["per_seed"])
        lines.append(f"| {p:g} | {name} | {row[metric]['mean']:.3f} ± {row[metric]['se']:.3f} | "
                     f"{delta} | {per_seed} |")
    return "\n".join(lines) + "\n"
