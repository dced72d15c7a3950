"""The engine end to end on a tiny synthetic knee cohort (ResNet-18 at 32², a few batches)."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from radsearch.cli.main import main as cli_main
from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, DataError, ImageReadError
from radsearch.evaluation import evaluate_forensic
from radsearch.synth import generate_knee
from radsearch.training import TrainingDivergedError, load_config, train
from radsearch.training import engine as engine_module
from radsearch.training.callbacks import read_metrics
from radsearch.training.embed import default_eval_cohort, embed_run


@pytest.fixture(scope="module")
def knee_manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("knees")
    generate_knee(16, seed=0, image_size=32, out_dir=out, workers=1)
    return out / "manifest.csv"


def make_config(manifest, out_dir, *overrides, method="AdaTriplet-AM", epochs=2):
    return load_config(None, [
        f"data.manifest={manifest}", "data.image_size=32", "data.resize=36", "data.workers=0",
        "model.embedding_dim=16", f"method.name={method}", "optim.lr=1e-3",
        f"train.epochs={epochs}", "train.subjects_per_batch=4", "train.images_per_subject=4",
        "train.max_batches_per_epoch=2", "train.progress=false", "train.threads=1",
        "val.batch_size=64",
        f"run.out_dir={out_dir}", "run.name=run", *overrides])


def final_weights(run_dir, name="last.pt"):
    state = torch.load(run_dir / name, map_location="cpu", weights_only=False)
    return torch.cat([v.flatten().float() for v in state["model"].values()])


@pytest.fixture(scope="module")
def trained_run(knee_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_dir = train(make_config(knee_manifest, out, epochs=3))
    return knee_manifest, out, run_dir


def test_run_folder_contents_and_automargin_rule(trained_run):
    _, _, run_dir = trained_run
    for name in ("config.yaml", "cohort.csv", "last.pt", "best.pt", "metrics.csv",
                 "histograms.npz", "results.json", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").iterdir())
    rows = read_metrics(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert rows[0]["epsilon"] == pytest.approx(0.25) and rows[0]["beta"] == pytest.approx(0.0)
    # The engine must call on_epoch_end once per epoch: margins of epoch e+1 follow the paper's
    # rules (K_Δ = K_an = 2) from the statistics logged for epoch e.
    for prev, row in zip(rows, rows[1:]):
        assert row["epsilon"] == pytest.approx(max(0.0, prev["mean_delta"] / 2), abs=1e-6)
        assert row["beta"] == pytest.approx(1 - (1 - prev["mean_neg_sim"]) / 2, abs=1e-6)
        assert row["batches"] == 2
    assert all(math.isfinite(r["val_mAP"]) for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    best = max(range(3), key=lambda e: rows[e]["val_mAP"])
    assert summary["best_epoch"] == best
    assert summary["best_val_mAP"] == pytest.approx(rows[best]["val_mAP"])


def test_embed_run_reproduces_validation_and_test_results(trained_run):
    _, _, run_dir = trained_run
    cohort = Cohort.load(run_dir / "cohort.csv")
    test = default_eval_cohort(run_dir)
    assert set(test.table["split"]) == {"test"}
    assert len(test) == int((cohort.table["split"] == "test").sum())
    embeddings = embed_run(run_dir, test, checkpoint="best")
    assert embeddings.shape == (len(test), 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    # results.json was written by the engine from the best checkpoint: same numbers again.
    again = evaluate_forensic(embeddings, test).groups["all"]
    saved = json.loads((run_dir / "results.json").read_text())["groups"]["all"]
    assert again["mAP"] == pytest.approx(saved["mAP"], abs=1e-6)
    # the validation metric of the best epoch is reproduced from the best checkpoint
    val = cohort.split("val")
    rows = read_metrics(run_dir)
    best = json.loads((run_dir / "summary.json").read_text())["best_epoch"]
    val_map = evaluate_forensic(embed_run(run_dir, val), val, leave_one_out=True).groups["all"]
    assert val_map["mAP"] == pytest.approx(rows[best]["val_mAP"], abs=1e-5)


def test_interrupted_run_resumes_to_the_same_weights(knee_manifest, tmp_path, monkeypatch):
    straight = train(make_config(knee_manifest, tmp_path / "a", epochs=2))
    real_step = engine_module.train_step
    calls = {"n": 0}

    def dying_step(*args, **kwargs):  # "kill -9" in the middle of the second epoch
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(engine_module, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(make_config(knee_manifest, tmp_path / "b", epochs=2))
    broken = tmp_path / "b" / "run"
    assert torch.load(broken / "last.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(engine_module, "train_step", real_step)
    resumed = train(make_config(knee_manifest, tmp_path / "b", epochs=2))
    torch.testing.assert_close(final_weights(resumed), final_weights(straight))
    a, b = read_metrics(straight), read_metrics(resumed)
    assert len(a) == len(b) == 2
    for key in ("loss", "epsilon", "beta", "val_mAP"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-6)


def test_resume_refuses_a_different_config(knee_manifest, tmp_path):
    train(make_config(knee_manifest, tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="optim.lr"):
        train(make_config(knee_manifest, tmp_path, "optim.lr=0.5", epochs=1))
    # more epochs is a legitimate continuation
    run_dir = train(make_config(knee_manifest, tmp_path, epochs=2))
    assert len(read_metrics(run_dir)) == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(knee_manifest, tmp_path, monkeypatch):
    cfg = make_config(knee_manifest, tmp_path, epochs=1)
    run_dir = train(cfg)
    good = final_weights(run_dir)
    real_step = engine_module.train_step

    def nan_step(model, method, optimizer, images, labels, **kwargs):
        return real_step(model, method, optimizer, images * float("nan"), labels, **kwargs)

    monkeypatch.setattr(engine_module, "train_step", nan_step)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, batch 1: the loss is nan.*last.pt"):
        train(make_config(knee_manifest, tmp_path, epochs=2))
    torch.testing.assert_close(final_weights(run_dir), good)
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 1


def test_nan_validation_embeddings_stop_like_a_nan_loss(knee_manifest, tmp_path, monkeypatch):
    run_dir = train(make_config(knee_manifest, tmp_path, epochs=1))
    good = final_weights(run_dir)
    real_embed = engine_module.embed_cohort

    def nan_embed(*args, **kwargs):
        return real_embed(*args, **kwargs) * np.nan

    monkeypatch.setattr(engine_module, "embed_cohort", nan_embed)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, validation: .*NaN.*last.pt"):
        train(make_config(knee_manifest, tmp_path, epochs=2))
    torch.testing.assert_close(final_weights(run_dir), good)


@pytest.mark.parametrize("workers", [0, 1])
def test_missing_image_mid_epoch_names_the_file(knee_manifest, tmp_path, workers):
    folder = tmp_path / "copy"
    shutil.copytree(knee_manifest.parent, folder)
    table = pd.read_csv(folder / "manifest.csv", dtype=str)
    victim = folder / table.loc[table["split"] == "train", "image"].iloc[5]
    victim.unlink()
    with pytest.raises(ImageReadError) as info:
        train(make_config(folder / "manifest.csv", tmp_path / "runs", f"data.workers={workers}",
                          "train.max_batches_per_epoch=50", epochs=1))
    message = str(info.value)
    assert victim.name in message and "Traceback" not in message and "\n" not in message


def test_cohort_without_repeat_subjects_is_refused(knee_manifest, tmp_path):
    table = pd.read_csv(knee_manifest, dtype=str)
    single = table.groupby("subject").head(1).copy()
    single["image"] = [str(knee_manifest.parent / p) for p in single["image"]]
    path = tmp_path / "single.csv"
    single.to_csv(path, index=False)
    with pytest.raises(DataError, match="two or more images"):
        train(make_config(path, tmp_path / "runs"))


def test_empty_val_split_gets_a_subject_grouped_split_and_no_split_column_too(knee_manifest,
                                                                              tmp_path):
    table = pd.read_csv(knee_manifest, dtype=str)
    table["image"] = [str(knee_manifest.parent / p) for p in table["image"]]
    no_val = table[table["split"] != "val"]
    no_val.to_csv(tmp_path / "noval.csv", index=False)
    no_split = table.drop(columns=["split"])
    no_split.to_csv(tmp_path / "nosplit.csv", index=False)
    for name in ("noval", "nosplit"):
        cfg = make_config(tmp_path / f"{name}.csv", tmp_path / name, "data.val_fraction=0.25",
                          "data.test_fraction=0.25", epochs=1)
        from radsearch.training.cohorts import load_training_cohort

        cohort = load_training_cohort(cfg)
        per_subject = cohort.table.groupby("subject")["split"].nunique()
        assert (per_subject == 1).all()  # grouped by subject: no identity leaks across splits
        assert (cohort.table["split"] == "val").any()
    only_train = table.assign(split="train")
    only_train.to_csv(tmp_path / "train_only.csv", index=False)
    with pytest.raises(DataError, match="val split is empty"):
        train(make_config(tmp_path / "train_only.csv", tmp_path / "t", "data.val_fraction=0",
                          epochs=1))


def test_soft_triplet_proxies_are_optimised(knee_manifest, tmp_path):
    run_dir = train(make_config(knee_manifest, tmp_path, method="SoftTriplet", epochs=1))
    state = torch.load(run_dir / "last.pt", weights_only=False)
    proxies = [v for v in state["method"].values() if v.dim() == 2]
    assert proxies, "SoftTriplet has class proxies"
    n_train_subjects = Cohort.load(run_dir / "cohort.csv").split("train").table["subject"].nunique()
    assert sum(p.numel() for p in proxies) == n_train_subjects * 10 * 16  # 10 centres per subject
    groups = state["optimizer"]["param_groups"]
    assert len(groups) == 2 and len(groups[1]["params"]) >= 1  # proxies have an Adam state


def test_cli_train_and_embed(knee_manifest, tmp_path, capsys):
    args = [f"data.manifest={knee_manifest}", "data.image_size=32", "data.resize=36",
            "data.workers=0", "model.embedding_dim=8", "train.epochs=1",
            "train.subjects_per_batch=4", "train.max_batches_per_epoch=1",
            "train.progress=false", "train.threads=1", f"run.out_dir={tmp_path}", "run.name=cli"]
    config = tmp_path / "c.yaml"
    config.write_text("method:\n  name: Triplet\n")
    assert cli_main(["train", str(config), *args]) == 0
    printed = capsys.readouterr().out
    for row in ("Triplet (trained)", "chance (random ranking)", "raw pixels", "untrained network"):
        assert row in printed, row
    assert "precision: " in printed
    out = tmp_path / "emb.npz"
    assert cli_main(["embed", str(tmp_path / "cli"), str(knee_manifest), "--out", str(out)]) == 0
    saved = np.load(out, allow_pickle=False)
    assert saved["embeddings"].shape == (len(Cohort.load(knee_manifest)), 8)
    assert cli_main(["train", str(config), *args, "train.epoch=3"]) == 2
    assert "did you mean train.epochs" in capsys.readouterr().err


def test_resumed_run_says_so_and_metrics_csv_keeps_its_formatting(knee_manifest, tmp_path):
    notices = []
    straight = train(make_config(knee_manifest, tmp_path / "a", epochs=2))
    train(make_config(knee_manifest, tmp_path / "b", epochs=1), report=notices.append)
    assert not any("resuming" in n for n in notices)
    resumed = train(make_config(knee_manifest, tmp_path / "b", epochs=2), report=notices.append)
    assert any("resuming" in n and "at epoch 2 of 2" in n for n in notices), notices
    train(make_config(knee_manifest, tmp_path / "b", epochs=2), report=notices.append)
    assert "has finished its 2 epochs" in notices[-1] and "epoch 3 of 2" not in notices[-1]
    # the same file, byte for byte in its integer columns, as an unbroken run
    lines_a = (straight / "metrics.csv").read_text().splitlines()
    lines_b = (resumed / "metrics.csv").read_text().splitlines()
    assert lines_a[0] == lines_b[0]
    for a, b in zip(lines_a[1:], lines_b[1:]):
        epoch_a, _, batches_a = a.split(",")[:3]
        epoch_b, _, batches_b = b.split(",")[:3]
        assert (epoch_a, batches_a) == (epoch_b, batches_b)
        assert "." not in epoch_b and "." not in batches_b


def test_best_checkpoint_has_no_optimiser_state_as_the_docs_say(trained_run):
    from pathlib import Path

    _, _, run_dir = trained_run
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
    last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert "optimizer" not in best and "optimizer" in last
    docs = (Path(__file__).parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    line = next(l for l in docs.splitlines() if "best.pt" in l)
    assert "no optimiser" in line, line


def test_read_only_run_folder_is_one_line_and_exit_2(knee_manifest, tmp_path, capsys,
                                                     monkeypatch):
    import errno
    from pathlib import Path

    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    config = tmp_path / "c.yaml"
    config.write_text("method:\n  name: Triplet\n")
    code = cli_main(["train", str(config), f"data.manifest={knee_manifest}", "data.workers=0",
                     "train.epochs=1", "train.progress=false", f"run.out_dir={tmp_path / 'ro'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "read-only" in err and "Traceback" not in err


def test_embed_to_a_full_disk_is_one_line_and_exit_2(trained_run, tmp_path, capsys,
                                                     monkeypatch):
    import errno

    import radsearch.io as io_module

    knee_manifest, _, run_dir = trained_run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "e.npy"))

    monkeypatch.setattr(io_module.tempfile, "mkstemp", full)
    code = cli_main(["embed", str(run_dir), str(knee_manifest), "--out", str(tmp_path / "e.npy")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "full" in err


def test_load_embedder_gives_embed_run_vectors_for_loose_files(trained_run):
    from radsearch.images import read_image
    from radsearch.training.embed import load_embedder

    _, _, run_dir = trained_run
    test = default_eval_cohort(run_dir)
    want = embed_run(run_dir, test)
    embedder = load_embedder(run_dir, device="cpu", batch_size=5)
    sides = list(test.table["side"]) if test.has("side") else None
    got = embedder.embed_paths(test.image_paths(), sides=sides)
    np.testing.assert_allclose(got, want, atol=1e-5)
    arrays = embedder.embed_arrays([read_image(p) for p in test.image_paths()[:3]], sides[:3])
    np.testing.assert_allclose(arrays, want[:3], atol=1e-5)
    assert embedder.embedding_dim == want.shape[1]


def test_evaluate_run_shows_the_reference_rows(trained_run, tmp_path, capsys, monkeypatch):
    from radsearch.training.rundir import RunDir

    _, _, run_dir = trained_run
    out = tmp_path / "result.json"
    assert cli_main(["evaluate", str(run_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    references = json.loads((run_dir / "references.json").read_text())
    assert set(references) == {"chance (random ranking)", "raw pixels", "untrained network"}
    data = json.loads(out.read_text())
    assert data["references"] == references
    lines = printed.splitlines()
    for name in ("AdaTriplet-AM (trained)", *references):
        row = next(line for line in lines if line.startswith(f"| {name} |"))
        result = data if name.endswith("(trained)") else references[name]
        metrics = result["groups"]["all"]
        assert row.split(" | ")[2] == f"{100 * metrics['mAP']:.1f}", row  # n_queries, mAP, …
    # a run without references.json: one line says so, the JSON key is empty
    monkeypatch.setattr(RunDir, "references", property(lambda self: self.path / "absent.json"))
    assert cli_main(["evaluate", str(run_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert [l for l in printed.splitlines() if "reference" in l] == [
        f"no reference rows: {run_dir / 'absent.json'} does not exist (`radsearch train` writes "
        "it when the run has a test split)."]
    assert json.loads(out.read_text())["references"] == {}


def test_resume_removes_checkpoint_temporaries_of_a_killed_run(knee_manifest, tmp_path,
                                                                monkeypatch):
    import os
    import subprocess
    import sys
    import time

    run_dir = train(make_config(knee_manifest, tmp_path, epochs=1))
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid that no longer runs
    child.wait()
    stale = [run_dir / f".last.pt.{child.pid}.k9x1.tmp", run_dir / f".best.pt.{child.pid}.k9x2.tmp",
             run_dir / ".last.pt.legacy.tmp"]  # older writers: no pid, stale after an hour
    live = run_dir / f".last.pt.{os.getpid()}.live.tmp"  # a writer that still runs: kept
    for path in (*stale, live):
        path.write_bytes(b"\0" * 1024)
    old = time.time() - 2 * 3600
    os.utime(stale[2], (old, old))
    seen = {}
    real_step = engine_module.train_step

    def first_step(*args, **kwargs):  # gone when training starts, not only at the next save
        seen.setdefault("left", sorted(p.name for p in stale if p.exists()))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(engine_module, "train_step", first_step)
    notices = []
    train(make_config(knee_manifest, tmp_path, epochs=2), report=notices.append)
    assert seen["left"] == []
    assert live.exists()
    assert any("removed 3 temporary file(s)" in n for n in notices), notices
