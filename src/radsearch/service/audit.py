"""Audit log of queries: one JSON line per search — when, who (client address), what (sha256 of
the uploaded bytes), the parameters and the ids returned. Never file names, patient names or
image content: upload file names often contain patient names, so they are not even read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path


class AuditLog:
    """Append-only JSON-lines file (or nothing when ``path`` is None)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, *, client: str, query_sha256: str, n_images: int, k: int, by: str,
               filters: list[str], rerank: str, result_ids: list[int], status: int) -> None:
        if self.path is None:
            return
        entry = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "client": client, "query_sha256": query_sha256, "images": n_images, "k": k,
                 "by": by, "filters": filters, "rerank": rerank, "status": status,
                 "result_ids": [str(i) for i in result_ids]}
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
