"""Embeddings of a cohort from a model or from a finished run folder.

``embed_run(run_dir, cohort)`` rebuilds the run's model from its saved ``config.yaml`` and a
checkpoint, and applies the run's test-time transforms, so ``radsearch evaluate RUN`` and
``radsearch embed`` see exactly what validation saw during training.
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


def clean_worker_error(exc: RadsearchError) -> RadsearchError:
    """A RadsearchError raised in a DataLoader worker carries a traceback; keep its one line."""
    message = str(exc)
    if "Original Traceback" in message:
        last = [line for line in message.strip().splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return type(exc)(message)


def load_run_config(run_dir: str | os.PathLike):
    from radsearch.training.config import load_config

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a radsearch run folder (no config.yaml). Train one with "
                          "`radsearch train CONFIG`.")
    return load_config(path)


def checkpoint_path(run_dir: str | os.PathLike, checkpoint: str = "best") -> Path:
    """``best`` / ``last`` or a file path."""
    run_dir = Path(run_dir)
    if checkpoint in ("best", "last"):
        path = run_dir / f"{checkpoint}.pt"
        if checkpoint == "best" and not path.is_file():
            path = run_dir / "last.pt"   # a run interrupted before its first validation
    else:
        path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found; the run has not finished an epoch yet "
                          "(resume it with `radsearch train` on the same config).")
    return path


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
    from radsearch.data import build_transforms

    config = load_run_config(run_dir)
    dev = resolve_device(device)
    model = load_run_model(run_dir, checkpoint, dev)
    transform = build_transforms(config.data.preset, train=False,
                                 image_size=config.data.image_size, resize=config.data.resize)
    return embed_cohort(model, cohort, transform, batch_size=batch_size, device=dev,
                        workers=workers, mirror_right=mirror_right_for(config, cohort))


def default_eval_cohort(run_dir: str | os.PathLike) -> Cohort:
    """The run's test split (from the ``cohort.csv`` the run saved)."""
    path = Path(run_dir) / "cohort.csv"
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
