"""MMDL objective (DSCMR-shaped, see docs/mmdl.md) and a CLIP/ConVIRT InfoNCE baseline.

L = w_label·(BCE(img) + BCE(txt)) + α·L_sim + β·L_inv, where

* L_sim, the common-space label-similarity loss, sums over the pairs (img, img), (img, txt),
  (txt, txt): θ_ij = ½·cos(a_i, b_j), S_ij = 1 when i and j share a label,
  ℓ = mean_ij[log(1 + e^θ_ij) − S_ij·θ_ij];
* L_inv, the invariance loss between the image and report common vectors of the same study:
  ``l2`` = mean ‖u_i − v_i‖ (DSCMR's form, on raw vectors), ``l2sq`` = mean ‖u_i − v_i‖², or
  ``cosine`` = mean (1 − cos(u_i, v_i)). The raw forms can be lowered by shrinking both branches
  toward one point, which with a from-scratch image branch collapses the space (docs/mmdl.md);
  ``cosine`` is scale-free, so only turning u_i toward v_i lowers it. Retrieval uses the
  direction of u only, so ``cosine`` constrains exactly what retrieval reads.

Text terms use only the studies that have a report (``has_report``), so the report pairing
fraction p is a data knob. Uncertain labels follow a policy (``label_targets``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radsearch.errors import ConfigError

UNCERTAIN_POLICIES = ("u-zeros", "u-ones", "u-ignore")


def label_targets(states: np.ndarray | torch.Tensor, policy: str = "u-zeros"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE targets and weights from label states: 1 positive, 0 negative, −1 uncertain, NaN blank.

    Blank (not mentioned) is a negative target, kept apart from an explicit 0 only so that no policy
    ever turns it into something else. ``u-zeros``: −1 → 0; ``u-ones``: −1 → 1; ``u-ignore``: −1
    gets weight 0 (left out of the BCE and of the label-similarity matrix).
    """
    if policy not in UNCERTAIN_POLICIES:
        raise ConfigError(f"mmdl.uncertain={policy!r}; use one of {', '.join(UNCERTAIN_POLICIES)}.")
    s = torch.as_tensor(np.asarray(states, dtype=np.float32))
    blank = torch.isnan(s)
    uncertain = s == -1
    bad = ~blank & ~uncertain & (s != 0) & (s != 1)
    if bad.any():
        raise ConfigError(f"label states must be 1, 0, -1 or blank (NaN); found {s[bad][0].item()}.")
    targets = torch.where(s == 1, 1.0, 0.0)
    weights = torch.ones_like(s)
    if policy == "u-ones":
        targets = torch.where(uncertain, 1.0, targets)
    elif policy == "u-ignore":
        weights = torch.where(uncertain, 0.0, weights)
    return targets, weights


def label_bce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean BCE over the cells whose weight is non-zero."""
    cells = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none") * weights
    return cells.sum() / weights.sum().clamp_min(1.0)


def similarity_targets(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """S_ij = 1 when rows i and j share at least one positive label."""
    return ((labels_a.float() @ labels_b.float().T) > 0).float()


def label_similarity_loss(a: torch.Tensor, b: torch.Tensor, labels_a: torch.Tensor,
                          labels_b: torch.Tensor) -> torch.Tensor:
    """mean_ij[log(1 + e^θ_ij) − S_ij θ_ij] with θ_ij = ½ cos(a_i, b_j) (a negative log-likelihood
    of S under a logistic model of the cosine)."""
    theta = 0.5 * F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T
    s = similarity_targets(labels_a, labels_b)
    return (F.softplus(theta) - s * theta).mean()


INVARIANCE_KINDS = ("l2", "l2sq", "cosine")


def invariance_loss(u: torch.Tensor, v: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Image–report invariance over the studies with both: ``l2`` mean ‖u_i − v_i‖, ``l2sq``
    mean ‖u_i − v_i‖², ``cosine`` mean (1 − cos(u_i, v_i))."""
    u, v = u.float(), v.float()
    if kind == "l2":
        return (u - v).norm(dim=1).mean()
    if kind == "l2sq":
        return (u - v).pow(2).sum(dim=1).mean()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(u, v, dim=1)).mean()
    raise ConfigError(f"loss.invariance={kind!r}; use one of {', '.join(INVARIANCE_KINDS)}.")


def info_nce(u: torch.Tensor, v: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP / ConVIRT): pair i is the positive of row i in both directions."""
    logits = F.normalize(u.float(), dim=1) @ F.normalize(v.float(), dim=1).T / temperature
    target = torch.arange(len(u), device=u.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@dataclass
class MMDLWeights:
    """Loss weights: label BCE, similarity α, invariance β, InfoNCE γ (0 = off) and its τ."""

    label: float = 1.0
    alpha: float = 1e-3
    beta: float = 1e-1
    gamma: float = 0.0
    temperature: float = 0.1
    text_label: float = 1.0  # weight of the report branch's BCE relative to the image branch's
    invariance: str = "l2"   # l2 (DSCMR's raw form) | l2sq | cosine (scale-free), see module doc


class MMDLLoss(nn.Module):
    """The MMDL objective; text terms only over the rows with ``has_report``."""

    def __init__(self, weights: MMDLWeights | None = None):
        super().__init__()
        self.w = weights or MMDLWeights()

    def forward(self, u: torch.Tensor, logits_u: torch.Tensor, targets: torch.Tensor,
                weights: torch.Tensor, v: torch.Tensor | None = None,
                logits_v: torch.Tensor | None = None,
                has_report: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``u``/``logits_u``: image rows [B]; ``v``/``logits_v``: report rows for the studies with
        ``has_report`` (``v`` has has_report.sum() rows, in order). Returns every term and
        ``loss``."""
        w = self.w
        sim_labels = targets * (weights > 0)  # certain positives only (u-ignore drops −1)
        terms = {"label_image": label_bce(logits_u, targets, weights)}
        terms["sim_ii"] = label_similarity_loss(u, u, sim_labels, sim_labels)
        zero = u.new_zeros(())
        has_text = v is not None and has_report is not None and bool(has_report.any())
        if has_text:
            t, wt, lt = targets[has_report], weights[has_report], sim_labels[has_report]
            terms["label_text"] = label_bce(logits_v, t, wt)
            terms["sim_it"] = label_similarity_loss(u, v, sim_labels, lt)
            terms["sim_tt"] = label_similarity_loss(v, v, lt, lt)
            terms["invariance"] = invariance_loss(u[has_report], v, w.invariance)
            terms["info_nce"] = info_nce(u[has_report], v, w.temperature) if w.gamma else zero
        else:
            for name in ("label_text", "sim_it", "sim_tt", "invariance", "info_nce"):
                terms[name] = zero
        sim = terms["sim_ii"] + terms["sim_it"] + terms["sim_tt"]
        terms["loss"] = (w.label * (terms["label_image"] + w.text_label * terms["label_text"])
                         + w.alpha * sim + w.beta * terms["invariance"]
                         + w.gamma * terms["info_nce"])
        return terms
