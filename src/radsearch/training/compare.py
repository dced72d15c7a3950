"""``compare``: train every method for every seed under one budget, then tabulate mean ± SE.

The table follows the paper's supplement Table 4: mAP, mAP@R and CMC-1 per years-apart group and
for "All" (pooled queries), mean ± standard error over seeds, in percent. Runs already finished
(``summary.json`` present) are reused, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from radsearch.errors import ConfigError
from radsearch.evaluation import aggregate_seeds
from radsearch.io import write_text
from radsearch.training.config import Config

TABLE_METRICS = ("mAP", "mAP@R", "CMC@1")


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any], str]:
    """``"AdaTriplet[epsilon=0.5,beta=0.75]"`` → (name, options, folder-safe label)."""
    from radsearch.losses import METHODS

    match = re.fullmatch(r"\s*([A-Za-z0-9_-]+)\s*(?:\[(.*)\])?\s*", spec)
    if not match or match.group(1) not in METHODS:
        raise ConfigError(f"method {spec!r}: expected NAME or NAME[key=value,...] with NAME one "
                          f"of {', '.join(METHODS)}.")
    name, inner = match.group(1), match.group(2)
    options: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in (inner or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"method {spec!r}: option {item!r} is not key=value.")
        options[key.strip()] = yaml.safe_load(value)
    label = name + "".join(f"_{k}={v}" for k, v in options.items())
    return name, options, label


UNTRAINED_LABEL = "untrained network (reference, no training)"


def compare(config: Config, methods: Sequence[str], seeds: int | Sequence[int],
            out_dir: str | Path | None = None,
            on_run: Callable[[str, int, Path], None] | None = None,
            untrained_reference: bool = False) -> Path:
    """Train ``methods`` × ``seeds`` (each in ``out_dir/<label>/s<seed>``); return the table path.

    A method is a name of ``radsearch.losses.METHODS``, optionally with settings:
    ``AdaTriplet[epsilon=0.5,beta=0.5]`` (grid searches, AutoMargin ablations).
    ``untrained_reference`` adds a row for the same network with random weights (one
    initialisation per seed), evaluated on the same test split: the bar training must clear.
    """
    from radsearch.training.engine import train

    specs = [parse_method_spec(m) for m in methods]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or not specs:
        raise ConfigError("compare needs at least one method and one seed.")
    out = Path(out_dir) if out_dir is not None else Path(config.run.out_dir) / "compare"
    runs: dict[str, list[Path]] = {}
    for name, options, label in specs:
        for seed in seed_list:
            cfg = config.model_copy(deep=True)
            cfg.method.name = name
            cfg.method.options = options
            cfg.train.seed = seed
            cfg.run.out_dir = str(out)
            cfg.run.name = f"{label}/s{seed}"
            run_dir = cfg.run_dir()
            if not (run_dir / "summary.json").is_file():
                train(cfg)
            runs.setdefault(label, []).append(run_dir)
            if on_run is not None:
                on_run(label, seed, run_dir)
    results = load_results(runs)
    if untrained_reference:
        results[UNTRAINED_LABEL] = untrained_reference_results(config, runs, seed_list)
    return write_comparison(results, out, seed_list)


def untrained_reference_results(config: Config, runs: dict[str, list[Path]],
                                seeds: Sequence[int]) -> list[dict]:
    """Per seed: the randomly initialised network on the first run's test split."""
    from radsearch.cohort import Cohort
    from radsearch.training.demo import untrained_results

    first_run = next(iter(runs.values()))[0]
    test = Cohort.load(first_run / "cohort.csv").split("test")
    template = json.loads((first_run / "results.json").read_text())
    out = []
    for seed in seeds:
        cfg = config.model_copy(deep=True)
        cfg.train.seed = seed
        out.append({**template, "groups": untrained_results(cfg, test)})
    return out


def load_results(runs: dict[str, list[Path]]) -> dict[str, list[dict]]:
    """method → per-seed ``results.json`` contents."""
    out: dict[str, list[dict]] = {}
    for method, dirs in runs.items():
        for run_dir in dirs:
            path = Path(run_dir) / "results.json"
            if not path.is_file():
                raise ConfigError(f"{run_dir}: no results.json (the cohort has no test split?).")
            out.setdefault(method, []).append(json.loads(path.read_text()))
    return out


def comparison_markdown(results: dict[str, list[dict]], seeds: Sequence[int]) -> str:
    """One table per metric (rows = methods, columns = years + All), best mean in bold.

    Means and standard errors come from :func:`radsearch.evaluation.aggregate_seeds`, the same
    aggregation as every other table of the project.
    """
    aggregates = {m: aggregate_seeds(per_seed) for m, per_seed in results.items()}
    groups = list(dict.fromkeys(g for agg in aggregates.values() for g in agg.groups))
    groups = [g for g in groups if g != "all"] + (["all"] if "all" in groups else [])
    spread = "Mean ± standard error" if len(seeds) > 1 else "Single run"
    lines = [f"{spread} over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), in percent; "
             "columns are years between query and gallery, All pools every query.", ""]
    for metric in TABLE_METRICS:
        header = ["method"] + [("All" if g == "all" else f"{g} y") for g in groups]
        lines += [f"**{metric}**", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        cells = {m: {g: agg.groups.get(g, {}).get(metric) for g in groups}
                 for m, agg in aggregates.items()}
        best = {g: max((c[g].mean for c in cells.values() if c[g] is not None), default=None)
                for g in groups}
        for method, row in cells.items():
            texts = [method]
            for g in groups:
                value = row[g]
                text = value.format(scale=100.0, digits=1) if value is not None else "–"
                bold = value is not None and best[g] is not None and value.mean == best[g]
                texts.append(f"**{text}**" if bold else text)
            lines.append("| " + " | ".join(texts) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparison(results: dict[str, list[dict]], out: Path, seeds: Sequence[int]) -> Path:
    """comparison.csv (every seed, group and metric) and comparison.md (mean ± SE tables)."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "seed", "group", "metric", "value"])
    for method, per_seed in results.items():
        for seed, result in zip(seeds, per_seed):
            for group, metrics in result["groups"].items():
                for metric, value in metrics.items():
                    writer.writerow([method, seed, group, metric, value])
    write_text(out / "comparison.csv", buffer.getvalue())
    path = out / "comparison.md"
    write_text(path, comparison_markdown(results, seeds))
    return path
