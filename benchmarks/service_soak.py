"""Soak: 8 clients search the service without pause for a fixed time; count every status and error.

    python -m benchmarks.service_soak --seconds 600

Same set-up as benchmarks/service.py (index of synthetic vectors, real PNG / DICOM uploads through
the demo architecture). Passes when there is no 5xx and no client error; it also prints the server's
RSS and the latency per minute, so a leak or a slow-down shows.

``--tracemalloc`` starts tracemalloc in the server after the first minute (slower from then on)
and prints the allocation sites of what was allocated since and is still alive at the end: a Python-level leak shows
there by file and line, while growth that RSS shows and tracemalloc does not is native (the C
allocator's arenas, torch, faiss). ``--malloc-arena-max N`` sets glibc's MALLOC_ARENA_MAX for the
server, to test whether per-thread malloc arenas are what grows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks._report import machine_line, record
from benchmarks.service import Server, query_uploads, synthetic_index, train_demo_architecture


def soak(url: str, uploads: list, clients: int, seconds: float, server=None,
         snapshot_at: float | None = None, snapshots: Path | None = None) -> dict:
    """Search for ``seconds``; RSS of ``server`` every minute; a tracemalloc snapshot at
    ``snapshot_at`` seconds (when the server runs under benchmarks._traced_serve)."""
    import httpx

    deadline = time.monotonic() + seconds
    start = time.monotonic()
    rss: dict[int, float] = {0: server.rss_mb()} if server else {}
    stop = threading.Event()

    def sample():
        minute = 1
        snapped = snapshot_at is None
        while not stop.wait(1.0):
            elapsed = time.monotonic() - start
            if not snapped and elapsed >= snapshot_at:
                take_snapshot(server, snapshots, 0)
                snapped = True
            if elapsed >= 60 * minute:
                rss[minute] = server.rss_mb()
                minute += 1

    sampler = threading.Thread(target=sample, daemon=True) if server else None
    if sampler:
        sampler.start()

    def worker(worker_id: int):
        codes, errors, samples = Counter(), Counter(), []
        i = worker_id
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline:
                name, data, kind = uploads[i % len(uploads)]
                i += clients
                t0 = time.monotonic()
                try:
                    answer = client.post("/search", files={"images": (name, data, kind)},
                                         data={"k": "10"})
                    codes[answer.status_code] += 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                samples.append((t0 - start, time.monotonic() - t0))
        return codes, errors, samples

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, range(clients)))
    stop.set()
    if sampler:
        sampler.join()
        rss[int(np.ceil(seconds / 60))] = server.rss_mb()
    codes = sum((r[0] for r in results), Counter())
    errors = sum((r[1] for r in results), Counter())
    samples = np.array([s for r in results for s in r[2]])
    minutes = {}
    for minute in range(int(np.ceil(seconds / 60))):
        in_minute = samples[(samples[:, 0] >= 60 * minute) & (samples[:, 0] < 60 * (minute + 1))]
        if len(in_minute):
            minutes[minute + 1] = (len(in_minute), float(np.percentile(in_minute[:, 1], 50)) * 1000,
                                   float(np.percentile(in_minute[:, 1], 99)) * 1000)
    return {"codes": dict(codes), "errors": dict(errors), "requests": int(len(samples)),
            "minutes": minutes, "rss": rss}


def take_snapshot(server, folder: Path, n: int, timeout: float = 300) -> Path:
    """Ask the traced server for snapshot ``n`` (SIGUSR1) and wait until it is written."""
    path = folder / f"{n}.snapshot"
    os.kill(server.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no tracemalloc snapshot {path} after {timeout} s")
        time.sleep(0.5)
    return path


def snapshot_diff(first: Path, last: Path, top: int = 15) -> list[str]:
    """Markdown rows of the allocation sites (file:line) that grew most from first to last."""
    before, after = (tracemalloc.Snapshot.load(str(p)) for p in (first, last))
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    lines = [f"tracemalloc: Python-traced memory grew {total / 2 ** 20:+.1f} MB between the "
             "snapshots; the sites that grew most:", "",
             "| allocation site | size change | count change | size at the end |",
             "|---|---:|---:|---:|"]
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/src/")[-1]
        lines.append(f"| {where}:{frame.lineno} | {stat.size_diff / 1024:+.0f} kB | "
                     f"{stat.count_diff:+d} | {stat.size / 1024:.0f} kB |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--run", type=Path, help="an existing run of the demo architecture")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the server's Python allocations; print the top sites that "
                             "grew between minute 1 and the end")
    parser.add_argument("--malloc-arena-max", type=int, default=None,
                        help="MALLOC_ARENA_MAX for the server process (glibc)")
    parser.add_argument("--server-src", type=Path, default=None,
                        help="run the server from another checkout's src folder (e.g. "
                             "/work/main/src) to compare; recorded under its own section")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="radsearch-soak-") as tmp:
        tmp = Path(tmp)
        run = args.run or train_demo_architecture(tmp)
        pngs, uploads = query_uploads(tmp / "queries")
        synthetic_index(run, tmp / "soak.index", args.items, pngs[0])
        snapshots = tmp / "snapshots"
        launcher = (("-m", "benchmarks._traced_serve", str(snapshots)) if args.tracemalloc
                    else ("-m", "radsearch"))
        if args.server_src:
            launcher = ("-c", f"import sys; sys.path.insert(0, {str(args.server_src)!r}); "
                              "from radsearch.cli.main import main; sys.exit(main(sys.argv[1:]))")
        env = ({"MALLOC_ARENA_MAX": str(args.malloc_arena_max)}
               if args.malloc_arena_max else None)
        diff = []
        with Server(tmp / "soak.index", run, 16, tmp / "serve.log", launcher=launcher,
                    env=env, server_timing=args.server_src is None) as server:
            rss_before = server.rss_mb()
            result = soak(server.url, uploads, args.clients, args.seconds, server,
                          snapshot_at=min(60.0, args.seconds / 2) if args.tracemalloc else None,
                          snapshots=snapshots)
            rss_after = server.rss_mb()
            alive = server.proc.poll() is None
            if args.tracemalloc:
                diff = snapshot_diff(snapshots / "0.snapshot", take_snapshot(server, snapshots, 1))

    fivexx = sum(v for k, v in result["codes"].items() if k >= 500)
    lines = [f"Machine: {machine_line()}; index of {args.items} items; {args.clients} clients "
             f"searching without pause for {args.seconds:.0f} s (PNG and DICOM uploads, k = 10).",
             "", f"{result['requests']} requests: statuses {result['codes']}, 5xx: {fivexx}, "
             f"client errors: {result['errors'] or 0}; server still running: {alive}; server RSS "
             f"{rss_before:.0f} MB at the start, {rss_after:.0f} MB at the end.",
             f"Server: {'under tracemalloc (slower), ' if args.tracemalloc else ''}"
             "MALLOC_ARENA_MAX="
             f"{args.malloc_arena_max or os.environ.get('MALLOC_ARENA_MAX') or 'unset'}.",
             "", "| minute | requests | p50 ms | p99 ms | server RSS MB at its end |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {m} | {n} | {p50:.1f} | {p99:.1f} | "
              f"{result['rss'].get(m, float('nan')):.0f} |"
              for m, (n, p50, p99) in result["minutes"].items()]
    rss = result["rss"]
    if len(rss) >= 5:
        minutes = sorted(rss)
        half = minutes[len(minutes) // 2]
        first = (rss[half] - rss[minutes[0]]) / max(half - minutes[0], 1)
        second = (rss[minutes[-1]] - rss[half]) / max(minutes[-1] - half, 1)
        lines += ["", f"RSS growth: {first:+.1f} MB per minute over minutes 0–{half}, "
                      f"{second:+.1f} MB per minute over minutes {half}–{minutes[-1]} "
                      "(a leak keeps its slope; allocator warm-up flattens)."]
    if diff:
        lines += [""] + diff
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        flags = (" --tracemalloc" if args.tracemalloc else "") + (
            f" --server-src {args.server_src}" if args.server_src else "") + (
            f" --malloc-arena-max {args.malloc_arena_max}" if args.malloc_arena_max else "")
        name, title = (("service_soak_tracemalloc", "Search service soak under tracemalloc "
                        "(benchmarks/service_soak.py --tracemalloc)") if args.tracemalloc else
                       ("service_soak", "Search service soak (benchmarks/service_soak.py)"))
        if args.server_src:
            name, title = "service_soak_other", (f"Search service soak, server from "
                                                 f"{args.server_src} (for comparison)")
        record(name, title,
               f"python -m benchmarks.service_soak --seconds {args.seconds:.0f}{flags}", body)


if __name__ == "__main__":
    main()
