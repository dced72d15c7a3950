"""Ranking-loss stage (MMDL extension B): continues a parent run, trains only the image branch,
records its parent, runs from `compare` (sibling parent) and from the CLI."""

import json

import pytest
import torch

from radsearch.cli.main import main
from radsearch.errors import ConfigError, DataError
from radsearch.synth import generate_chest
from radsearch.training.mmdl import load_mmdl_config, load_mmdl_run, train_mmdl
from radsearch.training.mmdl_compare import compare_mmdl
from radsearch.training.mmdl_finetune import finetune_mmdl

TINY = ["model.backbone=resnet18", "model.dim=8", "model.hidden=8", "data.image_size=32",
        "train.epochs=1", "train.batch_size=16", "stage.batch_size=16", "stage.epochs=1"]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    synth = generate_chest(12, seed=4, image_size=32, out_dir=root / "cohort", workers=1)
    cfg = load_mmdl_config(None, [f"data.manifest={synth.manifest}", *TINY,
                                  "data.report_fraction=1"])
    train_mmdl(cfg, root / "parent", cohort=synth.cohort, images=synth.images, log=lambda m: None)
    return root, synth


@pytest.mark.parametrize("loss", ["triplet", "fastap", "smoothap", "adatriplet"])
def test_stage_moves_only_the_image_branch_and_records_its_parent(parent, loss, tmp_path):
    root, synth = parent
    before, _, _ = load_mmdl_run(root / "parent", synth.cohort)
    cfg = load_mmdl_config(None, [*TINY, f"stage.loss={loss}", f"stage.parent={root / 'parent'}",
                                  "stage.lr=1e-3"])
    out = finetune_mmdl(cfg, tmp_path / "stage", cohort=synth.cohort, images=synth.images,
                        log=lambda m: None)
    after, saved_cfg, _ = load_mmdl_run(tmp_path / "stage", synth.cohort)
    old, new = before.state_dict(), after.state_dict()
    text = [k for k in old if k.startswith(("text_encoder.", "text_proj."))
            and isinstance(old[k], torch.Tensor)]
    image = [k for k in old if k.startswith(("image_proj.", "shared.", "backbone."))
             and old[k].is_floating_point()]
    assert text and all(torch.equal(old[k], new[k]) for k in text)
    assert any(not torch.equal(old[k], new[k]) for k in image)
    assert saved_cfg.stage.loss == loss and saved_cfg.stage.parent == str(root / "parent")
    assert out["settings"]["parent_run"] == str(root / "parent")
    assert out["history"][0]["ranking"] >= 0 and "text_to_image" in out
    assert 0 <= out["diagnostic"]["groups"]["all"]["mAP@10"] <= 1


def test_compare_runs_a_stage_after_its_sibling_parent(parent, tmp_path):
    root, synth = parent
    cfg = load_mmdl_config(None, [f"data.manifest={synth.manifest}", *TINY,
                                  "data.report_fraction=0", "compare.seeds=1"])
    methods = {"image": [], "image-rank": ["stage.loss=smoothap", "stage.parent=image"]}
    table = compare_mmdl(cfg, tmp_path / "cmp", methods=methods, log=lambda m: None)
    text = table.read_text()
    assert "| image |" in text and "| image-rank |" in text
    res = json.loads((tmp_path / "cmp" / "image-rank" / "seed0" / "results.json").read_text())
    assert res["settings"]["parent_run"] == str(tmp_path / "cmp" / "image" / "seed0")
    with pytest.raises(DataError, match="stage.parent=missing"):
        compare_mmdl(cfg, tmp_path / "cmp2", methods={"r": ["stage.parent=missing",
                                                            "stage.loss=triplet"]},
                     log=lambda m: None)


def test_stage_without_parent_is_one_line():
    cfg = load_mmdl_config(None, [*TINY, "stage.loss=triplet"])
    with pytest.raises(ConfigError, match="stage.parent is not set"):
        finetune_mmdl(cfg, "unused", log=lambda m: None)
    with pytest.raises(ConfigError, match="mmdl finetune"):   # the trainer never fine-tunes
        train_mmdl(cfg, "unused", log=lambda m: None)
    with pytest.raises(ConfigError, match="stage.loss"):
        load_mmdl_config(None, ["stage.loss=ndcg"])


def test_cli_finetune_json_and_errors(parent, tmp_path, capsys):
    root, _ = parent
    code = main(["mmdl", "finetune", str(root / "parent"), "stage.epochs=1", "--loss", "triplet",
                 "--out", str(tmp_path / "cli"), "--json"])
    assert code == 0
    row = json.loads(capsys.readouterr().out)
    assert row["loss"] == "triplet" and 0 <= row["mAP@10"] <= 1
    assert main(["mmdl", "finetune", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.yaml" in err and len(err.splitlines()) == 1
