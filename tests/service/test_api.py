"""HTTP API on a real (tiny) run and index: results equal the Python API, errors are JSON 4xx."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from radsearch.cohort import Cohort
from radsearch.images import read_image


def _png(path) -> bytes:
    return open(path, "rb").read()


@pytest.fixture
def client(make_client):
    return make_client()


def _query(knee_cohort, row=0):
    cohort = Cohort.load(knee_cohort)
    return cohort, cohort.image_paths()[row]


def test_search_matches_the_python_api(client, engine, knee_cohort):
    cohort, path = _query(knee_cohort, 3)
    answer = client.post("/search", files={"images": ("x.png", _png(path), "image/png")},
                         data={"k": "5", "by": "image"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = engine.searcher.search([read_image(path)], k=5, by="image")[0]
    assert [h["id"] for h in body["hits"]] == [str(h.id) for h in expected.hits]
    np.testing.assert_allclose([h["score"] for h in body["hits"]],
                               [h.score for h in expected.hits], rtol=1e-5)
    top = body["hits"][0]
    assert top["subject"] == cohort.table["subject"].iloc[3] and top["score"] > 0.999
    assert "image" not in top and top["thumbnail"] == f"/items/{top['id']}/thumbnail"
    assert body["query"]["images"] == 1 and body["query"]["previews"][0].startswith(
        "data:image/png;base64,")


def test_jpeg_query(client, knee_cohort):
    _, path = _query(knee_cohort, 3)
    buffer = io.BytesIO()
    Image.open(path).convert("L").save(buffer, format="JPEG", quality=95)
    answer = client.post("/search", files={"images": ("q.bin", buffer.getvalue(), "text/plain")},
                         data={"k": "3"})       # name and declared type are ignored: bytes decide
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["hits"]) == 3


def test_several_images_are_fused_and_by_subject_gives_distinct_persons(client, engine,
                                                                        knee_cohort):
    cohort, _ = _query(knee_cohort)
    rows = np.flatnonzero(cohort.table["subject"] == cohort.table["subject"].iloc[0])[:3]
    paths = [cohort.image_paths()[r] for r in rows]
    files = [("images", (f"{i}.png", _png(p), "image/png")) for i, p in enumerate(paths)]
    body = client.post("/search", files=files, data={"k": "4", "by": "subject"}).json()
    assert "hits" in body, body
    subjects = [h["subject"] for h in body["hits"]]
    assert len(subjects) == len(set(subjects)) == 4
    expected = engine.searcher.search(paths, k=4, by="subject", fuse=True)[0]
    assert subjects == [h.subject for h in expected.hits]
    assert body["query"]["images"] == 3


def test_filters_exclude_subject_and_k(client, knee_cohort):
    cohort, path = _query(knee_cohort)
    subject = cohort.table["subject"].iloc[0]
    body = client.post("/search", files={"images": ("q.png", _png(path), "image/png")},
                       data={"k": "7", "filter": "side=L", "exclude_subject": subject}).json()
    assert len(body["hits"]) == 7
    assert all(h["side"] == "L" and h["subject"] != subject for h in body["hits"])


def test_items_thumbnail_and_full_image(client, engine, knee_cohort):
    cohort, path = _query(knee_cohort)
    hit = client.post("/search", files={"images": ("q.png", _png(path), "image/png")},
                      data={"k": "1"}).json()["hits"][0]
    item = client.get(f"/items/{hit['id']}").json()
    assert item["subject"] == hit["subject"] and item["id"] == hit["id"]
    thumb = client.get(hit["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(thumb.content)), dtype=np.float32) / 255
    np.testing.assert_allclose(shown, read_image(path), atol=1 / 255 + 1e-6)
    misses = client.app.state.cache.misses
    assert client.get(hit["thumbnail"]).content == thumb.content
    assert client.app.state.cache.misses == misses   # second request served from the cache
    assert client.get(hit["full"]).status_code == 200
    for bad in ("/items/123", "/items/-1", "/items/99999999999999999999999"):
        answer = client.get(bad)
        assert answer.status_code in (404, 422) and "error" in answer.json(), bad
    assert client.get("/items/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/items/abc/thumbnail").status_code == 422


def test_health_index_openapi_and_page(client, engine):
    assert client.get("/health").json()["items"] == engine.count()
    info = client.get("/index").json()
    assert info["count"] == engine.count() and info["fingerprint"]["embedding_dim"] == 16
    assert "path" not in info
    spec = client.get("/openapi.json").json()
    assert {"/search", "/items/{item_id}", "/items/{item_id}/thumbnail", "/health",
            "/index"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "<title>radsearch" in page.text
    assert "Content-Security-Policy" in page.headers
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../../pyproject.toml").status_code == 404
    assert "access-control-allow-origin" not in client.options(
        "/search", headers={"Origin": "http://evil.example",
                            "Access-Control-Request-Method": "POST"}).headers


@pytest.mark.parametrize("files,data,status,words", [
    ({}, {}, 400, "no image"),
    ({"images": ("a.png", b"GIF89a" + b"\0" * 100, "image/png")}, {}, 415, "not a PNG"),
    ({"images": ("a.png", b"", "image/png")}, {}, 400, "empty"),
    ({"images": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png")}, {}, 400,
     "image 1"),
    ({"images": ("a.png", "PNG", "image/png")}, {"k": "0"}, 422, "k=0"),
    ({"images": ("a.png", "PNG", "image/png")}, {"k": "ten"}, 422, "whole number"),
    ({"images": ("a.png", "PNG", "image/png")}, {"by": "person"}, 422, "image or subject"),
    ({"images": ("a.png", "PNG", "image/png")}, {"rerank": "yes"}, 422, "k-reciprocal"),
    ({"images": ("a.png", "PNG", "image/png")}, {"path": "/etc/passwd"}, 422, "unknown field"),
    ({"images": ("a.png", "PNG", "image/png")}, {"side": "up"}, 422, "L, R or empty"),
    ({"images": ("a.png", "PNG", "image/png")}, {"filter": "colour=red"}, 400, "unknown field"),
])
def test_bad_requests_are_json_4xx(client, knee_cohort, files, data, status, words):
    _, path = _query(knee_cohort)
    if files and files["images"][1] == "PNG":
        files = {"images": ("a.png", _png(path), "image/png")}
    answer = client.post("/search", files=files, data=data)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert words in body["error"] and body["status"] == status
    assert "Traceback" not in answer.text and "/tmp" not in body["error"]


def test_size_and_pixel_limits(make_client, knee_cohort):
    from radsearch.service.uploads import Limits

    _, path = _query(knee_cohort)
    client = make_client(limits=Limits(max_file_bytes=2000, max_request_bytes=50_000,
                                       max_files=2, max_pixels=32 * 32))
    big = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(big, format="PNG")   # tiny file, 4096 px
    answer = client.post("/search", files={"images": ("b.png", big.getvalue(), "image/png")})
    assert answer.status_code == 413 and "pixels" in answer.json()["error"]
    three = [("images", (f"{i}.png", _png(path), "image/png")) for i in range(3)]
    assert client.post("/search", files=three).status_code == 413
    answer = client.post("/search", files={"images": ("b.png", b"\x89PNG" + b"\0" * 60_000,
                                                      "image/png")})
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    assert client.get("/health").status_code == 200


def test_streamed_body_is_cut_off_at_the_limit(make_client):
    client = make_client(limits=__import__("radsearch.service.uploads", fromlist=["Limits"])
                         .Limits(max_request_bytes=10_000))

    def chunks():                       # no Content-Length: the body is counted as it arrives
        for _ in range(100):
            yield b"\0" * 1000

    answer = client.post("/search", content=chunks(),
                         headers={"content-type": "multipart/form-data; boundary=zz"})
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    assert client.get("/health").status_code == 200


def test_dicom_query_and_dicom_bomb(client, knee_cohort, tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    _, path = _query(knee_cohort)
    pixels = np.asarray(Image.open(path))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName = "SECRETNAME^X"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    png_hits = client.post("/search", files={"images": ("q.png", _png(path), "image/png")},
                           data={"k": "3"}).json()["hits"]
    answer = client.post("/search", files={"images": ("q.dcm", buffer.getvalue(),
                                                      "application/dicom")}, data={"k": "3"})
    assert answer.status_code == 200, answer.text
    assert [h["id"] for h in answer.json()["hits"]] == [h["id"] for h in png_hits]
    assert "SECRETNAME" not in answer.text
    ds.Rows, ds.Columns = 60000, 60000          # claims 3.6 G pixels with 1 kB of data
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    answer = client.post("/search", files={"images": ("q.dcm", buffer.getvalue(), "x/y")})
    assert answer.status_code == 413 and "pixels" in answer.json()["error"]


def test_audit_log_has_no_phi_and_records_results(client, knee_cohort, tmp_path):
    _, path = _query(knee_cohort)
    body = client.post("/search", files={"images": ("SMITH^JOHN_knee.png", _png(path),
                                                    "image/png")}, data={"k": "2"}).json()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    entry = json.loads(lines[-1])
    assert entry["result_ids"] == [h["id"] for h in body["hits"]]
    assert entry["query_sha256"] == body["query"]["sha256"] and entry["client"]
    assert "SMITH" not in "\n".join(lines)


def test_token_required_when_configured(make_client, knee_cohort):
    token = "s3cret-token-0123456789"
    client = make_client(token=token)
    _, path = _query(knee_cohort)
    files = {"images": ("q.png", _png(path), "image/png")}
    assert client.post("/search", files=files).status_code == 401
    assert client.get("/index", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/index", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.post("/search", files=files,
                       headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200


def test_concurrent_requests_share_forward_passes(make_client, knee_cohort):
    import concurrent.futures
    import os

    from radsearch.index import item_id

    client = make_client(max_batch=16, max_wait_s=0.05)
    cohort, _ = _query(knee_cohort)
    paths = cohort.image_paths()[:16]

    sides = dict(zip(paths, cohort.table["side"].iloc[:16]))

    def ask(path):
        hits = client.post("/search", files={"images": ("q.png", _png(path), "image/png")},
                           data={"k": "5", "side": sides[path]}).json()["hits"]
        # the query is in the index: it is the top hit (up to float ties of a barely trained model)
        return str(item_id(os.fspath(path.resolve()))) in [
            h["id"] for h in hits if h["score"] >= hits[0]["score"] - 1e-4]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        found = list(pool.map(ask, paths))
    assert all(found)          # each request got its own rows of the shared forward pass back
    health = client.get("/health").json()
    assert health["images_embedded"] == 16 and health["forward_passes"] < 16
