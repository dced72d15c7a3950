"""The extension configs (Table S2 columns with ATH, S3/S4 ablations, the synthetic extension run)
load, every method resolves to a valid config, a stage's parent is an earlier method, and a tiny
dry run of `compare` trains every method of the S2 and ablation configs."""

from pathlib import Path

import pytest

from radsearch.synth import generate_chest
from radsearch.training.mmdl import load_mmdl_config, read_results
from radsearch.training.mmdl_compare import compare_mmdl

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXT = ["mmdl-mimic-s2.yaml", "mmdl-mimic-ablation.yaml", "mmdl-synth-chest-ext.yaml",
       "mmdl-synth-chest-dd.yaml"]
TINY = ["model.backbone=resnet18", "model.weights=none", "model.dim=8", "model.hidden=8",
        "data.image_size=32", "train.epochs=1", "train.batch_size=16", "stage.batch_size=16",
        "stage.epochs=1", "compare.seeds=1"]


def _methods(name):
    cfg = load_mmdl_config(CONFIGS / name)
    resolved = {m: load_mmdl_config(base=cfg.model_dump(), overrides=[*o, "train.seed=1",
                                                                      "data.pairing_seed=1"])
                for m, o in cfg.compare.methods.items()}
    return cfg, resolved


@pytest.mark.parametrize("name", EXT)
def test_every_method_resolves_and_stages_follow_their_parent(name):
    cfg, resolved = _methods(name)
    order = list(resolved)
    assert cfg.compare.reference in resolved
    for i, (method, c) in enumerate(resolved.items()):
        if c.stage.loss != "none":
            assert c.stage.parent in order[:i], f"{method}: parent must be listed before it"
            assert resolved[c.stage.parent].stage.loss == "none"
        if method.startswith("ath"):
            assert c.ath.bits > 0
    if name == "mmdl-mimic-s2.yaml":
        assert order == ["d121", "image-mmdl", "report-mmdl", "ath", "ath-mmdl"]
        assert resolved["ath"].data.report_fraction == 0 and resolved["ath"].loss.alpha == 0
        assert resolved["ath-mmdl"].data.report_fraction == 1
        assert resolved["d121"].loss.kind == "classifier"
    if name == "mmdl-mimic-ablation.yaml":
        for base in ("image-mmdl", "report-mmdl"):  # cumulative columns
            assert resolved[f"{base}-dd"].model.descriptor == "selective"
            assert resolved[f"{base}-dd-rank"].stage.parent == f"{base}-dd"
            assert resolved[f"{base}-dd-rank"].stage.lr == 5e-6
            assert resolved[f"{base}-dd-rank"].stage.batch_size == 64


@pytest.mark.parametrize("name", ["mmdl-mimic-s2.yaml",
                                  pytest.param("mmdl-mimic-ablation.yaml", marks=pytest.mark.slow)])
def test_dry_run_trains_every_method_on_a_tiny_cohort(name, tmp_path):
    synth = generate_chest(8, seed=1, image_size=32, out_dir=tmp_path / "cohort", workers=1)
    cfg = load_mmdl_config(CONFIGS / name, [f"data.manifest={synth.manifest}", *TINY])
    table = compare_mmdl(cfg, tmp_path / "cmp", log=lambda m: None).read_text()
    _, resolved = _methods(name)
    for method in cfg.compare.methods:
        assert f"| {method} |" in table
        settings = read_results(tmp_path / "cmp" / method / "seed0")["settings"]
        if method.startswith("ath"):
            assert settings["retrieval_space"] == "hash-hamming"
        parent = resolved[method].stage.parent
        if parent:  # the stage continued the same seed of its parent method
            assert settings["parent_run"] == str(tmp_path / "cmp" / parent / "seed0")
