"""The one place that turns query images into embeddings with a trained run's model.

Everything the index and search stages need from training goes through :func:`load_embedder` (index
building embeds the archive, search embeds the queries), so a change in
``radsearch.training.embed`` touches this file only. The embedder also states the model
*fingerprint* (checkpoint sha256 + preprocessing) that an index records and checks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsearch.cohort import Cohort

ImageLike = str | os.PathLike | np.ndarray


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Embedder:
    """A run's model + test-time preprocessing; ``embed`` returns L2-normalised float32 rows."""

    run_dir: Path
    model: Any
    transform: Any
    config: Any
    fingerprint: dict
    device: Any
    batch_size: int = 64

    @property
    def dim(self) -> int:
        return int(self.config.model.embedding_dim)

    def mirror_right(self, cohort: Cohort) -> bool:
        from radsearch.training.embed import mirror_right_for

        return bool(mirror_right_for(self.config, cohort))

    def embed_cohort(self, cohort: Cohort, images: Sequence[np.ndarray] | None = None
                     ) -> np.ndarray:
        """Rows of a manifest (right knees mirrored when the run did so)."""
        from radsearch.training.embed import embed_cohort

        vectors = embed_cohort(self.model, cohort, self.transform, batch_size=self.batch_size,
                               device=self.device, mirror_right=self.mirror_right(cohort),
                               images=images)
        return normalise(vectors)

    def embed(self, images: Sequence[ImageLike], sides: Sequence[str] | None = None
              ) -> np.ndarray:
        """Files (PNG/JPEG/DICOM) or arrays (uint8/uint16/float [0, 1]); ``sides`` L/R if known."""
        arrays = [im for im in images if isinstance(im, np.ndarray)]
        if arrays and len(arrays) != len(images):
            return np.concatenate([self.embed([im], None if sides is None else [sides[i]])
                                   for i, im in enumerate(images)])
        table = pd.DataFrame({
            "image": [f"<array {i}>" if isinstance(im, np.ndarray) else os.fspath(im)
                      for i, im in enumerate(images)],
            "subject": [f"query{i}" for i in range(len(images))],
            "time": [0.0] * len(images)})
        if sides is not None:
            table["side"] = [s or "" for s in sides]
        cohort = Cohort(table, source="query images")
        return self.embed_cohort(cohort, images=list(images) if arrays else None)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_embedder(run_dir: str | os.PathLike, checkpoint: str = "best", device: str = "auto",
                  batch_size: int = 64) -> Embedder:
    """Model + preprocessing of a training run folder, and its fingerprint."""
    from radsearch.training.embed import (checkpoint_path, load_run_config, load_run_model,
                                          resolve_device)
    from radsearch.training.preprocessing import load_preprocessing

    config = load_run_config(run_dir)
    dev = resolve_device(device)
    model = load_run_model(run_dir, checkpoint, dev)
    # the run's resolved input statistics (data.normalize=auto), not the preset's constants
    preprocessing = load_preprocessing(run_dir, config)
    transform = preprocessing.transform(train=False)
    fingerprint = {
        "checkpoint_sha256": file_sha256(checkpoint_path(run_dir, checkpoint)),
        "model": config.model.name, "embedding_dim": int(config.model.embedding_dim),
        "preset": preprocessing.preset, "image_size": int(preprocessing.image_size),
        "resize": int(preprocessing.resize),
        "normalisation": [preprocessing.mean, preprocessing.std],
        "mirror_right": config.data.mirror_right if config.data.mirror_right is not None
        else ("auto (right knees when the manifest has a side column)"
              if config.data.preset == "oai" else False),
    }
    return Embedder(Path(run_dir), model, transform, config, fingerprint, dev, batch_size)
