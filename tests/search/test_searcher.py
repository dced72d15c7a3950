"""Searcher and the index build end to end with a tiny run: ranking equals brute force over the
run's own embeddings, by-subject collapsing, fusion, resume after interruption, fingerprints."""

import json

import numpy as np
import pandas as pd
import pytest

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError
from radsearch.index import FingerprintMismatchError, build_index, open_index
from radsearch.search import Searcher
from radsearch.training.embed import embed_run


@pytest.fixture(scope="module")
def built(tiny_run, tmp_path_factory):
    run, manifest = tiny_run
    out = tmp_path_factory.mktemp("ix") / "knees.index"
    report = build_index(run, manifest, out, chunk=40, progress=False)
    return run, manifest, out, report


def test_index_holds_the_runs_embeddings(built):
    run, manifest, out, report = built
    cohort = Cohort.load(manifest)
    assert report["added"] == len(cohort) and report["count"] == len(cohort)
    index = open_index(out)
    reference = embed_run(run, cohort)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    ids = index.ids()
    items = index.items(ids)
    order = {str(p.resolve()): i for i, p in enumerate(cohort.image_paths())}
    rows = [order[p] for p in items.image]
    np.testing.assert_allclose(index.get_vectors(ids), reference[rows], atol=1e-4)
    assert index.header["fingerprint"]["image_size"] == 32
    saved = json.loads((run / "preprocessing.json").read_text())
    assert index.header["fingerprint"]["normalisation"] == [saved["mean"], saved["std"]]


def test_search_by_image_equals_brute_force_and_by_subject_collapses(built):
    run, manifest, out, _ = built
    cohort = Cohort.load(manifest)
    searcher = Searcher(out, run)
    query = 3
    result = searcher.search([cohort.image_paths()[query]], k=5,
                             sides=[cohort.table.side[query]])[0]
    emb = embed_run(run, cohort)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb[query]
    expected = np.argsort(-sims, kind="stable")[:5]
    assert [h.image for h in result.hits] == [str(cohort.image_paths()[i].resolve())
                                              for i in expected]
    np.testing.assert_allclose([h.score for h in result.hits], sims[expected], atol=1e-4)
    assert result.hits[0].rank == 1 and result.decision is None
    people = searcher.search([cohort.image_paths()[query]], k=4, by="subject",
                             sides=[cohort.table.side[query]])[0]
    subjects = [h.subject for h in people.hits]
    assert len(subjects) == 4 == len(set(subjects))
    best = pd.Series(sims).groupby(cohort.table.subject).max().sort_values(ascending=False)
    assert subjects == best.index[:4].tolist()


def test_filters_exclusion_and_fusion(built):
    run, manifest, out, _ = built
    cohort = Cohort.load(manifest)
    searcher = Searcher(out, run)
    paths = cohort.image_paths()[:2]
    subject = cohort.table.subject[0]
    result = searcher.search(paths[:1], k=8, filters=["time<=2"], exclude_subjects=[subject],
                             sides=["L"])[0]
    assert len(result.hits) == 8
    assert all(h.time <= 2 and h.subject != subject for h in result.hits)
    fused = searcher.search(paths, k=3, fuse=True, sides=["L", "L"])
    emb = searcher.embed(paths, ["L", "L"])
    mean = emb.mean(axis=0)
    mean /= np.linalg.norm(mean)
    direct = searcher.search_vectors(mean[None], k=3)[0]
    assert len(fused) == 1
    np.testing.assert_allclose([h.score for h in fused[0].hits], [h.score for h in direct.hits],
                               atol=1e-5)   # (an untrained net's near-ties may swap ids)
    with pytest.raises(ConfigError, match="--by"):
        searcher.search(paths[:1], by="person")


def test_build_resumes_and_refuses_another_model(built, tiny_run, tmp_path):
    run, manifest, out, _ = built
    again = build_index(run, manifest, out, progress=False)
    assert again["added"] == 0 and again["already_indexed"] == again["count"]
    # a half-built index (first chunk committed) continues where it stopped
    cohort = Cohort.load(manifest)
    first = build_index(run, manifest, tmp_path / "half", only=["time<=1"], progress=False)
    rest = build_index(run, manifest, tmp_path / "half", progress=False)
    assert first["added"] + rest["added"] == len(cohort) == rest["count"]
    index = open_index(tmp_path / "half")
    index.header["fingerprint"]["image_size"] = 64
    with pytest.raises(FingerprintMismatchError, match="image_size"):
        Searcher(index, run)


def test_several_arrays_embed_like_their_files(built):
    """Arrays (e.g. uploads decoded by the service) in one call: each embeds like its file."""
    from radsearch.images import read_image

    run, manifest, out, _ = built
    searcher = Searcher(out, run)
    paths = Cohort.load(manifest).image_paths()[:3]
    arrays = [read_image(p) for p in paths]
    np.testing.assert_allclose(searcher.embed(arrays, ["L"] * 3), searcher.embed(paths, ["L"] * 3),
                               atol=1e-5)
    ids = open_index(out).ids()
    assert len(open_index(out).items(np.concatenate([ids[:2], [12345]]))) == 2
