"""`radsearch serve INDEX --run RUN`: the search service (HTTP API + web page) with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from radsearch.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add `radsearch serve` to the root app."""
    app.command("serve")(serve)


def serve(index: Path = typer.Argument(..., help="Index folder (radsearch index build)."),
          run: Path = typer.Option(..., "--run", help="Training run folder the index was built "
                                   "with (its model embeds the queries)."),
          host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; any "
                                   "non-loopback address requires a bearer token."),
          port: int = typer.Option(8000, "--port", help="TCP port."),
          token_file: Path | None = typer.Option(None, "--token-file", help="File whose first "
                                                 "line is the bearer token (else the "
                                                 "RADSEARCH_TOKEN environment variable)."),
          audit_log: Path | None = typer.Option(None, "--audit-log", help="JSON-lines audit log "
                                                "of queries (no PHI)."),
          checkpoint: str = typer.Option("best", "--checkpoint", help="best, last or a file."),
          device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
          max_batch: int = typer.Option(16, "--max-batch", help="Images per model forward pass "
                                        "shared by concurrent requests (1 = one at a time)."),
          max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a forward "
                                            "pass waits for more requests to join its batch."),
          workers: int = typer.Option(2, "--workers", help="Threads that decode uploads and "
                                      "search the index beside the model thread (about the "
                                      "number of free cores)."),
          server_timing: bool = typer.Option(False, "--server-timing", help="Add a per-stage "
                                             "Server-Timing header to search answers "
                                             "(benchmarks/service.py reads it)."),
          max_upload_mb: float = typer.Option(32.0, "--max-upload-mb", help="Largest image "
                                              "file accepted."),
          cors_origin: list[str] = typer.Option([], "--cors-origin", help="Allow browser "
                                                "pages from this origin (CORS off by default)."),
          threads: int = typer.Option(1, "--threads", help="Intra-op threads of the model. "
                                      "1 is fastest on a shared machine (more threads than free "
                                      "cores slow every forward pass down); raise it on a "
                                      "dedicated one for lower single-query latency."),
          ) -> None:
    """Serve search over HTTP: POST /search, GET /items/{id}, /items/{id}/thumbnail,
    /items/{id}/image, /health,
    /index, /docs (OpenAPI) and the web page at /."""
    import uvicorn

    from radsearch.service.app import Settings, create_app
    from radsearch.service.auth import is_loopback, load_token
    from radsearch.service.engine import SearchEngine
    from radsearch.service.uploads import Limits

    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: use 1-65535.")
    if max_batch < 1 or max_upload_mb <= 0 or threads < 1 or workers < 1 or max_wait_ms < 0:
        raise ConfigError("--max-batch, --max-upload-mb, --threads and --workers must be "
                          "positive, --max-wait-ms zero or more.")
    import torch

    torch.set_num_threads(threads)
    token = load_token(host, token_file)
    max_file = int(max_upload_mb * 1024 * 1024)
    limits = Limits(max_file_bytes=max_file,
                    max_request_bytes=max(Limits().max_request_bytes, 4 * max_file))
    engine = SearchEngine.load(index, run, checkpoint=checkpoint, device=device)
    app = create_app(engine, Settings(token=token, limits=limits, max_batch=max_batch,
                                      max_wait_s=max_wait_ms / 1000, workers=workers,
                                      server_timing=server_timing, audit_log=audit_log,
                                      cors_origins=tuple(cors_origin)))
    shown = f"[{host}]" if ":" in host else host
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"radsearch: {engine.count()} items; open http://{shown}:{port}/ "
          f"({'bearer token required' if token else 'no token: loopback only'})", flush=True)
    if not is_loopback(host):
        print("radsearch: listening beyond this machine; put TLS in front (reverse proxy).",
              flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False,
                server_header=False)
