"""MMDL losses against hand-computed cases, naive loops and autograd."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radsearch.errors import ConfigError
from radsearch.losses.mmdl import (MMDLLoss, MMDLWeights, info_nce, invariance_loss, label_bce,
                                   label_similarity_loss, label_targets, similarity_targets)


def test_info_nce_matches_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    tau = 0.2
    total = 0.0
    for i in range(5):
        sims_uv = [float(F.cosine_similarity(u[i], v[j], dim=0)) / tau for j in range(5)]
        sims_vu = [float(F.cosine_similarity(v[i], u[j], dim=0)) / tau for j in range(5)]
        total += -sims_uv[i] + math.log(sum(math.exp(s) for s in sims_uv))
        total += -sims_vu[i] + math.log(sum(math.exp(s) for s in sims_vu))
    assert info_nce(u, v, tau).item() == pytest.approx(total / 10, rel=1e-5)


def test_similarity_targets_by_hand():
    a = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    b = torch.tensor([[1, 1, 0], [0, 0, 1]])
    expected = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert torch.equal(similarity_targets(a, b), expected)


def test_label_similarity_loss_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [-3.0, 0.0]])
    la = torch.tensor([[1, 0], [0, 1]])
    lb = torch.tensor([[1, 1], [0, 1]])
    cos = [[1 / math.sqrt(2), -1.0], [1 / math.sqrt(2), 0.0]]
    s = [[1, 0], [1, 1]]
    expected = sum(math.log1p(math.exp(0.5 * cos[i][j])) - s[i][j] * 0.5 * cos[i][j]
                   for i in range(2) for j in range(2)) / 4
    assert label_similarity_loss(a, b, la, lb).item() == pytest.approx(expected, rel=1e-6)


def test_invariance_by_hand():
    u = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    v = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert invariance_loss(u, v).item() == pytest.approx(2.5)


def test_uncertain_policies_and_blank():
    nan = float("nan")
    states = np.array([[1, 0, -1, nan], [-1, nan, 1, 0]], dtype=np.float32)
    t, w = label_targets(states, "u-zeros")
    assert t.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]] and w.eq(1).all()
    t, w = label_targets(states, "u-ones")
    assert t.tolist() == [[1, 0, 1, 0], [1, 0, 1, 0]] and w.eq(1).all()
    t, w = label_targets(states, "u-ignore")
    assert t.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
    assert w.tolist() == [[1, 1, 0, 1], [0, 1, 1, 1]]  # blank is a weighted negative, -1 is not
    with pytest.raises(ConfigError, match="u-maybe"):
        label_targets(states, "u-maybe")
    with pytest.raises(ConfigError, match="1, 0, -1 or blank"):
        label_targets(np.array([[2.0]]), "u-zeros")


def test_u_ignore_cells_get_no_gradient_and_bce_matches_formula():
    states = np.array([[1, -1, 0], [-1, 1, float("nan")]], dtype=np.float32)
    t, w = label_targets(states, "u-ignore")
    logits = torch.tensor([[0.3, -2.0, 1.0], [0.7, 0.1, -0.4]], requires_grad=True)
    loss = label_bce(logits, t, w)
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0
    cells = [(0, 0, 1), (0, 2, 0), (1, 1, 1), (1, 2, 0)]
    expected = 0.0
    for i, j, y in cells:
        p = 1 / (1 + math.exp(-float(logits.detach()[i, j])))
        expected += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    assert loss.item() == pytest.approx(expected / 4, rel=1e-6)


def _batch():
    g = torch.Generator().manual_seed(3)
    u = torch.randn(4, 6, generator=g, requires_grad=True)
    logits_u = torch.randn(4, 3, generator=g)
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    weights = torch.ones_like(targets)
    return u, logits_u, targets, weights


def test_total_is_the_weighted_sum_and_text_terms_use_only_reported_rows():
    u, logits_u, targets, weights = _batch()
    has = torch.tensor([True, False, True, False])
    g = torch.Generator().manual_seed(4)
    v = torch.randn(2, 6, generator=g, requires_grad=True)
    logits_v = torch.randn(2, 3, generator=g)
    w = MMDLWeights(label=0.7, alpha=0.3, beta=0.2, gamma=0.5, temperature=0.5, text_label=2.0)
    terms = MMDLLoss(w)(u, logits_u, targets, weights, v, logits_v, has)
    expected = (0.7 * (terms["label_image"] + 2.0 * terms["label_text"])
                + 0.3 * (terms["sim_ii"] + terms["sim_it"] + terms["sim_tt"])
                + 0.2 * terms["invariance"] + 0.5 * terms["info_nce"])
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    # the reported rows pair with v in order
    assert terms["invariance"].item() == pytest.approx(invariance_loss(u[has], v).item())
    assert terms["label_text"].item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits_v, targets[has]).item(), rel=1e-6)
    terms["loss"].backward()
    assert v.grad.abs().sum() > 0


def test_no_report_means_image_terms_only():
    u, logits_u, targets, weights = _batch()
    w = MMDLWeights(alpha=0.5, beta=1.0)
    terms = MMDLLoss(w)(u, logits_u, targets, weights)
    expected = label_bce(logits_u, targets, weights) + 0.5 * label_similarity_loss(
        u, u, targets, targets)
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    none = MMDLLoss(w)(u, logits_u, targets, weights, u[:0], logits_u[:0],
                       torch.zeros(4, dtype=torch.bool))
    assert none["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_alpha_scale_of_the_similarity_gradient():
    """Why the pilot saw little effect: at α = 1e-3 the similarity term's gradient on the common
    vectors is ~1000× smaller than at α = 1 (the loss is linear in α)."""
    u, logits_u, targets, weights = _batch()
    grads = []
    for alpha in (1e-3, 1.0):
        u_ = u.detach().clone().requires_grad_(True)
        MMDLLoss(MMDLWeights(label=0.0, alpha=alpha, beta=0.0))(u_, logits_u, targets,
                                                                 weights)["loss"].backward()
        grads.append(u_.grad.norm().item())
    assert grads[1] / grads[0] == pytest.approx(1000.0, rel=1e-4)
