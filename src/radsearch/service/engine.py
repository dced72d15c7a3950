"""What the service needs from radsearch: the model and the index, loaded once, behind five calls.

A thin adapter over :class:`radsearch.search.Searcher` that keeps the parts of a search apart —
``prepare`` (one upload → network input, in the request's thread), ``forward`` (the model alone,
micro-batched across requests by the app) and ``search`` (index lookup of one fused query
vector) — and turns results into JSON without server paths.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from typing import TYPE_CHECKING

import numpy as np

from radsearch.errors import RadsearchError

if TYPE_CHECKING:
    import torch

RERANK = ("none", "qe", "dba", "k-reciprocal")


def _query_with_side():
    """A one-row query cohort with a side column: what decides whether the run mirrors R."""
    import pandas as pd

    from radsearch.cohort import Cohort

    return Cohort(pd.DataFrame({"image": ["<upload>"], "subject": ["query"], "time": [0.0],
                                "side": ["R"]}), source="uploaded images")


class ItemNotFound(RadsearchError):
    """An item id that is not in the index (HTTP 404)."""


class SearchEngine:
    def __init__(self, searcher):
        self.searcher = searcher
        self.index = searcher.index
        self._mirror_right = False
        if searcher.embedder is not None:
            # evaluation mode once, here: the forward pass never toggles it per request
            searcher.embedder.model.eval()
            self._mirror_right = searcher.embedder.mirror_right(_query_with_side())

    @classmethod
    def load(cls, index_path: str | os.PathLike, run_dir: str | os.PathLike, *,
             checkpoint: str = "best", device: str = "cpu", verify: bool = True) -> SearchEngine:
        """Open the index (checksums verified) and the run's model; a mismatch is refused."""
        from radsearch.index import open_index
        from radsearch.search import Searcher

        return cls(Searcher(open_index(index_path, verify=verify), run_dir,
                            checkpoint=checkpoint, device=device))

    # ---------------------------------------------------------------- the two halves of a search
    def prepare(self, image: np.ndarray, side: str = "") -> torch.Tensor:
        """One decoded upload (H, W) in [0, 1] → the network input, as indexing prepares it.

        Done in the request's own thread so the single model thread only runs the network. The
        side matters: a run that mirrors right knees at indexing must see a right-knee query
        mirrored too, else it is compared with the other knee's orientation.
        """
        return self._require_model().prepare(image, mirror=self._mirror_right and side == "R")

    def forward(self, inputs: list[torch.Tensor]) -> np.ndarray:
        """One model forward pass over prepared inputs → L2-normalised rows (float32)."""
        return self._require_model().forward(inputs)

    def embed(self, queries: list[tuple[np.ndarray, str]]) -> np.ndarray:
        """``(image in [0, 1], side "L"/"R"/"")`` pairs → normalised rows (prepare + forward)."""
        return self.forward([self.prepare(image, side) for image, side in queries])

    def _require_model(self):
        if self.searcher.embedder is None:
            raise RadsearchError("the service was started without a run folder; give --run.")
        return self.searcher.embedder

    def search(self, vectors: np.ndarray, *, k: int, by: str, filters: list[str],
               rerank: str) -> dict:
        """Several images of one person are fused (mean of normalised embeddings), then searched."""
        from radsearch.index.embedder import normalise

        fused = normalise(np.asarray(vectors, np.float32).mean(axis=0, keepdims=True))
        result = self.searcher.search_vectors(fused, k, by=by, filters=filters,
                                              rerank=rerank, names=["upload"])[0]
        # shallow: SearchResult.to_dict (dataclasses.asdict) deep-copies every hit, ~3 ms of a
        # search on the busy machine; these objects are fresh and never shared
        out = {f.name: getattr(result, f.name) for f in fields(result) if f.name != "query"}
        out["decision"] = asdict(result.decision) if result.decision is not None else None
        out["notes"] = list(result.notes)
        out["hits"] = [_public_hit(vars(hit)) for hit in result.hits]
        out["calibrated"] = bool(self.index.calibration)
        return out

    # ---------------------------------------------------------------- items
    def count(self) -> int:
        return len(self.index)

    def _row(self, item_id: int):
        """Metadata row of one id through the table's hash index (O(1); ``VectorIndex.items``
        scans every id with ``np.isin``, ~100 ms at 100k items on a busy 2-core machine)."""
        table = self.index.table
        where = table.index.get_indexer([item_id]) if 0 <= item_id < 2 ** 63 else [-1]
        if where[0] < 0:
            raise ItemNotFound(f"item {item_id} is not in the index.")
        return table.iloc[int(where[0])]

    def item(self, item_id: int) -> dict:
        row = self._row(item_id)
        return _public_hit({k: row[k] for k in ("id", "subject", "time", "side", "view", "study",
                                                 "labels")})

    def load_image(self, item_id: int) -> np.ndarray:
        """The item's image as indexed (path from the index metadata, never from a request)."""
        from radsearch.images import read_image

        self._row(item_id)   # unknown id → ItemNotFound; the image path is not in index.table
        return read_image(self.index.items([item_id])["image"].iloc[0])

    def info(self) -> dict:
        info = self.index.info()
        keep = ("format_version", "backend", "metric", "dim", "count", "subjects", "created",
                "updated", "fingerprint", "calibration", "factory")
        return {k: info[k] for k in keep if k in info}


def _public_hit(hit: dict) -> dict:
    """JSON of a hit: id as a string (63-bit ids do not fit a JavaScript number), no file path."""
    out = {k: v for k, v in hit.items() if k not in ("image", "report", "key")}
    out["id"] = str(int(hit["id"]))
    if isinstance(out.get("labels"), str):
        out["labels"] = [x for x in out["labels"].split("|") if x]
    if isinstance(out.get("time"), float) and not np.isfinite(out["time"]):
        out["time"] = None
    out["thumbnail"] = f"/items/{out['id']}/thumbnail"
    out["full"] = f"/items/{out['id']}/image"
    return out
