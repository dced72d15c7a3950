"""Train every method for every seed under one budget (the training half of ``compare``).

Method specs such as ``AdaTriplet[epsilon=0.5,beta=0.5]`` are parsed here; runs already finished
(``summary.json`` present) are reused, so an interrupted comparison continues where it stopped.
The table is written by :func:`radsearch.reporting.comparison.compare`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from radsearch.errors import ConfigError
from radsearch.training.config import Config
from radsearch.training.rundir import RunDir


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


def _out(config: Config, out_dir: str | Path | None) -> Path:
    return Path(out_dir) if out_dir is not None else Path(config.run.out_dir) / "compare"


def train_runs(config: Config, methods: Sequence[str], seeds: int | Sequence[int],
               out_dir: str | Path | None = None,
               on_run: Callable[[str, int, Path], None] | None = None) -> dict[str, list[Path]]:
    """Train (or reuse: ``summary.json`` present) every method × seed; label → run folders."""
    from radsearch.training.engine import train

    specs = [parse_method_spec(m) for m in methods]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or not specs:
        raise ConfigError("compare needs at least one method and one seed.")
    out = _out(config, out_dir)
    runs: dict[str, list[Path]] = {}
    for name, options, label in specs:
        for seed in seed_list:
            cfg = config.model_copy(deep=True)
            cfg.method.name = name
            cfg.method.options = options
            cfg.train.seed = seed
            cfg.run.out_dir = str(out)
            cfg.run.name = f"{label}/s{seed}"
            run = RunDir(cfg.run_dir())
            if not run.summary.is_file():
                train(cfg)
            runs.setdefault(label, []).append(run.path)
            if on_run is not None:
                on_run(label, seed, run.path)
    return runs
