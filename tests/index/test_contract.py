"""One contract for every VectorIndex backend: faiss, milvus-lite in process, milvus-lite server.

Results are checked against a numpy brute-force reference over the same vectors.
"""

import json

import numpy as np
import pandas as pd
import pytest

from radsearch.errors import ConfigError, DataError, RadsearchError
from radsearch.index import item_id, open_index

from index_helpers import brute_force, random_items


def _same_ranking(found, ref_ids, ref_scores):
    np.testing.assert_allclose(found.scores[np.isfinite(ref_scores)],
                               ref_scores[np.isfinite(ref_scores)], atol=1e-5)
    # ids equal except where scores tie (none with continuous random vectors)
    assert (found.ids == ref_ids).all()


def test_search_equals_brute_force(make_index):
    index = make_index()
    vectors, items = random_items(60)
    ids = index.add(vectors, items)
    assert ids.dtype == np.int64 and (ids >= 0).all()
    assert ids[0] == item_id("/archive/img0_0.png")      # stable 63-bit id of the key
    queries = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    found = index.search(queries, 7)
    _same_ranking(found, *brute_force(vectors, ids, queries, 7))


def test_filters_inside_the_backend_return_k_when_k_match(make_index):
    index = make_index()
    vectors, items = random_items(90)
    ids = index.add(vectors, items)
    table = pd.DataFrame(items)
    queries = np.random.default_rng(2).normal(size=(4, 8)).astype(np.float32)
    cases = {("view=PA", "time<=1"): (table.view == "PA") & (table.time <= 1),
             ("subject!=S3",): table.subject != "S3",
             ("labels~Effusion",): table.labels.str.split("|").map(lambda x: "Effusion" in x),
             ("side=R", "view==LAT", "time>2"): (table.side == "R") & (table.view == "LAT")
             & (table.time > 2)}
    for filters, mask in cases.items():
        mask = mask.to_numpy()
        k = 6
        found = index.search(queries, k, list(filters))
        ref_ids, ref_scores = brute_force(vectors, ids, queries, k, mask)
        _same_ranking(found, ref_ids, ref_scores)
        assert ((found.ids >= 0).sum(axis=1) == min(k, mask.sum())).all(), filters


def test_too_few_matches_are_padded_not_invented(make_index):
    index = make_index()
    vectors, items = random_items(20)
    index.add(vectors, items)
    found = index.search(vectors[:2], 10, ["subject=S1"])   # S1 has 3 images (1, 8, 15)
    assert ((found.ids >= 0).sum(axis=1) == 3).all()
    assert np.isneginf(found.scores[:, 3:]).all()
    assert (index.search(vectors[:1], 3, ["subject=nobody"]).ids == -1).all()


def test_remove_and_upsert(make_index):
    index = make_index()
    vectors, items = random_items(30)
    ids = index.add(vectors, items)
    assert index.remove(ids[:5]) == 5 and len(index) == 25
    assert index.remove(ids[:5]) == 0
    found = index.search(vectors[:5], 25)
    assert not np.isin(found.ids, ids[:5]).any()
    # upsert: item 10 gets item 20's vector and a new subject
    new = dict(items[10], subject="NEW")
    index.upsert(vectors[20:21], [new])
    assert len(index) == 25
    hit = index.search(vectors[20:21], 2)
    assert set(hit.ids[0]) == {ids[10], ids[20]}
    np.testing.assert_allclose(hit.scores[0], [1.0, 1.0], atol=1e-5)
    assert index.items([ids[10]]).subject.tolist() == ["NEW"]
    with pytest.raises(DataError, match="already in the index"):
        index.add(vectors[:1], items[:1][:0] or [items[5]])
    assert index.verify() == []


def test_persistence_across_reopen(make_index):
    index = make_index(fingerprint={"checkpoint_sha256": "abc"})
    vectors, items = random_items(40)
    ids = index.add(vectors, items)
    index.remove(ids[-3:])
    index.commit()
    queries = vectors[:6]
    before = index.search(queries, 5, ["view=AP"])
    path = index.path
    index.close()
    again = open_index(path)
    after = again.search(queries, 5, ["view=AP"])
    assert (before.ids == after.ids).all()
    np.testing.assert_allclose(before.scores, after.scores, atol=1e-6)
    assert len(again) == 37 and again.fingerprint == {"checkpoint_sha256": "abc"}
    np.testing.assert_allclose(again.get_vectors(ids[:2]),
                               vectors[:2] / np.linalg.norm(vectors[:2], axis=1, keepdims=True),
                               atol=1e-6)
    assert again.items(ids[:2]).image.tolist() == [items[0]["image"], items[1]["image"]]
    with pytest.raises(RadsearchError, match="read-only"):
        again.add(vectors[:1], [dict(items[0], image="/x.png")])
    assert again.verify() == []
    again.close()


def test_uncommitted_writes_are_invisible_to_a_reader(make_index):
    index = make_index()
    vectors, items = random_items(10)
    index.add(vectors[:5], items[:5])
    index.commit()
    index.add(vectors[5:], items[5:])          # not committed
    reader = open_index(index.path)
    assert len(reader) == 5
    reader.close()


def test_bad_vectors_are_refused_in_one_line(make_index):
    index = make_index()
    vectors, items = random_items(3)
    with pytest.raises(DataError, match="4-dimensional|8-dimensional"):
        index.add(np.ones((3, 4), np.float32), items)
    bad = vectors.copy()
    bad[1] = 0
    with pytest.raises(DataError, match="all zeros"):
        index.add(bad, items)
    with pytest.raises(ConfigError, match="unknown field"):
        index.search(vectors[:1], 3, ["colour=red"])
    with pytest.raises(DataError, match="appears twice"):
        index.add(vectors[:2], [items[0], items[0]])


def test_another_process_reads_the_committed_index(make_index):
    import subprocess
    import sys

    index = make_index()
    vectors, items = random_items(25)
    index.add(vectors, items)
    index.commit()
    expected = index.search(vectors[:1], 3, ["view=PA"]).ids[0].tolist()
    if make_index.kind == "milvus-lite":
        index.close()   # embedded milvus-lite: one process at a time holds its data folder
    code = ("import sys, json, numpy as np; from radsearch.index import open_index; "
            "ix = open_index(sys.argv[1]); q = np.array(json.loads(sys.argv[2]), np.float32); "
            "print(len(ix), ix.search(q, 3, ['view=PA']).ids[0].tolist())")
    out = subprocess.run([sys.executable, "-c", code, str(index.path),
                          json.dumps(vectors[:1].tolist())], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    count, found = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) == 25 and json.loads(found) == expected


def _expected(rows: dict, ids) -> pd.DataFrame:
    """Reference metadata of ``ids`` from plain dicts (what the index must give back)."""
    table = pd.DataFrame([rows[i] for i in ids])
    return table.assign(id=list(ids))


def test_metadata_read_from_disk_follows_adds_removes_upserts_and_commits(make_index):
    """Key, image and report are read from the commit's SQLite file, uncommitted rows from
    memory; every state must give back exactly the rows a plain dict of the writes holds."""
    index = make_index()
    vectors, items = random_items(30)
    for i, item in enumerate(items):
        item.update(key=f"k{i}", report=f"report of image {i} " * (i % 3), study=f"st{i // 2}")
    ids = index.add(vectors[:20], items[:20])
    rows = {int(i): dict(item) for i, item in zip(ids, items)}
    index.commit()
    more = index.add(vectors[20:], items[20:])            # pending
    rows.update({int(i): dict(item) for i, item in zip(more, items[20:])})
    index.remove([ids[3], ids[4], more[0]])               # committed and pending rows
    for gone in (ids[3], ids[4], more[0]):
        rows.pop(int(gone))
    changed = dict(items[7], image="/elsewhere/7.png", report="new text", subject="S-new")
    (upserted,) = index.upsert(vectors[7:8], [changed])   # same key → same id
    assert upserted == ids[7]
    rows[int(upserted)] = changed
    columns = ["id", "key", "image", "subject", "time", "side", "view", "study", "labels", "report"]
    asked = [int(x) for x in np.random.default_rng(0).permutation(list(rows))] + [12345]

    def check(ix):
        got = ix.items(asked)
        assert list(got.columns) == columns
        want = _expected(rows, asked[:-1])[columns]
        pd.testing.assert_frame_equal(got.astype(str), want.astype(str))

    check(index)
    index.commit()
    check(index)
    index.remove([ids[0]])                                  # a second commit copies the first
    rows.pop(int(ids[0]))
    asked.remove(int(ids[0]))
    index.commit()
    check(index)
    path = index.path
    index.close()
    again = open_index(path)
    check(again)
    assert len(again) == len(rows)
    again.close()


def test_whole_label_filters_and_unstored_fields(make_index):
    """labels=… / labels!=… compare the whole label string on every backend; Milvus keeps no
    image paths, so an image filter there is refused in one line (faiss answers it)."""
    index = make_index()
    vectors, items = random_items(40)
    ids = index.add(vectors, items)
    table = pd.DataFrame(items)
    queries = vectors[:3]
    for text, mask in {"labels=Effusion|Mass": table.labels == "Effusion|Mass",
                       "labels!=Mass": table.labels != "Mass"}.items():
        found = index.search(queries, 5, [text])
        ref_ids, ref_scores = brute_force(vectors, ids, queries, 5, mask.to_numpy())
        _same_ranking(found, ref_ids, ref_scores)
    if make_index.kind == "faiss":
        assert index.search(queries[:1], 1, [f"image={items[7]['image']}"]).ids[0, 0] == ids[7]
    else:
        with pytest.raises(ConfigError, match="cannot filter on image") as info:
            index.search(queries[:1], 1, [f"image={items[7]['image']}"])
        assert "\n" not in str(info.value)
