"""The demo end to end at toy scale, and the report's top-k matches against brute force."""

import numpy as np
import pandas as pd
from PIL import Image

from radsearch.cohort import Cohort
from radsearch.reporting.demo import run_demo
from radsearch.reporting.figures import top_matches, true_match_rank


def test_demo_writes_report_with_table_and_figures(tmp_path):
    report = run_demo(tmp_path / "demo", overrides=[
        "data.synth.n_subjects=20", "data.synth.image_size=40", "data.image_size=32",
        "data.resize=36", "train.epochs=2", "train.max_batches_per_epoch=2",
        "train.subjects_per_batch=4", "train.progress=false", "model.embedding_dim=16",
        "train.batches_per_epoch=2", "train.threads=1"])
    text = report.read_text()
    assert report == tmp_path / "demo" / "report.md"
    for method in ("AdaTriplet-AM", "Triplet", "untrained network", "raw pixels",
                   "chance (random ranking)"):
        assert f"| mAP | {method} |" in text
    for name in ("learning", "margins", "distributions", "queries"):
        assert f"![{name}]({name}.png)" in text
        with Image.open(tmp_path / "demo" / f"{name}.png") as image:
            assert image.width > 400 and image.height > 200
            # not a blank canvas
            assert np.asarray(image.convert("L")).std() > 10


def test_top_matches_equal_brute_force_ranking():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"image": [f"i{k}.png" for k in range(12)],
                          "subject": [f"s{k // 3}" for k in range(12)],
                          "time": [0.0, 1.0, 4.0] * 4})
    cohort = Cohort(table)
    embeddings = rng.normal(size=(12, 5))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    matches = top_matches(embeddings, cohort, n_queries=4, k=3)
    gallery = [0, 3, 6, 9]
    assert sorted(q for q, _ in matches) == [2, 5, 8, 11]  # every latest visit (4 years)
    for query, hits in matches:
        sims = {g: float(embeddings[query] @ embeddings[g]) for g in gallery}
        assert hits == sorted(gallery, key=lambda g: -sims[g])[:3]


def test_true_match_rank_counts_gallery_images_more_similar_than_the_match():
    table = pd.DataFrame({"image": [f"i{k}.png" for k in range(6)],
                          "subject": ["a", "a", "b", "b", "c", "c"],
                          "time": [0.0, 2.0] * 3})
    cohort = Cohort(table)
    # query row 1 (subject a); gallery rows 0 (a), 2 (b), 4 (c); similarities 0.1, 0.9, 0.5
    embeddings = np.zeros((6, 3))
    embeddings[1] = [1, 0, 0]
    embeddings[0] = [0.1, 1, 0]
    embeddings[2] = [0.9, 0, 1]
    embeddings[4] = [0.5, 1, 1]
    assert true_match_rank(embeddings, cohort, 1) == 3
    embeddings[0] = [2.0, 0, 0]
    assert true_match_rank(embeddings, cohort, 1) == 1
