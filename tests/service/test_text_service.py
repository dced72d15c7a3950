"""`POST /search/text` and the page's text box on an index built from a tiny MMDL run.

The API answers like the Searcher (same ids, same order), refuses empty/too-long text, bad
parameters and an index without a report encoder with 4xx JSON, and its audit line holds the
text's sha256, never the text. The browser test types a finding into the text box (shown only
because ``GET /index`` names a report encoder), sees the candidates, opens the side-by-side view
and saves a screenshot: into the test's temporary folder, or docs/images/service-text.png when
RADSEARCH_SCREENSHOTS=docs/images is set.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
QUERY = "small left pleural effusion"


@pytest.fixture(scope="module")
def text_engine(tmp_path_factory):
    """SearchEngine over the training images of a 24-subject chest cohort (128 px on disk, 32 px
    for the model) and an MMDL run trained with its reports (image–report InfoNCE added)."""
    from radsearch.index import build_index
    from radsearch.service.engine import SearchEngine
    from radsearch.synth import generate_chest
    from radsearch.training.mmdl import load_mmdl_config, train_mmdl

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("text-service")
    synth = generate_chest(24, seed=2, image_size=128, out_dir=root / "chest", workers=1)
    cfg = load_mmdl_config(None, [f"data.manifest={synth.manifest}", "model.backbone=resnet18",
                                  "model.dim=32", "model.hidden=32", "data.image_size=32",
                                  "train.epochs=6", "train.batch_size=32", "train.lr=1e-3",
                                  "loss.gamma=1"])   # InfoNCE: with the default weights a run
    # this small collapses (every image at one score), which shows nothing on the page
    train_mmdl(cfg, root / "run", log=lambda m: None)
    build_index(root / "run", synth.manifest, root / "chest.index", split="train", device="cpu",
                progress=False)
    return SearchEngine.load(root / "chest.index", root / "run", device="cpu")


@pytest.fixture
def client(text_engine, tmp_path):
    from fastapi.testclient import TestClient

    from radsearch.service.app import Settings, create_app

    with TestClient(create_app(text_engine, Settings(audit_log=tmp_path / "audit.jsonl")),
                    raise_server_exceptions=False) as client:
        yield client


def test_text_search_answers_like_the_searcher(client, text_engine, tmp_path):
    info = client.get("/index").json()
    assert info["fingerprint"]["text_encoder"]["kind"] == "tfidf"
    answer = client.post("/search/text", json={"text": QUERY, "k": 5,
                                               "filters": ["view=PA"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = text_engine.searcher.search_text([QUERY], 5, filters=["view=PA"])[0]
    assert [h["id"] for h in body["hits"]] == [str(h.id) for h in expected.hits]
    assert [h["score"] for h in body["hits"]] == pytest.approx([h.score for h in expected.hits])
    assert all(h["view"] == "PA" and "image" not in h for h in body["hits"])
    assert body["decision"] is None and body["query"]["kind"] == "text"
    assert client.get(body["hits"][0]["thumbnail"]).headers["content-type"] == "image/png"
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["query_sha256"] == hashlib.sha256(QUERY.encode()).hexdigest()
    assert audit[-1]["result_ids"] == [h["id"] for h in body["hits"]]
    assert "pleural" not in (tmp_path / "audit.jsonl").read_text()


def test_image_upload_on_an_mmdl_index_finds_itself(client, text_engine):
    """The MMDL image branch serves POST /search too: an archived image uploaded as a PNG comes
    back first, with cosine 1 (upload decoding + the trainer's preprocessing = indexing)."""
    first_id = int(text_engine.index.ids()[0])
    png = Path(text_engine.index.items([first_id])["image"].iloc[0]).read_bytes()
    answer = client.post("/search", files=[("images", ("q.png", png, "image/png"))],
                         data={"k": "3"})
    assert answer.status_code == 200, answer.text
    top = answer.json()["hits"][0]
    assert top["id"] == str(first_id) and top["score"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("body, status, message", [
    ({"text": ""}, 422, "text: empty"),
    ({"text": "   "}, 422, "text: empty"),
    ({"text": "effusion " * 300}, 422, "at most 2000"),
    ({"text": QUERY, "k": 0}, 422, "k"),
    ({"text": QUERY, "k": 101}, 422, "k"),
    ({"text": QUERY, "colour": "red"}, 422, "colour"),
    ({"k": 3}, 422, "text"),
    ({"text": QUERY, "filters": ["weight>>3"]}, 400, "weight"),
])
def test_bad_text_requests_are_4xx_json(client, body, status, message):
    answer = client.post("/search/text", json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert "effusion effusion" not in answer.text
    assert client.get("/health").json()["status"] == "ok"      # still serving


def test_an_index_without_a_report_encoder_is_refused(make_client):
    client = make_client()                      # the forensic knee run of conftest.py
    assert "text_encoder" not in client.get("/index").json()["fingerprint"]
    answer = client.post("/search/text", json={"text": QUERY})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("this index was built with a run that has no "
                                             "report encoder")


@pytest.fixture(scope="module")
def text_server(text_engine, live_server):
    return live_server(text_engine)


def test_page_searches_by_text(text_server, browser_page, wait_for_js, tmp_path):
    screenshot = REPO / os.environ.get("RADSEARCH_SCREENSHOTS", tmp_path) / "service-text.png"
    page, errors = browser_page
    page.goto(text_server)
    page.wait_for_selector("#text-query", state="visible")
    assert "search by text" in page.inner_text("#index-info")
    page.fill("#k", "8")
    page.fill("#text", QUERY)
    page.press("#text", "Enter")
    page.wait_for_selector("#hits li img[src^='blob:']")
    cards = page.locator("#hits li")
    assert cards.count() == 8
    assert "score" in cards.first.inner_text() and "subject C" in cards.first.inner_text()
    assert QUERY in page.inner_text("#query-images")
    assert "Text query" in page.inner_text("#decision")
    wait_for_js(page, "Array.from(document.querySelectorAll('#hits img'))"
                ".every(i => i.complete && i.naturalWidth > 0)")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))

    cards.first.click()
    page.wait_for_selector("#compare[data-ready='1']")
    assert page.locator("#left").is_hidden()
    assert QUERY in page.inner_text("#left-text")
    assert page.evaluate("document.getElementById('right').width") == 128
    page.keyboard.press("Escape")
    assert page.locator("#compare").is_hidden()
    assert not errors, errors
    assert screenshot.stat().st_size > 10_000
