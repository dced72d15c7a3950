"""NIH ChestX-ray14 adapter on the full 112,120-row Data_Entry_2017_v2020.csv.gz (target ≤ 5 s).

Reference measured in the same run: a plain ``pandas.read_csv`` of the same file, i.e. the cost of
only parsing it. The ratio (adapter / plain read) is what to compare across machines.

    python -m benchmarks.nih_adapter [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import pandas as pd

from benchmarks._report import machine_line, record
from radsearch.datasets import read_nih

TARGET_S = 5.0


def _best(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None:
        raise SystemExit("torchxrayvision is not installed; it ships Data_Entry_2017_v2020.csv.gz "
                         "(pip install -e '.[test]').")
    path = Path(spec.origin).parent / "data" / "Data_Entry_2017_v2020.csv.gz"

    ref_s, frame = _best(lambda: pd.read_csv(path), args.repeats)
    ours_s, cohort = _best(lambda: read_nih(path), args.repeats)
    summary = cohort.summary()
    body = "\n".join([
        f"Machine: {machine_line()}; best of {args.repeats} runs.",
        "",
        "| step | rows | seconds | ratio to reference |",
        "|---|---|---|---|",
        f"| reference: pandas.read_csv of the file | {len(frame):,} | {ref_s:.3f} | 1.00 |",
        f"| read_nih → validated Cohort | {len(cohort):,} | {ours_s:.3f} | {ours_s / ref_s:.2f} |",
        "",
        f"Target ≤ {TARGET_S:.0f} s: {'met' if ours_s <= TARGET_S else 'NOT met'}. Cohort: "
        f"{summary['subjects']:,} patients, {summary['subjects_with_2plus_images']:,} with ≥ 2 "
        f"images, max {summary['images_per_subject']['max']} per patient, years "
        f"{summary['time']['min']:.0f}–{summary['time']['max']:.0f}.",
    ])
    print(body)
    record("nih_adapter", "NIH ChestX-ray14 adapter (full metadata)",
           "python -m benchmarks.nih_adapter", body)


if __name__ == "__main__":
    main()
