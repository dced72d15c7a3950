"""The comparison table of ``radsearch compare``: comparison.md (mean ± SE) and comparison.csv.

Rows: every method, then the reference rows of the same runs (chance, raw pixels, untrained
network of each seed), on the same test split; columns: years apart and All.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from radsearch.io import write_text
from radsearch.reporting.tables import forensic_markdown, run_results


def comparison_markdown(results: Mapping[str, Sequence[dict]], seeds: Sequence[int]) -> str:
    spread = "Mean ± standard error" if len(seeds) > 1 else "Single run"
    head = (f"{spread} over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), in percent; "
            "columns are years between query and gallery, All pools every query. Reference "
            "rows: chance (random ranking), raw pixels (the network input as the vector) and "
            "the untrained network of each seed, on the same test split.")
    return head + "\n\n" + forensic_markdown(results)


def write_comparison(runs: Mapping[str, Sequence[str | Path]], out: str | Path,
                     seeds: Sequence[int]) -> Path:
    """comparison.csv (every seed, group and metric) and comparison.md; returns the .md path."""
    out = Path(out)
    results = run_results(runs)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "seed", "group", "metric", "value"])
    for method, per_seed in results.items():
        for seed, result in zip(seeds, per_seed):
            for group, metrics in result["groups"].items():
                for metric, value in metrics.items():
                    writer.writerow([method, seed, group, metric, value])
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "comparison.csv", buffer.getvalue())
    path = out / "comparison.md"
    write_text(path, comparison_markdown(results, seeds))
    return path


def compare(config, methods: Sequence[str], seeds: int | Sequence[int],
            out_dir: str | Path | None = None,
            on_run: Callable[[str, int, Path], None] | None = None) -> Path:
    """Train ``methods`` × ``seeds`` (each in ``out_dir/<label>/s<seed>``); return the table path.

    A method is a name of ``radsearch.losses.METHODS``, optionally with settings:
    ``AdaTriplet[epsilon=0.5,beta=0.5]`` (grid searches, AutoMargin ablations).
    """
    from radsearch.training.compare import train_runs

    out = Path(out_dir) if out_dir is not None else Path(config.run.out_dir) / "compare"
    runs = train_runs(config, methods, seeds, out, on_run)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    return write_comparison(runs, out, seed_list)
