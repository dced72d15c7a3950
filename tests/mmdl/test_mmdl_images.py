"""File-backed (memory-mapped) training images: identical bytes and batches to the in-RAM path,
built once, rebuilt when an image or the file changes, chosen automatically above a budget."""

import os

import numpy as np
import pytest
import torch

from radsearch.errors import RadsearchError
from radsearch.synth import generate_chest
from radsearch.training import mmdl_images
from radsearch.training.mmdl import _batch_tensor, load_images, load_mmdl_config, train_mmdl
from radsearch.training.mmdl_images import file_backed_images, training_images
from radsearch.training.mmdl_options import MMDLImages


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return generate_chest(8, seed=2, image_size=40, out_dir=root / "cohort", workers=1).cohort


def test_file_backed_equals_ram_and_gives_identical_batches(cohort, tmp_path):
    ram = load_images(cohort, 24)
    mapped = file_backed_images(cohort, 24, tmp_path, log=lambda m: None)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(np.asarray(mapped), ram)
    rows = np.array([5, 0, 3, 3, len(ram) - 1])
    for train in (True, False):
        a = _batch_tensor(ram, rows, train, np.random.default_rng(7))
        b = _batch_tensor(mapped, rows, train, np.random.default_rng(7))
        assert torch.equal(a, b)


def test_cache_is_built_once_and_rebuilt_when_an_image_or_the_file_changes(cohort, tmp_path,
                                                                          monkeypatch):
    # a copy in RAM: truncating a mapped file in place (below) makes reading the map a SIGBUS
    first = np.array(file_backed_images(cohort, 16, tmp_path, log=lambda m: None))
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and not list(tmp_path.glob(".*.tmp"))

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(mmdl_images, "load_images", no_decode)
        np.testing.assert_array_equal(np.array(file_backed_images(cohort, 16, tmp_path)), first)
    files[0].write_bytes(files[0].read_bytes()[:100])  # damaged: rebuilt, same content
    np.testing.assert_array_equal(file_backed_images(cohort, 16, tmp_path, log=lambda m: None),
                                  first)
    path = cohort.image_paths()[0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an edited image: new key
    file_backed_images(cohort, 16, tmp_path, log=lambda m: None)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_auto_mode_switches_on_the_budget(cohort, tmp_path):
    small = training_images(cohort, 16, MMDLImages(ram_budget_gb=1.0))
    assert not isinstance(small, np.memmap)
    big = training_images(cohort, 16, MMDLImages(ram_budget_gb=0.0, cache_dir=str(tmp_path)),
                          log=lambda m: None)
    assert isinstance(big, np.memmap)
    np.testing.assert_array_equal(np.asarray(big), small)
    default = training_images(cohort, 16, MMDLImages(mode="file"), log=lambda m: None)
    assert len(list((cohort.root / ".radsearch-cache" / "mmdl-images").glob("*.npy"))) == 1
    np.testing.assert_array_equal(np.asarray(default), small)


def test_unwritable_cache_folder_is_one_line(cohort, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works as root too, unlike a read-only mode
    with pytest.raises(RadsearchError) as info:
        training_images(cohort, 16, MMDLImages(mode="file", cache_dir=str(blocker / "cache")),
                        log=lambda m: None)
    assert len(str(info.value).splitlines()) == 1 and str(blocker) in str(info.value)


def test_training_from_the_file_backed_path_matches_ram(cohort, tmp_path):
    base = [f"data.manifest={cohort.source}", "model.backbone=resnet18", "model.dim=8",
            "model.hidden=8", "data.image_size=32", "train.epochs=1", "train.batch_size=8",
            "data.report_fraction=0"]
    ram = train_mmdl(load_mmdl_config(None, [*base, "images.mode=ram"]), tmp_path / "ram",
                     log=lambda m: None)
    mapped = train_mmdl(load_mmdl_config(None, [*base, "images.mode=file",
                                                f"images.cache_dir={tmp_path / 'c'}"]),
                        tmp_path / "file", log=lambda m: None)
    assert mapped["per_query"]["mAP@10"] == ram["per_query"]["mAP@10"]
    assert mapped["history"] == ram["history"]
