"""m-per-subject batches: P subjects × m images each, the batches every triplet loss here needs.

An epoch has ⌊N_usable / (P·m)⌋ batches (drop_last, as in the paper: 128 = 32 × 4). Each batch
holds P distinct subjects, taken in turn from a fresh random permutation of the usable subjects (a
new permutation starts when one is used up, so every subject comes up about equally often), and m
rows of each, laid out subject after subject. Everything is drawn from
``numpy.random.default_rng([seed, epoch])``: the same (seed, epoch) gives the same batches on every
machine and every rank.

Subjects with fewer than m images — the policy is explicit:

* ``"skip"`` (default, cleaner): subjects with a single image are left out (they have no positive).
  A subject with 2 ≤ n < m images contributes all its n distinct images, and the remaining m − n
  slots repeat some of them (drawn uniformly among its own images). Such repeats are *augment-only
  positives*: the same file under two random augmentations. ``duplicates_last_epoch`` counts them,
  ``describe()`` reports how many subjects are short, and ``augment_only_pairs(rows)`` marks the
  pairs in a batch (the Dataset returns the row index) so a loss or a statistic can drop them.
* ``"replace"`` (reference implementation): every subject is used, and a subject with n < m images
  draws its m images with replacement — single-image subjects give four copies of one image.
  N_usable is then all N images.

With ``world_size > 1`` every rank builds the same global batches and yields its contiguous slice of
P/world_size whole subjects, so all-gathering the ranks' embeddings rebuilds the global P×m batch.

Why not pytorch-metric-learning's ``MPerClassSampler``: it is an index sampler (not a batch
sampler) with a fixed ``length_before_new_iter``, draws from numpy's global random state (no
per-epoch seed, no ``set_epoch``), has no rank slicing and always samples short classes with
replacement (so it cannot skip single-image subjects) — the four properties this sampler exists for.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from radsearch.errors import ConfigError, DataError

POLICIES = ("skip", "replace")
log = logging.getLogger(__name__)


class MPerSubjectBatchSampler(Sampler[list[int]]):
    """Batch sampler yielding lists of row indices: ``subjects_per_batch`` subjects × ``m`` rows.

    Pass it as ``DataLoader(dataset, batch_sampler=sampler, ...)``. Each ``iter()`` is one epoch
    and advances the epoch counter; ``set_epoch(e)`` chooses the epoch of the next ``iter()``
    (resume, DistributedDataParallel).
    """

    def __init__(self, subject_codes: Sequence[int] | np.ndarray | torch.Tensor, m: int = 4,
                 subjects_per_batch: int = 32, policy: str = "skip", seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        codes = np.asarray(subject_codes)
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            raise ConfigError("subject_codes must be a 1-D integer array (Cohort.subject_codes()); "
                              f"got shape {codes.shape}, dtype {codes.dtype}.")
        if policy not in POLICIES:
            raise ConfigError(f"unknown sampler policy {policy!r}; use 'skip' (drop single-image "
                              "subjects) or 'replace' (reference: draw with replacement).")
        if m < 2:
            raise ConfigError(f"m={m}: need at least 2 images per subject to form positives.")
        if subjects_per_batch < 2:
            raise ConfigError(f"subjects_per_batch={subjects_per_batch}: need at least 2 subjects "
                              "per batch to form negatives.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size.")
        if subjects_per_batch % world_size:
            raise ConfigError(f"subjects_per_batch={subjects_per_batch} is not divisible by "
                              f"world_size={world_size}; every rank must get whole subjects — "
                              "choose a multiple of the number of processes.")
        self.m, self.subjects_per_batch, self.policy = int(m), int(subjects_per_batch), policy
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.duplicates_last_epoch = 0

        order = np.argsort(codes, kind="stable")
        uniques, starts, counts = np.unique(codes[order], return_index=True, return_counts=True)
        groups = np.split(order, starts[1:]) if len(codes) else []
        if not (counts >= 2).any():
            raise DataError(f"no subject has 2 or more images ({len(codes)} images, {len(uniques)} "
                            "subjects): metric learning needs positives — check the 'subject' "
                            "column, or that the split keeps each subject's images together.")
        keep = counts >= 2 if policy == "skip" else np.ones(len(counts), dtype=bool)
        self.groups: list[np.ndarray] = [g for g, k in zip(groups, keep) if k]
        self.n_subjects_total = len(uniques)
        self.n_images_usable = int(counts[keep].sum())
        self.n_short = int(((counts < self.m) & keep).sum())
        if self.n_short:
            log.warning("%d of %d subject(s) have fewer than %d images (images per subject): their "
                        "batch slots repeat images (%s), positives made by augmentation only",
                        self.n_short, len(self.groups), self.m,
                        "own images first" if policy == "skip" else "drawn with replacement")
        if len(self.groups) < self.subjects_per_batch:
            raise DataError(f"only {len(self.groups)} usable subjects (policy {policy!r}) but "
                            f"subjects_per_batch={self.subjects_per_batch}; lower "
                            "subjects_per_batch or add data.")
        self.num_batches = self.n_images_usable // (self.subjects_per_batch * self.m)
        if self.num_batches == 0:
            raise DataError(f"{self.n_images_usable} usable images are fewer than one batch of "
                            f"{self.subjects_per_batch} × {self.m}; lower subjects_per_batch or m.")

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce the batches of ``epoch``."""
        self.epoch = int(epoch)

    def describe(self) -> dict[str, int | str]:
        """What the policy does with this data (log it at the start of training)."""
        return {"policy": self.policy, "subjects": self.n_subjects_total,
                "subjects_used": len(self.groups),
                "subjects_skipped": self.n_subjects_total - len(self.groups),
                "subjects_with_fewer_than_m": self.n_short, "images_usable": self.n_images_usable,
                "batches_per_epoch": self.num_batches,
                "batch_size": self.subjects_per_batch * self.m,
                "batch_size_per_rank": self.subjects_per_batch * self.m // self.world_size}

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        batches, self.duplicates_last_epoch = self.global_batches(epoch)
        per_rank = self.subjects_per_batch // self.world_size * self.m
        lo = self.rank * per_rank
        for batch in batches:
            yield batch[lo:lo + per_rank]

    def global_batches(self, epoch: int) -> tuple[list[list[int]], int]:
        """All ranks' batches of ``epoch`` and the number of repeated (augment-only) rows."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        pending: deque[int] = deque()  # subjects deferred because they were already in the batch
        stream: deque[int] = deque()
        batches: list[list[int]] = []
        duplicates = 0
        for _ in range(self.num_batches):
            chosen: list[int] = []
            while len(chosen) < self.subjects_per_batch:
                if pending and pending[0] not in chosen:
                    chosen.append(pending.popleft())
                    continue
                if not stream:
                    stream = deque(rng.permutation(len(self.groups)).tolist())
                subject = stream.popleft()
                (pending if subject in chosen else chosen).append(subject)
            batch: list[int] = []
            for subject in chosen:
                rows, repeated = self._draw(self.groups[subject], rng)
                batch.extend(rows)
                duplicates += repeated
            batches.append(batch)
        return batches, duplicates

    def _draw(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[list[int], int]:
        """m rows of one subject and how many of them repeat a row already drawn."""
        n, m = len(rows), self.m
        if n >= m:
            return rows[rng.choice(n, m, replace=False)].tolist(), 0
        if self.policy == "skip":  # all distinct images first, then repeats among them
            picks = np.concatenate([rng.permutation(n), rng.choice(n, m - n, replace=True)])
        else:
            picks = rng.choice(n, m, replace=True)
        return rows[picks].tolist(), m - len(np.unique(picks))


def augment_only_pairs(row_indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """[B, B] bool mask of pairs (i ≠ j) of the same row: positives made by augmentation only."""
    rows = torch.as_tensor(np.asarray(row_indices)).reshape(-1)
    same = rows[:, None] == rows[None, :]
    return same & ~torch.eye(len(rows), dtype=torch.bool)
