"""Does re-ranking help? none / QE / DBA / k-reciprocal per years-apart group (docs/results.md).

Each setting is one `radsearch evaluate` command (printed as it runs). A small grid per method is
scored on the tuning split (forensic All mAP) and only the chosen setting is run on the report
split, forensic and open-set: nothing is chosen on the reported rows.

    python -m benchmarks.rerank_study --embeddings E.npy --cohort M.csv --tune val --report test \
        --out demo/study/demo
    python -m benchmarks.rerank_study --embeddings E2.npy --cohort M2.csv \
        --chosen demo/study/demo/chosen.json --out demo/study/unseen   # whole cohort, no tuning
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
from pathlib import Path

GRID = {
    "qe": [{"--qe-alpha": a, "--qe-n": n} for a, n in itertools.product((1, 3, 5), (1, 2, 5))],
    "dba": [{"--dba-k": k, "--qe-alpha": a} for k, a in itertools.product((1, 2, 3, 5), (1, 3))],
    "k-reciprocal": [{"--k1": k1, "--k2": k2, "--lambda": lam} for k1, k2, lam in
                     itertools.product((3, 5, 10, 20), (1, 3), (0.3, 0.6))],
}
GROUP_METRICS = ("mAP", "CMC@1", "CMC@1_first")
OPEN_METRICS = ("FNIR@FPIR=0.1", "FNIR@FPIR=0.01")


def evaluate(args: list[str], out: Path) -> dict:
    from radsearch.cli.main import main

    command = ["radsearch", "evaluate", *args, "--json", str(out)]
    print("$ " + shlex.join(command), flush=True)
    if main(command[1:]) != 0:
        raise SystemExit(f"failed: {shlex.join(command)}")
    return json.loads(out.read_text())


def flags(setting: dict) -> list[str]:
    return [str(x) for kv in setting.items() for x in kv]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embeddings")
    ap.add_argument("--cohort")
    ap.add_argument("--markdown", default=None, help="only print the tables of a study.json")
    ap.add_argument("--tune", default=None, help="split to choose the settings on")
    ap.add_argument("--report", default=None, help="split to report (default: every row)")
    ap.add_argument("--chosen", default=None, help="chosen.json of an earlier study (no tuning)")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.markdown:
        return print(markdown(json.loads(Path(a.markdown).read_text())))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base = ["--embeddings", a.embeddings, "--cohort", a.cohort]
    if a.chosen:
        chosen = json.loads(Path(a.chosen).read_text())
    else:
        chosen, tuning = {"none": {}}, {}
        for method, grid in GRID.items():
            scored = []
            for i, setting in enumerate(grid):
                res = evaluate([*base, "--split", a.tune, "--rerank", method, *flags(setting)],
                               out / f"tune-{method}-{i}.json")
                scored.append((res["groups"]["all"]["mAP"], i, setting))
            tuning[method] = [{"setting": s, "mAP": m} for m, _, s in scored]
            chosen[method] = max(scored, key=lambda t: (t[0], -t[1]))[2]   # first of equals
        (out / "tuning.json").write_text(json.dumps(tuning, indent=1))
        (out / "chosen.json").write_text(json.dumps(chosen, indent=1))
    report = ["--split", a.report] if a.report else []
    table = {}
    for method, setting in chosen.items():
        extra = [*report, "--rerank", method, *flags(setting)]
        fo = evaluate([*base, *extra], out / f"forensic-{method}.json")
        op = evaluate([*base, *extra, "--protocol", "open-set"], out / f"openset-{method}.json")
        table[method] = {"setting": setting, "forensic": fo["groups"], "open-set": op["groups"]}
    (out / "study.json").write_text(json.dumps(table, indent=1))
    print(markdown(table))


def markdown(table: dict) -> str:
    groups = [g for g in table["none"]["forensic"] if g != "all"] + ["all"]
    head = "| method (setting) | " + " | ".join(
        "All" if g == "all" else f"{g} y" for g in groups) + " |"
    rule = "|---" * (len(groups) + 1) + "|"
    lines = ["mAP / CMC@1 / CMC@1_first (forensic), percent:", "", head, rule]
    for method, row in table.items():
        name = f"{method} ({', '.join(f'{k} {v}' for k, v in row['setting'].items()) or '—'})"
        lines.append(f"| {name} | " + " | ".join(
            " / ".join(f"{100 * row['forensic'][g][m]:.1f}" for m in GROUP_METRICS)
            for g in groups) + " |")
    lines += ["", "FNIR at FPIR 0.1 / 0.01 (open-set), percent, lower is better:", "", head, rule]
    for method, row in table.items():
        lines.append(f"| {method} | " + " | ".join(
            " / ".join(f"{100 * row['open-set'][g][m]:.1f}" for m in OPEN_METRICS)
            for g in groups) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
