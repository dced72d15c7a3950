"""ATH baseline: spatial attention, hash codes, Hamming ranking, the ATH loss terms and a tiny
ATH / ATH+MMDL run through the MMDL trainer."""

import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from radsearch.errors import ConfigError
from radsearch.losses.ath import ATHLoss, HashTripletLoss, quantization_loss
from radsearch.losses.mmdl import MMDLLoss, MMDLWeights
from radsearch.losses.ranking import multilabel_triplets, relevance_matrix
from radsearch.models.ath import ATHModel, SpatialAttention, hamming_distances
from radsearch.synth import generate_chest
from radsearch.training.mmdl import embed_all, load_mmdl_config, load_mmdl_run, train_mmdl


def test_spatial_attention_by_hand():
    att = SpatialAttention(kernel_size=3)
    with torch.no_grad():
        att.conv.weight.zero_()
        att.conv.weight[0, 1, 1, 1] = 1.0  # centre tap of the channel-max map only
    fmap = torch.tensor([[[[0.0, 2.0], [1.0, -1.0]], [[3.0, 0.0], [0.5, -2.0]]]])  # [1, 2, 2, 2]
    channel_max = torch.tensor([[3.0, 2.0], [1.0, -1.0]])
    expected = fmap * torch.sigmoid(channel_max)
    torch.testing.assert_close(att(fmap), expected)


def test_sign_code_cosine_ranks_like_scipy_hamming():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(6, 16))).float()
    b = torch.from_numpy(rng.normal(size=(9, 16))).float()
    ham = hamming_distances(a, b).numpy()
    reference = cdist(a.numpy() >= 0, b.numpy() >= 0, "hamming") * 16
    np.testing.assert_array_equal(ham, reference.round().astype(int))
    sa, sb = torch.where(a >= 0, 1.0, -1.0), torch.where(b >= 0, 1.0, -1.0)
    cosine = (sa @ sb.T / 16).numpy()  # what the trainer ranks by (unit sign codes)
    np.testing.assert_allclose(cosine, 1 - 2 * reference / 16, atol=1e-6)


def test_quantization_and_ath_loss_terms():
    h = torch.tensor([[1.0, -1.0], [0.0, 0.5]])
    assert float(quantization_loss(h)) == pytest.approx((0 + 0 + 1 + 0.25) / 4)
    torch.manual_seed(0)
    hash_layer = torch.nn.Linear(4, 6)
    u = torch.randn(5, 4, requires_grad=True)
    logits = torch.randn(5, 3)
    targets = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]]).float()
    weights = torch.ones_like(targets)
    base = MMDLLoss(MMDLWeights(alpha=0.0))
    loss = ATHLoss(base, lambda x: torch.tanh(hash_layer(x)), triplet_weight=2.0, margin=0.3,
                   quantization=0.5)
    terms = loss(u, logits, targets, weights)
    h = torch.tanh(hash_layer(u))
    triplet = HashTripletLoss(margin=0.3)(h, targets)
    torch.testing.assert_close(terms["hash_triplet"], triplet)
    expected = (base(u, logits, targets, weights)["loss"] + 2.0 * triplet
                + 0.5 * quantization_loss(h))
    torch.testing.assert_close(terms["loss"], expected)
    terms["loss"].backward()
    assert hash_layer.weight.grad is not None and hash_layer.weight.grad.abs().sum() > 0


def test_hash_triplet_on_sign_codes_is_a_hamming_fraction_triplet():
    rng = np.random.default_rng(1)
    codes = np.where(rng.normal(size=(6, 10)) >= 0, 1.0, -1.0)
    targets = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [1, 0]]).float()
    ham = cdist(codes > 0, codes > 0, "hamming")  # share of differing bits (scipy)
    a, p, n = multilabel_triplets(relevance_matrix(targets))
    hinges = np.maximum(0.0, ham[a, p] - ham[a, n] + 0.25)  # 0.25: no hinge lands on 0
    expected = hinges[hinges > 0].mean()  # PML's AvgNonZeroReducer
    got = HashTripletLoss(margin=0.25)(torch.from_numpy(codes).float(), targets)
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_ath_model_codes_and_errors():
    model = ATHModel("resnet18", num_classes=14, dim=8, hidden=8, bits=12).eval()
    x = torch.randn(3, 1, 32, 32)
    common, logits = model.forward_image(x)
    codes = model.codes(common)
    assert codes.shape == (3, 12) and set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert logits.shape == (3, 14)
    relaxed = model.codes(common, binary=False)
    assert relaxed.abs().max() < 1 and torch.equal(torch.where(relaxed >= 0, 1.0, -1.0), codes)
    with pytest.raises(ConfigError, match="ath.bits"):
        ATHModel("resnet18", bits=0)


# ATH (image only, Hamming ranking) and ATH+MMDL (with reports, cosine on the relaxed codes)
@pytest.mark.parametrize("fraction,retrieval", [(0.0, "hamming"), (1.0, "cosine")])
def test_tiny_ath_runs(fraction, retrieval, tmp_path):
    synth = generate_chest(12, seed=6, image_size=32, workers=1)
    alpha = 0.0 if fraction == 0 else 1e-3
    cfg = load_mmdl_config(None, ["model.backbone=resnet18", "model.dim=8", "model.hidden=8",
                                  "data.image_size=32", "train.epochs=1", "train.batch_size=16",
                                  f"data.report_fraction={fraction}", f"loss.alpha={alpha}",
                                  "ath.bits=16", f"ath.retrieval={retrieval}"])
    out = train_mmdl(cfg, tmp_path / "run", cohort=synth.cohort, images=synth.images,
                     log=lambda m: None)
    assert out["settings"]["retrieval_space"] == f"hash-{retrieval}"
    assert "hash_triplet" in out["history"][0] and "quantization" in out["history"][0]
    assert (out["settings"]["text_encoder"] is None) == (fraction == 0)
    model, config, _ = load_mmdl_run(tmp_path / "run", synth.cohort)
    assert isinstance(model, ATHModel) and config.ath.bits == 16
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0 <= saved["diagnostic"]["groups"]["all"]["mAP@10"] <= 1
    vectors, _ = embed_all(model, synth.images, f"hash-{retrieval}", torch.device("cpu"))
    if retrieval == "hamming":  # unit sign codes: every entry ±1/√K
        np.testing.assert_allclose(np.abs(vectors), 1 / np.sqrt(16), rtol=1e-6)
    else:
        assert len(np.unique(np.abs(vectors).round(6))) > 2
