"""Method registry: published settings, clear errors, and every method learns a toy problem."""

import pytest
import torch
import torch.nn.functional as F

from radsearch.errors import ConfigError, DataError
from radsearch.losses import METHODS, build_method

PAPER_NAMES = ["AdaTriplet-AM", "AdaTriplet", "Triplet-AM", "Triplet", "Contrastive", "WAT", "SCT",
               "SoftTriplet", "ArcFace"]


def test_registry_has_the_paper_methods_and_quartile_variants():
    for name in PAPER_NAMES + ["Triplet-Q1", "Triplet-Q2", "AdaTriplet-Q1", "AdaTriplet-Q2"]:
        assert name in METHODS


@pytest.mark.parametrize("name, preset, expected", [
    ("AdaTriplet", "oai", {"epsilon": 0.5, "beta": 0.5}),
    ("AdaTriplet", "cxr", {"epsilon": 0.5, "beta": 0.75}),
    ("Triplet", "oai", {"epsilon": 0.25}),
    ("Triplet", "cxr", {"epsilon": 0.5}),
    ("AdaTriplet-AM", "oai", {"k_delta": 2.0, "k_an": 2.0, "epsilon0": 0.25, "beta0": 0.0}),
    ("AdaTriplet-AM", "cxr", {"k_delta": 2.0, "k_an": 4.0}),
    ("Triplet-AM", "oai", {"k_delta": 2.0}),
    ("SCT", "cxr", {"margin": 0.25, "lam": 0.5}),
    ("WAT", "oai", {"k": 0.1}),
])
def test_published_settings(name, preset, expected):
    params = build_method(name, preset, num_classes=4).params
    for key, value in expected.items():
        assert params[key] == value


def test_am_variants_start_from_the_initial_margins_and_adapt_beta_only_for_adatriplet():
    ada = build_method("AdaTriplet-AM")
    trip = build_method("Triplet-AM")
    assert (ada.epsilon, ada.beta) == (0.25, 0.0)
    assert ada.automargin.k_an == 2.0 and trip.automargin.k_an is None
    assert build_method("Triplet-Q1").automargin.rule == "q1"


def test_overrides_apply_and_are_validated():
    assert build_method("AdaTriplet", epsilon=0.1, beta=0.25).beta == 0.25
    with pytest.raises(ConfigError, match="no setting 'margin'"):
        build_method("AdaTriplet", margin=0.1)
    with pytest.raises(ConfigError, match="epsilon"):
        build_method("Triplet", epsilon=2.5)
    with pytest.raises(ConfigError, match="beta"):
        build_method("AdaTriplet", beta=1.2)
    with pytest.raises(ConfigError, match="k_delta"):
        build_method("AdaTriplet-AM", k_delta=0.5)
    with pytest.raises(ConfigError, match="k_an"):
        build_method("AdaTriplet-AM", k_an=0)


def test_unknown_names_are_refused_with_a_hint():
    with pytest.raises(ConfigError, match="Did you mean 'AdaTriplet-AM'"):
        build_method("adatriplet-am")
    with pytest.raises(ConfigError, match="preset"):
        build_method("Triplet", preset="mimic")
    with pytest.raises(ConfigError, match="num_classes"):
        build_method("ArcFace")


@pytest.mark.parametrize("name", list(METHODS))
def test_batch_without_positive_pair_is_refused(name):
    method = build_method(name, num_classes=8, embedding_dim=4)
    with pytest.raises(DataError, match="no positive pair"):
        method(torch.randn(4, 4), torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_lowers_its_loss_on_a_toy_problem(name):
    """8 subjects × 4 noisy views of a subject-specific feature vector; a linear embedding."""
    torch.manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)
    centres = torch.randn(8, 32)
    inputs = centres[labels] + 0.8 * torch.randn(32, 32)
    model = torch.nn.Linear(32, 16)
    method = build_method(name, num_classes=8, embedding_dim=16)
    optimiser = torch.optim.Adam([*model.parameters(), *method.trainable_parameters()], lr=1e-2)

    def recall_at_1():
        with torch.no_grad():
            x = F.normalize(model(inputs), dim=1)
            s = x @ x.T - 2 * torch.eye(32)
            return (labels[s.argmax(1)] == labels).float().mean().item()

    first = method(model(inputs), labels).item()
    for _ in range(60):
        optimiser.zero_grad()
        loss = method(model(inputs), labels)
        loss.backward()
        optimiser.step()
    last = method(model(inputs), labels).item()
    assert last < first, f"{name}: loss {first:.4f} → {last:.4f}"
    assert recall_at_1() > 0.9


def test_epoch_statistics_and_histograms():
    method = build_method("AdaTriplet-AM")
    labels = torch.arange(4).repeat_interleave(3)
    for _ in range(2):
        method(torch.randn(12, 8), labels)
    stats = method.epoch_stats()
    assert stats["batches"] == 2 and stats["epsilon"] == 0.25
    hist = method.epoch_histograms()
    edges, counts = hist["delta"]
    assert len(edges) == len(counts) + 1
    assert counts.sum() == pytest.approx(2 * 12 * 2 * 9)  # per batch: 24 positive pairs × 9 negatives
    assert hist["neg_sim"][1].sum() == pytest.approx(2 * (66 - 4 * 3))
    method.on_epoch_end()
    assert method.epoch_stats()["batches"] == 0


def test_histograms_skip_non_finite_values():
    method = build_method("Triplet")
    labels = torch.arange(4).repeat_interleave(3)
    emb = torch.randn(12, 8)
    emb[0] = float("nan")
    method(emb, labels)
    deltas = method.epoch_histograms()["delta"][1]
    geom_total = 12 * 2 * 9
    # rows/columns touching image 0 are NaN: anchor 0 (2 pairs × 9), pairs (1,0),(2,0) (2 × 9),
    # and image 0 as the negative of the other 18 positive pairs
    assert deltas.sum() == geom_total - 2 * 9 - 2 * 9 - 18
