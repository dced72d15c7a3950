"""The collapse of docs/mmdl.md and its fix: invariance forms by hand, their behaviour under a
joint shrink of both branches (autograd), weighted per-term logging, and incomplete labels."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from radsearch.cohort import Cohort
from radsearch.datasets.labels import CHEXPERT_LABELS
from radsearch.errors import ConfigError
from radsearch.losses.mmdl import MMDLLoss, MMDLWeights, invariance_loss
from radsearch.training.mmdl import (dropped_training_targets, label_states, load_mmdl_config,
                                     weighted_terms)


def test_invariance_forms_by_hand():
    u = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    v = torch.tensor([[3.0, 6.0], [-1.0, -1.0]])
    # ‖u−v‖ = 5 and √8; squared 25 and 8; cosines 2·6/(2·√45) and −1
    assert invariance_loss(u, v, "l2").item() == pytest.approx((5 + math.sqrt(8)) / 2)
    assert invariance_loss(u, v, "l2sq").item() == pytest.approx((25 + 8) / 2)
    cos0 = 12 / (2 * math.sqrt(45))
    assert invariance_loss(u, v, "cosine").item() == pytest.approx(((1 - cos0) + 2) / 2)
    with pytest.raises(ConfigError, match="loss.invariance"):
        invariance_loss(u, v, "l1")


def _scale_gradient(kind: str) -> float:
    """d L_inv / d s at s = 1 for u, v → s·u, s·v (autograd): > 0 means shrinking lowers it."""
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    s = torch.ones((), requires_grad=True)
    invariance_loss(s * u, s * v, kind).backward()
    return float(s.grad)


def test_raw_invariance_rewards_shrinking_both_branches_cosine_does_not():
    """The collapse mechanism: ‖u − v‖ falls when both branches shrink toward one point (the
    gradient along the joint scale equals the loss itself, it is 1-homogeneous), so pulling the
    pair together is cheapest by removing the vectors; the cosine form has no such direction."""
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    assert _scale_gradient("l2") == pytest.approx(invariance_loss(u, v, "l2").item(), rel=1e-5)
    assert _scale_gradient("l2sq") == pytest.approx(2 * invariance_loss(u, v, "l2sq").item(),
                                                    rel=1e-5)
    assert abs(_scale_gradient("cosine")) < 1e-6


def _toy(invariance: str, alpha: float, beta: float, steps: int = 150) -> tuple[float, float]:
    """A tiny MMDL: images carry a weak label signal, reports a strong one; per-branch first layer,
    shared last layer and classifier, as in MMDLModel. Returns (mean norm, mean pairwise cosine)
    of the image common vectors."""
    g = torch.Generator().manual_seed(0)
    n, c, f = 512, 6, 24
    labels = (torch.rand(n, c, generator=g) < 0.2).float()
    labels[labels.sum(1) == 0, 0] = 1.0
    images = 0.15 * labels @ torch.randn(c, f, generator=g) + torch.randn(n, f, generator=g)
    texts = labels @ torch.randn(c, f, generator=g)
    torch.manual_seed(0)
    ip = torch.nn.Sequential(torch.nn.Linear(f, 32), torch.nn.ReLU())
    tp = torch.nn.Sequential(torch.nn.Linear(f, 32), torch.nn.ReLU())
    shared, head = torch.nn.Linear(32, 8), torch.nn.Linear(8, c)
    params = [p for m in (ip, tp, shared, head) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    crit = MMDLLoss(MMDLWeights(alpha=alpha, beta=beta, invariance=invariance))
    ones, has = torch.ones_like(labels), torch.ones(n, dtype=torch.bool)
    for _ in range(steps):
        u, v = shared(ip(images)), shared(tp(texts))
        loss = crit(u, head(u), labels, ones, v, head(v), has)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        u = shared(ip(images))
        unit = F.normalize(u, dim=1)
        gram = unit @ unit.T
        mean_cos = float((gram.sum() - gram.trace()) / (n * (n - 1)))
    return float(u.norm(dim=1).mean()), mean_cos


def test_a_dominant_invariance_term_collapses_a_tiny_space():
    """Tiny case of the collapse: at the spec's β = 0.1 the image vectors stay spread; when the raw
    invariance dominates (β = 3) they shrink (norm < half) and all point one way (mean cosine >
    0.99) — the state of every report arm in the previous study. The cosine form removes the
    shrinking path but not the one-direction solution (a constant vector makes every pair agree),
    so it also collapses when it dominates: only the label terms (BCE, α·L_sim) resist, which is
    why their weight relative to β matters and why each run logs the weighted terms and the
    spread."""
    norm_spec, cos_spec = _toy("l2", 1e-3, 0.1)
    norm_dom, cos_dom = _toy("l2", 1e-3, 3.0)
    _, cos_dom_cosine = _toy("cosine", 1e-3, 3.0)
    assert cos_spec < 0.9
    assert cos_dom > 0.99 and norm_dom < 0.5 * norm_spec
    assert cos_dom_cosine > 0.98


def test_weighted_terms_show_each_contribution():
    w = MMDLWeights(label=1.0, alpha=1e-3, beta=0.1, gamma=0.5, text_label=0.5)
    row = {"label_image": 0.4, "label_text": 0.2, "sim_ii": 0.8, "sim_it": 0.7, "sim_tt": 0.6,
           "invariance": 2.0, "info_nce": 3.0}
    out = weighted_terms(row, w)
    assert out == pytest.approx({"w_label": 0.5, "w_sim": 0.0021, "w_invariance": 0.2,
                                 "w_info_nce": 1.5})


def test_loss_config_records_the_invariance_form():
    assert load_mmdl_config(None, []).loss.invariance == "cosine"
    assert load_mmdl_config(None, ["loss.invariance=l2"]).loss.invariance == "l2"
    with pytest.raises(ConfigError, match="loss.invariance"):
        load_mmdl_config(None, ["loss.invariance=l1"])


def _label_cohort() -> Cohort:
    rows = []
    for s in range(40):
        for k in range(2):
            rows.append({"image": f"s{s}_{k}.png", "subject": f"P{s}", "time": 0.0,
                         "study": f"st{s}", "split": "train" if s < 30 else "test",
                         "labels": "Edema|Cardiomegaly|Support Devices"})
    return Cohort(pd.DataFrame(rows))


def test_label_dropout_drops_findings_per_study_and_keeps_test_labels():
    cohort = _label_cohort()
    states = label_states(cohort)
    assert np.array_equal(dropped_training_targets(cohort, states, 0.0, 0), states,
                          equal_nan=True)
    half = dropped_training_targets(cohort, states, 0.5, 0)
    split = cohort.table["split"].to_numpy()
    assert np.array_equal(half[split == "test"], states[split == "test"], equal_nan=True)
    assert np.array_equal(half[0::2], half[1::2], equal_nan=True)  # both images of a study agree
    edema, nf = CHEXPERT_LABELS.index("Edema"), CHEXPERT_LABELS.index("No Finding")
    kept = (half[split == "train", edema] == 1).mean()
    assert 0.2 < kept < 0.8
    everything = dropped_training_targets(cohort, states, 1.0, 0)
    train = everything[split == "train"]
    assert (train[:, nf] == 1).all() and (np.nansum(train, axis=1) == 1).all()


def _run(shift, seed: int, fraction: float, shuffled: bool = False) -> dict:
    """A fake finished run: per-query mAP@10 = random + shift (shift: a number or one per seed)."""
    rng = np.random.default_rng(seed)
    per_query = rng.random(60) + (shift[seed] if isinstance(shift, list) else shift)
    groups = {m: float(per_query.mean()) for m in
              ("mAP@1", "mAP@5", "mAP@10", "mAP@20", "mAP", "Acc@1", "Acc@5")}
    return {"diagnostic": {"groups": {"all": groups}},
            "per_query": {"mAP@10": per_query.tolist()},
            "spread": {"mean_cosine": 0.5, "effective_dims": 3.0},
            "settings": {"n_train_with_report": 0, "train_seconds": 1.0,
                         "text_encoder": {"kind": "tfidf"} if fraction else None,
                         "data": {"report_fraction": fraction, "shuffle_reports": shuffled}}}


def test_decision_rule_every_seed_interval_and_shuffled_control():
    from radsearch.training.mmdl_compare import comparison_markdown, summarise

    results = {"image-mmdl": [_run(0.0, s, 0.0) for s in range(3)],
               "report-mmdl-p1": [_run(0.05, s, 1.0) for s in range(3)],
               "report-mmdl-p0.5": [_run([0.05, 0.05, -0.01], s, 0.5) for s in range(3)],
               "shuffled-p1": [_run(0.0, s, 1.0, shuffled=True) for s in range(3)]}
    summary = summarise(results, "image-mmdl", n_boot=200)
    rows = summary["methods"]
    assert rows["report-mmdl-p1"]["verdict"] == "gain"
    assert rows["report-mmdl-p0.5"]["verdict"] == "no gain"  # one seed negative
    assert rows["shuffled-p1"]["verdict"] == "control: no gain"
    table = comparison_markdown(summary)
    assert "| 0.5 | report-mmdl-p0.5 |" in table and "| 1 | report-mmdl-p1 |" in table
    # the same gain no longer counts when the shuffled control gains too
    results["shuffled-p1"] = [_run(0.04, s, 1.0, shuffled=True) for s in range(3)]
    rows = summarise(results, "image-mmdl", n_boot=200)["methods"]
    assert rows["shuffled-p1"]["verdict"] == "control gains"
    assert rows["report-mmdl-p1"]["verdict"] == "no (control gains too)"
    del results["shuffled-p1"]  # without a control the rule cannot decide
    rows = summarise(results, "image-mmdl", n_boot=200)["methods"]
    assert rows["report-mmdl-p1"]["verdict"] == "undecided (no shuffled control)"
