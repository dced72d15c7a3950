"""``train.precision``: bf16 autocast on CPUs that have bf16 instructions, checked, else fp32.

bf16 halves the bytes a convolution moves and, on CPUs with AVX512-BF16 / AMX, runs on their bf16
units; on other CPUs it is emulated and slower. ``auto`` therefore uses bf16 only when oneDNN
reports native bf16 support *and* the first batch embedded in bf16 agrees with fp32 (mean cosine
similarity ≥ ``AGREEMENT``); otherwise the run trains in fp32 and says why. GPUs use ``train.amp``.
"""

from __future__ import annotations

import contextlib

import torch

AGREEMENT = 0.99


def cpu_bf16_native() -> bool:
    """oneDNN's own test for native bf16 on this CPU (AVX512-BF16, AMX-BF16 or AVX512 core)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@torch.no_grad()
def bf16_agreement(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Mean cosine similarity of the model's fp32 and bf16-autocast embeddings of ``images``."""
    was_training = model.training
    model.eval()
    try:
        reference = model(images).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images).float()
    finally:
        model.train(was_training)
    reference = torch.nn.functional.normalize(reference, dim=1)
    low = torch.nn.functional.normalize(low, dim=1)
    return float((reference * low).sum(dim=1).mean())


def resolve_cpu_precision(setting: str, model: torch.nn.Module,
                          images: torch.Tensor) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, one line saying what was chosen and why)."""
    if setting == "fp32":
        return None, "fp32 (train.precision=fp32)"
    native = cpu_bf16_native()
    if setting == "bf16":
        note = "" if native else " — this CPU has no native bf16, expect it to be slower"
        return torch.bfloat16, f"bf16 autocast (train.precision=bf16){note}"
    if not native:
        return None, "fp32 (train.precision=auto: this CPU has no native bf16)"
    agreement = bf16_agreement(model, images)
    if agreement < AGREEMENT:
        return None, (f"fp32 (train.precision=auto: bf16 embeddings of the first batch agree with "
                      f"fp32 only to cosine {agreement:.4f} < {AGREEMENT})")
    return torch.bfloat16, (f"bf16 autocast (train.precision=auto: native bf16, first-batch "
                            f"agreement with fp32 cosine {agreement:.4f})")


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """A fresh autocast context for ``dtype`` on ``device`` (a null context for fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
