"""`radsearch index build --dicomweb` / `index add --dicomweb` against a real Orthanc."""

from __future__ import annotations

import json

import pytest
from test_dicomweb import NAME, dx_instance, orthanc, _store  # noqa: F401 — the fixture

from radsearch.cli.main import main as cli_main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import torch

    from radsearch.synth import generate_knee
    from radsearch.training import load_config, train

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("dwrun")
    generate_knee(8, seed=0, image_size=32, out_dir=folder / "knees", workers=1)
    config = load_config(None, [
        f"data.manifest={folder / 'knees' / 'manifest.csv'}", "data.image_size=32",
        "data.resize=36", "data.workers=0", "model.embedding_dim=8", "train.epochs=1",
        "train.subjects_per_batch=4", "train.images_per_subject=2",
        "train.max_batches_per_epoch=1", "train.progress=false", "train.threads=1",
        "train.device=cpu", f"run.out_dir={folder}", "run.name=run"])
    return train(config)


def test_index_build_and_add_from_a_pacs(orthanc, tiny_run, tmp_path, capsys):  # noqa: F811
    _store(orthanc, [dx_instance("MRN001", "20150301", seed=1),
                     dx_instance("MRN002", "20160301", seed=2)])
    out = tmp_path / "pacs.index"
    assert cli_main(["index", "build", str(tiny_run), "--dicomweb", orthanc, "--out", str(out),
                     "--device", "cpu", "--json"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert result["count"] == 2 and (tmp_path / "pacs.index.dicomweb" / "manifest.csv").is_file()

    _store(orthanc, [dx_instance("MRN003", "20200505", seed=3)])
    assert cli_main(["index", "add", str(out), "--dicomweb", orthanc, "--run", str(tiny_run),
                     "--json"]) == 0
    printed = capsys.readouterr().out
    assert "1 fetched, 2 already" in printed
    result = json.loads(printed[printed.index("{"):])
    assert (result["count"], result["added"], result["already_indexed"]) == (3, 1, 2)
    assert cli_main(["index", "info", str(out), "--json"]) == 0
    info = capsys.readouterr().out
    assert NAME not in info and NAME.encode() not in b"".join(
        p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_manifest_or_dicomweb_not_both(tiny_run, tmp_path, capsys):
    assert cli_main(["index", "build", str(tiny_run), "--out", str(tmp_path / "i")]) == 2
    assert "MANIFEST or --dicomweb" in capsys.readouterr().err
    assert cli_main(["index", "build", str(tiny_run), "m.csv", "--dicomweb", "http://x",
                     "--out", str(tmp_path / "i")]) == 2
    assert "not both" in capsys.readouterr().err
