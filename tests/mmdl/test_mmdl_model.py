"""MMDL model: shared layers, deep descriptors against hand-computed cases."""

import pytest
import torch

from radsearch.errors import ConfigError
from radsearch.models.mmdl import GeM, MMDLModel, selective_mask, selective_pool
from radsearch.models.text import build_text_encoder

REPORTS = ["Small left pleural effusion.", "The heart is enlarged.", "No acute process."]


def test_branches_share_last_projection_and_classifier():
    torch.manual_seed(0)
    text = build_text_encoder("tfidf", REPORTS, out_dim=12, hidden=8)
    model = MMDLModel("resnet18", num_classes=14, dim=16, hidden=8, text_encoder=text)
    u, logits_u = model.forward_image(torch.randn(2, 1, 32, 32))
    v, logits_v = model.forward_text(REPORTS[:2])
    assert u.shape == v.shape == (2, 16) and logits_u.shape == logits_v.shape == (2, 14)
    # The shared layer gets gradient from each branch alone.
    for out in (u, v):
        model.zero_grad()
        out.sum().backward(retain_graph=True)
        assert model.shared.weight.grad.abs().sum() > 0
    # the classifier reads the common vector with one set of weights
    torch.testing.assert_close(logits_v, model.classifier(v))
    emb = model.embed_images(torch.randn(3, 1, 32, 32))
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


def test_image_only_model_refuses_text_and_bad_descriptor():
    model = MMDLModel("resnet18", dim=8, hidden=8)
    with pytest.raises(ConfigError, match="no report branch"):
        model.forward_text(["x"])
    with pytest.raises(ConfigError, match="descriptor"):
        MMDLModel("resnet18", descriptor="vlad")


def test_selective_mask_keeps_the_largest_component_above_the_mean():
    energy = torch.zeros(1, 1, 4, 5)
    energy[0, 0, 0, 0] = 5.0                  # a one-cell component, the strongest cell
    energy[0, 0, 2:4, 2:5] = 3.0              # a six-cell component
    mask = selective_mask(energy)
    expected = torch.zeros(1, 4, 5, dtype=torch.bool)
    expected[0, 2:4, 2:5] = True
    assert torch.equal(mask, expected)


def test_selective_pool_is_avg_and_max_over_kept_cells():
    fmap = torch.zeros(1, 2, 3, 3)
    fmap[0, 0, 0, :] = torch.tensor([4.0, 2.0, 6.0])  # top row: channel sum high
    fmap[0, 1, 0, :] = torch.tensor([1.0, 1.0, 1.0])
    out = selective_pool(fmap)
    assert out.tolist() == [[4.0, 1.0, 6.0, 1.0]]  # avg (c0, c1) ⊕ max (c0, c1) of the top row


def test_gem_with_p_one_is_average_pooling_and_descriptors_run_on_resnet():
    fmap = torch.rand(2, 3, 4, 4) + 0.1
    gem = GeM(p=1.0)
    torch.testing.assert_close(gem(fmap), fmap.mean(dim=(2, 3)))
    for descriptor, width in (("selective", 1024), ("gem", 512)):
        model = MMDLModel("resnet18", dim=8, hidden=8, descriptor=descriptor)
        assert model.image_features(torch.randn(2, 1, 64, 64)).shape == (2, width)
