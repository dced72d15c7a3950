"""In-memory uint8 batches: the batched augmentation against torchvision's per-image pipeline."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from radsearch.cohort import Cohort
from radsearch.data import build_transforms, resize_unit_image
from radsearch.data.batches import BatchAugment, MemoryImages, rotate_crop
from radsearch.images import read_image


@pytest.fixture()
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        pixels = rng.integers(0, 256, size=(50, 40), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "subject": f"s{i // 2}", "time": float(i % 2),
                     "side": "R" if i == 1 else "L"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    return Cohort.load(tmp_path / "m.csv")


def test_memory_images_are_the_resized_decoded_files_with_right_sides_mirrored(cohort):
    memory = MemoryImages(cohort, resize=36, mirror_right=True)
    assert memory.pixels.dtype == torch.uint8 and memory.pixels.shape == (4, 36, 36)
    for i, path in enumerate(cohort.image_paths()):
        want = np.rint(resize_unit_image(read_image(path), 36) * 255).astype(np.uint8)
        if i == 1:
            want = want[:, ::-1]
        np.testing.assert_array_equal(memory.pixels[i].numpy(), want)
    assert memory.labels.tolist() == list(cohort.subject_codes())
    mean, std = memory.mean_std()
    values = memory.pixels.double().numpy() / 255
    assert mean == pytest.approx(values.mean()) and std == pytest.approx(values.std(ddof=1))


def test_test_time_batches_equal_torchvision_centre_crop_and_normalisation(cohort):
    memory = MemoryImages(cohort, resize=36)
    got = BatchAugment(32, mean=0.4, std=0.2, train=False)(memory.pixels)
    reference = build_transforms("oai", train=False, image_size=32, resize=36, mean=0.4, std=0.2)
    for i in range(len(memory)):
        want = reference(memory.pixels[i][None].float() / 255)
        torch.testing.assert_close(got[i], want)


def test_train_batches_without_rotation_noise_gamma_are_random_crops(cohort):
    memory = MemoryImages(cohort, resize=36)
    augment = BatchAugment(28, mean=0.0, std=1.0, rotation_p=0.0, noise_p=0.0, gamma_p=0.0)
    torch.manual_seed(0)
    out = augment(memory.pixels)
    assert out.shape == (4, 1, 28, 28)
    for i in range(4):
        image = memory.pixels[i].float() / 255
        crops = [image[y:y + 28, x:x + 28] for y in range(9) for x in range(9)]
        assert min(float((out[i, 0] - c).abs().max()) for c in crops) < 1e-5


def test_rotation_and_crop_match_torchvision_rotate_then_crop():
    torch.manual_seed(1)
    x = torch.rand(2, 1, 40, 40)
    angles = torch.tensor([math.radians(7.0), math.radians(-9.0)])
    offsets = torch.tensor([[3.0, 5.0], [6.0, 1.0]])  # (x, y) of the crop's top-left corner
    got = rotate_crop(x, angles, offsets, 30)
    for i in range(2):
        rotated = TF.rotate(x[i], math.degrees(float(angles[i])),
                            interpolation=TF.InterpolationMode.BILINEAR)
        ox, oy = int(offsets[i, 0]), int(offsets[i, 1])
        want = rotated[:, oy:oy + 30, ox:ox + 30]
        # interior: the border may differ by how the zero fill is interpolated
        torch.testing.assert_close(got[i, :, 4:-4, 4:-4], want[:, 4:-4, 4:-4], atol=1e-4,
                                   rtol=0)


def test_gamma_always_applied_is_the_power_of_the_crop(cohort):
    memory = MemoryImages(cohort, resize=32)
    augment = BatchAugment(32, mean=0.0, std=1.0, rotation_p=0.0, noise_p=0.0, gamma_p=1.0,
                           gamma_range=(2.0, 2.0))
    out = augment(memory.pixels)
    torch.testing.assert_close(out[:, 0], (memory.pixels.float() / 255) ** 2)


def test_noise_blend_stays_in_unit_range_and_changes_the_image(cohort):
    memory = MemoryImages(cohort, resize=32)
    augment = BatchAugment(32, mean=0.0, std=1.0, rotation_p=0.0, noise_p=1.0, gamma_p=0.0,
                           noise_max_gain=0.3)
    torch.manual_seed(0)
    out = augment(memory.pixels)[:, 0]
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, memory.pixels.float() / 255)
