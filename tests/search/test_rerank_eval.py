"""`radsearch evaluate --rerank`: the re-ranked scores go through the unchanged protocols."""

import json

import numpy as np
import pandas as pd
import pytest

from radsearch.cli.main import main
from radsearch.cohort import Cohort
from radsearch.evaluation import evaluate_forensic
from radsearch.evaluation.openset import evaluate_open_set
from radsearch.search.rerank_eval import (GallerySearch, RerankParams, open_set_search,
                                          rerank_for_evaluation)


@pytest.fixture(scope="module")
def cohort_and_vectors():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(30, 12))
    rows, vectors = [], []
    for s in range(30):
        for year in range(4):
            rows.append({"image": f"{s}_{year}.png", "subject": f"P{s}", "time": float(year),
                         "split": "val" if s < 15 else "test"})
            vectors.append(centres[s] + (0.5 + 0.3 * year) * rng.normal(size=12))
    return Cohort(pd.DataFrame(rows)), np.array(vectors, np.float32)


def test_lambda_one_keeps_the_cosine_order_through_the_protocol(cohort_and_vectors):
    # d* = d when λ = 1: the score "embeddings" must give exactly the plain protocol's metrics
    cohort, x = cohort_and_vectors
    arrays = rerank_for_evaluation([x], cohort, "k-reciprocal", RerankParams(k1=5, k2=2, lam=1.0))
    assert arrays[0].shape == (len(cohort), 30)
    got = evaluate_forensic(arrays[0], cohort).groups
    want = evaluate_forensic(x, cohort).groups
    for group in want:
        for metric in ("mAP", "CMC@1", "CMC@5"):
            assert got[group][metric] == pytest.approx(want[group][metric], abs=1e-12)


def test_searched_open_set_equals_the_vectorised_one_without_re_ranking(cohort_and_vectors):
    cohort, x = cohort_and_vectors
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    plain = evaluate_open_set(unit, cohort)
    searched = evaluate_open_set(unit, cohort, search=open_set_search(unit, cohort, "none"))
    for name, group in plain.groups.items():
        for key, value in group.items():
            assert searched.groups[name][key] == pytest.approx(value)


def test_non_mated_search_leaves_the_identity_out_of_re_ranking(cohort_and_vectors):
    # QE's non-mated search must expand only with other people's images
    cohort, x = cohort_and_vectors
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    gallery = np.flatnonzero(cohort.table.time.to_numpy() == 0)
    search = open_set_search(unit, cohort, "qe", RerankParams(qe_n=2, alpha=1.0))
    probe = 1                                 # P0 at year 1 (row = 4 · subject + year)
    own = cohort.table.subject.to_numpy()[gallery] == "P0"
    got = search(probe, own)
    g = unit[gallery][~own]
    sims = g @ unit[probe]
    top = np.argsort(-sims)[:2]
    q = unit[probe] + (sims[top][:, None] * g[top]).sum(0)
    np.testing.assert_allclose(got[~own], g @ (q / np.linalg.norm(q)), atol=1e-5)
    assert np.isneginf(got[own]).all()


@pytest.mark.parametrize("method", ["qe", "dba", "k-reciprocal", "kreciprocal"])
def test_cli_forensic_and_open_set_with_re_ranking(cohort_and_vectors, tmp_path, method, capsys):
    cohort, x = cohort_and_vectors
    np.save(tmp_path / "e.npy", x)
    cohort.save(tmp_path / "m.csv")
    base = ["evaluate", "--embeddings", str(tmp_path / "e.npy"), "--cohort",
            str(tmp_path / "m.csv"), "--split", "test", "--rerank", method, "--k1", "4",
            "--k2", "2"]
    assert main([*base, "--json", str(tmp_path / "f.json")]) == 0
    forensic = json.loads((tmp_path / "f.json").read_text())
    assert forensic["n_gallery"] == 15 and 0 < forensic["groups"]["all"]["mAP"] <= 1
    assert main([*base, "--protocol", "open-set", "--calibration", "isotonic",
                 "--json", str(tmp_path / "o.json")]) == 0
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["n_gallery"] == 15 and data["calibration"] == "isotonic"
    assert data["rerank"]["method"] == ("k-reciprocal" if method == "kreciprocal" else method)
    assert np.isfinite(data["groups"]["all"]["Cllr"])
    capsys.readouterr()
    assert main([*base[:-5], "--rerank", "bogus"]) == 2
    assert "use one of none, qe, dba, k-reciprocal" in capsys.readouterr().err


def test_gallery_search_none_is_cosine(cohort_and_vectors):
    _, x = cohort_and_vectors
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    search = GallerySearch(unit[:20], "none")
    np.testing.assert_allclose(search.scores(unit[25]), unit[:20] @ unit[25], atol=1e-6)


@pytest.mark.parametrize("flag,value", [("--k1", "0"), ("--lambda", "1.5"), ("--qe-n", "0")])
def test_cli_refuses_bad_parameters_in_one_line(cohort_and_vectors, tmp_path, flag, value,
                                                capsys):
    cohort, x = cohort_and_vectors
    np.save(tmp_path / "e.npy", x)
    cohort.save(tmp_path / "m.csv")
    assert main(["evaluate", "--embeddings", str(tmp_path / "e.npy"), "--cohort",
                 str(tmp_path / "m.csv"), "--rerank", "qe", flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1


def test_view_restricts_the_re_ranked_gallery(cohort_and_vectors, tmp_path):
    cohort, x = cohort_and_vectors
    table = cohort.table.copy()
    table["view"] = np.where(np.arange(len(table)) % 8 < 4, "PA", "AP")   # half the people PA
    Cohort(table).save(tmp_path / "m.csv")
    np.save(tmp_path / "e.npy", x)
    args = ["evaluate", "--embeddings", str(tmp_path / "e.npy"), "--cohort",
            str(tmp_path / "m.csv"), "--view", "PA", "--json"]
    assert main([*args, str(tmp_path / "plain.json")]) == 0
    assert main([*args, str(tmp_path / "kr.json"), "--rerank", "k-reciprocal", "--lambda",
                 "1"]) == 0
    plain, kr = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "kr"))
    assert kr["n_gallery"] == plain["n_gallery"] == 15
    assert kr["groups"]["all"]["mAP"] == pytest.approx(plain["groups"]["all"]["mAP"])
