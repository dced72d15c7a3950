"""FaissIndex specifics: approximate factories with exact re-scoring and tombstones, corruption,
fingerprints, the writer lock, and `kill -9` during writes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from radsearch.errors import ConfigError
from radsearch.index import (FingerprintMismatchError, IndexFolderError, IndexLockedError,
                             create_index, open_index)

from index_helpers import brute_force, random_items


def clustered(n, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    return (centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def test_hnsw_shortlist_is_rescored_exactly_and_recalls_the_exact_top10(tmp_path):
    vectors = clustered(2000)
    _, items = random_items(2000, dim=16)
    index = create_index(tmp_path / "hnsw", 16, factory="HNSW16")
    ids = index.add(vectors, items)
    queries = vectors[:50] + 0.3 * np.random.default_rng(1).normal(size=(50, 16)).astype("f4")
    found = index.search(queries, 10)
    ref_ids, ref_scores = brute_force(vectors, ids, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.ids, ref_ids)])
    assert recall >= 0.95
    # scores are exact cosines of the returned items (re-scored from the store of record)
    exact = np.einsum("qd,qkd->qk", queries / np.linalg.norm(queries, axis=1, keepdims=True),
                      index.get_vectors(found.ids.ravel()).reshape(50, 10, 16))
    np.testing.assert_allclose(found.scores, exact, atol=1e-5)
    assert (np.diff(found.scores, axis=1) <= 1e-7).all()


def test_hnsw_tombstones_hide_removed_items_and_compact_drops_them(tmp_path):
    vectors = clustered(500)
    _, items = random_items(500, dim=16)
    index = create_index(tmp_path / "hnsw", 16, factory="HNSW16")
    ids = index.add(vectors, items)
    index.remove(ids[:150])
    assert index.info()["tombstones"] == 150 and index.info()["rebuild_advised"]
    found = index.search(vectors[:150], 10)
    assert not np.isin(found.ids, ids[:150]).any()
    index.upsert(vectors[:1], [dict(items[200], subject="MOVED")])   # same id, new vector
    top = index.search(vectors[:1], 1)
    assert top.ids[0, 0] == ids[200] and top.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    index.compact()
    assert index.info()["tombstones"] == 0
    index.commit()
    again = open_index(index.path)
    assert (again.search(vectors[300:310], 5).ids == index.search(vectors[300:310], 5).ids).all()
    index.close()


def test_hnsw_filters_never_return_fewer_than_k_when_k_match(tmp_path):
    vectors = clustered(3000)
    _, items = random_items(3000, dim=16, subjects=300)
    index = create_index(tmp_path / "hnsw", 16, factory="HNSW8")
    ids = index.add(vectors, items)
    queries = vectors[:20] + 0.3 * np.random.default_rng(3).normal(size=(20, 16)).astype("f4")
    subjects = np.array([it["subject"] for it in items])
    for filters, mask in ((["subject!=S0"], subjects != "S0"),
                          (["view=LAT", "time>=2"], np.array(
                              [it["view"] == "LAT" and it["time"] >= 2 for it in items]))):
        found = index.search(queries, 10, filters)
        assert ((found.ids >= 0).sum(axis=1) == 10).all()
        assert np.isin(found.ids, ids[mask]).all()


def test_bad_factory_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="could not parse") as info:
        create_index(tmp_path / "bad", 8, factory="NotAnIndex12")
    assert "\n" not in str(info.value) and not (tmp_path / "bad").exists()


def _small_index(path):
    index = create_index(path, 8, {"checkpoint_sha256": "aaa", "image_size": 64})
    vectors, items = random_items(20)
    index.add(vectors, items)
    index.close()
    return vectors


def test_corrupted_or_truncated_files_are_detected_on_open(tmp_path):
    _small_index(tmp_path / "ix")
    header = json.loads((tmp_path / "ix" / "header.json").read_text())
    vec = tmp_path / "ix" / next(n for n in header["files"] if n.startswith("vectors-"))
    data = bytearray(vec.read_bytes())
    data[-5] ^= 0xFF
    vec.write_bytes(bytes(data))
    with pytest.raises(IndexFolderError, match="sha256 differs"):
        open_index(tmp_path / "ix")
    vec.write_bytes(bytes(data[:-100]))
    with pytest.raises(IndexFolderError, match="truncated"):
        open_index(tmp_path / "ix", verify=False)
    (tmp_path / "ix" / "header.json").write_text('{"format_version": 1, "back')
    with pytest.raises(IndexFolderError, match="unreadable or truncated"):
        open_index(tmp_path / "ix")
    with pytest.raises(IndexFolderError, match="not found"):
        open_index(tmp_path / "nothing")


def test_other_model_or_preprocessing_is_refused(tmp_path):
    _small_index(tmp_path / "ix")
    index = open_index(tmp_path / "ix")
    index.check_fingerprint({"checkpoint_sha256": "aaa", "image_size": 64})
    with pytest.raises(FingerprintMismatchError, match="image_size") as info:
        index.check_fingerprint({"checkpoint_sha256": "aaa", "image_size": 128})
    assert "\n" not in str(info.value)
    with pytest.raises(FingerprintMismatchError, match="checkpoint_sha256"):
        index.check_fingerprint({"checkpoint_sha256": "bbb", "image_size": 64})


def test_a_second_writer_is_refused(tmp_path):
    _small_index(tmp_path / "ix")
    writer = open_index(tmp_path / "ix", writable=True)
    with pytest.raises(IndexLockedError, match="another process"):
        open_index(tmp_path / "ix", writable=True)
    assert len(open_index(tmp_path / "ix")) == 20      # readers are never blocked
    writer.close()
    open_index(tmp_path / "ix", writable=True).close()


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from radsearch.index import create_index
    index = create_index(sys.argv[1], 32)
    rng = np.random.default_rng(0)
    for chunk in range(10_000):
        index.add(rng.normal(size=(500, 32)).astype(np.float32),
                  [{"image": f"/a/{chunk}_{i}.png", "subject": f"s{i}"} for i in range(500)])
        index.commit()
        print(chunk, flush=True)
""")


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.051])
def test_kill_9_during_writes_leaves_the_last_commit(tmp_path, delay):
    path = tmp_path / "ix"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for _ in range(3):       # let a few commits happen, then kill at a varying moment
        proc.stdout.readline()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    index = open_index(path, writable=True)     # the lock died with the writer
    assert len(index) % 500 == 0 and len(index) >= 1500
    assert index.verify() == []
    index.add(np.ones((1, 32), np.float32), [{"image": "/after.png"}])
    index.close()
    assert len(open_index(path)) % 500 == 1


def test_a_failed_write_is_one_line_and_keeps_the_last_commit(tmp_path, monkeypatch):
    from radsearch.errors import RadsearchError
    from radsearch.index import faiss_backend

    vectors = _small_index(tmp_path / "ix")
    index = open_index(tmp_path / "ix", writable=True)
    index.add(vectors[:2], [{"image": "/new1.png"}, {"image": "/new2.png"}])

    def disk_full(*args):
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(faiss_backend.faiss, "write_index", disk_full)
    with pytest.raises(RadsearchError, match="cannot write the index") as info:
        index.commit()
    assert "\n" not in str(info.value)
    index.close(commit=False)
    monkeypatch.undo()
    again = open_index(tmp_path / "ix")
    assert len(again) == 20 and again.verify() == []


def test_filtered_search_survives_faiss_torch_utils(tmp_path):
    """pytorch-metric-learning imports faiss.contrib.torch_utils, which replaces Index.search with
    a version that takes no ``params`` — filtered exact and HNSW searches must still work."""
    import faiss.contrib.torch_utils  # noqa: F401 — the global patch a training process has

    vectors, items = random_items(200, dim=8)
    for name, factory in (("flat", None), ("hnsw", "HNSW8")):
        index = create_index(tmp_path / name, 8, factory=factory)
        ids = index.add(vectors, items)
        keep = np.array([it["view"] == "PA" for it in items])
        found = index.search(vectors[:5], 5, ["view=PA"])
        assert np.isin(found.ids, ids[keep]).all() and (found.ids >= 0).all()
        index.close()


def test_filters_on_fields_kept_on_disk_match_pandas(tmp_path):
    """image is not held in RAM: its filters are answered by SQLite (committed rows) and pandas
    (uncommitted rows) and must select exactly what pandas selects over all rows."""
    vectors, items = random_items(60, seed=3)
    for i, item in enumerate(items):
        item["image"] = f"/archive/{'a' if i % 4 else 'b'}/{i}.png"
    items[5]["image"] = "/archive/x|shared|y.png"
    items[40]["image"] = "/archive/x|shared|y2.png"
    index = create_index(tmp_path / "ix", 8)
    ids = index.add(vectors[:40], items[:40])
    index.commit()
    ids = np.concatenate([ids, index.add(vectors[40:], items[40:])])   # 20 uncommitted
    assert not {"image", "report", "key"} & set(index.table.columns)
    images = pd.Series([item["image"] for item in items])
    queries = vectors[:3] + 0.1
    cases = {"image=/archive/b/8.png": images == "/archive/b/8.png",
             "image=/archive/b/44.png": images == "/archive/b/44.png",
             "image!=/archive/b/8.png": images != "/archive/b/8.png",
             "image~shared": images.str.split("|").map(lambda xs: "shared" in xs)}
    for text, mask in cases.items():
        for extra in ([], ["view=PA"]):
            both = mask.to_numpy() & (np.array([it["view"] for it in items]) == "PA"
                                      if extra else True)
            found = index.search(queries, 8, [text, *extra])
            ref_ids, ref_scores = brute_force(vectors, ids, queries, 8, both)
            assert (found.ids == ref_ids).all(), (text, extra)
            np.testing.assert_allclose(found.scores[np.isfinite(ref_scores)],
                                       ref_scores[np.isfinite(ref_scores)], atol=1e-5)


def test_a_reader_keeps_reading_its_commit_after_the_writer_moves_on(tmp_path):
    """The reader's SQLite file is deleted by the writer's second next commit; the reader's open
    handle must still give the image paths of the commit it opened."""
    vectors, items = random_items(12)
    writer = create_index(tmp_path / "ix", 8)
    ids = writer.add(vectors[:6], items[:6])
    writer.commit()
    reader = open_index(tmp_path / "ix")
    old_file = reader._meta.path
    for start in (6, 9):
        writer.add(vectors[start:start + 3], items[start:start + 3])
        writer.commit()
    assert not old_file.exists()
    assert reader.items(ids).image.tolist() == [it["image"] for it in items[:6]]
    assert len(reader) == 6
    reader.close()
    writer.close()


def test_queries_at_any_memory_alignment_give_the_brute_force_answer(tmp_path):
    """Queries are copied to a 64-byte boundary before faiss sees them (faster); the copy must
    not change a single result, whatever the caller's buffer offset."""
    from radsearch.index.faiss_backend import aligned

    vectors, items = random_items(200, dim=16)
    index = create_index(tmp_path / "ix", 16)
    ids = index.add(vectors, items)
    raw = np.random.default_rng(4).normal(size=(5, 16)).astype(np.float32)
    ref_ids, ref_scores = brute_force(vectors, ids, raw, 7)
    storage = np.zeros(5 * 16 + 16, np.float32)
    for offset in range(0, 16, 4):   # 0, 16, 32, 48 bytes past the buffer start
        queries = storage[offset:offset + 80].reshape(5, 16)
        queries[...] = raw
        copy = aligned(queries)
        assert copy.ctypes.data % 64 == 0 and np.array_equal(copy, queries)
        found = index.search(queries, 7)
        assert (found.ids == ref_ids).all()
        np.testing.assert_allclose(found.scores, ref_scores, atol=1e-5)
