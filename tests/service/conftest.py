"""Fixtures of the service tests: a tiny trained run, its index, the app, and a headless browser.

The run is real (ResNet-18 at 32² trained for two short epochs on a 12-subject synthetic knee
cohort) and so is the index (built with ``radsearch.index.build_index``): the service is tested on
the same code path a user runs, only smaller.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def knee_cohort(tmp_path_factory) -> Path:
    from radsearch.synth import generate_knee

    out = tmp_path_factory.mktemp("knees")
    generate_knee(12, seed=0, image_size=32, out_dir=out, workers=1)
    return out / "manifest.csv"


@pytest.fixture(scope="session")
def run_dir(knee_cohort, tmp_path_factory) -> Path:
    import torch

    from radsearch.training import load_config, train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    config = load_config(None, [
        f"data.manifest={knee_cohort}", "data.image_size=32", "data.resize=36",
        "data.workers=0", "model.embedding_dim=16", "method.name=AdaTriplet-AM",
        "train.epochs=1", "train.subjects_per_batch=4", "train.images_per_subject=2",
        "train.max_batches_per_epoch=2", "train.progress=false", "train.threads=1",
        "train.device=cpu", f"run.out_dir={out}", "run.name=run"])
    return Path(train(config))


@pytest.fixture(scope="session")
def index_dir(run_dir, knee_cohort, tmp_path_factory) -> Path:
    from radsearch.index import build_index

    out = tmp_path_factory.mktemp("index") / "knees.index"
    build_index(run_dir, knee_cohort, out, device="cpu", progress=False)
    return out


@pytest.fixture(scope="session")
def engine(index_dir, run_dir):
    from radsearch.service.engine import SearchEngine

    return SearchEngine.load(index_dir, run_dir, device="cpu")


@pytest.fixture
def make_client(engine, tmp_path):
    """``make_client(**settings)`` → a started TestClient (lifespan run) for those settings."""
    from fastapi.testclient import TestClient

    from radsearch.service.app import Settings, create_app

    clients = []

    def make(**kwargs):
        kwargs.setdefault("audit_log", tmp_path / "audit.jsonl")
        client = TestClient(create_app(engine, Settings(**kwargs)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def chromium_path(require_system) -> Path:
    require_system(CHROMIUM.is_file(), "Chromium is not installed (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        require_system(False, "the playwright package is not installed (pip install playwright)")
    return CHROMIUM


@pytest.fixture(scope="module")
def live_server():
    """Start ``create_app(engine)`` under uvicorn on a free loopback port in a thread; returns a
    function ``start(engine) -> base URL``; every server started is stopped with the module."""
    import socket
    import threading
    import time

    import uvicorn

    from radsearch.service.app import Settings, create_app

    running = []

    def start(engine) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(engine, Settings()), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def browser_page(chromium_path):
    """A page of Debian's headless Chromium through Playwright, 1280 × 860, collecting page
    errors and console errors into ``errors``; the test asserts on them after the yield."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(120_000)     # a busy shared CI machine, not a timing test
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield page, errors
        finally:
            browser.close()


@pytest.fixture
def wait_for_js():
    """``wait(page, expression)`` polls a JavaScript expression from Python until it is truthy.

    Not Playwright's ``wait_for_function``: once it has to poll, it re-evaluates the expression with
    ``eval`` inside the page, which the page's own CSP (``script-src 'self'``, no 'unsafe-eval')
    forbids, so it failed whenever the condition was not already true. ``page.evaluate`` runs
    through the DevTools protocol and is not subject to the page's CSP.
    """
    import time

    def wait(page, expression: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout      # a busy shared CI machine, not a timing test
        while not page.evaluate(expression):
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {timeout:.0f} s: {expression}")
            time.sleep(0.05)

    return wait
