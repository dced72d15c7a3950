"""`radsearch evaluate --embeddings … --cohort …`: JSON output and refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from radsearch.cli.main import main
from radsearch.cohort import Cohort
from radsearch.evaluation import evaluate_forensic


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"image": f"{s}_{y}.png", "subject": f"{10_000_000 + s}", "time": 60 + y + 0.2,
             "view": "PA", "split": "test" if s % 2 else "train",
             "labels": ["Edema", "Edema|Effusion", "No Finding"][(s + y) % 3]}
            for s in range(20) for y in range(3)]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    emb = rng.normal(size=(len(rows), 8)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, emb)
    return tmp_path, manifest, path, emb


def test_forensic_json_has_the_documented_keys(files, capsys):
    tmp, manifest, emb_path, emb = files
    out = tmp / "result.json"
    assert main(["evaluate", "--embeddings", str(emb_path), "--cohort", str(manifest),
                 "--protocol", "forensic", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CMC@1_first" in printed and "All" in printed
    data = json.loads(out.read_text())
    assert data["protocol"] == "forensic" and data["n_gallery"] == 20
    assert data["n_skipped_queries"] == 0
    assert "references" not in data  # reference rows belong to a run folder, not to --embeddings
    assert list(data["groups"]) == ["1", "2", "all"]
    for key in ("n_queries", "mAP", "mAP@R", "CMC@1", "CMC@5", "CMC@1_first", "CMC@5_first"):
        assert key in data["groups"]["all"]
    expected = evaluate_forensic(emb, Cohort.load(manifest))
    assert data["groups"]["all"]["mAP"] == pytest.approx(expected.groups["all"]["mAP"])


def test_diagnostic_command_and_split_option(files, tmp_path):
    tmp, manifest, emb_path, _ = files
    out = tmp / "diag.json"
    assert main(["evaluate", "-e", str(emb_path), "-c", str(manifest), "-p", "diagnostic",
                 "--json", str(out), "--table", str(tmp / "tab")]) == 0
    data = json.loads(out.read_text())
    assert data["protocol"] == "diagnostic" and "Edema" in data["groups"]
    assert data["settings"]["normalisation"] == "dscmr"
    assert (tmp / "tab.md").exists() and (tmp / "tab.csv").exists()
    assert main(["evaluate", "-e", str(emb_path), "-c", str(manifest), "--split", "test",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n_gallery"] == 10


def test_repeated_embeddings_evaluate_a_fold_ensemble(files):
    tmp, manifest, emb_path, emb = files
    second = tmp / "fold2.npy"
    np.save(second, np.random.default_rng(9).normal(size=emb.shape).astype(np.float32))
    out = tmp / "ens.json"
    assert main(["evaluate", "-e", str(emb_path), "-e", str(second), "-c", str(manifest),
                 "--json", str(out)]) == 0
    expected = evaluate_forensic([emb, np.load(second)], Cohort.load(manifest))
    data = json.loads(out.read_text())
    assert data["groups"]["all"]["mAP"] == pytest.approx(expected.groups["all"]["mAP"])
    assert data["settings"]["similarity"] == "mean cosine of 2 models"


@pytest.mark.parametrize("problem, message", [
    ("rows", "59 rows but the cohort has 60"),
    ("nan", "row 5 contains NaN"),
    ("labels", "no 'labels' column"),
    ("protocol", "--protocol"),
])
def test_refusals_are_one_clear_line(files, capsys, problem, message):
    tmp, manifest, emb_path, emb = files
    args = ["evaluate", "-e", str(emb_path), "-c", str(manifest)]
    if problem == "rows":
        np.save(emb_path, emb[:-1])
    elif problem == "nan":
        emb = emb.copy()
        emb[5, 0] = np.nan
        np.save(emb_path, emb)
    elif problem == "labels":
        pd.read_csv(manifest).drop(columns=["labels"]).to_csv(manifest, index=False)
        args += ["-p", "diagnostic"]
    else:
        args += ["-p", "kinship"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
