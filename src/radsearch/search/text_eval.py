"""Text → image search evaluated through the index: class-based precision@k (ConVIRT / GLoRIA).

One query per study of the query split that has a report (its first row, as
``training.mmdl.text_to_image_precision`` picks them); the query text is the report, the database
is whatever the index holds (normally the training images), and a returned image is relevant when
it shares a CheXpert label with the query study. P@k = relevant among the top k / k, averaged over
the queries that have at least one relevant image in the index (those without are counted apart).
Tied scores count as in :mod:`radsearch.evaluation` (an item's rank is the end of its tie block), so
a tie crossing k is not decided by the order the index happens to return. ``chance`` is the P@k of
a random order (the share of the index relevant to a query, averaged); ``n_near_ties`` counts the
queries whose k-th and (k+1)-th scores differ by less than float32 rounding — where the index
(faiss) and an in-memory matrix product (torch) may order two candidates differently.
Going through ``Searcher`` (report branch → index search) checks the path a user's text query
takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radsearch.cohort import Cohort
from radsearch.errors import DataError

TIE_MARGIN = 32
NEAR_TIE = 1e-6   # score gaps this small reorder with float32 summation order (faiss vs torch)


def report_queries(cohort: Cohort, split: str = "test") -> np.ndarray:
    """Rows of ``split`` with a non-empty report, the first row of each study."""
    table = cohort.table
    if not cohort.has("report") or not cohort.has("split"):
        raise DataError(f"{cohort.source}: text → image evaluation needs 'report' and 'split' "
                        "columns.")
    reports = table["report"].fillna("").astype(str).to_numpy()
    rows = [i for i in np.flatnonzero(table["split"].to_numpy() == split) if reports[i].strip()]
    first: dict = {}
    for i in rows:
        first.setdefault(table["study"].iloc[i] if cohort.has("study") else i, i)
    return np.array(sorted(first.values()), dtype=np.int64)


def text_search_precision(searcher, cohort: Cohort, ks: Sequence[int] = (1, 5, 10),
                          split: str = "test") -> dict[str, float]:
    """P@k of report → image search through ``searcher`` (an index + an MMDL run with text)."""
    from radsearch.datasets.labels import CHEXPERT_LABELS

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise DataError(f"text → image evaluation: k values {ks} must be positive integers.")
    rows = report_queries(cohort, split)
    if not len(rows):
        raise DataError(f"{cohort.source}: no study of the {split!r} split has a report.")
    classes = set(CHEXPERT_LABELS)
    query_labels = [set(s) & classes for s in cohort.subset(rows).label_sets()]
    index_labels = [set(x for x in str(cell).split("|") if x) & classes
                    for cell in searcher.index.table["labels"]]
    present = set().union(*index_labels) if index_labels else set()
    texts = cohort.table["report"].astype(str).to_numpy()[rows].tolist()
    vectors = searcher.embed_text(texts)
    # a few candidates past k_max: a tie block that crosses k is seen whole
    fetch = min(ks[-1] + TIE_MARGIN, len(searcher.index))
    results = searcher.search_vectors(vectors, fetch, calibrated=False)
    hits: dict[int, list[float]] = {k: [] for k in ks}
    chance, near_ties = [], 0
    for labels, result in zip(query_labels, results):
        if not labels & present:
            continue            # no relevant image in the index: P@k undefined, skipped
        relevant = np.array([bool(set(h.labels) & labels) for h in result.hits], bool)
        scores = np.array([h.score for h in result.hits])
        # rank of each candidate at the end of its tie block, as radsearch.evaluation ranks
        ends = (scores[None, :] >= scores[:, None]).sum(axis=1)
        for k in ks:
            hits[k].append(float((relevant & (ends <= k)).sum()) / k)
        gaps = [scores[k - 1] - scores[k] for k in ks if k < len(scores)]
        near_ties += bool(gaps and min(gaps) < NEAR_TIE)
        chance.append(np.mean([bool(x & labels) for x in index_labels]))
    n = len(hits[ks[0]])
    out: dict[str, float] = {"n_queries": n, "n_skipped": int(len(rows) - n),
                             "chance": float(np.mean(chance)) if n else float("nan"),
                             "n_near_ties": int(near_ties)}
    out.update({f"P@{k}": float(np.mean(hits[k])) if n else float("nan") for k in ks})
    return out
