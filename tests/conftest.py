"""Fixtures shared by several test folders.

``require_system``: a test that needs a system package (Orthanc, Chromium) skips locally with one
clear reason but fails when CI=true, so CI never passes by skipping it.
``tiny_run``: a tiny trained run (ResNet-18 at 32², one batch) and its synthetic knee cohort, made
once per session. It normalises with its training split's statistics (data.normalize=auto), so
searching must use the run's saved preprocessing rather than the preset's constants.
"""

import os

import pytest
import torch


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail when CI=true: CI must never pass by skipping a system test."""
    if condition:
        return
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: .ci/run installs it; system tests must not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require_system():
    return require


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from radsearch.synth import generate_knee
    from radsearch.training import load_config, train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    generate_knee(12, seed=0, image_size=32, out_dir=root / "knees", workers=1)
    config = load_config(None, [
        f"data.manifest={root / 'knees' / 'manifest.csv'}", "data.image_size=32",
        "data.resize=36", "data.normalize=auto", "data.workers=0", "model.embedding_dim=16",
        "optim.lr=1e-3",
        "train.epochs=1", "train.subjects_per_batch=4", "train.images_per_subject=2",
        "train.max_batches_per_epoch=1", "train.progress=false", "train.threads=1",
        "val.batch_size=64", f"run.out_dir={root / 'runs'}", "run.name=tiny"])
    run = train(config)
    return run, root / "knees" / "manifest.csv"
