"""Embeddings of a cohort from a model or from a finished run folder.

``embed_run(run_dir, cohort)`` rebuilds the run's model from its saved ``config.yaml`` and a
checkpoint, and applies the run's test-time preprocessing (``preprocessing.json``), so
``radsearch evaluate RUN`` and ``radsearch embed`` see exactly what validation saw during training.

Stable API for other packages (search index building):

    embedder = load_embedder(run_dir, checkpoint="best", device="auto")
    vectors = embedder.embed_paths(["a.png", "b.dcm"], sides=None)  # float32 [N, D], unit norm
    vectors = embedder.embed_arrays([pixels, ...])                 # 2-D arrays (uint8/uint16/[0,1])
    save_embeddings("emb.npz", vectors, cohort)  # atomically; .npz adds each row's image, subject
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, RadsearchError
from radsearch.training.rundir import RunDir


def mirror_right_for(config, cohort: Cohort) -> bool:
    """OAI convention: right knees are mirrored so every knee looks like a left one."""
    if config.data.mirror_right is not None:
        return config.data.mirror_right
    return config.data.preset == "oai" and cohort.has("side")


@torch.no_grad()
def embed_cohort(model: torch.nn.Module, cohort: Cohort, transform, *, batch_size: int = 64,
                 device: torch.device | str = "cpu", workers: int = 0, mirror_right: bool = False,
                 images: Sequence[np.ndarray] | None = None, channels_last: bool = False) -> np.ndarray:
    """Embed every row of ``cohort`` in order → float32 array [N, D]."""
    from radsearch.data import CohortDataset

    dataset = CohortDataset(cohort, transform=transform, images=images, mirror_right=mirror_right)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    was_training = model.training
    model.eval()
    device = torch.device(device)
    chunks = []
    try:
        for batch in loader:
            x = batch[0].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                chunks.append(model(x).float().cpu())
    except RadsearchError as exc:
        raise clean_worker_error(exc) from None
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, getattr(model, "embedding_dim", 0)), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)


@torch.no_grad()
def embed_pixels(model: torch.nn.Module, pixels: torch.Tensor, augment, *, batch_size: int = 64,
                 device: torch.device | str = "cpu", channels_last: bool = False) -> np.ndarray:
    """Embed uint8 images [N, R, R] held in memory through the test-time ``augment`` → [N, D]."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    chunks = []
    try:
        for start in range(0, len(pixels), batch_size):
            x = augment(pixels[start:start + batch_size]).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            chunks.append(model(x).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, getattr(model, "embedding_dim", 0)), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)


def clean_worker_error(exc: RadsearchError) -> RadsearchError:
    """A RadsearchError raised in a DataLoader worker carries a traceback; keep its one line."""
    message = str(exc)
    if "Original Traceback" in message:
        last = [line for line in message.strip().splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return type(exc)(message)


def load_run_config(run_dir: str | os.PathLike):
    from radsearch.training.config import load_config

    return load_config(RunDir(run_dir).require().config)


def checkpoint_path(run_dir: str | os.PathLike, checkpoint: str = "best") -> Path:
    """``best`` / ``last`` or a file path."""
    return RunDir(run_dir).checkpoint(checkpoint)


def load_run_model(run_dir: str | os.PathLike, checkpoint: str = "best",
                   device: torch.device | str = "cpu") -> torch.nn.Module:
    from radsearch.models import create_model

    config = load_run_config(run_dir)
    model = create_model(config.model.name, embedding_dim=config.model.embedding_dim, in_chans=1,
                         weights="none", first_conv=config.model.first_conv)
    state = torch.load(checkpoint_path(run_dir, checkpoint), map_location="cpu",
                       weights_only=False)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def embed_run(run_dir: str | os.PathLike, cohort: Cohort, checkpoint: str = "best", *,
              batch_size: int = 64, device: str = "auto", workers: int = 0) -> np.ndarray:
    """Embeddings [N, D] of ``cohort`` with the run's model (``best`` checkpoint by default)."""
    from radsearch.training.preprocessing import load_preprocessing

    config = load_run_config(run_dir)
    dev = resolve_device(device)
    model = load_run_model(run_dir, checkpoint, dev)
    transform = load_preprocessing(run_dir, config).transform(train=False)
    return embed_cohort(model, cohort, transform, batch_size=batch_size, device=dev,
                        workers=workers, mirror_right=mirror_right_for(config, cohort))


def save_embeddings(path: str | os.PathLike, embeddings: np.ndarray, cohort: Cohort) -> Path:
    """Write ``embeddings`` (row i = ``cohort`` row i) atomically; returns the path.

    ``.npy`` holds the array alone; ``.npz`` also holds each row's id (``image`` path and
    ``subject``), so the vectors can be matched to images without the manifest.
    """
    from radsearch.io import atomic_open

    out = Path(path)
    if out.suffix not in (".npy", ".npz"):
        raise ConfigError(f"{out}: use a .npy or .npz file name for embeddings.")
    if len(embeddings) != len(cohort):
        raise ConfigError(f"{out}: {len(embeddings)} embeddings for the {len(cohort)} rows of "
                          f"{cohort.source}; embed the same cohort that labels them.")
    with atomic_open(out, "wb") as fh:   # a full / read-only folder: one OutputError line
        if out.suffix == ".npy":
            np.save(fh, embeddings)
        else:
            np.savez(fh, embeddings=embeddings,
                     image=np.array([str(p) for p in cohort.image_paths()]),
                     subject=cohort.subjects.astype(str))
    return out


class Embedder:
    """A trained run's model with its test-time preprocessing, for embedding loose images."""

    def __init__(self, run_dir: str | os.PathLike, checkpoint: str = "best",
                 device: str = "auto", batch_size: int = 64) -> None:
        from radsearch.training.preprocessing import load_preprocessing

        self.run_dir = Path(run_dir)
        self.config = load_run_config(run_dir)
        self.device = resolve_device(device)
        self.model = load_run_model(run_dir, checkpoint, self.device)
        self.preprocessing = load_preprocessing(run_dir, self.config)
        self.transform = self.preprocessing.transform(train=False)
        self.batch_size = batch_size
        self.embedding_dim = self.model.embedding_dim

    def _mirror(self, sides: Sequence[str | None] | None, n: int) -> list[bool]:
        """Right sides flipped when the run mirrored them during training (OAI knees)."""
        mirror = self.config.data.mirror_right
        if mirror is None:
            mirror = self.config.data.preset == "oai"
        if not mirror or sides is None:
            return [False] * n
        return [str(s).upper() == "R" for s in sides]

    @torch.no_grad()
    def embed_arrays(self, images: Sequence[np.ndarray],
                     sides: Sequence[str | None] | None = None) -> np.ndarray:
        """2-D grey arrays (uint8, uint16 or float in [0, 1]) → float32 [N, D], unit norm."""
        from radsearch.data import to_unit_float

        flips = self._mirror(sides, len(images))
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = []
            for i in range(start, min(start + self.batch_size, len(images))):
                x = torch.from_numpy(to_unit_float(images[i], where=f"image {i}"))[None]
                batch.append(self.transform(torch.flip(x, dims=[-1]) if flips[i] else x))
            chunks.append(self.model(torch.stack(batch).to(self.device)).float().cpu())
        if not chunks:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return torch.cat(chunks).numpy().astype(np.float32)

    def embed_paths(self, paths: Sequence[str | os.PathLike],
                    sides: Sequence[str | None] | None = None) -> np.ndarray:
        """Image files (PNG/JPEG/TIFF/DICOM, read by radsearch.images) → float32 [N, D]."""
        from radsearch.images import read_image

        out = []
        for start in range(0, len(paths), self.batch_size):
            stop = min(start + self.batch_size, len(paths))
            part = None if sides is None else sides[start:stop]
            out.append(self.embed_arrays([read_image(p) for p in paths[start:stop]], part))
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)


def load_embedder(run_dir: str | os.PathLike, checkpoint: str = "best", device: str = "auto",
                  batch_size: int = 64) -> Embedder:
    """The stable entry point for embedding images with a trained run (see :class:`Embedder`)."""
    return Embedder(run_dir, checkpoint, device, batch_size)


def default_eval_cohort(run_dir: str | os.PathLike) -> Cohort:
    """The run's test split (from the ``cohort.csv`` the run saved)."""
    path = RunDir(run_dir).cohort
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no cohort.csv in the run folder; pass a manifest with "
                          "--cohort.")
    return Cohort.load(path).split("test")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r}: use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA GPU is available; use "
                          "train.device=cpu or auto.")
    return device
