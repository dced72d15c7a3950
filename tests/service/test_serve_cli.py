"""`radsearch serve` and the token rules: a real uvicorn process on loopback, refusals in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from radsearch.cli.main import main as cli_main
from radsearch.errors import ConfigError
from radsearch.service.auth import authorised, is_loopback, load_token


def test_loopback_detection():
    for host in ("127.0.0.1", "::1", "localhost", "127.5.0.1"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        assert not is_loopback(host), host


def test_token_sources_and_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("RADSEARCH_TOKEN", raising=False)
    assert load_token("127.0.0.1") is None
    with pytest.raises(ConfigError, match="--token-file"):
        load_token("0.0.0.0")
    monkeypatch.setenv("RADSEARCH_TOKEN", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        load_token("0.0.0.0")
    monkeypatch.setenv("RADSEARCH_TOKEN", "e" * 20)
    assert load_token("0.0.0.0") == "e" * 20
    (tmp_path / "token").write_text("f" * 24 + "\nignored\n")
    assert load_token("0.0.0.0", tmp_path / "token") == "f" * 24       # the file wins
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        load_token("0.0.0.0", tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot read"):
        load_token("0.0.0.0", tmp_path / "missing")
    assert authorised("Bearer " + "f" * 24, "f" * 24) and authorised("bearer  " + "f" * 24, "f" * 24)
    assert not authorised(None, "f" * 24) and not authorised("Basic " + "f" * 24, "f" * 24)
    assert not authorised("Bearer " + "f" * 23, "f" * 24) and authorised(None, None)


def test_serve_refuses_public_host_without_token(index_dir, run_dir, capsys, monkeypatch):
    monkeypatch.delenv("RADSEARCH_TOKEN", raising=False)
    assert cli_main(["serve", str(index_dir), "--run", str(run_dir), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "bearer token" in err and "Traceback" not in err
    assert cli_main(["serve", str(index_dir), "--run", str(run_dir), "--port", "70000"]) == 2


def test_serve_process_answers_and_stops(index_dir, run_dir, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "radsearch", "serve", str(index_dir), "--run",
                             str(run_dir), "--port", str(port), "--audit-log",
                             str(tmp_path / "audit.jsonl")], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    try:
        deadline, health = time.monotonic() + 180, None     # a busy machine starts slowly
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health is not None, (tmp_path / "serve.log").read_text()
        assert health["status"] == "ok" and health["items"] > 0
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and "server" not in page.headers
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert f"open http://127.0.0.1:{port}/" in text and "Traceback" not in text


def test_missing_system_package_skips_locally_and_fails_in_ci(monkeypatch):
    import importlib.util

    # by path: every test folder has a module named conftest
    spec = importlib.util.spec_from_file_location("tests_conftest",
                                                  Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    require = module.require

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require(False, "X is not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require(False, "X is not installed")
    require(True, "never shown")
