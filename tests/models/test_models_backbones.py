"""create_model: shapes, unit norm, grey-stem equivalence, local weights, offline failure."""

import urllib.error

import pytest
import torch
import torchvision

from radsearch.errors import ConfigError
from radsearch.models import create_model


def test_resnet18_embeddings_are_unit_norm_with_requested_dim():
    torch.manual_seed(0)
    model = create_model("resnet18", embedding_dim=32).eval()
    out = model(torch.rand(3, 1, 64, 64))
    assert out.shape == (3, 32)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_densenet121_builds_and_embeds():
    model = create_model("densenet121", embedding_dim=16).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_averaged_grey_stem_matches_rgb_network_on_repeated_grey_input(tmp_path):
    # Independent reference: torchvision's own RGB ResNet-18 given the grey image on 3 channels.
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", embedding_dim=8, weights=path, first_conv="average").eval()
    reference.fc = torch.nn.Identity()
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = reference(grey.repeat(1, 3, 1, 1))
        got = model.backbone(grey)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_reinit_stem_differs_from_pretrained_average(tmp_path):
    torch.manual_seed(2)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r.pth"
    torch.save(reference.state_dict(), path)
    averaged = create_model("resnet18", weights=path, first_conv="average")
    fresh = create_model("resnet18", weights=path, first_conv="reinit")
    expected = reference.conv1.weight.sum(dim=1, keepdim=True)
    torch.testing.assert_close(averaged.backbone.conv1.weight, expected)
    assert not torch.allclose(fresh.backbone.conv1.weight, expected)
    # the rest of the backbone is the loaded one in both cases
    torch.testing.assert_close(fresh.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_embedding_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    model = create_model("resnet18", embedding_dim=12).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    again = create_model("resnet18", embedding_dim=12, weights=path).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    with pytest.raises(ConfigError, match="does not fit"):
        create_model("resnet18", embedding_dim=13, weights=path)


def test_imagenet_offline_fails_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline,
                        raising=False)
    with pytest.raises(ConfigError) as info:
        create_model("resnet18", weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "model.weights=PATH" in message and "model.weights=none" in message


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "vgg11"}, "not a known backbone"),
    ({"embedding_dim": 0}, "embedding_dim"),
    ({"first_conv": "copy"}, "first_conv"),
    ({"weights": "/nonexistent/w.pth"}, "file not found"),
])
def test_bad_arguments_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model(**kwargs)


def test_cnn9_is_a_plain_nine_conv_network_with_unit_norm_embeddings(tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn9", embedding_dim=32).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and convs[0].kernel_size == (5, 5) and convs[0].stride == (2, 2)
    assert [c.out_channels for c in convs] == [32, 32, 32, 64, 64, 128, 128, 256, 256]
    with torch.no_grad():
        out = model(torch.rand(3, 1, 64, 64))
    assert out.shape == (3, 32)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    # a radsearch checkpoint of it loads back through model.weights=PATH
    path = tmp_path / "cnn9.pt"
    torch.save({"model": model.state_dict()}, path)
    again = create_model("cnn9", embedding_dim=32, weights=path).eval()
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_cnn9_has_no_imagenet_weights_and_says_so():
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        create_model("cnn9", weights="imagenet")
