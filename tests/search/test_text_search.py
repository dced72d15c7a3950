"""Text → image search end to end on a tiny MMDL run: the embedder against the trainer's own
embedding path, search results against a NumPy brute force, the CLI (`search --text`, `mmdl
text-eval`), class-based P@k through the index against ``text_to_image_precision``, and one-line
refusals (empty text, a run without a report encoder)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radsearch.cli.main import main
from radsearch.cohort import Cohort

QUERY = "small left pleural effusion"


def _train(root: Path, name: str, overrides: list[str]) -> Path:
    from radsearch.training.mmdl import load_mmdl_config, train_mmdl

    cfg = load_mmdl_config(None, [f"data.manifest={root / 'chest' / 'manifest.csv'}",
                                  "model.backbone=resnet18", "model.dim=16", "model.hidden=16",
                                  "data.image_size=32", "train.epochs=1", "train.batch_size=16",
                                  *overrides])
    train_mmdl(cfg, root / name, log=lambda m: None)
    return root / name


@pytest.fixture(scope="module")
def text_index(tmp_path_factory):
    """(MMDL run with reports, its manifest, index of its training split)."""
    from radsearch.synth import generate_chest

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("text")
    generate_chest(16, seed=1, image_size=32, out_dir=root / "chest", workers=1)
    run = _train(root, "run", [])
    index = root / "train.index"
    assert main(["index", "build", str(run), str(root / "chest" / "manifest.csv"),
                 "--split", "train", "--out", str(index)]) == 0
    return run, root / "chest" / "manifest.csv", index


def test_embedder_equals_the_trainers_embeddings(text_index):
    from radsearch.index.embedder import MMDLEmbedder, load_embedder
    from radsearch.images import read_image
    from radsearch.training.mmdl import embed_all, load_images, load_mmdl_run

    run, manifest, _ = text_index
    cohort = Cohort.load(manifest)
    embedder = load_embedder(run, device="cpu")
    assert isinstance(embedder, MMDLEmbedder) and embedder.has_text
    model, config, _ = load_mmdl_run(run, cohort)
    reference, _ = embed_all(model, load_images(cohort, 32), "common", torch.device("cpu"))
    vectors = embedder.embed_cohort(cohort)
    assert vectors.shape == (len(cohort), 16) and embedder.dim == 16
    np.testing.assert_allclose(vectors, reference, atol=1e-6)
    # query arrays (as the service decodes uploads) take the same preprocessing as files
    paths = cohort.image_paths()[:3]
    np.testing.assert_allclose(embedder.embed([read_image(p) for p in paths]), reference[:3],
                               atol=1e-6)
    texts = [QUERY, "no acute cardiopulmonary process"]
    expected = torch.nn.functional.normalize(model.forward_text(texts)[0].detach(), dim=1)
    np.testing.assert_allclose(embedder.embed_text(texts), expected.numpy(), atol=1e-6)
    assert embedder.fingerprint["text_encoder"] == model.text_encoder.describe()
    assert embedder.fingerprint["model"] == "mmdl:resnet18"


def test_search_text_equals_brute_force(text_index):
    from radsearch.search import Searcher
    from radsearch.training.mmdl import embed_all, load_images, load_mmdl_run

    run, manifest, index = text_index
    cohort = Cohort.load(manifest)
    train = cohort.split("train")
    model, _, _ = load_mmdl_run(run, cohort)
    images, _ = embed_all(model, load_images(train, 32), "common", torch.device("cpu"))
    query = torch.nn.functional.normalize(model.forward_text([QUERY])[0].detach(), dim=1)
    scores = images @ query.numpy()[0]
    order = np.argsort(-scores, kind="stable")[:5]
    result = Searcher(index, run, device="cpu").search_text([QUERY], k=5)[0]
    assert result.query == QUERY and result.by == "image" and result.decision is None
    assert [Path(h.image) for h in result.hits] == [p.resolve() for p in
                                                    np.array(train.image_paths())[order]]
    np.testing.assert_allclose([h.score for h in result.hits], scores[order], atol=1e-5)
    assert all(h.log10_lr is None for h in result.hits)


def test_cli_search_text(text_index, capsys):
    run, _, index = text_index
    capsys.readouterr()
    assert main(["search", str(index), "--run", str(run), "--text", QUERY, "--k", "4",
                 "--filter", "view=PA", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 1 and results[0]["query"] == QUERY
    hits = results[0]["hits"]
    assert len(hits) == 4 and all(h["view"] == "PA" for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert main(["search", str(index), "--text", QUERY, "--k", "2"]) == 0   # run from the index
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"query: {QUERY}" and "labels" in lines[1] and len(lines) == 4


@pytest.mark.parametrize("args, message", [
    (["--text", "   "], "text query 1: empty"),
    (["--text", "x" * 2001], "2001 characters; at most 2000"),
    ([], "no query"),
    (["--text", QUERY, "--side", "L"], "--side and --fuse apply to image queries"),
])
def test_cli_text_refusals_are_one_line(text_index, capsys, args, message):
    run, _, index = text_index
    capsys.readouterr()
    assert main(["search", str(index), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "x" * 50 not in err                    # the query text is never echoed


def test_runs_without_a_report_encoder_refuse_text(text_index, tiny_run, tmp_path, capsys):
    from radsearch.index.embedder import NoTextEncoder, load_embedder

    run, _, _ = text_index
    image_only = load_embedder(_train(run.parent, "image-only", ["data.report_fraction=0"]),
                               device="cpu")
    assert not image_only.has_text and image_only.fingerprint["text_encoder"] is None
    with pytest.raises(NoTextEncoder, match="no report encoder"):
        image_only.embed_text([QUERY])
    forensic, manifest = tiny_run
    index = tmp_path / "knees.index"
    assert main(["index", "build", str(forensic), str(manifest), "--only", "time=0",
                 "--out", str(index)]) == 0
    capsys.readouterr()
    assert main(["search", str(index), "--text", QUERY]) == 2
    err = capsys.readouterr().err.strip()
    assert "this index was built with a run that has no report encoder" in err
    assert len(err.splitlines()) == 1


def test_text_precision_through_the_index_equals_the_trainers(text_index, capsys):
    from radsearch.search import Searcher
    from radsearch.search.text_eval import text_search_precision

    run, manifest, index = text_index
    saved = json.loads((run / "results.json").read_text())["text_to_image"]
    figures = text_search_precision(Searcher(index, run, device="cpu"), Cohort.load(manifest))
    assert figures["n_queries"] == saved["n_queries"] > 0
    for k in (1, 5, 10):
        assert figures[f"P@{k}"] == pytest.approx(saved[f"P@{k}"], abs=1e-12)
    capsys.readouterr()
    assert main(["mmdl", "text-eval", str(run), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    for k in (1, 5, 10):
        assert both["index"][f"P@{k}"] == pytest.approx(both["reference"][f"P@{k}"], abs=1e-12)
        assert both["index"][f"P@{k}"] == pytest.approx(saved[f"P@{k}"], abs=1e-12)


def test_text_precision_by_hand_with_a_tie(tmp_path):
    """Four archived images on the unit circle, two report queries; P@k counted by hand, a tie
    crossing k counted pessimistically (as radsearch.evaluation ranks), chance = share relevant."""
    import pandas as pd

    from radsearch.index import create_index
    from radsearch.search import Searcher
    from radsearch.search.text_eval import text_search_precision

    a = np.deg2rad([0.0, 60.0, 60.0, 150.0])          # items 1 and 2 tie for any query
    vectors = np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)
    labels = ["Edema", "Pneumonia", "Edema", "Pneumonia"]
    with create_index(tmp_path / "i", 2) as index:
        index.add(vectors, [{"image": f"img{i}.png", "subject": f"S{i}", "labels": labels[i]}
                            for i in range(4)])

    class Text:                       # report branch stand-in: each report has a fixed vector
        has_text = True

        def embed_text(self, texts):
            return np.array([[1.0, 0.0] if t == "edema" else [0.0, 1.0] for t in texts],
                            np.float32)

    searcher = Searcher(tmp_path / "i")
    searcher.embedder = Text()
    cohort = Cohort(pd.DataFrame({"image": ["q0.png", "q1.png"], "subject": ["Q0", "Q1"],
                                  "time": [0.0, 0.0], "split": ["test", "test"],
                                  "labels": ["Edema", "Pneumonia"],
                                  "report": ["edema", "pneumonia"]}))
    got = text_search_precision(searcher, cohort, ks=(1, 2, 3))
    # "edema" (0°): item 0 (Edema), then the tie {1 Pneumonia, 2 Edema} at ranks 2-3, then item 3.
    #   P@1 = 1, P@2 = 1/2 (the tie ends at rank 3), P@3 = 2/3.
    # "pneumonia" (90°): the tie {1, 2} at ranks 1-2, then 3 (Pneumonia, cos 60°), then 0.
    #   P@1 = 0 (the tie ends at rank 2), P@2 = 1/2, P@3 = 2/3.
    assert got["P@1"] == pytest.approx((1 + 0) / 2)
    assert got["P@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert got["P@3"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert got["chance"] == pytest.approx(0.5) and got["n_queries"] == 2
