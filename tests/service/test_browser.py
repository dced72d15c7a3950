"""The web page in a real headless Chromium (Debian package) driven by Playwright.

A synthetic knee cohort at 160 px is indexed (baselines of half the subjects) and calibrated on
the other half, the app is served by uvicorn on a free loopback port, and the test uploads a
follow-up radiograph, sees the candidates and the open-set decision, opens the side-by-side view,
and saves screenshots: into the test's temporary folder, or into docs/images/ (service.png,
service-results.png) when RADSEARCH_SCREENSHOTS=docs/images is set — a test run never rewrites
tracked files by itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from radsearch.cohort import Cohort

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def viewer(run_dir, tmp_path_factory):
    """(calibrated index folder, cohort) of 160-px knees; subjects 0-5 indexed at baseline."""
    from radsearch.index import build_index, open_index
    from radsearch.index.calibration import calibrate
    from radsearch.index.embedder import load_embedder
    from radsearch.synth import generate_knee

    folder = tmp_path_factory.mktemp("viewer")
    generate_knee(12, seed=3, image_size=160, out_dir=folder / "knees", workers=1)
    cohort = Cohort.load(folder / "knees" / "manifest.csv")
    subjects = sorted(cohort.table["subject"].unique())
    table = cohort.table
    gallery = cohort.subset(np.flatnonzero(table["subject"].isin(subjects[:6]).to_numpy()
                                           & (table["time"] == 0).to_numpy()))
    gallery.save(folder / "gallery.csv")
    out = folder / "knees.index"
    build_index(run_dir, folder / "gallery.csv", out, device="cpu", progress=False)
    held_out = cohort.subset(np.flatnonzero(table["subject"].isin(subjects[6:]).to_numpy()))
    embedder = load_embedder(run_dir, device="cpu")
    with open_index(out, writable=True) as index:
        index.set_calibration(calibrate(index, embedder.embed_cohort(held_out), held_out))
    return out, cohort, subjects


@pytest.fixture(scope="module")
def server(viewer, run_dir, live_server):
    from radsearch.service.engine import SearchEngine

    return live_server(SearchEngine.load(viewer[0], run_dir, device="cpu"))


def test_upload_results_and_side_by_side(server, viewer, browser_page, wait_for_js, tmp_path):
    SCREENSHOT = REPO / os.environ.get("RADSEARCH_SCREENSHOTS", tmp_path) / "service.png"
    _, cohort, subjects = viewer
    table = cohort.table
    row = int(np.flatnonzero((table["subject"] == subjects[0]).to_numpy()
                             & (table["time"] > 0).to_numpy() & (table["side"] == "L").to_numpy())[0])
    query = cohort.image_paths()[row]
    page, errors = browser_page
    page.goto(server)
    wait_for_js(page, "document.getElementById('index-info').textContent"
                ".includes('calibrated')")
    assert "12 images of 6 subjects" in page.inner_text("#index-info")
    page.select_option("#query-side", "L")
    page.fill("#k", "6")
    page.set_input_files("#images", str(query))       # choosing a file starts the search
    page.wait_for_selector("#hits li img[src^='blob:']")
    cards = page.locator("#hits li")
    assert cards.count() == 6
    assert "log₁₀ LR" in cards.first.inner_text() and "subject K" in cards.first.inner_text()
    decision = page.inner_text("#decision")
    assert "T = " in decision and ("no candidate above" in decision
                                   or "candidate above" in decision)
    assert page.locator("#query-images img").count() == 1
    wait_for_js(page, "Array.from(document.querySelectorAll('#hits img'))"
                ".every(i => i.complete && i.naturalWidth > 0)")

    cards.first.click()
    page.wait_for_selector("#compare[data-ready='1']")
    sizes = page.evaluate("['left','right'].map(id => [document.getElementById(id).width,"
                          " document.getElementById(id).height])")
    assert sizes == [[160, 160], [160, 160]]      # full size, not the thumbnail
    before = page.evaluate("document.getElementById('right').getContext('2d')"
                           ".getImageData(80, 80, 1, 1).data[0]")
    page.fill("#window", "40")                      # narrow window: more contrast
    page.dispatch_event("#window", "input")
    after = page.evaluate("document.getElementById('right').getContext('2d')"
                          ".getImageData(80, 80, 1, 1).data[0]")
    assert before != after
    page.fill("#window", "255")
    page.dispatch_event("#window", "input")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.keyboard.press("Escape")
    assert page.locator("#compare").is_hidden()
    page.screenshot(path=str(SCREENSHOT.with_name("service-results.png")))
    cards.first.click()
    page.wait_for_selector("#compare[data-ready='1']")
    page.screenshot(path=str(SCREENSHOT))
    assert not errors, errors
    assert SCREENSHOT.stat().st_size > 10_000
