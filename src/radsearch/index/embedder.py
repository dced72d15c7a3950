"""The one place that turns query images (and, for MMDL runs, report text) into embeddings.

Everything the index and search stages need from training goes through :func:`load_embedder` (index
building embeds the archive, search embeds the queries), so a change in
``radsearch.training.embed`` or ``radsearch.training.mmdl`` touches this file only. The embedder
also states the model *fingerprint* (checkpoint sha256 + preprocessing, and for MMDL the report
encoder) that an index records and checks.

Two kinds of run folder: a forensic run (``radsearch train``: ``best.pt``/``last.pt``) embeds images
only; an MMDL run (``radsearch mmdl train``: ``model.pt``) embeds images with its image branch and,
when it was trained with reports, text with its report branch — both into the one common space,
which is what makes text → image search work.
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
from radsearch.errors import ConfigError

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

    @property
    def has_text(self) -> bool:
        """Whether ``embed_text`` works: the run has a report encoder in the image space."""
        return False

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise NoTextEncoder(f"this index was built with a run that has no report encoder "
                            f"({self.run_dir}: {self.fingerprint.get('model')}); search by text "
                            "needs an index built from an MMDL run trained with reports "
                            "(radsearch mmdl train … data.report_fraction>0).")

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

    # The two halves of one embedding, for callers that batch requests themselves (the service):
    # ``prepare`` runs per image in any thread, ``forward`` runs the network on a stack of them.
    def prepare(self, image: np.ndarray, mirror: bool = False) -> Any:
        """One decoded image (H, W) → the network input [1, S, S], as indexing prepares it
        (unit float, optional left-right mirror, the run's test-time transform)."""
        import torch

        from radsearch.data.dataset import to_unit_float

        tensor = torch.from_numpy(np.ascontiguousarray(to_unit_float(image, "upload")))[None]
        if mirror:
            tensor = torch.flip(tensor, dims=[-1])
        return self.transform(tensor)

    def forward(self, inputs: Sequence[Any]) -> np.ndarray:
        """Prepared inputs → L2-normalised rows (float32), one forward pass."""
        import torch

        device = torch.device(self.device)
        with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
            rows = self.model(torch.stack(list(inputs)).to(device)).float().cpu().numpy()
        return normalise(rows)


class NoTextEncoder(ConfigError):
    """Text search asked of a run (or index) without a report branch."""


@dataclass
class MMDLEmbedder(Embedder):
    """An MMDL run: images through the image branch, text through the report branch.

    Images are prepared as the trainer prepares them (decoded to [0, 1], resized to
    ``data.image_size``, quantised to uint8, scaled to [-1, 1]) and embedded through
    ``training.mmdl.embed_all``, so index vectors equal the vectors the run was evaluated with.
    The retrieval space is the common space, or the backbone features for the D121 baseline
    (``loss.kind=classifier``), which has no report branch.
    """

    space: str = "common"
    cohort: Cohort | None = None      # the training manifest (its splits, labels and reports)

    @property
    def dim(self) -> int:
        return int(self.config.model.dim if self.space == "common" else self.model.num_features)

    @property
    def has_text(self) -> bool:
        return self.space == "common" and self.model.text_encoder is not None

    def mirror_right(self, cohort: Cohort) -> bool:
        return False  # chest radiographs: the MMDL trainer never mirrors

    def embed_cohort(self, cohort: Cohort, images: Sequence[np.ndarray] | None = None
                     ) -> np.ndarray:
        from radsearch.training.mmdl import embed_all

        pixels = mmdl_pixels(cohort, images, int(self.config.data.image_size))
        if not len(pixels):
            return np.zeros((0, self.dim), np.float32)
        vectors, _ = embed_all(self.model, pixels, self.space, self.device,
                               batch=self.batch_size)
        return normalise(vectors)

    def prepare(self, image: np.ndarray, mirror: bool = False) -> Any:
        """One decoded image → uint8 [S, S] exactly as the trainer stores it (never mirrored)."""
        import torch

        size = int(self.config.data.image_size)
        return torch.from_numpy(mmdl_pixels(None, [image], size)[0])

    def forward(self, inputs: Sequence[Any]) -> np.ndarray:
        """Prepared uint8 images → unit rows through ``training.mmdl.embed_all`` (as indexing)."""
        import torch

        from radsearch.training.mmdl import embed_all

        pixels = torch.stack(list(inputs)).numpy()
        vectors, _ = embed_all(self.model, pixels, self.space, self.device, batch=self.batch_size)
        return normalise(vectors)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Unit rows of the report branch in the common space (the space images are indexed in)."""
        import torch

        if not self.has_text:
            super().embed_text(texts)
        texts = [str(t) for t in texts]
        self.model.eval()
        with torch.no_grad():
            rows = [self.model.embed_texts(texts[s:s + self.batch_size]).float().cpu()
                    for s in range(0, len(texts), self.batch_size)]
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return normalise(torch.cat(rows).numpy())


def mmdl_pixels(cohort: Cohort | None, images: Sequence[np.ndarray] | None, size: int
                ) -> np.ndarray:
    """uint8 [N, size, size] as ``training.mmdl.load_images`` makes them; in-memory arrays
    (uint8 / uint16 / float [0, 1], e.g. service uploads) take the same resize and quantisation."""
    from radsearch.data.cache import resize_unit_image
    from radsearch.data.dataset import to_unit_float
    from radsearch.training.mmdl import load_images

    if images is None:
        return load_images(cohort, size)
    out = np.empty((len(images), size, size), np.uint8)
    for i, image in enumerate(images):
        unit = to_unit_float(np.asarray(image), where=f"in-memory image {i}")
        out[i] = np.round(resize_unit_image(unit, size) * 255.0).astype(np.uint8)
    return out


def is_mmdl_run(run_dir: str | os.PathLike) -> bool:
    """An MMDL run folder (``radsearch mmdl train`` writes ``model.pt``; forensic runs do not)."""
    return (Path(run_dir) / "model.pt").is_file()


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_embedder(run_dir: str | os.PathLike, checkpoint: str = "best", device: str = "auto",
                  batch_size: int = 64) -> Embedder:
    """Model + preprocessing of a training run folder, and its fingerprint."""
    if is_mmdl_run(run_dir):
        return load_mmdl_embedder(run_dir, checkpoint, device, batch_size)
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


def load_mmdl_embedder(run_dir: str | os.PathLike, checkpoint: str = "best", device: str = "auto",
                       batch_size: int = 64) -> MMDLEmbedder:
    """An MMDL run folder → its embedder; the fingerprint names the report encoder (None when the
    run has none), so an index says whether it can be searched by text."""
    from radsearch.training.embed import resolve_device
    from radsearch.training.mmdl import load_mmdl_run

    run = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint {checkpoint}: an MMDL run has one checkpoint "
                          f"({run / 'model.pt'}); leave --checkpoint at best.")
    model, config, cohort = load_mmdl_run(run, Cohort.load(_training_manifest(run)))
    dev = resolve_device(device)
    model = model.to(dev).eval()
    space = "features" if config.loss.kind == "classifier" else "common"
    embedder = MMDLEmbedder(run, model, None, config, {}, dev, batch_size, space=space,
                            cohort=cohort)
    text = model.text_encoder.describe() if embedder.has_text else None
    embedder.fingerprint = {
        "checkpoint_sha256": file_sha256(run / "model.pt"),
        "model": f"mmdl:{config.model.backbone}", "embedding_dim": embedder.dim,
        "retrieval_space": space, "descriptor": config.model.descriptor,
        "image_size": int(config.data.image_size),
        "preprocessing": "resize (antialias) to image_size, uint8, (x - 0.5) / 0.5",
        "text_encoder": text,
    }
    return embedder


def _training_manifest(run: Path) -> Path:
    """The manifest the run was trained on: ``load_mmdl_run`` rebuilds the report encoder from its
    training reports."""
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) \
        if (run / "config.yaml").is_file() else {}
    manifest = ((config or {}).get("data") or {}).get("manifest")
    if not manifest:
        raise ConfigError(f"{run}: its config has no data.manifest; the training manifest is "
                          "needed to rebuild the report encoder (retrain with "
                          "data.manifest=PATH).")
    path = Path(manifest)
    if not path.is_file():
        raise ConfigError(f"{run}: its training manifest {path} is not found from "
                          f"{Path.cwd()}; run from the folder the run was trained in (relative "
                          "paths) or restore the manifest.")
    return path
