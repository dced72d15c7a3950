"""Multi-label ranking losses (MMDL extension B) against PML on single-label batches and against
hand-computed / scikit-learn values on multi-label ones."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from sklearn.metrics import average_precision_score

from radsearch.errors import ConfigError
from radsearch.losses.adatriplet import AdaTripletLoss
from radsearch.losses.ranking import (MultiLabelRankingLoss, multilabel_triplets,
                                      relevance_matrix, smooth_ap_loss)


def _one_hot(labels, classes=None):
    labels = torch.as_tensor(labels)
    return F.one_hot(labels, classes or int(labels.max()) + 1).float()


MULTI = torch.tensor([[1, 1, 0, 0],   # 0 shares with 1 (label 1), 3 (label 0)
                      [0, 1, 1, 0],   # 1 shares with 0, 2
                      [0, 0, 1, 0],   # 2 shares with 1
                      [1, 0, 0, 0],   # 3 shares with 0
                      [0, 0, 0, 1]],  # 4 shares with nobody
                     dtype=torch.float32)


def test_relevance_and_triplets_by_hand():
    rel = relevance_matrix(MULTI)
    assert rel[0, 1] and rel[0, 3] and not rel[0, 2] and not rel[1, 3]
    assert rel[4].tolist() == [False, False, False, False, True]  # only itself
    a, p, n = multilabel_triplets(rel)
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    expected = {(i, j, k) for i, j, k in itertools.product(range(5), repeat=3)
                if i != j and i != k and (MULTI[i] @ MULTI[j]) > 0 and (MULTI[i] @ MULTI[k]) == 0}
    assert got == expected and (0, 1, 2) in got and (0, 3, 4) in got


def test_triplet_equals_pml_on_single_labels_and_a_loop_on_multi_labels():
    torch.manual_seed(0)
    x = torch.randn(12, 6)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3])
    ours = MultiLabelRankingLoss("triplet", margin=0.2)(x, _one_hot(labels))
    reference = pml_losses.TripletMarginLoss(margin=0.2)(x, labels)
    torch.testing.assert_close(ours, reference)

    y = torch.randn(5, 3)
    u = F.normalize(y, dim=1)
    hinges = []
    for i, j, k in itertools.product(range(5), repeat=3):
        if i != j and i != k and (MULTI[i] @ MULTI[j]) > 0 and (MULTI[i] @ MULTI[k]) == 0:
            hinges.append(max(0.0, float((u[i] - u[j]).norm() - (u[i] - u[k]).norm()) + 0.2))
    nonzero = [h for h in hinges if h > 0]
    torch.testing.assert_close(MultiLabelRankingLoss("triplet", margin=0.2)(y, MULTI),
                               torch.tensor(sum(nonzero) / len(nonzero)))


def test_fastap_equals_pml_on_single_labels():
    torch.manual_seed(1)
    x = torch.randn(10, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4, 4])  # 3 has no positive: skipped by both
    ours = MultiLabelRankingLoss("fastap", num_bins=10)(x, _one_hot(labels))
    reference = pml_losses.FastAPLoss(num_bins=10)(x, labels)
    torch.testing.assert_close(ours, reference)
    ours.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_fastap_multi_label_anchor_by_hand_and_sklearn():
    # anchor 0 at angle 0; its cosines to rows 1, 2, 3 are 0.8, 0.4, 0 → squared distances 0.4,
    # 1.2, 2.0: exactly on bin centres (10 bins over [0, 4]), so FastAP is the exact AP.
    angles = [0.0, math.acos(0.8), -math.acos(0.4), math.acos(0.0)]
    x = torch.tensor([[math.cos(a), math.sin(a)] for a in angles])
    labels = torch.tensor([[1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=torch.float32)
    # from anchor 0: row 1 (negative), row 2 (positive), row 3 (positive): AP = (1/2 + 2/3) / 2
    loss = MultiLabelRankingLoss("fastap", num_bins=10)
    values, anchors = loss.fastap_per_anchor(x, relevance_matrix(labels))
    assert anchors.tolist()[0] == 0
    ap = average_precision_score([0, 1, 1], [0.8, 0.4, 0.0])
    assert ap == pytest.approx(7 / 12)
    assert float(values[0]) == pytest.approx(1 - ap, abs=1e-6)


def test_smooth_ap_equals_pml_on_single_label_blocks():
    torch.manual_seed(2)
    x = torch.randn(9, 5)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    reference = pml_losses.SmoothAPLoss(temperature=0.05)(x, labels)
    ours = MultiLabelRankingLoss("smoothap", temperature=0.05)(x, _one_hot(labels))
    torch.testing.assert_close(ours, reference)


def test_smooth_ap_tends_to_sklearn_average_precision_on_multi_labels():
    torch.manual_seed(3)
    x = torch.randn(5, 8)
    u = F.normalize(x, dim=1)
    rel = relevance_matrix(MULTI)
    losses = []
    for i in range(5):  # the anchor is its own positive (score 1 = rank 1), as PML and the paper
        relevant = rel[i].clone()
        relevant[i] = True
        scores = (u @ u[i]).numpy()
        losses.append(1 - average_precision_score(relevant.numpy(), scores))
    got = smooth_ap_loss(x, rel, temperature=1e-5)
    assert float(got) == pytest.approx(float(np.mean(losses)), abs=1e-4)


def test_adatriplet_with_mask_equals_project_loss_and_paper_formula():
    torch.manual_seed(4)
    x = torch.randn(8, 4)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])
    kw = dict(epsilon=0.3, beta=0.1, lam=0.5)
    ours = MultiLabelRankingLoss("adatriplet", **kw)(x, _one_hot(labels))
    torch.testing.assert_close(ours, AdaTripletLoss(**kw)(x, labels))

    y = torch.randn(5, 3)
    s = F.normalize(y, dim=1) @ F.normalize(y, dim=1).T
    total, count = 0.0, 0
    for i, j, k in itertools.product(range(5), repeat=3):
        if i != j and i != k and (MULTI[i] @ MULTI[j]) > 0 and (MULTI[i] @ MULTI[k]) == 0:
            delta = float(s[i, j] - s[i, k])
            total += max(0.0, 0.3 - delta) + 0.5 * max(0.0, float(s[i, k]) - 0.1)
            count += 1
    paper = MultiLabelRankingLoss("adatriplet", triplets="all", reduction="paper", **kw)
    assert float(paper(y, MULTI)) == pytest.approx(total / count, abs=1e-6)


@pytest.mark.parametrize("kind", ["triplet", "fastap", "smoothap", "adatriplet"])
def test_every_ranking_loss_gives_finite_gradients(kind):
    torch.manual_seed(5)
    x = torch.randn(5, 3, requires_grad=True)
    loss = MultiLabelRankingLoss(kind)(x, MULTI)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_unknown_ranking_loss_is_one_line():
    with pytest.raises(ConfigError, match="stage.loss='ndcg'"):
        MultiLabelRankingLoss("ndcg")
