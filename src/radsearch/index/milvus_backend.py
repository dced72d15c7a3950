"""MilvusIndex: the scale-out backend, through pymilvus ``MilvusClient``.

Without ``uri`` the index folder holds an embedded milvus-lite database (``INDEX/milvus.db``);
``uri=http://host:19530`` talks to a Milvus Standalone/Distributed deployment (or a
``milvus-lite server``) with the same code. Vectors and the filterable metadata (subject, time,
side, view, study, labels) live in one collection, so filters are Milvus boolean expressions
evaluated by the engine; the full metadata is also kept in the folder's SQLite file.

Milvus applies writes immediately; the folder's commit (metadata + header) is the record of what
is indexed. A writer that opens the index reconciles the two after a crash: vectors of items that
were never committed are deleted, committed items whose vectors are gone are dropped.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from radsearch.errors import ConfigError, RadsearchError
from radsearch.index.base import Neighbours, VectorIndex
from radsearch.index.filters import combined_expression

BATCH = 2000
_LOCAL_OPEN: dict[str, int] = {}   # embedded milvus-lite folders open in this process
TEXT_FIELDS = {"subject": 512, "side": 16, "view": 64, "study": 512, "labels_tokens": 4096}


def _index_params(factory: str | None) -> tuple[str, dict]:
    name = (factory or "FLAT").upper()
    if name.startswith("HNSW"):
        m = re.findall(r"\d+", name)
        return "HNSW", {"M": int(m[0]) if m else 32, "efConstruction": 200}
    if name.startswith("IVF_FLAT"):
        return "IVF_FLAT", {"nlist": 1024}
    if name == "FLAT":
        return "FLAT", {}
    raise ConfigError(f"--factory {factory!r} for milvus: use FLAT (exact), HNSW[M] or IVF_FLAT.")


class MilvusIndex(VectorIndex):
    backend = "milvus"

    def __init__(self, path, header, table, writable, lock):
        super().__init__(path, header, table, writable, lock)
        # gRPC's C core logs keep-alive chatter of the embedded server at error level; pymilvus
        # raises real failures as exceptions, so keep the console clean unless the user asks
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        from pymilvus import MilvusClient

        self.uri = header.get("uri") or str((self.path / "milvus.db").resolve())
        self.local = not header.get("uri")
        self.collection = header.get("collection") or "radsearch"
        if self.local:
            _LOCAL_OPEN[self.uri] = _LOCAL_OPEN.get(self.uri, 0) + 1
        try:
            self.client = MilvusClient(self.uri)
        except Exception as exc:  # pymilvus raises MilvusException / grpc errors
            hint = ("embedded milvus-lite lets one process at a time open its folder: close the "
                    "other one, or serve it with `milvus-lite server` and use --uri"
                    if self.local else "start the server or fix --uri")
            raise RadsearchError(f"{self.path}: cannot open Milvus at {self.uri} "
                                 f"({str(exc).splitlines()[0][:200]}); {hint}.") from None
        if not self.client.has_collection(self.collection):
            if header.get("commit", 0) > 0:
                raise RadsearchError(f"{self.path}: collection {self.collection!r} is missing at "
                                     f"{self.uri}; rebuild the index.")
            self._create_collection()
        try:   # a collection opened by a new process is 'released' until loaded
            self.client.load_collection(self.collection)
        except Exception as exc:  # pymilvus MilvusException / grpc errors
            raise RadsearchError(f"{self.path}: Milvus cannot load collection "
                                 f"{self.collection!r} at {self.uri} "
                                 f"({str(exc).splitlines()[0][:200]}).") from None
        if writable and header.get("commit", 0) > 0:
            self._reconcile()

    def _create_collection(self) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("time", DataType.DOUBLE)
        for name, length in TEXT_FIELDS.items():
            schema.add_field(name, DataType.VARCHAR, max_length=length)
        kind, params = _index_params(self.header.get("factory"))
        index_params = self.client.prepare_index_params()
        index_params.add_index("vector", index_type=kind, metric_type="IP", params=params)
        self.client.create_collection(self.collection, schema=schema, index_params=index_params)

    def _reconcile(self) -> None:
        stored = self._backend_ids()
        mine = self.ids()
        extra = stored[~np.isin(stored, mine)]
        if len(extra):
            self.client.delete(self.collection, ids=extra.tolist())
        gone = mine[~np.isin(mine, stored)]
        if len(gone):
            self._drop_rows(gone)

    # ------------------------------------------------------------------ writes
    def _add_vectors(self, ids, vectors, table: pd.DataFrame) -> None:
        for start in range(0, len(ids), BATCH):
            rows = []
            for i in range(start, min(start + BATCH, len(ids))):
                r = table.iloc[i]
                labels = [x for x in str(r["labels"]).split("|") if x]
                rows.append({"id": int(ids[i]), "vector": vectors[i].tolist(),
                             "time": float(r["time"]) if np.isfinite(r["time"]) else float("nan"),
                             "subject": str(r["subject"]), "side": str(r["side"]),
                             "view": str(r["view"]), "study": str(r["study"]),
                             "labels_tokens": "|" + "|".join(labels) + "|"})
            self.client.insert(self.collection, rows)

    def _remove_vectors(self, ids) -> None:
        for start in range(0, len(ids), BATCH):
            self.client.delete(self.collection, ids=[int(x) for x in ids[start:start + BATCH]])

    def _save_files(self, commit: int) -> list[str]:
        flush = getattr(self.client, "flush", None)
        if flush is not None:
            flush(self.collection)
        return []

    # ------------------------------------------------------------------ reads
    def _search(self, queries, k, filters) -> Neighbours:
        unstored = sorted({f.field for f in filters if f.field == "image"})
        if unstored:
            raise ConfigError(f"{self.path}: the milvus backend cannot filter on {unstored[0]} "
                              "(not stored in Milvus); filter on id, subject, time, side, view, "
                              "study or labels.")
        expr = combined_expression(filters)
        ids = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        for start in range(0, len(queries), 256):
            chunk = queries[start:start + 256]
            found = self.client.search(self.collection, data=chunk.tolist(), limit=k,
                                       filter=expr, output_fields=["id"],
                                       search_params={"metric_type": "IP"})
            for row, hits in enumerate(found):
                for col, hit in enumerate(hits):
                    ids[start + row, col] = int(hit["id"])
                    scores[start + row, col] = float(hit["distance"])
        return Neighbours(ids, scores)

    def _get_vectors(self, ids) -> np.ndarray:
        out = np.zeros((len(ids), self.dim), np.float32)
        position = {int(x): i for i, x in enumerate(ids)}
        for start in range(0, len(ids), BATCH):
            part = [int(x) for x in ids[start:start + BATCH]]
            for row in self.client.get(self.collection, ids=part, output_fields=["vector"]):
                out[position[int(row["id"])]] = np.asarray(row["vector"], np.float32)
        return out

    def _backend_ids(self) -> np.ndarray:
        import logging

        # milvus-lite has no server timestamp; pymilvus warns about it on every iterator
        logging.getLogger("pymilvus").setLevel(logging.ERROR)
        ids = []
        iterator = self.client.query_iterator(self.collection, batch_size=1000, filter="",
                                              output_fields=["id"])
        while True:
            batch = iterator.next()
            if not batch:
                iterator.close()
                break
            ids += [int(row["id"]) for row in batch]
        return np.asarray(ids, np.int64)

    def _backend_info(self) -> dict:
        return {"uri": self.uri, "collection": self.collection}

    def close(self, commit: bool | None = None) -> None:
        super().close(commit)
        try:
            self.client.close()
        except Exception:  # closing twice or a gone server: nothing left to release
            pass
        if self.local and not getattr(self, "_released", False) and \
                _LOCAL_OPEN.get(self.uri, 0) > 0:
            self._released = True
            # embedded milvus-lite keeps its folder locked until released: let other processes in
            _LOCAL_OPEN[self.uri] -= 1
            if not _LOCAL_OPEN[self.uri]:
                try:
                    from milvus_lite.server_manager import server_manager_instance
                    server_manager_instance.release_server(self.uri)
                except Exception:  # another milvus-lite version: released at process exit
                    pass
