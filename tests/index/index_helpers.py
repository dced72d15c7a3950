"""Shared helpers of the index tests: random items and a numpy brute-force reference."""

import numpy as np


def random_items(n, dim=8, seed=0, subjects=7):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    items = [{"image": f"/archive/img{seed}_{i}.png", "subject": f"S{i % subjects}",
              "time": float(i % 4), "side": "LR"[i % 2], "view": ["PA", "AP", "LAT"][i % 3],
              "labels": "Effusion|Mass" if i % 5 == 0 else ("No Finding" if i % 5 == 1 else
                                                             "Mass")}
             for i in range(n)]
    return vectors, items


def brute_force(index_vectors, ids, queries, k, mask=None):
    """Reference top-k by numpy: (ids, scores), padded like the index."""
    v = index_vectors / np.linalg.norm(index_vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ v.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    out = np.where(np.isfinite(top), np.asarray(ids)[order], -1)
    return out, top
