"""Soak: 8 clients search the service without pause for a fixed time; count every status and error.

    python -m benchmarks.service_soak --seconds 600

Same set-up as benchmarks/service.py (index of synthetic vectors, real PNG / DICOM uploads through
the demo architecture). Passes when there is no 5xx and no client error; it also prints the server's
RSS at the start and the end, and the latency per minute, so a leak or a slow-down shows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks._report import machine_line, record
from benchmarks.service import Server, query_uploads, synthetic_index, train_demo_architecture


def soak(url: str, uploads: list, clients: int, seconds: float) -> dict:
    import httpx

    deadline = time.monotonic() + seconds
    start = time.monotonic()

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
            "minutes": minutes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="radsearch-soak-") as tmp:
        tmp = Path(tmp)
        run = train_demo_architecture(tmp)
        pngs, uploads = query_uploads(tmp / "queries")
        synthetic_index(run, tmp / "soak.index", args.items, pngs[0])
        with Server(tmp / "soak.index", run, 16, tmp / "serve.log") as server:
            rss_before = server.rss_mb()
            result = soak(server.url, uploads, args.clients, args.seconds)
            rss_after = server.rss_mb()
            alive = server.proc.poll() is None

    fivexx = sum(v for k, v in result["codes"].items() if k >= 500)
    lines = [f"Machine: {machine_line()}; index of {args.items} items; {args.clients} clients "
             f"searching without pause for {args.seconds:.0f} s (PNG and DICOM uploads, k = 10).",
             "", f"{result['requests']} requests: statuses {result['codes']}, 5xx: {fivexx}, "
             f"client errors: {result['errors'] or 0}; server still running: {alive}; server RSS "
             f"{rss_before:.0f} MB at the start, {rss_after:.0f} MB at the end.",
             "", "| minute | requests | p50 ms | p99 ms |", "|---:|---:|---:|---:|"]
    lines += [f"| {m} | {n} | {p50:.1f} | {p99:.1f} |" for m, (n, p50, p99)
              in result["minutes"].items()]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        record("service_soak", "Search service soak (benchmarks/service_soak.py)",
               f"python -m benchmarks.service_soak --seconds {args.seconds:.0f}", body)


if __name__ == "__main__":
    main()
