"""Ranking losses on multi-label relevance (MMDL extension B, docs/mmdl.md).

Relevance is multi-label: item j is a positive of anchor i when they share at least one label,
a negative when they share none. That relation is not an equivalence (A~B and B~C do not give
A~C), so the label vectors the losses below were written for are replaced, per loss, like this:

* ``triplet``: pytorch-metric-learning ``TripletMarginLoss`` fed an explicit ``indices_tuple`` —
  every (a, p, n) with rel(a, p), a ≠ p, not rel(a, n) (``multilabel_triplets``); the labels
  argument is then unused by PML.
* ``fastap``: PML ``FastAPLoss`` is computed per anchor. Its positives of row i are the rows with
  i's label, so for anchor i the batch is relabelled: i and its relevant rows get label 0, every
  other row a label of its own; PML's unreduced (``DoNothingReducer``) value of row i is then
  FastAP of i's relevance row exactly. One PML call per anchor (B² · bins work each).
* ``smoothap``: PML ``SmoothAPLoss`` needs equal-sized single-label classes laid out in blocks,
  which a multi-label batch cannot give; the same formula is evaluated here with a relevance mask
  (``smooth_ap_loss``) and checked against PML on single-label batches in the tests. As PML and
  the authors' code, the anchor counts as its own positive.
* ``adatriplet``: the project's AdaTriplet on a :class:`TripletGeometry` whose "same" matrix is the
  relevance mask (``relevance_geometry``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.reducers import DoNothingReducer
from torch import nn

from radsearch.errors import ConfigError
from radsearch.losses.adatriplet import AdaTripletLoss
from radsearch.losses.geometry import TripletGeometry, geometry_of_pairs

RANKING_LOSSES = ("triplet", "fastap", "smoothap", "adatriplet")


def relevance_matrix(targets: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: rows i and j share at least one positive label (diagonal as computed)."""
    t = (targets > 0).float()
    return (t @ t.T) > 0


def multilabel_triplets(relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (anchor, positive, negative) index triple of a relevance mask, anchor ≠ positive."""
    rel = relevant.bool().clone()
    rel.fill_diagonal_(False)
    neg = ~relevant.bool()
    neg.fill_diagonal_(False)
    cube = rel[:, :, None] & neg[:, None, :]
    a, p, n = torch.nonzero(cube, as_tuple=True)
    return a, p, n


def relevance_geometry(sim: torch.Tensor, relevant: torch.Tensor) -> TripletGeometry:
    """:class:`TripletGeometry` with "same" = a relevance mask instead of equal subject labels."""
    same = relevant.bool().clone()
    same.fill_diagonal_(True)
    return geometry_of_pairs(sim, same, f"the batch of {len(same)} images has no pair sharing a "
                             "label; use a larger stage.batch_size.")


def smooth_ap_loss(embeddings: torch.Tensor, relevant: torch.Tensor,
                   temperature: float = 0.01) -> torch.Tensor:
    """mean_i (1 − AP_i) with Smooth-AP's sigmoid ranks (Brown et al., ECCV 2020).

    P_i = relevant row i plus i itself; for p ∈ P_i: R_all = 1 + Σ_{j≠p} σ((s_ij − s_ip)/τ),
    R_pos = 1 + Σ_{j∈P_i, j≠p} σ((s_ij − s_ip)/τ); AP_i = mean_{p∈P_i} R_pos / R_all.
    """
    x = F.normalize(embeddings.float(), dim=1)
    sims = x @ x.T
    b = len(x)
    pos = relevant.bool().clone()
    pos.fill_diagonal_(True)
    not_self = ~torch.eye(b, dtype=torch.bool, device=x.device)
    # diff[i, p, j] = s_ij − s_ip
    sig = torch.sigmoid((sims[:, None, :] - sims[:, :, None]) / temperature) * not_self[None]
    rank_all = 1.0 + sig.sum(-1)
    rank_pos = 1.0 + (sig * pos[:, None, :]).sum(-1)
    ap = ((rank_pos / rank_all) * pos).sum(1) / pos.sum(1)
    return (1.0 - ap).mean()


class MultiLabelRankingLoss(nn.Module):
    """One ranking loss on a batch of embeddings and its [B, C] label targets (share ≥ 1 label)."""

    def __init__(self, kind: str = "smoothap", *, margin: float = 0.1, num_bins: int = 10,
                 temperature: float = 0.01, epsilon: float = 0.25, beta: float = 0.0,
                 lam: float = 1.0, triplets: str = "semihard", reduction: str = "reference"):
        super().__init__()
        if kind not in RANKING_LOSSES:
            raise ConfigError(f"stage.loss={kind!r}; use one of {', '.join(RANKING_LOSSES)}.")
        self.kind = kind
        self.temperature = temperature
        if kind == "triplet":
            self.loss = pml_losses.TripletMarginLoss(margin=margin)
        elif kind == "fastap":
            self.loss = pml_losses.FastAPLoss(num_bins=num_bins, reducer=DoNothingReducer())
        elif kind == "adatriplet":
            self.loss = AdaTripletLoss(epsilon=epsilon, beta=beta, lam=lam, triplets=triplets,
                                       reduction=reduction)

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rel = relevance_matrix(targets.to(embeddings.device))
        if self.kind == "triplet":
            triplets = multilabel_triplets(rel)
            index = torch.arange(len(embeddings), device=embeddings.device)
            return self.loss(embeddings.float(), index, indices_tuple=triplets)
        if self.kind == "fastap":
            return self._fastap(embeddings.float(), rel)
        if self.kind == "smoothap":
            return smooth_ap_loss(embeddings, rel, self.temperature)
        x = F.normalize(embeddings.float(), dim=1)
        return self.loss.from_geometry(relevance_geometry(x @ x.T, rel))

    def _fastap(self, x: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """Mean over anchors with ≥ 1 relevant row of PML's FastAP loss of that anchor's row."""
        values, _ = self.fastap_per_anchor(x, rel)
        return values.mean() if len(values) else x.sum() * 0.0

    def fastap_per_anchor(self, x: torch.Tensor, rel: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 − FastAP of each anchor with a relevant row, those anchors' indices)."""
        b = len(x)
        own = torch.arange(1, b + 1, device=x.device)
        values, anchors = [], []
        for i in range(b):
            group = rel[i].clone()
            group[i] = True
            if int(group.sum()) < 2:
                continue  # no positive: FastAP is undefined for this anchor (PML skips it too)
            labels = torch.where(group, torch.zeros_like(own), own)
            out = self.loss(x, labels)["loss"]
            values.append(out["losses"][out["indices"] == i])
            anchors.append(i)
        if not values:
            return x.new_zeros(0), torch.zeros(0, dtype=torch.long)
        return torch.cat(values), torch.tensor(anchors)
