"""The cohort a run trains on: load (or synthesise) it, make the splits it lacks, check it is usable.

The result, with a filled ``split`` column, is saved in the run folder as ``cohort.csv`` so
evaluation and embedding later use exactly the same rows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from radsearch.cohort import Cohort
from radsearch.datasets.splits import assign_by_subject
from radsearch.errors import ConfigError, DataError
from radsearch.training.config import Config, SynthConfig


def load_training_cohort(config: Config) -> Cohort:
    """The configured cohort with a train / val / test split (subject-grouped where made here)."""
    data = config.data
    if (data.manifest is None) == (data.synth is None):
        raise ConfigError("data: give exactly one source, data.manifest=PATH (a Cohort manifest) "
                          "or data.synth.kind=knee (a synthetic cohort).")
    if data.manifest is not None:
        cohort = Cohort.load(data.manifest)
    else:
        cohort = Cohort.load(synthesise(data.synth, Path(config.run.out_dir)))
    return ensure_splits(cohort, data.val_fraction, data.test_fraction, data.split_seed)


def _synth_folder(spec: SynthConfig) -> str:
    """Cache folder name; difficulty knobs enter as a short hash so changed knobs regenerate."""
    name = f"{spec.kind}-n{spec.n_subjects}-s{spec.seed}-px{spec.image_size}"
    if spec.difficulty:
        knobs = json.dumps(spec.difficulty, sort_keys=True)
        name += "-d" + hashlib.sha1(knobs.encode()).hexdigest()[:8]
    return name


def synthesise(spec: SynthConfig, runs_root: Path) -> Path:
    """Generate the synthetic cohort once (PNG files + manifest); later runs reuse it."""
    out = Path(spec.out_dir) if spec.out_dir else runs_root / "_synth" / _synth_folder(spec)
    manifest = out / "manifest.csv"
    if manifest.is_file():
        return manifest
    from radsearch import synth

    generate = synth.generate_knee if spec.kind == "knee" else synth.generate_chest
    generate(spec.n_subjects, seed=spec.seed, image_size=spec.image_size, out_dir=out,
             **spec.difficulty)
    return manifest


def ensure_splits(cohort: Cohort, val_fraction: float, test_fraction: float, seed: int) -> Cohort:
    """Fill missing splits by subject: no split at all → train/val/test; no val → carve from train."""
    table = cohort.table.copy()
    rng = np.random.default_rng(seed)
    if not cohort.has("split"):
        split_of = assign_by_subject(sorted(set(table["subject"])),
                                     {"test": test_fraction, "val": val_fraction}, rng)
        table["split"] = [split_of[s] for s in table["subject"]]
    elif not (table["split"] == "val").any():
        train = (table["split"] == "train").to_numpy()
        subjects = table.loc[train, "subject"]
        split_of = assign_by_subject(sorted(set(subjects)), {"val": val_fraction}, rng)
        table.loc[train, "split"] = [split_of[s] for s in subjects]
    out = Cohort(table, root=cohort.root, source=cohort.source)
    check_trainable(out)
    return out


def check_trainable(cohort: Cohort) -> None:
    """Training needs subjects with two images in train, and a non-empty validation fold."""
    table = cohort.table
    train = table[table["split"] == "train"]
    if train.empty:
        raise DataError(f"{cohort.source}: the train split is empty; set split=train on some rows "
                        "or remove the split column to let radsearch make a subject-grouped split.")
    per_subject = train.groupby("subject").size()
    if int((per_subject >= 2).sum()) < 2:
        raise DataError(f"{cohort.source}: fewer than two training subjects have two or more "
                        "images, so there are no positive pairs to learn from; forensic training "
                        "needs several images (visits) per subject.")
    val = table[table["split"] == "val"]
    if val.empty:
        raise DataError(f"{cohort.source}: the val split is empty; set data.val_fraction > 0 or "
                        "mark some subjects split=val.")
    if int((val.groupby("subject").size() >= 2).sum()) == 0:
        raise DataError(f"{cohort.source}: no validation subject has two images, so validation "
                        "retrieval has no relevant matches; enlarge the val split.")
