"""The CLI as a user runs it: build → search → calibrate → search again (LRs and "no match"),
JSON output, evaluate --protocol open-set, and one-line refusals with exit code 2."""

import json

import numpy as np
import pytest

from radsearch.cli.main import main
from radsearch.cohort import Cohort


@pytest.fixture(scope="module")
def cli_index(tiny_run, tmp_path_factory):
    run, manifest = tiny_run
    out = tmp_path_factory.mktemp("cli") / "knees.index"
    # gallery = first visits of half the people; the other half calibrates
    cohort = Cohort.load(manifest)
    subjects = sorted(set(cohort.table.subject))
    gallery = cohort.subset(cohort.table.subject.isin(subjects[:6]).to_numpy())
    held_out = cohort.subset(~cohort.table.subject.isin(subjects[:6]).to_numpy())
    gallery.save(out.parent / "gallery.csv")
    held_out.save(out.parent / "held_out.csv")
    assert main(["index", "build", str(run), str(out.parent / "gallery.csv"), "--out", str(out),
                 "--only", "time=0", "--graph", "5", "--chunk", "4"]) == 0
    return run, out, gallery, held_out


def test_build_info_verify(cli_index, capsys):
    run, out, gallery, _ = cli_index
    capsys.readouterr()
    assert main(["index", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == int((gallery.table.time == 0).sum())
    assert info["backend"] == "faiss" and info["graph_k"] == 5
    assert main(["index", "verify", str(out)]) == 0
    assert "ok" in capsys.readouterr().out


def test_search_calibrate_and_no_match(cli_index, capsys):
    run, out, gallery, held_out = cli_index
    follow_up = gallery.subset((gallery.table.time > 0).to_numpy())
    query = str(follow_up.image_paths()[0])
    capsys.readouterr()
    assert main(["search", str(out), query, "--k", "3", "--by", "subject", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    hits = results[0]["hits"]
    assert len(hits) == 3 and len({h["subject"] for h in hits}) == 3
    assert results[0]["decision"] is None and hits[0]["log10_lr"] is None
    assert main(["index", "calibrate", str(out), str(out.parent / "held_out.csv")]) == 0
    text = capsys.readouterr().out
    assert "FPIR 0.01: T = " in text and "Cllr" in text
    stranger = str(held_out.image_paths()[0])
    assert main(["search", str(out), query, stranger, "--k", "2", "--fpir", "0.1"]) == 0
    text = capsys.readouterr().out
    assert "log10LR" in text and "decision:" in text
    info = json.loads((out / "header.json").read_text())["calibration"]
    t = info["thresholds"][0]["threshold"]
    assert main(["search", str(out), stranger, "--json", "--fpir", "0.1"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    expected = result["hits"][0]["score"] >= t
    assert result["decision"]["match"] == expected
    if not expected:
        assert result["decision"]["message"].startswith("no candidate above T")
    assert f"N = {info['n_gallery']}" in result["decision"]["message"]
    model = info["model"]                     # the default map: isotonic (PAV), stored points
    assert model["kind"] == "isotonic"
    p = np.interp(result["hits"][0]["score"], model["x"], model["p"])
    assert result["hits"][0]["log10_lr"] == pytest.approx(np.log10(p / (1 - p)), rel=1e-6)
    assert main(["index", "calibrate", str(out), str(out.parent / "held_out.csv"),
                 "--method", "logistic"]) == 0
    lr = json.loads((out / "header.json").read_text())["calibration"]["model"]
    capsys.readouterr()
    assert main(["search", str(out), stranger, "--json", "--fpir", "0.1"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    want = (lr["coef"] * result["hits"][0]["score"] + lr["intercept"]) / np.log(10)
    assert result["hits"][0]["log10_lr"] == pytest.approx(want, rel=1e-6)


def test_rerank_options_return_the_shortlist_reordered(cli_index, capsys):
    run, out, gallery, _ = cli_index
    query = str(gallery.image_paths()[1])
    for method in ("qe", "dba", "k-reciprocal"):
        capsys.readouterr()
        assert main(["search", str(out), query, "--k", "4", "--rerank", method, "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)[0]["hits"]
        scores = [h["score"] for h in hits]
        assert len(hits) == 4 and scores == sorted(scores, reverse=True)


def test_evaluate_open_set_protocol(tiny_run, tmp_path, capsys):
    run, manifest = tiny_run
    assert main(["evaluate", str(run), "--cohort", str(manifest), "--protocol", "open-set",
                 "--json", str(tmp_path / "os.json"), "--det", str(tmp_path / "det.png")]) == 0
    data = json.loads((tmp_path / "os.json").read_text())
    assert data["protocol"] == "open-set" and "all" in data["groups"]
    assert "FNIR@FPIR=0.1" in data["groups"]["all"] and (tmp_path / "det.png").stat().st_size
    assert "years" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["search", "{out}", "missing.png"], "query image not found"),
    (["search", "{out}", "{img}", "--by", "person"], "--by"),
    (["search", "{out}", "{img}", "--filter", "colour=red"], "unknown field"),
    (["search", "{tmp}/nothing", "{img}"], "index folder not found"),
    (["index", "build", "{run}", "{tmp}/none.csv", "--out", "{tmp}/x"], "manifest not found"),
    (["index", "remove", "{out}"], "nothing to remove"),
])
def test_refusals_are_one_line_exit_2(cli_index, tmp_path, capsys, argv, message):
    run, out, gallery, _ = cli_index
    fill = {"out": str(out), "img": str(gallery.image_paths()[0]), "tmp": str(tmp_path),
            "run": str(run)}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
