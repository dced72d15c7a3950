"""AdaTriplet: Proposition 2 gradient regions, paper form vs a naive loop, reference form by hand."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from radsearch.errors import ConfigError, DataError
from radsearch.losses import AdaTripletLoss, TripletLoss, similarity_geometry

# A 4-image batch (two subjects) with hand-chosen similarities, used for hand-computed cases.
HAND_LABELS = torch.tensor([0, 0, 1, 1])
HAND_S = {(0, 1): 0.8, (2, 3): 0.6, (0, 2): 0.5, (0, 3): 0.2, (1, 2): 0.7, (1, 3): 0.1}
# Δ of the 8 triplets: a0p1: .3 (n2), .6 (n3); a1p0: .1, .7; a2p3: .1 (n0), -.1 (n1); a3p2: .4, .5


def hand_similarity() -> torch.Tensor:
    sim = torch.eye(4, dtype=torch.float64)
    for (i, j), value in HAND_S.items():
        sim[i, j] = sim[j, i] = value
    return sim.requires_grad_(True)


def loss_on(sim: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
    return AdaTripletLoss(**kwargs).from_geometry(similarity_geometry(sim, labels))


@pytest.mark.parametrize("lam", [1.0, 0.5])
@pytest.mark.parametrize(
    "s_ap, s_an, beta, expected",
    [
        (0.6, 0.4, 0.2, "active_above_beta"),    # Δ = 0.2 ≤ ε, S_an > β → (−1, 1 + λ)
        (0.9, 0.3, 0.2, "inactive_above_beta"),  # Δ = 0.6 > ε, S_an > β → (0, λ)
        (0.6, 0.4, 0.5, "active_below_beta"),    # Δ = 0.2 ≤ ε, S_an ≤ β → (−1, 1)
        (0.9, 0.3, 0.5, "inactive_below_beta"),  # Δ = 0.6 > ε, S_an ≤ β → (0, 0)
    ],
)
def test_proposition2_gradient_regions(s_ap, s_an, beta, expected, lam):
    # Batch of 3 (a, p of subject 0; n of subject 1): triplets (0,1,2) and (1,0,2). The entries
    # S[0,1] and S[0,2] belong only to the first triplet, so their gradients are Prop. 2's, / |T|.
    sim = torch.eye(3, dtype=torch.float64)
    sim[0, 1], sim[0, 2] = s_ap, s_an
    sim[1, 0], sim[1, 2] = 0.9, -0.5  # second triplet: inactive and below β in every case
    sim.requires_grad_(True)
    loss = loss_on(sim, torch.tensor([0, 0, 1]), epsilon=0.5, beta=beta, lam=lam,
                   triplets="all", reduction="paper")
    loss.backward()
    n_triplets = 2
    want = {"active_above_beta": (-1, 1 + lam), "inactive_above_beta": (0, lam),
            "active_below_beta": (-1, 1), "inactive_below_beta": (0, 0)}[expected]
    got = (sim.grad[0, 1].item() * n_triplets, sim.grad[0, 2].item() * n_triplets)
    assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("s_ap, s_an, beta", [(0.6, 0.4, 0.2), (0.9, 0.3, 0.2), (0.6, 0.4, 0.5)])
def test_reference_reduction_has_the_same_gradient_directions(s_ap, s_an, beta):
    sim = torch.eye(3, dtype=torch.float64)
    sim[0, 1], sim[0, 2], sim[1, 0], sim[1, 2] = s_ap, s_an, 0.9, -0.5
    sim.requires_grad_(True)
    loss_on(sim, torch.tensor([0, 0, 1]), epsilon=0.5, beta=beta, triplets="all").backward()
    active = s_ap - s_an <= 0.5
    above = s_an > beta  # the negative pair (0, 2) is the upper-triangle entry S[0, 2]
    assert torch.sign(sim.grad[0, 1]).item() == (-1 if active else 0)
    assert torch.sign(sim.grad[0, 2]).item() == (1 if (active or above) else 0)


def naive_paper_loss(emb, labels, epsilon, beta, lam, triplets):
    """Eq. (5) with an explicit loop over every (a, p, n) triplet."""
    x = F.normalize(emb, dim=1)
    terms = []
    n = len(labels)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a == p or labels[a] != labels[p] or labels[a] == labels[q]:
            continue
        s_ap, s_an = x[a] @ x[p], x[a] @ x[q]
        delta = (s_ap - s_an).item()
        selected = {"all": delta <= epsilon, "semihard": 0 < delta <= epsilon,
                    "hard": delta <= min(epsilon, 0)}[triplets]
        hinge = torch.clamp(s_an - s_ap + epsilon, min=0) if selected else 0 * s_ap
        terms.append(hinge + lam * torch.clamp(s_an - beta, min=0))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("triplets", ["all", "semihard", "hard"])
@pytest.mark.parametrize("seed", [0, 1])
def test_paper_reduction_equals_naive_loop(triplets, seed):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    emb = torch.randn(len(labels), 5, generator=gen, dtype=torch.float64)
    emb_naive = emb.clone().requires_grad_(True)
    emb_fast = emb.clone().requires_grad_(True)
    kwargs = dict(epsilon=0.3, beta=0.1, lam=0.7, triplets=triplets)
    want = naive_paper_loss(emb_naive, labels, **kwargs)
    got = AdaTripletLoss(reduction="paper", **kwargs)(emb_fast, labels)
    want.backward()
    got.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-12)
    torch.testing.assert_close(emb_fast.grad, emb_naive.grad, rtol=1e-9, atol=1e-12)


def test_reference_reduction_by_hand():
    sim = hand_similarity()
    loss_fn = AdaTripletLoss(epsilon=0.45, beta=0.3, lam=1.0, triplets="semihard")
    loss = loss_fn.from_geometry(similarity_geometry(sim, HAND_LABELS))
    # semihard 0 < Δ ≤ .45: {.3, .1, .1, .4} → hinges .15 .35 .35 .05, mean .225
    # negative pairs ≥ β = .3: S02 = .5, S12 = .7 → mean(.2, .4) = .3
    assert loss_fn.last_counts == {"mined_triplets": 4, "active_triplets": 4,
                                   "active_neg_pairs": 2}
    assert loss.item() == pytest.approx(0.225 + 0.3)


@pytest.mark.parametrize("triplets, mined, expected", [("all", 5, 0.29), ("hard", 1, 0.55),
                                                       ("semihard", 4, 0.225)])
def test_triplet_selection_by_hand(triplets, mined, expected):
    loss_fn = TripletLoss(epsilon=0.45, triplets=triplets)
    loss = loss_fn.from_geometry(similarity_geometry(hand_similarity(), HAND_LABELS))
    assert loss_fn.last_counts["mined_triplets"] == mined
    assert loss.item() == pytest.approx(expected)


def test_lambda_weights_the_negative_term():
    geom = similarity_geometry(hand_similarity(), HAND_LABELS)
    base = AdaTripletLoss(epsilon=0.45, beta=0.3, lam=0.0).from_geometry(geom).item()
    doubled = AdaTripletLoss(epsilon=0.45, beta=0.3, lam=2.0).from_geometry(geom).item()
    assert base == pytest.approx(0.225)
    assert doubled == pytest.approx(0.225 + 2 * 0.3)


def test_empty_sets_give_zero_attached_to_the_graph():
    sim = hand_similarity()
    # ε = 0.05: no Δ in (0, 0.05]; β = 0.95: no negative pair that similar
    loss = loss_on(sim, HAND_LABELS, epsilon=0.05, beta=0.95)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.all(sim.grad == 0)


def test_geometry_counts_match_the_spec_for_32x4():
    labels = torch.arange(32).repeat_interleave(4)
    geom = similarity_geometry(torch.rand(128, 128), labels)
    assert len(geom.anchor) == 384
    assert geom.n_triplets == 47_616
    assert len(geom.neg_pair_sims) == 7_936


@pytest.mark.parametrize("kwargs", [dict(epsilon=2.0), dict(epsilon=-0.1), dict(beta=1.5),
                                    dict(beta=-1.01), dict(lam=-1), dict(triplets="easy"),
                                    dict(reduction="sum")])
def test_out_of_range_parameters_are_refused(kwargs):
    with pytest.raises(ConfigError):
        AdaTripletLoss(**kwargs)


def test_batch_without_positive_pair_is_refused():
    with pytest.raises(DataError, match="no positive pair"):
        AdaTripletLoss()(torch.randn(4, 8), torch.tensor([0, 1, 2, 3]))


def test_float_labels_are_refused():
    with pytest.raises(DataError, match="floats"):
        AdaTripletLoss()(torch.randn(4, 8), torch.tensor([0.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("cls", [TripletLoss, AdaTripletLoss])
def test_paper_reduction_without_negative_pair_is_zero_not_nan(cls):
    # issue 8: a batch of one subject has positive pairs but no triplet: 0/0 gave NaN
    emb = torch.randn(4, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0])
    for reduction in ("paper", "reference"):
        loss = cls(reduction=reduction)(emb, labels)
        assert torch.isfinite(loss) and loss.item() == 0.0
        loss.backward()
        assert torch.equal(emb.grad, torch.zeros_like(emb))
        emb.grad = None
