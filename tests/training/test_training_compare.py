"""compare: methods × seeds → mean ± SE table; finished runs are reused."""

import json

import numpy as np
import pytest

from radsearch.errors import ConfigError
from radsearch.synth import generate_knee
from radsearch.training import engine as engine_module
from radsearch.training import load_config
from radsearch.reporting.comparison import compare


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("knees")
    generate_knee(16, seed=1, image_size=32, out_dir=out, workers=1)
    return out / "manifest.csv"


def test_compare_table_holds_mean_and_standard_error(manifest, tmp_path, monkeypatch):
    cfg = load_config(None, [
        f"data.manifest={manifest}", "data.image_size=32", "data.resize=36", "data.workers=0",
        "model.embedding_dim=8", "train.epochs=1", "train.subjects_per_batch=4",
        "train.max_batches_per_epoch=1", "train.progress=false", "train.threads=1"])
    methods = ["Triplet", "AdaTriplet[epsilon=0.1,beta=0.25]"]
    table = compare(cfg, methods, 2, tmp_path / "cmp")
    text = table.read_text()
    runs = {m: [tmp_path / "cmp" / m / f"s{s}" for s in (0, 1)]
            for m in ("Triplet", "AdaTriplet_epsilon=0.1_beta=0.25")}
    for label, dirs in runs.items():
        values = [json.loads((d / "results.json").read_text())["groups"]["all"]["mAP"]
                  for d in dirs]
        mean = 100 * np.mean(values)
        se = 100 * np.std(values, ddof=1) / np.sqrt(2)
        assert f"{mean:.1f} ± {se:.1f}" in text, (label, values)
    cfg_b = (runs["AdaTriplet_epsilon=0.1_beta=0.25"][1] / "config.yaml").read_text()
    assert "epsilon: 0.1" in cfg_b and "beta: 0.25" in cfg_b and "seed: 1" in cfg_b
    assert "| mAP | Triplet |" in text and "| CMC@1 | Triplet |" in text and "| All |" in text
    assert text.count("**") >= 2  # the best trained mean of a column is bold
    assert (tmp_path / "cmp" / "comparison.csv").read_text().count("\n") > 8

    def no_training(config):
        raise AssertionError("finished runs must be reused")

    monkeypatch.setattr(engine_module, "train", no_training)
    assert compare(cfg, methods, 2, tmp_path / "cmp").read_text() == text


def test_compare_rejects_unknown_methods(tmp_path):
    with pytest.raises(ConfigError, match="Tripplet"):
        compare(load_config(None), ["Tripplet"], 1, tmp_path)


def test_reference_rows_are_each_seeds_own_untrained_network_on_the_same_test_split(
        manifest, tmp_path, monkeypatch):
    import csv

    import torch

    from radsearch.cohort import Cohort
    from radsearch.evaluation import evaluate_forensic
    from radsearch.models import create_model
    from radsearch.training.embed import embed_cohort
    from radsearch.training.preprocessing import load_preprocessing
    from radsearch.training.references import CHANCE, PIXELS, UNTRAINED

    cfg = load_config(None, [
        f"data.manifest={manifest}", "data.image_size=32", "data.resize=36", "data.workers=0",
        "model.embedding_dim=8", "train.epochs=1", "train.subjects_per_batch=4",
        "train.max_batches_per_epoch=1", "train.progress=false", "train.threads=1"])
    table = compare(cfg, ["Triplet"], 2, tmp_path / "cmp").read_text()
    for label in (CHANCE, PIXELS, UNTRAINED):
        assert f"| {label} |" in table

    # independent recomputation: each seed's initialisation, embedded file by file
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    seen = {}
    for seed in (0, 1):
        run = tmp_path / "cmp" / "Triplet" / f"s{seed}"
        test = Cohort.load(run / "cohort.csv").split("test")
        torch.manual_seed(seed)
        model = create_model("resnet18", embedding_dim=8)
        transform = load_preprocessing(run, cfg).transform(train=False)
        want = evaluate_forensic(embed_cohort(model, test, transform, mirror_right=True),
                                 test).groups["all"]["mAP"]
        got = [float(r["value"]) for r in rows if r["method"] == UNTRAINED
               and r["seed"] == str(seed) and r["group"] == "all" and r["metric"] == "mAP"]
        assert got == pytest.approx([want], abs=1e-6)
        seen[seed] = want
    assert seen[0] != seen[1]  # two different initialisations

    # asking again reuses every trained run
    def no_training(config):
        raise AssertionError("finished runs must be reused")

    monkeypatch.setattr(engine_module, "train", no_training)
    compare(cfg, ["Triplet"], 2, tmp_path / "cmp")
