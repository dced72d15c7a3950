"""`save_embeddings`: the embedding files of `radsearch embed`, written by the Python API."""

import numpy as np
import pandas as pd
import pytest

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError
from radsearch.training.embed import save_embeddings


@pytest.fixture()
def cohort(tmp_path):
    table = pd.DataFrame({"image": ["a/1.png", "b/2.png", str(tmp_path / "c.png")],
                          "subject": ["S1", "S2", "S1"], "time": [0.0, 1.0, 2.0]})
    return Cohort(table, root=tmp_path, source="manifest.csv")


def test_npz_holds_the_vectors_and_each_rows_image_and_subject(cohort, tmp_path):
    vectors = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    out = save_embeddings(tmp_path / "out" / "emb.npz", vectors, cohort)
    saved = np.load(out, allow_pickle=False)
    np.testing.assert_array_equal(saved["embeddings"], vectors)
    assert list(saved["image"]) == [str(tmp_path / "a/1.png"), str(tmp_path / "b/2.png"),
                                    str(tmp_path / "c.png")]
    assert list(saved["subject"]) == ["S1", "S2", "S1"]
    np.testing.assert_array_equal(np.load(save_embeddings(tmp_path / "e.npy", vectors, cohort)),
                                  vectors)
    assert not [p.name for p in tmp_path.rglob("*.tmp")]  # written atomically, nothing left


def test_wrong_suffix_or_row_count_is_refused(cohort, tmp_path):
    vectors = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ConfigError, match=r"emb\.txt: use a \.npy or \.npz"):
        save_embeddings(tmp_path / "emb.txt", vectors, cohort)
    with pytest.raises(ConfigError, match="2 embeddings for the 3 rows of manifest.csv"):
        save_embeddings(tmp_path / "emb.npz", vectors[:2], cohort)
    assert not (tmp_path / "emb.npz").exists()
