"""Baselines: WAT ≡ fixed-margin hinge, SCT never NaN, Contrastive by hand, proxy-loss set-ups."""

import pytest
import torch
import torch.nn.functional as F

from radsearch.losses import SCTLoss, TripletLoss, WATLoss, build_method, equivalent_margin


@pytest.mark.parametrize("k", [0.1, 0.5])
def test_wat_gradient_equals_fixed_margin_hinge(k):
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(6).repeat_interleave(3)
    emb = torch.randn(18, 8, generator=gen, dtype=torch.float64)
    a, b = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    WATLoss(k=k)(a, labels).backward()
    TripletLoss(epsilon=equivalent_margin(k), triplets="all")(b, labels).backward()
    assert equivalent_margin(0.1) == pytest.approx((2 + 0.4 - 0.01) / 5.9)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    assert a.grad.abs().sum() > 0


def sct_by_hand(emb, labels, margin=0.25, lam=0.5):
    x = F.normalize(emb, dim=1)
    s = x @ x.T
    easy, hard = [], []
    for a in range(len(labels)):
        for p in range(len(labels)):
            if a == p or labels[a] != labels[p]:
                continue
            for n in range(len(labels)):
                if labels[n] == labels[a]:
                    continue
                if s[a, n] > s[a, p]:
                    hard.append(s[a, n])
                else:
                    easy.append(F.softplus(s[a, n] - s[a, p] + margin))
    value = torch.zeros((), dtype=emb.dtype)
    if easy:
        value = value + torch.stack(easy).mean()
    if hard:
        value = value + lam * torch.stack(hard).mean()
    return value


def test_sct_matches_its_definition():
    gen = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    emb = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    assert SCTLoss()(emb, labels).item() == pytest.approx(sct_by_hand(emb, labels).item())


def test_sct_is_finite_without_hard_triplets():
    labels = torch.tensor([0, 0, 1, 1])
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], requires_grad=True)
    loss_fn = SCTLoss()
    loss = loss_fn(emb, labels)
    loss.backward()
    assert loss_fn.last_counts["active_triplets"] == 0  # no hard triplet
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()


def test_sct_is_finite_without_easy_triplets():
    # positives antipodal, negatives orthogonal: S_an = 0 > S_ap = -1 for every triplet
    labels = torch.tensor([0, 0, 1, 1])
    emb = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], requires_grad=True)
    loss_fn = SCTLoss(lam=0.5)
    loss = loss_fn(emb, labels)
    loss.backward()
    assert loss_fn.last_counts["active_triplets"] == 8  # all hard
    assert loss.item() == pytest.approx(0.0)  # 0.5 · mean S_an, S_an = 0
    assert torch.isfinite(emb.grad).all()


def test_contrastive_is_euclidean_with_the_published_margins():
    gen = torch.Generator().manual_seed(2)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    emb = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    x = F.normalize(emb, dim=1)
    dist = torch.cdist(x, x)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(7, dtype=torch.bool)
    pos = torch.clamp(dist[same & off] - 0.5, min=0)
    neg = torch.clamp(0.75 - dist[~same], min=0)
    # PML averages each part over its non-zero terms
    want = pos[pos > 0].mean() if (pos > 0).any() else 0.0
    want = want + (neg[neg > 0].mean() if (neg > 0).any() else 0.0)
    got = build_method("Contrastive")(emb, labels)
    assert got.item() == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("name", ["SoftTriplet", "ArcFace"])
def test_proxy_losses_train_one_proxy_per_subject(name):
    method = build_method(name, num_classes=20, embedding_dim=16)
    params = method.trainable_parameters()
    assert params, "proxies must be handed to the optimiser"
    n_proxies = sum(p.numel() for p in params)
    per_class = 10 if name == "SoftTriplet" else 1
    assert n_proxies == 20 * per_class * 16


@pytest.mark.parametrize("name", ["SoftTriplet", "ArcFace"])
def test_reference_quirks_freeze_proxies_with_one_class_per_image(name):
    method = build_method(name, num_classes=20, num_train_images=90, embedding_dim=16,
                          reference_quirks=True)
    assert method.trainable_parameters() == []
    assert method.loss.num_classes == 90
    before = [p.clone() for p in method.parameters()]
    emb = torch.randn(8, 16, requires_grad=True)
    method(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).backward()
    assert all(p.grad is None for p in method.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, method.parameters()))


def test_arcface_margin_depends_on_the_preset():
    assert build_method("ArcFace", "oai", num_classes=4).params["margin"] == 14.3
    assert build_method("ArcFace", "cxr", num_classes=4).params["margin"] == 28.6


def test_wat_out_of_range_k_is_a_config_error():
    # issue 8: a bare ValueError escaped the CLI as a traceback
    from radsearch.errors import ConfigError

    with pytest.raises(ConfigError, match=r"k=4.0.*< 4"):
        WATLoss(k=4.0)


def test_proxy_loss_names_the_label_that_failed():
    # issue 8: a negative label was reported as labels.max()
    from radsearch.errors import DataError
    from radsearch.losses import soft_triple_loss

    loss = soft_triple_loss(num_classes=3, embedding_dim=4)
    with pytest.raises(DataError, match=r"label -1 is outside 0..2"):
        loss(torch.randn(4, 4), torch.tensor([-1, 0, 1, 1]))
    with pytest.raises(DataError, match=r"label 7 is outside 0..2"):
        loss(torch.randn(4, 4), torch.tensor([7, 0, 1, 1]))
