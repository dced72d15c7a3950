"""build_transforms: each step against an independent torch computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as tnf
from torchvision.transforms import v2

from radsearch.data.transforms import (PRESETS, GaussianNoiseBlend, RandomGamma,
                                       build_transforms)
from radsearch.errors import ConfigError


def _smooth(h: int = 300, w: int = 320, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, 12, 12, generator=g)
    return tnf.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


@pytest.mark.parametrize("preset", ["oai", "cxr"])
def test_test_pipeline_is_resize_centre_crop_normalise(preset):
    image = _smooth()
    out = build_transforms(preset, train=False)(image)
    resized = tnf.interpolate(image[None], size=(280, 280), mode="bilinear", antialias=True,
                              align_corners=False)[0]
    expected = (resized[:, 12:268, 12:268] - PRESETS[preset].mean) / PRESETS[preset].std
    assert out.shape == (1, 256, 256) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_preset_statistics_follow_the_paper():
    assert (PRESETS["oai"].mean, PRESETS["oai"].std) == (0.4996, 0.3089)
    assert (PRESETS["cxr"].mean, PRESETS["cxr"].std) == (0.5, 0.5)


def test_configurable_sizes():
    out = build_transforms("cxr", train=True, image_size=96, resize=112)(_smooth(200, 150))
    assert out.shape == (1, 96, 96)
    with pytest.raises(ConfigError, match="image_size"):
        build_transforms("oai", train=True, image_size=300, resize=280)
    with pytest.raises(ConfigError, match="unknown transform preset 'mri'"):
        build_transforms("mri", train=False)
    with pytest.raises(ConfigError, match="rotation_p"):
        build_transforms("oai", train=True, rotation_p=1.5)


def test_train_without_random_steps_is_a_crop_of_the_test_resize():
    image = _smooth(seed=1)
    torch.manual_seed(0)
    out = build_transforms("oai", train=True, noise_p=0, rotation_p=0, gamma_p=0,
                           normalize=False)(image)
    resized = build_transforms("oai", train=False, image_size=280, normalize=False)(image)
    # Windows whose corner matches, then the whole window: equals exactly one of the 25² crops.
    corners = ((resized[0, :25, :25] - out[0, 0, 0]).abs() < 1e-6).nonzero().tolist()
    matches = [(i, j) for i, j in corners
               if torch.allclose(resized[:, i:i + 256, j:j + 256], out, atol=1e-6, rtol=0)]
    assert len(matches) == 1


def test_noise_blend_formula():
    torch.manual_seed(3)
    blend = GaussianNoiseBlend(max_gain=0.3)
    image = torch.full((1, 64, 64), 0.6)
    out = blend(image)
    # (1 − g)·0.6 + g·noise with noise rescaled to [0, 1]: min = (1 − g)·0.6, max = min + g
    gain = float(out.max() - out.min())
    assert 0 < gain <= 0.3
    torch.testing.assert_close(out.min(), torch.tensor((1 - gain) * 0.6), atol=1e-6, rtol=0)
    noise = (out - (1 - gain) * 0.6) / gain
    assert abs(float(noise.mean()) - 0.5) < 0.1  # Gaussian centred between its extremes
    gains = [float(b.max() - b.min()) for b in (blend(image) for _ in range(200))]
    assert max(gains) <= 0.3 + 1e-6 and min(gains) < 0.03 and max(gains) > 0.27  # U(0, 0.3)


def test_random_gamma_matches_power():
    image = _smooth(32, 32)
    torch.testing.assert_close(RandomGamma((0.7, 0.7))(image), image ** 0.7)
    torch.manual_seed(0)
    outs = torch.stack([RandomGamma((0.5, 1.5))(torch.full((1, 1, 1), 0.5)) for _ in range(400)])
    gammas = torch.log(outs.flatten()) / torch.log(torch.tensor(0.5))
    assert gammas.min() >= 0.5 - 1e-5 and gammas.max() <= 1.5 + 1e-5
    assert abs(float(gammas.mean()) - 1.0) < 0.05


@pytest.mark.parametrize("rotation_p", [0.0, 0.5, 1.0])
def test_rotation_probability(rotation_p):
    # A constant image rotated by any non-zero angle gets black (fill 0) corners.
    pipeline = build_transforms("oai", train=True, image_size=48, resize=48, noise_p=0,
                                gamma_p=0, rotation_p=rotation_p, normalize=False)
    torch.manual_seed(1)
    n = 300
    rotated = sum(float(pipeline(torch.ones(1, 48, 48))[0, 0, 0]) < 0.99 for _ in range(n))
    assert abs(rotated / n - rotation_p) < 0.1


def test_steps_are_torchvision_v2_in_paper_order():
    pipeline = build_transforms("oai", train=True)
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names == ["Resize", "RandomApply", "RandomApply", "RandomCrop", "RandomApply",
                     "Normalize"]
    inner = [type(t.transforms[0]).__name__ for t in pipeline.transforms if
             isinstance(t, v2.RandomApply)]
    assert inner == ["GaussianNoiseBlend", "RandomRotation", "RandomGamma"]
    assert [t.p for t in pipeline.transforms if isinstance(t, v2.RandomApply)] == [0.5, 0.5, 0.5]
    assert pipeline.resize == 280 and pipeline.image_size == 256
