"""A/B of two service versions under the same load, interleaved so both see the same machine.

    python -m benchmarks.service_ab --other-src /work/main/src [--rounds 3] [--requests 160]

Each round starts the server of the other checkout (its ``src`` folder first on the path) and of
this one on the same 100k-item index, sends the same searches from 8 clients, and stops it. On a
shared machine the absolute figures move with the other users' load; interleaving and the
server's CPU time per search (what that load changes least) make the comparison fair.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._report import machine_line, record
from benchmarks.service import (Server, load, query_uploads, synthetic_index,
                                train_demo_architecture)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other-src", type=Path, required=True,
                        help="src folder of the version to compare with (e.g. main's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--run", type=Path, help="an existing run of the demo architecture")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    other = ("-c", f"import sys; sys.path.insert(0, {str(args.other_src)!r}); "
                   "from radsearch.cli.main import main; sys.exit(main(sys.argv[1:]))")
    versions = {f"other ({args.other_src})": (other, False),
                "this checkout": (("-m", "radsearch"), True)}
    results: dict[str, list[dict]] = {name: [] for name in versions}
    with tempfile.TemporaryDirectory(prefix="radsearch-ab-") as tmp:
        tmp = Path(tmp)
        run = args.run or train_demo_architecture(tmp)
        pngs, uploads = query_uploads(tmp / "queries")
        synthetic_index(run, tmp / "ab.index", args.items, pngs[0])
        for round_ in range(args.rounds):
            for name, (launcher, timing) in versions.items():
                with Server(tmp / "ab.index", run, 16, tmp / "serve.log", launcher=launcher,
                            server_timing=timing) as server:
                    result = load(server.url, uploads, args.clients, args.requests, server)
                results[name].append(result)
                print(f"round {round_ + 1} {name}: p99 {result['p99']:.0f} ms, "
                      f"{result['qps']:.1f} q/s, {result['cpu_ms']:.1f} CPU ms/search, "
                      f"{result['codes']}", flush=True)

    lines = [f"Machine: {machine_line()}; index of {args.items} items; {args.clients} clients, "
             f"{args.requests} searches per round, {args.rounds} interleaved rounds, "
             "micro-batching (--max-batch 16), server defaults otherwise.", "",
             "| server | median p50 ms | median p99 ms | median queries/s | "
             "median server CPU ms per search | statuses |", "|---|---:|---:|---:|---:|---|"]
    for name, rows in results.items():
        codes = sorted({code for r in rows for code in r["codes"]})
        lines.append(f"| {name} | {np.median([r['p50'] for r in rows]):.0f} | "
                     f"{np.median([r['p99'] for r in rows]):.0f} | "
                     f"{np.median([r['qps'] for r in rows]):.1f} | "
                     f"{np.median([r['cpu_ms'] for r in rows]):.1f} | {codes} |")
    mine = results["this checkout"]
    theirs = next(v for k, v in results.items() if k != "this checkout")
    ratio = np.median([r["cpu_ms"] for r in mine]) / np.median([r["cpu_ms"] for r in theirs])
    lines += ["", f"This checkout needs {ratio:.2f}× the server CPU time per search of the other "
                  "version."]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        record("service_ab", "Search service A/B (benchmarks/service_ab.py)",
               f"python -m benchmarks.service_ab --other-src {args.other_src}", body)


if __name__ == "__main__":
    main()
