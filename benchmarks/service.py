"""The search service under load, beside the bare model forward pass measured in the same run.

A `radsearch serve` process (uvicorn, loopback) holds a 100k-item index (synthetic vectors with the
demo model's fingerprint; the issue allows synthetic vectors for the index) and the demo
architecture (configs/demo.yaml: cnn9 at 64², 128-d, oai preprocessing; briefly trained — weights
do not change the cost). Clients POST real 80-px synthetic knee PNGs and DICOMs. Reported: latency p50/p99 and
throughput at 1 and 8 concurrent clients, with micro-batching (--max-batch 16) and one at a time
(--max-batch 1), next to the model forward pass alone (1 image, and batches of 8).

``--fuzz N`` then sends N bad requests (random bytes, truncated and oversized images, mislabeled
content, decompression bombs, malicious names and parameters) and reports the status codes, that
the server still answers, and its RSS before/after.

    python -m benchmarks.service [--items 100000] [--requests 160] [--fuzz 600]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks._report import machine_line, record

ROOT = Path(__file__).resolve().parent.parent


def train_demo_architecture(folder: Path) -> Path:
    """A run with the demo config's model and preprocessing, trained for two batches."""
    from radsearch.synth import generate_knee
    from radsearch.training import load_config, train

    generate_knee(24, seed=0, image_size=80, out_dir=folder / "knees", workers=1)
    config = load_config(ROOT / "configs" / "demo.yaml", [
        f"data.manifest={folder / 'knees' / 'manifest.csv'}", "data.synth=null",
        "train.epochs=1", "train.max_batches_per_epoch=2", "train.subjects_per_batch=6",
        "train.progress=false", "train.device=cpu", f"run.out_dir={folder}", "run.name=run"])
    return Path(train(config))


def synthetic_index(run: Path, path: Path, n: int, image: Path) -> None:
    """``n`` random unit vectors with the run's fingerprint; every item shows ``image``."""
    from radsearch.index import create_index
    from radsearch.index.embedder import load_embedder

    embedder = load_embedder(run, device="cpu")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, embedder.dim)).astype(np.float32)
    items = {"key": [f"synthetic/{i}" for i in range(n)], "image": [str(image)] * n,
             "subject": [f"S{i // 5:06d}" for i in range(n)], "time": (np.arange(n) % 5) * 1.0,
             "side": np.where(np.arange(n) % 2, "L", "R"), "view": ["PA"] * n}
    index = create_index(path, embedder.dim, embedder.fingerprint)
    for start in range(0, n, 50_000):
        index.add(vectors[start:start + 50_000],
                  {k: list(v[start:start + 50_000]) for k, v in items.items()})
    index.close()


def dicom_bytes(png: Path) -> bytes:
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def query_uploads(folder: Path) -> tuple[list[Path], list[tuple[str, bytes, str]]]:
    """32 synthetic knee PNGs at 80 px and 16 of them as DICOM, shuffled: the load's queries."""
    from radsearch.synth import generate_knee

    generate_knee(8, seed=7, image_size=80, out_dir=folder, workers=1)
    pngs = sorted(folder.rglob("*.png"))[:32]
    uploads = [(f"{i}.png", p.read_bytes(), "image/png") for i, p in enumerate(pngs)]
    uploads += [(f"{i}.dcm", dicom_bytes(p), "application/dicom") for i, p in enumerate(pngs[:16])]
    random.Random(0).shuffle(uploads)
    return pngs, uploads


class Server:
    """`python -m radsearch serve` in a subprocess on a free loopback port."""

    def __init__(self, index: Path, run: Path, max_batch: int, log: Path,
                 options: tuple[str, ...] = (), launcher: tuple[str, ...] = ("-m", "radsearch"),
                 env: dict | None = None, server_timing: bool = True):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **(env or {}),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                              os.environ.get("PYTHONPATH", "")])}
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, *launcher, "serve", str(index), "--run", str(run),
             "--port", str(self.port), "--max-batch", str(max_batch),
             *(["--server-timing"] if server_timing else []), *options],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 600          # a busy shared machine starts slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                httpx.get(self.url + "/health", timeout=2)
                return self
            except httpx.HTTPError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("server did not start within 600 s")

    def cpu_s(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2 ** 20

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def load(url: str, uploads: list[tuple[str, bytes, str]], clients: int, requests: int,
         server: Server | None = None) -> dict:
    """``requests`` searches spread over ``clients`` threads → latency percentiles, q/s, and
    the server's CPU time per search (user + system; what other users' load changes least)."""
    import httpx

    def worker(worker_id: int) -> tuple[list[float], Counter, list[dict]]:
        times, codes, stages = [], Counter(), []
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(worker_id, requests, clients):
                name, data, kind = uploads[i % len(uploads)]
                start = time.perf_counter()
                answer = client.post("/search", files={"images": (name, data, kind)},
                                     data={"k": "10"})
                times.append(time.perf_counter() - start)
                codes[answer.status_code] += 1
                stages.append(parse_server_timing(answer.headers.get("server-timing", ""),
                                                  times[-1]))
        return times, codes, stages

    # warm-up (first requests pay for lazy imports and allocator growth)
    import httpx as _h
    for name, data, kind in uploads[:4]:
        _h.post(url + "/search", files={"images": (name, data, kind)}, timeout=60)
    cpu = server.cpu_s() if server else float("nan")
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - start
    cpu = (server.cpu_s() if server else float("nan")) - cpu
    times = np.concatenate([r[0] for r in results]) * 1000
    codes = sum((r[1] for r in results), Counter())
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
            "qps": len(times) / wall, "codes": dict(codes),
            "cpu_ms": 1000 * cpu / len(times), "stages": [s for r in results for s in r[2] if s]}


# the request's stages in the order they happen (server Server-Timing names → table labels)
STAGES = [("parse", "multipart parse and read"), ("decode_wait", "wait for a work thread"),
          ("decode", "hash, sniff, header check, decode"),
          ("prepare", "resize / normalise (transform)"), ("preview", "query preview PNG"),
          ("loop", "hand-back to the event loop (both pool calls)"),
          ("queue", "queue wait for the model thread"), ("forward", "forward pass (shared batch)"),
          ("embed_other", "batch hand-back"), ("search_wait", "wait for a work thread (search)"),
          ("search", "faiss search + metadata + hits"), ("audit", "audit log"),
          ("json", "JSON rendering"),
          ("outside", "outside the handler: HTTP, uvicorn, middleware, client")]


def parse_server_timing(header: str, client_s: float) -> dict:
    """``Server-Timing`` of one answer → {stage: ms}; ``outside`` = client latency − server."""
    stages = {}
    for part in filter(None, (p.strip() for p in header.split(","))):
        name, _, rest = part.partition(";")
        if rest.startswith("dur="):
            stages[name] = float(rest[4:])
        elif rest.startswith("desc="):
            stages[name] = float(rest[5:].strip('"'))
    if "total" in stages:
        stages["embed_other"] = stages.get("embed", 0) - stages.get("queue", 0) \
            - stages.get("forward", 0)
        stages["outside"] = client_s * 1000 - stages["total"]
    return stages


def stage_table(stages: list[dict]) -> list[str]:
    """Mean and p99 ms per stage, and its share of the mean latency."""
    if not stages:
        return []
    latency = float(np.mean([s["total"] + s["outside"] for s in stages]))
    lines = ["| stage | mean ms | p99 ms | share of mean latency |", "|---|---:|---:|---:|"]
    for key, label in STAGES:
        values = np.array([s.get(key, 0.0) for s in stages])
        lines.append(f"| {label} | {values.mean():.1f} | {np.percentile(values, 99):.1f} | "
                     f"{100 * values.mean() / latency:.0f} % |")
    batch = np.array([s.get("batch", 0) for s in stages])
    lines.append(f"| whole request (client side) | {latency:.1f} | "
                 f"{np.percentile([s['total'] + s['outside'] for s in stages], 99):.1f} | 100 % |")
    lines += ["", f"Images per forward pass seen by these requests: mean {batch.mean():.1f}, "
                  f"max {batch.max():.0f}."]
    return lines


def forward_reference(run: Path, pngs: list[Path], repeats: int) -> dict:
    """The bare model forward pass (decode excluded) on the same images: 1 image and 8 images."""
    import torch

    from radsearch.images import read_image
    from radsearch.index.embedder import load_embedder

    torch.set_num_threads(1)           # as the server (`radsearch serve --threads 1`)
    embedder = load_embedder(run, device="cpu")
    model, transform = embedder.model, embedder.transform
    images = [read_image(p) for p in pngs]
    tensors = [transform(torch.from_numpy(im)[None]) for im in images]   # [1, H, W] in [0, 1]
    out = {}
    with torch.no_grad():
        for size in (1, 8):
            batch = torch.stack(tensors[:size]).float()
            model(batch)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch)
                times.append(time.perf_counter() - start)
            times = np.array(times) * 1000
            out[size] = {"p50": float(np.percentile(times, 50)),
                         "p99": float(np.percentile(times, 99)),
                         "qps": size * 1000 / float(np.mean(times))}
    return out


def fuzz_requests(n: int, png: bytes, dcm: bytes, seed: int = 0):
    """``n`` (files, data, headers, content) bad requests of many kinds, reproducible by seed."""
    rng = random.Random(seed)
    from PIL import Image

    bomb = io.BytesIO()
    Image.new("L", (12000, 12000)).save(bomb, format="PNG")     # 144 Mpx in ~150 kB
    bomb = bomb.getvalue()
    dcm_bomb = bytearray(dcm)
    # Rows (0028,0010) and Columns (0028,0011), US = 60000, in the explicit-VR LE header
    for element in (b"\x10", b"\x11"):
        at = dcm_bomb.find(b"\x28\x00" + element + b"\x00US\x02\x00")
        dcm_bomb[at + 8:at + 10] = (60000).to_bytes(2, "little")
    kinds = [
        ("random bytes", lambda: ({"images": ("r.png", rng.randbytes(rng.randint(1, 5000)),
                                              "image/png")}, {})),
        ("truncated PNG", lambda: ({"images": ("t.png", png[:rng.randint(1, len(png) - 1)],
                                               "image/png")}, {})),
        ("truncated DICOM", lambda: ({"images": ("t.dcm", dcm[:rng.randint(1, len(dcm) - 1)],
                                                 "application/dicom")}, {})),
        ("PNG bomb (144 Mpx)", lambda: ({"images": ("b.png", bomb, "image/png")}, {})),
        ("DICOM bomb (60000² declared)", lambda: ({"images": ("b.dcm", bytes(dcm_bomb),
                                                         "application/dicom")}, {})),
        ("mislabeled (PNG magic on DICOM)", lambda: ({"images": ("x.dcm", png[:8] + dcm[8:],
                                                                 "application/dicom")}, {})),
        ("path-traversal name, text body", lambda: ({"images": ("../../etc/passwd",
                                                                b"root:x:0:0", "image/png")}, {})),
        ("bad k", lambda: ({"images": ("q.png", png, "image/png")},
                           {"k": rng.choice(["0", "-1", "1e9", "abc", "", "101", "3.5", "NaN"])})),
        ("bad by", lambda: ({"images": ("q.png", png, "image/png")},
                            {"by": rng.choice(["", "person", "'; DROP TABLE items;--",
                                               "x" * 5000])})),
        ("malformed filter", lambda: ({"images": ("q.png", png, "image/png")},
                                      {"filter": rng.choice(["time<=abc", "colour=red", "subject",
                                                             "==", "labels<3", "id~1"])})),
        ("odd but valid filter", lambda: ({"images": ("q.png", png, "image/png")},
                                          {"filter": rng.choice(["view=\x00",
                                                                 "time>=" + "9" * 400])})),
        ("bad rerank / side", lambda: ({"images": ("q.png", png, "image/png")},
                                       {"rerank": rng.choice(["yes", "k", "None", "\u202e"]),
                                        "side": "LR"})),
        ("unknown field", lambda: ({"images": ("q.png", png, "image/png")},
                                   {"path": "/etc/shadow"})),
        ("9 files (limit 8)", lambda: ([("images", (f"{i}.png", png, "image/png"))
                                        for i in range(9)], {})),
        ("no image", lambda: ({}, {"k": "5"})),
        ("empty file", lambda: ({"images": ("e.png", b"", "image/png")}, {})),
        ("GIF", lambda: ({"images": ("g.gif", b"GIF89a" + rng.randbytes(100), "image/gif")},
                         {})),
    ]
    for i in range(n):
        name, make = kinds[i % len(kinds)]
        yield (name, *make())


def fuzz(url: str, server: Server, n: int, png: bytes, dcm: bytes) -> dict:
    import httpx

    rss_before = server.rss_mb()
    codes, by_kind = Counter(), {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for kind, files, data in fuzz_requests(n, png, dcm):
            status = client.post("/search", files=files, data=data).status_code
            codes[status] += 1
            by_kind.setdefault(kind, Counter())[status] += 1
        raw = [client.post("/search", content=b"\x00" * 100,
                           headers={"content-type": "multipart/form-data; boundary=zz"}),
               client.post("/search", json={"images": "x"}),
               client.get("/items/18446744073709551616"), client.get("/items/-5/thumbnail"),
               client.get("/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd"), client.get("/nothing")]
        for answer in raw:
            codes[answer.status_code] += 1
        for head in (b"Content-Length: 999999999999", b"Content-Length: abc"):   # lies
            codes[_raw_status(server.port, b"POST /search HTTP/1.1\r\nHost: x\r\n" + head +
                              b"\r\nContent-Type: multipart/form-data; boundary=z\r\n\r\nxx")] += 1
        health = client.get("/health").status_code
        ok = client.post("/search", files={"images": ("q.png", png, "image/png")}).status_code
    return {"requests": n + len(raw) + 2, "codes": dict(sorted(codes.items())),
            "by_kind": {k: dict(sorted(v.items())) for k, v in by_kind.items()},
            "health_after": health, "search_after": ok, "rss_before": rss_before,
            "rss_after": server.rss_mb()}


def _raw_status(port: int, request: bytes) -> int:
    """Status of a hand-made HTTP request (for headers an HTTP client refuses to send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        reply = sock.recv(4096)
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=160, help="searches per load level")
    parser.add_argument("--fuzz", type=int, default=600, help="bad requests (0: skip)")
    parser.add_argument("--run", type=Path, help="an existing run of the demo architecture")
    parser.add_argument("--max-wait-ms", type=float, default=None,
                        help="passed to radsearch serve (default: its own)")
    parser.add_argument("--workers", type=int, default=None,
                        help="passed to radsearch serve (default: its own)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    options = tuple(x for flag, value in (("--max-wait-ms", args.max_wait_ms),
                                          ("--workers", args.workers)) if value is not None
                    for x in (flag, str(value)))

    with tempfile.TemporaryDirectory(prefix="radsearch-bench-") as tmp:
        tmp = Path(tmp)
        run = args.run or train_demo_architecture(tmp)
        from radsearch.training.embed import load_run_config

        model = load_run_config(run).model
        arch = f"{model.name}, {model.embedding_dim}-d"
        pngs, uploads = query_uploads(tmp / "queries")
        start = time.perf_counter()
        synthetic_index(run, tmp / "bench.index", args.items, pngs[0])
        build_s = time.perf_counter() - start

        reference = forward_reference(run, pngs, repeats=40)
        rows = []
        fuzz_result = None
        for max_batch in (16, 1):
            with Server(tmp / "bench.index", run, max_batch, tmp / f"serve{max_batch}.log",
                        options) as srv:
                for clients in (1, 8):
                    result = load(srv.url, uploads, clients, args.requests, srv)
                    rows.append((max_batch, clients, result))
                    print(f"max_batch={max_batch} clients={clients}: "
                          f"{ {k: v for k, v in result.items() if k != 'stages'} }", flush=True)
                if max_batch == 16 and args.fuzz:
                    fuzz_result = fuzz(srv.url, srv, args.fuzz, uploads[0][1],
                                       next(u[1] for u in uploads if u[0].endswith(".dcm")))
                    print(f"fuzz: {fuzz_result}", flush=True)
        after = forward_reference(run, pngs, repeats=40)    # the machine is shared: twice

    lines = [f"Machine: {machine_line()}; index of {args.items} items (synthetic vectors, built "
             f"in {build_s:.1f} s); queries: {len(pngs)} PNG + 16 DICOM knee radiographs at "
             f"80 px through the demo architecture ({arch}), 1 model thread "
             "in server and reference; "
             f"{args.requests} searches per row; server and clients share the machine's cores; "
             f"server options: {' '.join(options) or 'defaults'}.",
             "", "| what | clients | p50 ms | p99 ms | queries/s | server CPU ms per search "
                 "| statuses |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for when, measured in (("before", reference), ("after", after)):
        for size in (1, 8):
            ref = measured[size]
            lines.append(f"| bare model forward, batch of {size} (reference, {when} the server "
                         f"rows) | – | {ref['p50']:.1f} | {ref['p99']:.1f} | {ref['qps']:.1f} | – "
                         "| – |")
    for max_batch, clients, r in rows:
        mode = "micro-batching (--max-batch 16)" if max_batch > 1 else "one at a time (--max-batch 1)"
        lines.append(f"| POST /search, {mode} | {clients} | {r['p50']:.1f} | {r['p99']:.1f} | "
                     f"{r['qps']:.1f} | {r['cpu_ms']:.1f} | {r['codes']} |")
    by = {(m, c): r for m, c, r in rows}
    lines += ["", f"At 8 clients micro-batching gives {by[(16, 8)]['qps'] / by[(1, 8)]['qps']:.2f}× "
                  f"the throughput of one at a time; POST /search at 1 client costs "
                  f"{by[(16, 1)]['p50'] / min(reference[1]['p50'], after[1]['p50']):.1f}× the faster "
                  "bare forward pass of one "
                  "image (upload, sniffing, decoding, transforms, index search over "
                  f"{args.items} items, JSON and HTTP on top). Issue targets on 2 cores: "
                  "p99 ≤ 250 ms and ≥ 20 queries/s at 8 clients."]
    for clients in (8, 1):
        lines += ["", f"Where the time of one request goes, micro-batching, {clients} client(s) "
                      "(server's Server-Timing header; 'outside' = client latency − server "
                      "time):", ""] + stage_table(by[(16, clients)]["stages"])
    if fuzz_result:
        codes = fuzz_result["codes"]
        lines += ["", f"Fuzz: {fuzz_result['requests']} bad requests → statuses {codes} "
                      f"(5xx: {sum(v for k, v in codes.items() if k >= 500)}); afterwards "
                      f"/health {fuzz_result['health_after']}, a good search "
                      f"{fuzz_result['search_after']}; server RSS {fuzz_result['rss_before']:.0f} "
                      f"MB before, {fuzz_result['rss_after']:.0f} MB after. The 200s are the "
                      "well-formed filter view = NUL, which matches nothing (an empty result, as "
                      "it should be); time ≥ 9…9 (400 digits) is over the 200-character filter "
                      "limit (422).", "", "| fuzz kind | statuses |", "|---|---|"]
        lines += [f"| {kind} | {codes} |" for kind, codes in fuzz_result["by_kind"].items()]
        lines += ["| raw: broken multipart, JSON body, huge/non-numeric Content-Length, "
                  "bad item ids, unknown route | included above |"]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        record("service", "Search service under load (benchmarks/service.py)",
               "python -m benchmarks.service" + (f" --items {args.items}" if args.items != 100_000
                                                 else ""), body)


if __name__ == "__main__":
    main()
