"""MMDL trainer: report pairing knobs, paired bootstrap, a tiny end-to-end run, CLI errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from radsearch.cli.main import main
from radsearch.cohort import Cohort
from radsearch.datasets.labels import CHEXPERT_LABELS
from radsearch.errors import ConfigError
from radsearch.evaluation import evaluate_diagnostic
from radsearch.synth import generate_chest
from radsearch.training.mmdl import (embed_all, embedding_spread, label_states,
                                     load_mmdl_config, load_mmdl_run, noisy_training_targets,
                                     report_label_recovery, train_mmdl, training_reports)
from radsearch.training.mmdl_compare import comparison_markdown, paired_bootstrap, summarise


def _cohort() -> Cohort:
    rows = []
    for s in range(8):
        for k in range(2):  # two images per study share the study's report
            rows.append({"image": f"s{s}_{k}.png", "subject": f"P{s}", "time": 0.0,
                         "study": f"st{s}", "split": "train", "labels": "Edema",
                         "report": f"report {s}" if s < 6 else ""})
    return Cohort(pd.DataFrame(rows))


def test_pairing_fraction_keeps_whole_studies():
    cohort = _cohort()
    kept = training_reports(cohort, 0.5, False, seed=1)
    by_study = pd.Series(kept).groupby(cohort.table["study"]).nunique()
    assert (by_study == 1).all()  # both images of a study agree
    with_text = {s for s, r in zip(cohort.table["study"], kept) if r}
    assert len(with_text) == 3  # round(0.5 × 6 studies with a report)
    assert all(r == "" for r, s in zip(kept, cohort.table["study"]) if s in ("st6", "st7"))
    assert training_reports(cohort, 0.0, False, 1) == [""] * 16
    full = training_reports(cohort, 1.0, False, 1)
    assert full == cohort.table["report"].tolist()


def test_shuffled_control_permutes_reports_across_studies():
    cohort = _cohort()
    original = training_reports(cohort, 1.0, False, seed=2)
    shuffled = training_reports(cohort, 1.0, True, seed=2)
    assert sorted(shuffled) == sorted(original)  # same texts …
    assert shuffled != original                  # … attached to other studies


def test_label_states_positive_uncertain_blank():
    table = _cohort().table.iloc[:2].copy()
    table["labels"] = ["Edema|Cardiomegaly", "No Finding"]
    table["uncertain"] = ["Pneumonia", ""]
    states = label_states(Cohort(table))
    edema, cardio, pneu, normal = 5, 2, 7, 0
    assert states[0, edema] == 1 and states[0, cardio] == 1 and states[0, pneu] == -1
    assert states[1, normal] == 1 and np.isnan(states[0, normal])


def test_paired_bootstrap_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.1, 1.0, size=(3, 50))
    mean, lo, hi = paired_bootstrap(diffs, n_boot=500, seed=7)
    assert mean == pytest.approx(diffs.mean())
    gen = np.random.default_rng(7)
    idx = gen.integers(0, 50, size=(500, 50))
    naive = [np.mean([diffs[s, idx[b]].mean() for s in range(3)]) for b in range(500)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(naive, [2.5, 97.5])))
    constant = np.full((2, 10), 0.25)
    assert paired_bootstrap(constant, 200) == pytest.approx((0.25, 0.25, 0.25))


def test_tiny_run_end_to_end(tmp_path):
    synth = generate_chest(14, seed=3, image_size=32, workers=1)
    cfg = load_mmdl_config(None, ["model.backbone=resnet18", "model.dim=16", "model.hidden=16",
                                  "data.image_size=32", "train.epochs=1", "train.batch_size=16",
                                  "data.report_fraction=0.5"])
    out = train_mmdl(cfg, tmp_path / "run", cohort=synth.cohort, images=synth.images,
                     log=lambda m: None)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    groups = saved["diagnostic"]["groups"]["all"]
    for key in ("mAP@1", "mAP@10", "mAP", "Acc@1", "Acc@5"):
        assert 0.0 <= groups[key] <= 1.0
    n_test = int((synth.cohort.table["split"] == "test").sum())
    assert len(saved["per_query"]["mAP@10"]) == n_test
    assert 0 < out["settings"]["n_train_with_report"] < out["settings"]["n_train"]
    assert set(out["text_to_image"]) >= {"P@1", "P@5", "P@10"}
    assert out["settings"]["text_encoder"]["kind"] == "tfidf"
    # the saved run rebuilds the same model (TF-IDF refitted deterministically + weights)
    model, config, _ = load_mmdl_run(tmp_path / "run", synth.cohort)
    vectors, _ = embed_all(model, synth.images, "common", torch.device("cpu"))
    result = evaluate_diagnostic(vectors, synth.cohort, classes=list(CHEXPERT_LABELS))
    assert result.groups["all"]["mAP@10"] == pytest.approx(groups["mAP@10"], abs=1e-6)


def test_embedding_spread_by_hand():
    same = np.tile([[0.6, 0.8]], (4, 1))
    assert embedding_spread(same)["mean_cosine"] == pytest.approx(1.0)
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    spread = embedding_spread(opposite)
    assert spread["mean_cosine"] == pytest.approx(-1 / 3)  # (0·8 + (−1)·4) / 12
    assert spread["effective_dims"] == pytest.approx(2.0)  # two equal eigenvalues


def test_config_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="data.report_fraction"):
        load_mmdl_config(None, ["data.report_fraction=1.5"])
    assert main(["mmdl", "train", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "config file not found" in err and len(err.splitlines()) == 1
    manifest = tmp_path / "m.csv"
    _cohort().table.to_csv(manifest, index=False)
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  manifest: {manifest}\ntext:\n  encoder: hf:{tmp_path}/nope\n")
    assert main(["mmdl", "train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"hf:{tmp_path}/nope" in err and len(err.splitlines()) == 1


def test_label_noise_swaps_whole_training_studies_only():
    table = _cohort().table.copy()
    table["labels"] = [f"{name}" for name in ["Edema", "Cardiomegaly", "Fracture", "Pneumonia",
                                              "Edema", "Atelectasis", "No Finding",
                                              "Pneumothorax"] for _ in range(2)]
    table.loc[14:, "split"] = "test"
    cohort = Cohort(table)
    states = label_states(cohort)
    noisy = noisy_training_targets(cohort, states, 1.0, seed=0)
    np.testing.assert_array_equal(noisy[14:], states[14:])           # test rows stay clean
    np.testing.assert_array_equal(noisy[0::2], noisy[1::2])          # a study stays one unit
    assert noisy_training_targets(cohort, states, 0.0, 0) is states
    train_sets = {tuple(np.nan_to_num(r)) for r in states[:14]}
    assert all(tuple(np.nan_to_num(r)) in train_sets for r in noisy[:14])  # donors are studies


def test_report_label_recovery_separates_informative_from_uninformative_reports():
    rng = np.random.default_rng(0)
    names = ["Edema", "Cardiomegaly", "Pleural Effusion"]
    rows = []
    for i in range(120):
        labels = [n for n in names if rng.random() < 0.4] or ["No Finding"]
        rows.append({"image": f"{i}.png", "subject": f"P{i}", "time": 0.0, "study": f"s{i}",
                     "split": "train" if i < 80 else "test", "labels": "|".join(labels),
                     "report": " ".join(f"{n.lower()} present" for n in labels)})
    informative = Cohort(pd.DataFrame(rows))
    assert report_label_recovery(informative)["exact_match"] == 1.0
    noise = informative.table.copy()
    noise["report"] = [f"word{rng.integers(50)} word{rng.integers(50)}" for _ in range(120)]
    assert report_label_recovery(Cohort(noise))["exact_match"] < 0.6


def _fake_run(shift: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    per_query = rng.random(40)
    groups = {m: float(per_query.mean() + shift) for m in
              ("mAP@1", "mAP@5", "mAP@10", "mAP@20", "mAP", "Acc@1", "Acc@5")}
    return {"diagnostic": {"groups": {"all": groups}},
            "per_query": {"mAP@10": (per_query + shift).tolist()},
            "settings": {"n_train_with_report": 0, "train_seconds": 1.0}}


def test_summary_differences_per_seed_and_markdown():
    results = {"image": [_fake_run(0.0, s) for s in range(3)],
               "report": [_fake_run(0.05, s) for s in range(3)]}
    summary = summarise(results, "image", n_boot=200)
    delta = summary["methods"]["report"]["delta mAP@10"]
    assert delta["per_seed"] == pytest.approx([0.05] * 3)
    assert delta["ci"] == pytest.approx([0.05, 0.05])
    assert delta["every_seed"] and delta["ci_excludes_0"]
    acc = summary["methods"]["report"]["delta Acc@1"]
    assert acc["ci"] is None and acc["mean"] == pytest.approx(0.05)
    table = comparison_markdown(summary)
    assert "| report |" in table and "+0.050 [+0.050, +0.050]" in table


def test_spread_command_on_a_saved_run(tmp_path, capsys):
    synth = generate_chest(10, seed=5, image_size=32, out_dir=tmp_path / "cohort", workers=1)
    cfg = load_mmdl_config(None, [f"data.manifest={synth.manifest}", "model.backbone=resnet18",
                                  "model.dim=8", "model.hidden=8", "data.image_size=32",
                                  "train.epochs=1", "train.batch_size=8"])
    train_mmdl(cfg, tmp_path / "run", log=lambda m: None)
    assert main(["mmdl", "spread", str(tmp_path / "run")]) == 0
    line = capsys.readouterr().out.strip()
    assert "mean cosine" in line and "effective dims" in line
