"""Metric-learning losses for forensic matching: AdaTriplet, AutoMargin and the paper's baselines.

Each loss is a small ``nn.Module`` called as ``loss(embeddings, labels)`` on a batch (cosine
similarity on L2-normalised embeddings). :func:`build_method` assembles a named method of the paper
with its published settings; see :mod:`radsearch.losses.methods`.
"""

from radsearch.losses.adatriplet import AdaTripletLoss, TripletLoss
from radsearch.losses.automargin import AutoMargin
from radsearch.losses.geometry import TripletGeometry, batch_geometry, similarity_geometry
from radsearch.losses.methods import METHODS, PRESETS, Method, build_method
from radsearch.losses.pml import ContrastiveLoss, arcface_loss, soft_triple_loss
from radsearch.losses.sct import SCTLoss
from radsearch.losses.wat import WATLoss, equivalent_margin

__all__ = [
    "METHODS", "PRESETS", "AdaTripletLoss", "AutoMargin", "ContrastiveLoss", "Method", "SCTLoss",
    "TripletGeometry", "TripletLoss", "WATLoss", "arcface_loss", "batch_geometry", "build_method",
    "equivalent_margin", "similarity_geometry", "soft_triple_loss",
]
