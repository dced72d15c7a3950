"""AutoMargin: margins after several simulated epochs equal a numpy computation on the same data."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radsearch.errors import ConfigError
from radsearch.losses import AutoMargin, build_method


def numpy_margins(deltas, sims, rule, k_delta, k_an):
    deltas, sims = np.concatenate(deltas), np.concatenate(sims)
    if rule == "mean":
        return max(0.0, deltas.mean() / k_delta), 1 - (1 - sims.mean()) / k_an
    q_eps, q_beta = (25, 75) if rule == "q1" else (50, 50)
    return max(0.0, np.percentile(deltas, q_eps)), np.percentile(sims, q_beta)


@pytest.mark.parametrize("rule", ["mean", "q1", "q2"])
def test_margins_follow_the_epoch_statistics(rule):
    rng = np.random.default_rng(0)
    am = AutoMargin(k_delta=2, k_an=4, epsilon0=0.25, beta0=0.0, rule=rule)
    for epoch in range(4):
        assert (am.epsilon, am.beta) == pytest.approx(
            (0.25, 0.0) if epoch == 0 else expected, abs=1e-6)
        deltas, sims = [], []
        for _ in range(5):  # batches of one epoch, statistics drifting over epochs
            d = rng.normal(0.1 * epoch, 0.3, size=rng.integers(50, 200)).astype(np.float32)
            s = rng.normal(0.2 + 0.1 * epoch, 0.2, size=rng.integers(30, 90)).astype(np.float32)
            am.collect_values(torch.from_numpy(d), torch.from_numpy(s))
            deltas.append(d)
            sims.append(s)
            # margins are constant within an epoch
            assert am.epsilon == pytest.approx(0.25 if epoch == 0 else expected[0], abs=1e-6)
        expected = numpy_margins(deltas, sims, rule, 2, 4)
        am.step()
    assert (am.epsilon, am.beta) == pytest.approx(expected, abs=1e-6)


def test_epsilon_is_clipped_at_zero_and_triplet_am_keeps_beta():
    am = AutoMargin(k_delta=2, k_an=None, epsilon0=0.3, beta0=0.2)
    am.collect_values(torch.tensor([-0.5, -0.2]), torch.tensor([0.9, 0.8]))
    am.step()
    assert am.epsilon == 0.0
    assert am.beta == pytest.approx(0.2)


def test_an_epoch_without_statistics_keeps_the_margins():
    am = AutoMargin(epsilon0=0.3, beta0=0.1)
    am.step()
    assert (am.epsilon, am.beta) == pytest.approx((0.3, 0.1))


def test_method_collects_all_triplets_and_negative_pairs_of_each_batch():
    """AdaTriplet-AM through real batches: ε, β after each epoch from an independent numpy pass."""
    gen = torch.Generator().manual_seed(3)
    labels = torch.arange(8).repeat_interleave(4)
    method = build_method("AdaTriplet-AM", preset="cxr")
    same = (labels[:, None] == labels[None, :]).numpy()
    for epoch in range(3):
        deltas, sims = [], []
        for _ in range(3):
            emb = torch.randn(32, 16, generator=gen) + 0.3 * epoch * F.one_hot(labels % 16, 16)
            method(emb, labels)
            x = F.normalize(emb, dim=1).numpy().astype(np.float64)
            s = x @ x.T
            for a in range(32):
                for p in range(32):
                    if a != p and same[a, p]:
                        deltas.append(s[a, p] - s[a][~same[a]])
            iu = np.triu_indices(32, 1)
            sims.append(s[iu][~same[iu]])
        expected = numpy_margins([np.concatenate(deltas)], sims, "mean", 2, 4)
        stats = method.epoch_stats()
        assert stats["mean_delta"] == pytest.approx(np.concatenate(deltas).mean(), abs=1e-5)
        assert stats["mean_neg_sim"] == pytest.approx(np.concatenate(sims).mean(), abs=1e-5)
        method.on_epoch_end()
        assert (method.automargin.epsilon, method.automargin.beta) == pytest.approx(expected,
                                                                                     abs=1e-5)
        # the next batch's loss uses the new margins
        method(torch.randn(32, 16, generator=gen), labels)
        assert (method.epsilon, method.beta) == pytest.approx(expected, abs=1e-5)
        method.monitor.reset()
        method.automargin.reset()


def test_margins_survive_state_dict_round_trip():
    method = build_method("AdaTriplet-AM")
    method.automargin.collect_values(torch.tensor([0.4, 0.6]), torch.tensor([0.2, 0.4]))
    method.on_epoch_end()
    restored = build_method("AdaTriplet-AM")
    restored.load_state_dict(method.state_dict())
    assert restored.automargin.epsilon == pytest.approx(0.25)
    assert restored.automargin.beta == pytest.approx(1 - (1 - 0.3) / 2)


@pytest.mark.parametrize("kwargs", [dict(k_delta=0.5), dict(k_an=0), dict(rule="median"),
                                    dict(epsilon0=2.5), dict(beta0=-2)])
def test_invalid_automargin_settings(kwargs):
    with pytest.raises(ConfigError):
        AutoMargin(**kwargs)


def test_automargin_and_the_epoch_monitor_share_one_accumulator_filled_once():
    method = build_method("AdaTriplet-AM")
    assert method.monitor.accumulator is method.automargin.accumulator
    labels = torch.arange(4).repeat_interleave(2)
    method(torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), labels)
    # 8 anchors × 1 positive × 6 negatives triplets; 28 − 4 negative pairs: counted once each
    assert method.automargin.accumulator.n_deltas == 8 * 6
    assert method.automargin.accumulator.n_neg_sims == 28 - 4
    assert method.epoch_stats()["mean_delta"] == method.automargin.mean_delta
    plain = build_method("Triplet")
    plain(torch.randn(8, 6), labels)
    assert plain.monitor.owns_stats and plain.monitor.accumulator.n_deltas == 8 * 6


def test_warmup_keeps_the_initial_margins_then_follows_the_paper_rule():
    am = AutoMargin(k_delta=2, k_an=2, epsilon0=0.25, beta0=0.0, warmup_epochs=2)
    for _ in range(2):
        am.collect_values(torch.tensor([0.02, 0.02]), torch.tensor([0.5, 0.5]))
        am.step()
        assert (am.epsilon, am.beta) == pytest.approx((0.25, 0.0))
    am.collect_values(torch.tensor([0.02, 0.02]), torch.tensor([0.5, 0.5]))
    am.step()
    assert (am.epsilon, am.beta) == pytest.approx((0.01, 0.75))
    # the epoch counter travels with the state (resume inside or after the warm-up)
    again = AutoMargin(warmup_epochs=2)
    again.load_state_dict(am.state_dict())
    assert int(again.epochs_) == 3


def test_epsilon_floor_bounds_the_paper_rule_from_below():
    am = AutoMargin(k_delta=2, k_an=None, epsilon0=0.25, epsilon_floor=0.1)
    am.collect_values(torch.tensor([0.02]), torch.tensor([0.5]))
    am.step()
    assert am.epsilon == pytest.approx(0.1)
    am.collect_values(torch.tensor([0.6]), torch.tensor([0.5]))
    am.step()
    assert am.epsilon == pytest.approx(0.3)


def test_guards_are_method_options_and_off_by_default():
    method = build_method("AdaTriplet-AM")
    assert (method.automargin.warmup_epochs, method.automargin.epsilon_floor) == (0, 0.0)
    guarded = build_method("Triplet-AM", warmup_epochs=3, epsilon_floor=0.05)
    assert (guarded.automargin.warmup_epochs, guarded.automargin.epsilon_floor) == (3, 0.05)
