"""The service's split embedding (prepare in the request thread, forward in the model thread)
gives the same vectors as the indexing path (``Embedder.embed_cohort``), right knees included."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radsearch.cohort import Cohort
from radsearch.images import read_image


def test_prepare_and_forward_equal_the_indexing_path(engine, knee_cohort):
    paths = Cohort.load(knee_cohort).image_paths()[:5]
    images = [read_image(p) for p in paths]
    sides = ["L", "R", "", "R", "L"]
    reference_cohort = Cohort(pd.DataFrame({"image": [f"<q{i}>" for i in range(5)],
                                            "subject": [f"s{i}" for i in range(5)],
                                            "time": [0.0] * 5, "side": sides}), source="test")
    expected = engine.searcher.embedder.embed_cohort(reference_cohort, images=images)
    got = engine.forward([engine.prepare(im, side) for im, side in zip(images, sides)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_right_side_is_mirrored_when_the_run_mirrors(engine, knee_cohort):
    image = read_image(Cohort.load(knee_cohort).image_paths()[0])
    left, right = engine.prepare(image, "L"), engine.prepare(image, "R")
    mirrors = engine.searcher.embedder.mirror_right(Cohort(pd.DataFrame(
        {"image": ["<q>"], "subject": ["s"], "time": [0.0], "side": ["R"]}), source="test"))
    if mirrors:
        np.testing.assert_allclose(right.numpy(), left.flip(-1).numpy(), atol=1e-6)
    else:
        np.testing.assert_allclose(right.numpy(), left.numpy())
    np.testing.assert_allclose(engine.prepare(image, "").numpy(), left.numpy())


def test_server_timing_header_only_when_asked(make_client, knee_cohort):
    data = open(Cohort.load(knee_cohort).image_paths()[0], "rb").read()
    files = {"images": ("q.png", data, "image/png")}
    plain = make_client().post("/search", files=files)
    assert plain.status_code == 200 and "server-timing" not in plain.headers
    timed = make_client(server_timing=True).post("/search", files=files)
    assert timed.status_code == 200
    entries = dict(part.split(";", 1) for part in timed.headers["server-timing"].split(", "))
    for stage in ("parse", "decode", "prepare", "embed", "queue", "forward", "search",
                  "json", "total"):
        assert stage in entries, stage
    durations = {k: float(v.split("dur=")[1]) for k, v in entries.items() if "dur=" in v}
    assert all(v >= 0 for v in durations.values())
    assert entries["batch"] == 'desc="1"'
    assert durations["queue"] + durations["forward"] <= durations["embed"] + 1e-3
    laps = sum(v for k, v in durations.items() if k not in ("total", "queue", "forward"))
    assert laps <= durations["total"] + 1e-3          # queue and forward are parts of embed


def test_search_json_equals_the_result_dataclass(engine, knee_cohort):
    """The shallow conversion gives exactly ``SearchResult.to_dict()`` minus paths and query."""
    from radsearch.service.engine import _public_hit

    image = read_image(Cohort.load(knee_cohort).image_paths()[2])
    vector = engine.embed([(image, "L")])
    for by in ("image", "subject"):
        got = engine.search(vector, k=4, by=by, filters=[], rerank="none")
        expected = engine.searcher.search_vectors(vector, 4, by=by, filters=[], rerank="none",
                                                  names=["upload"])[0].to_dict()
        expected.pop("query")
        expected["hits"] = [_public_hit(hit) for hit in expected["hits"]]
        expected["calibrated"] = bool(engine.index.calibration)
        assert got == expected
        assert len(got["hits"]) == 4 and "image" not in got["hits"][0]
