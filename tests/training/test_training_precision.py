"""train.precision on CPU: bf16 only when native and the first batch agrees with fp32."""

from pathlib import Path

import pytest
import torch

from radsearch.models import create_model
from radsearch.training import precision


def test_fp32_is_fp32_and_bf16_agreement_is_measured_against_fp32():
    torch.manual_seed(0)
    model = create_model("cnn9", embedding_dim=16)
    images = torch.randn(4, 1, 32, 32)
    assert precision.resolve_cpu_precision("fp32", model, images)[0] is None
    # independent reference: the same model in fp32 and under bf16 autocast, cosine by hand
    model.eval()
    with torch.no_grad():
        a = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = model(images).float()
    want = float((torch.nn.functional.normalize(a, dim=1)
                  * torch.nn.functional.normalize(b, dim=1)).sum(1).mean())
    model.train()
    assert abs(precision.bf16_agreement(model, images) - want) < 1e-6
    assert model.training  # the check leaves the mode as it found it


def test_auto_falls_back_to_fp32_with_the_reason(monkeypatch):
    model = create_model("cnn9", embedding_dim=8)
    images = torch.randn(2, 1, 32, 32)
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    dtype, note = precision.resolve_cpu_precision("auto", model, images)
    assert dtype is None and "no native bf16" in note
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: True)
    monkeypatch.setattr(precision, "bf16_agreement", lambda m, x: 0.5)
    dtype, note = precision.resolve_cpu_precision("auto", model, images)
    assert dtype is None and "0.5000" in note
    monkeypatch.setattr(precision, "bf16_agreement", lambda m, x: 0.999)
    assert precision.resolve_cpu_precision("auto", model, images)[0] is torch.bfloat16
    # asked for explicitly, bf16 is used even without native support (and says it is slower)
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    dtype, note = precision.resolve_cpu_precision("bf16", model, images)
    assert dtype is torch.bfloat16 and "slower" in note


@pytest.mark.slow
def test_bf16_training_follows_the_fp32_loss_curve(tmp_path):
    """The correctness check of train.precision=bf16: a short run's losses and validation mAP
    stay close to the same run in fp32 (same seed, same batches)."""
    from radsearch.synth import generate_knee
    from radsearch.training import load_config, train
    from radsearch.training.callbacks import read_metrics

    generate_knee(24, seed=0, image_size=40, out_dir=tmp_path / "k", workers=1)
    runs = {}
    for name in ("fp32", "bf16"):
        demo = Path(__file__).parents[2] / "configs" / "demo.yaml"
        cfg = load_config(demo, [
            f"data.manifest={tmp_path / 'k' / 'manifest.csv'}", "data.image_size=32",
            "data.resize=36", "train.epochs=3", "train.batches_per_epoch=4",
            "train.subjects_per_batch=8", "train.threads=1", "train.progress=false",
            f"train.precision={name}", f"run.out_dir={tmp_path}", f"run.name={name}"])
        runs[name] = read_metrics(train(cfg))
    for a, b in zip(runs["fp32"], runs["bf16"]):
        assert abs(a["loss"] - b["loss"]) < 0.1 * abs(a["loss"]) + 0.02, (a["loss"], b["loss"])
    assert abs(runs["fp32"][-1]["val_mAP"] - runs["bf16"][-1]["val_mAP"]) < 0.1
