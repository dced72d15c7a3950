"""Config sections of the MMDL extensions: the ranking-loss stage and the ATH hashing head.

Kept apart from :mod:`radsearch.training.mmdl` so that the extensions' knobs live next to their
documentation; :class:`radsearch.training.mmdl.MMDLConfig` holds one of each (``stage:``, ``ath:``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MMDLStage(_Strict):
    """Extension B: fine-tune a trained run's image branch with a ranking loss on label relevance
    (positives share ≥ 1 label, negatives share none). ``loss=none``: no stage (a main-stage run).

    ``parent``: the run folder it starts from, or — inside ``radsearch mmdl compare`` — the name of
    the method it continues (the same seed's folder of that method). [known] Adam lr 5e-6, batch 64;
    epochs and weight decay are [inferred].
    """

    loss: Literal["none", "triplet", "fastap", "smoothap", "adatriplet"] = "none"
    parent: str | None = None
    epochs: int = Field(2, ge=1)
    lr: float = Field(5e-6, gt=0.0)
    batch_size: int = Field(64, ge=2)
    weight_decay: float = Field(1e-5, ge=0.0)
    label_weight: float = Field(0.0, ge=0.0)   # keep the label BCE during the stage (0 = off)
    margin: float = Field(0.1, ge=0.0)         # triplet (PML, normalised Euclidean)
    num_bins: int = Field(10, ge=2)            # FastAP histogram
    temperature: float = Field(0.01, gt=0.0)   # Smooth-AP sigmoid
    epsilon: float = Field(0.25, ge=0.0)       # AdaTriplet margin on cosine differences
    beta: float = Field(0.0, ge=-1.0, le=1.0)  # AdaTriplet negative threshold
    lam: float = Field(1.0, ge=0.0)            # AdaTriplet negative-term weight


class MMDLATH(_Strict):
    """ATH (Fang, Fu, Liu, MedIA 2021): spatial attention on the last conv map, a K-bit hash layer
    (tanh-relaxed codes) trained with a triplet loss on label relevance plus a quantisation penalty,
    next to the label head. ``bits=0``: off. With ``loss.kind=mmdl`` and reports it is ATH+MMDL."""

    bits: int = Field(0, ge=0)
    attention: bool = True
    triplet_weight: float = Field(1.0, ge=0.0)
    margin: float = Field(0.25, ge=0.0, le=1.0)  # share of the K bits (Hamming fraction)
    quantization: float = Field(0.1, ge=0.0)   # weight of mean (|h| − 1)²
    retrieval: Literal["hamming", "cosine"] = "hamming"  # sign codes, or the relaxed codes


class MMDLImages(_Strict):
    """Where decoded training images live: ``auto`` keeps them in RAM up to ``ram_budget_gb`` and
    uses a file-backed (memory-mapped) uint8 array above it; ``ram`` / ``file`` force one path.
    ``cache_dir``: folder of the file (default: ``.radsearch-cache/mmdl-images`` next to the
    manifest)."""

    mode: Literal["auto", "ram", "file"] = "auto"
    ram_budget_gb: float = Field(8.0, ge=0.0)
    cache_dir: str | None = None
