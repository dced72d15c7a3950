"""Reproducible DataLoader randomness (augmentations) for 0, 1 or more worker processes.

Recipe::

    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=2,
                        worker_init_fn=seed_worker, generator=loader_generator(seed))

With workers, PyTorch seeds each worker's torch RNG from a base seed drawn from ``generator`` at
the start of every epoch; ``seed_worker`` extends that seed to numpy and ``random`` so any library
used inside a transform is seeded too. With ``num_workers=0`` the transforms draw from the main
process's global RNGs, so call ``seed_everything(seed)`` once before training. A run is then
repeatable for a fixed (seed, num_workers); different worker counts give different, equally valid
augmentation draws (the batches' row indices, from the sampler, do not depend on workers at all).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def loader_generator(seed: int) -> torch.Generator:
    """``DataLoader(generator=...)``: fixes the workers' base seeds (and shuffling, if any)."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return generator


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and ``random`` in this process (model init, num_workers=0 transforms)."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    random.seed(int(seed))
