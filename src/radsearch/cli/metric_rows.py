"""The trained model beside its reference rows (chance, raw pixels, untrained network).

One formatter for `radsearch train` and `radsearch evaluate RUN`, so both print the same rows
the same way: Markdown lines, metrics in percent, never wrapped or padded.
"""

from __future__ import annotations

from radsearch.cli.console import console
from radsearch.training.rundir import RunDir


def reference_rows(run: RunDir) -> dict[str, dict]:
    """Reference label → its pooled ("all") metrics from references.json ({} when absent)."""
    return {name: result["groups"].get("all", {})
            for name, result in run.read_json("references").items()}


def print_metrics(title: str, rows: dict[str, dict]) -> None:
    """One Markdown row per model / reference (metrics in percent)."""
    keys = [k for k in ("n_queries", "mAP", "mAP@R", "CMC@1", "CMC@5", "CMC@1_first")
            if any(k in m for m in rows.values())]
    lines = [title, "| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, metrics in rows.items():
        cells = [("–" if k not in metrics else str(int(metrics[k])) if k == "n_queries"
                  else f"{100 * metrics[k]:.1f}") for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    console().print("\n".join(lines), markup=False, highlight=False)
