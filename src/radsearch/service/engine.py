"""What the service needs from radsearch: the model and the index, loaded once, behind five calls.

A thin adapter over :class:`radsearch.search.Searcher` that keeps the two halves of a search
apart — ``embed`` (the model forward, micro-batched across requests by the app) and ``search``
(index lookup of one fused query vector) — and turns results into JSON without server paths.
"""

from __future__ import annotations

import os

import numpy as np

from radsearch.errors import RadsearchError

RERANK = ("none", "qe", "dba", "k-reciprocal")


class ItemNotFound(RadsearchError):
    """An item id that is not in the index (HTTP 404)."""


class SearchEngine:
    def __init__(self, searcher):
        self.searcher = searcher
        self.index = searcher.index

    @classmethod
    def load(cls, index_path: str | os.PathLike, run_dir: str | os.PathLike, *,
             checkpoint: str = "best", device: str = "cpu", verify: bool = True) -> SearchEngine:
        """Open the index (checksums verified) and the run's model; a mismatch is refused."""
        from radsearch.index import open_index
        from radsearch.search import Searcher

        return cls(Searcher(open_index(index_path, verify=verify), run_dir,
                            checkpoint=checkpoint, device=device))

    # ---------------------------------------------------------------- the two halves of a search
    def embed(self, queries: list[tuple[np.ndarray, str]]) -> np.ndarray:
        """One forward pass over ``(image in [0, 1], side "L"/"R"/"")`` pairs → normalised rows.

        The side matters: a run that mirrors right knees at indexing must see a right-knee query
        mirrored too, else it is compared with the other knee's orientation.

        Goes through ``Embedder.embed_cohort`` with one distinct placeholder name per array
        (``Embedder.embed`` names every array "<array>", which the Cohort rejects as duplicates).
        """
        import pandas as pd

        from radsearch.cohort import Cohort

        if self.searcher.embedder is None:
            raise RadsearchError("the service was started without a run folder; give --run.")
        n = len(queries)
        cohort = Cohort(pd.DataFrame({"image": [f"<upload {i}>" for i in range(n)],
                                      "subject": [f"query{i}" for i in range(n)],
                                      "time": [0.0] * n,
                                      "side": [side for _, side in queries]}),
                        source="uploaded images")
        return self.searcher.embedder.embed_cohort(cohort, images=[im for im, _ in queries])

    def search(self, vectors: np.ndarray, *, k: int, by: str, filters: list[str],
               rerank: str) -> dict:
        """Several images of one person are fused (mean of normalised embeddings), then searched."""
        from radsearch.index.embedder import normalise

        fused = normalise(np.asarray(vectors, np.float32).mean(axis=0, keepdims=True))
        result = self.searcher.search_vectors(fused, k, by=by, filters=filters,
                                              rerank=rerank, names=["upload"])[0]
        out = result.to_dict()
        out.pop("query", None)
        out["hits"] = [_public_hit(hit) for hit in out["hits"]]
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
