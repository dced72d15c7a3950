"""CohortDataset (memory and files), image cache, mirroring, worker seeding."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from radsearch.cohort import Cohort
from radsearch.data import (CohortDataset, MPerSubjectBatchSampler, build_transforms,
                            loader_generator, seed_everything, seed_worker)
from radsearch.data.cache import ImageCache, resize_unit_image
from radsearch.errors import DataError, ImageReadError
from radsearch.images import read_image


def _cohort(n_subjects: int = 6, per_subject: int = 4, root=None) -> Cohort:
    rows = [{"image": f"s{s}_v{v}.png", "subject": f"P{s:03d}", "time": float(v),
             "side": "R" if (s + v) % 2 else "L"}
            for s in range(n_subjects) for v in range(per_subject)]
    return Cohort(pd.DataFrame(rows), root=root)


def _images(n: int, size: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size + 4), dtype=np.uint8)


def _write_pngs(cohort: Cohort, images: np.ndarray) -> None:
    for path, image in zip(cohort.image_paths(), images):
        Image.fromarray(image).save(path)


def test_in_memory_items():
    cohort = _cohort()
    images = _images(len(cohort))
    dataset = CohortDataset(cohort, images=images)
    assert len(dataset) == 24
    image, code, row = dataset[5]
    assert image.shape == (1, 40, 44) and image.dtype == torch.float32
    np.testing.assert_allclose(image[0].numpy(), images[5] / 255.0, atol=1e-7)
    assert code == cohort.subject_codes()[5] and row == 5
    with pytest.raises(DataError, match="3 in-memory images for a cohort of 24 rows"):
        CohortDataset(cohort, images=images[:3])


def test_float_and_uint16_memory_images_and_range_check():
    cohort = _cohort(2, 2)
    floats = np.random.default_rng(1).random((4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(CohortDataset(cohort, images=floats)[2][0][0].numpy(), floats[2])
    words = (floats * 65535).astype(np.uint16)
    np.testing.assert_allclose(CohortDataset(cohort, images=words)[1][0][0].numpy(),
                               words[1] / 65535.0, atol=1e-7)
    with pytest.raises(DataError, match="row 0.*expected \\[0, 1\\]"):
        CohortDataset(cohort, images=floats * 255)[0]


def test_mirror_right_flips_only_right_rows():
    cohort = _cohort()
    images = _images(len(cohort))
    dataset = CohortDataset(cohort, images=images, mirror_right=True)
    for row, side in enumerate(cohort.table["side"]):
        expected = images[row][:, ::-1] if side == "R" else images[row]
        np.testing.assert_allclose(dataset[row][0][0].numpy(), expected / 255.0, atol=1e-7)
    no_side = Cohort(cohort.table.drop(columns="side"))
    with pytest.raises(DataError, match="mirror_right needs a 'side' column"):
        CohortDataset(no_side, images=images, mirror_right=True)


def test_files_match_read_image_and_transform_applies(tmp_path):
    cohort = _cohort(root=tmp_path)
    images = _images(len(cohort))
    _write_pngs(cohort, images)
    transform = build_transforms("oai", train=False, image_size=32, resize=36)
    dataset = CohortDataset(cohort, transform=transform)
    image, code, row = dataset[7]
    expected = transform(torch.from_numpy(read_image(tmp_path / "s1_v3.png"))[None])
    torch.testing.assert_close(image, expected)
    assert image.shape == (1, 32, 32) and row == 7 and code == 1


def test_missing_file_mid_epoch_stops_the_loader_naming_it(tmp_path):
    cohort = _cohort(root=tmp_path)
    _write_pngs(cohort, _images(len(cohort)))
    os.remove(tmp_path / "s2_v1.png")
    loader = DataLoader(CohortDataset(cohort), batch_size=4)
    with pytest.raises(ImageReadError, match="s2_v1.png.*not found"):
        for _ in loader:
            pass


def test_cache_stores_resized_images_and_notices_changes(tmp_path):
    cohort = _cohort(2, 2, root=tmp_path)
    images = _images(len(cohort), size=64)
    _write_pngs(cohort, images)
    transform = build_transforms("cxr", train=False, image_size=24, resize=28)
    plain = CohortDataset(cohort, transform=transform)
    cached = CohortDataset(cohort, transform=transform, cache_dir=tmp_path / "cache")
    assert cached.cache.size == 28  # follows the transform's resize
    first = cached[1][0]
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == 1 and np.load(entries[0]).shape == (28, 28)
    torch.testing.assert_close(first, plain[1][0], atol=1e-4, rtol=0)  # uint16 rounding only
    torch.testing.assert_close(cached[1][0], first)  # served from the cache
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1

    # Replace the file: new mtime / size → new key → decoded again.
    path = cohort.image_paths()[1]
    Image.fromarray(255 - images[1][:60]).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    torch.testing.assert_close(cached[1][0], plain[1][0], atol=1e-4, rtol=0)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


def test_damaged_cache_entry_is_rewritten(tmp_path):
    Image.fromarray(_images(1, size=50)[0]).save(tmp_path / "a.png")
    cache = ImageCache(tmp_path / "cache", size=20)
    expected = resize_unit_image(read_image(tmp_path / "a.png"), 20)
    np.testing.assert_allclose(cache.read(tmp_path / "a.png"), expected, atol=1 / 65535)
    entry = cache.entry(tmp_path / "a.png")
    entry.write_bytes(b"garbage")
    np.testing.assert_allclose(cache.read(tmp_path / "a.png"), expected, atol=1 / 65535)
    assert np.load(entry).shape == (20, 20)
    with pytest.raises(ImageReadError, match="gone.png"):
        cache.read(tmp_path / "gone.png")


def _epoch(num_workers: int, seed: int = 0) -> list[torch.Tensor]:
    cohort = _cohort(8, 4)
    dataset = CohortDataset(cohort, images=_images(len(cohort), size=36),
                            transform=build_transforms("oai", True, image_size=28, resize=32))
    sampler = MPerSubjectBatchSampler(cohort.subject_codes(), m=4, subjects_per_batch=2, seed=0)
    seed_everything(seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                        worker_init_fn=seed_worker, generator=loader_generator(seed))
    return [images for images, _, _ in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmentations_reproducible_per_worker_count(num_workers):
    first, second = _epoch(num_workers), _epoch(num_workers)
    assert len(first) == 4
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    other = _epoch(num_workers, seed=1)  # same rows (sampler seed 0), other augmentations
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_dataset_pickles_for_spawned_workers():
    # macOS / Windows start DataLoader workers with spawn: dataset and transforms travel by pickle.
    import pickle

    cohort = _cohort(2, 2)
    transform = build_transforms("oai", True, image_size=32, resize=36)
    dataset = CohortDataset(cohort, images=_images(4), transform=transform)
    clone = pickle.loads(pickle.dumps(dataset))
    torch.manual_seed(5)
    a = dataset[3][0]
    torch.manual_seed(5)
    assert torch.equal(clone[3][0], a)


def test_images_smaller_than_the_network_input_are_refused_naming_the_file(tmp_path):
    # issue 8: a 1×1 file was silently upsampled to a flat image
    cohort = _cohort(n_subjects=2, per_subject=2, root=tmp_path)
    _write_pngs(cohort, _images(len(cohort)))
    Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(tmp_path / "s1_v0.png")
    dataset = CohortDataset(cohort, transform=build_transforms("oai", train=False, image_size=32,
                                                               resize=36))
    dataset[0]
    with pytest.raises(ImageReadError, match=r"s1_v0.png: 1×1 pixels.*smaller than the 32"):
        dataset[2]
    # the same with the decoded-image cache, and in the in-memory batches of the CPU recipe
    cached = CohortDataset(cohort, transform=build_transforms("oai", train=False, image_size=32,
                                                              resize=36),
                           cache_dir=tmp_path / "cache")
    with pytest.raises(ImageReadError, match=r"s1_v0.png: 1×1 pixels.*smaller than the 32"):
        cached[2]
    assert not cached.cache.entry(tmp_path / "s1_v0.png").is_file()   # refused, never stored
    from radsearch.data.batches import MemoryImages

    with pytest.raises(ImageReadError, match=r"s1_v0.png: 1×1 pixels.*smaller than the 32"):
        MemoryImages(cohort, resize=36, min_side=32)


def _compressed_dicom(path, syntax) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51\x00\x05corrupt"])  # a J2K header cut short
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_decoder_errors_in_workers_keep_the_file_and_one_line(tmp_path, num_workers):
    # issue 8: a corrupt JPEG 2000 read in a worker surfaced as "SIZ marker length must be at least
    # 38", the file buried in a multi-line traceback text
    from pydicom.uid import JPEG2000Lossless

    cohort = Cohort(pd.DataFrame({"image": ["a.dcm", "bad.dcm"], "subject": ["P1", "P1"],
                                  "time": [0.0, 1.0]}), root=tmp_path)
    _compressed_dicom(tmp_path / "a.dcm", JPEG2000Lossless)
    _compressed_dicom(tmp_path / "bad.dcm", JPEG2000Lossless)
    loader = DataLoader(CohortDataset(cohort), batch_size=1, num_workers=num_workers)
    with pytest.raises(ImageReadError) as info:
        next(iter(loader))
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{tmp_path / 'a.dcm'}: cannot decode DICOM pixel data")
    assert "JPEG 2000" in message and "corrupt" in message


def test_a_missing_jpeg_ls_decoder_names_the_right_plugin(tmp_path):
    from pydicom.uid import JPEGLSLossless

    _compressed_dicom(tmp_path / "ls.dcm", JPEGLSLossless)
    try:
        import jpeg_ls  # noqa: F401  (pyjpegls)
        pytest.skip("a JPEG-LS decoder is installed here")
    except ImportError:
        pass
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / "ls.dcm")
    message = str(info.value)
    assert "\n" not in message and "JPEG-LS" in message
    assert "pylibjpeg-libjpeg" in message and "openjpeg" not in message
