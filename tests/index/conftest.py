"""Backends for the contract suite: faiss, milvus-lite in process, and a milvus-lite server."""

import socket
import subprocess
import sys
import time
import uuid

import pytest

from radsearch.index import create_index


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """`milvus-lite server` on 127.0.0.1 in a subprocess (the client/server path of pymilvus)."""
    port = _free_port()
    data = tmp_path_factory.mktemp("milvus-server")
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                             str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited: {(data / 'server.log').read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("milvus-lite server did not open its port within 60 s")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


BACKENDS = ["faiss", "milvus-lite", "milvus-server"]


@pytest.fixture(params=BACKENDS)
def make_index(request, tmp_path):
    """make_index(dim, **kw) → a new writable index of the parametrised backend."""
    kind = request.param
    opened = []

    def make(dim=8, fingerprint=None, **kwargs):
        path = tmp_path / f"ix-{len(opened)}"
        if kind == "faiss":
            index = create_index(path, dim, fingerprint, **kwargs)
        elif kind == "milvus-lite":
            index = create_index(path, dim, fingerprint, backend="milvus", **kwargs)
        else:
            uri = request.getfixturevalue("milvus_server")
            index = create_index(path, dim, fingerprint, backend="milvus", uri=uri,
                                 collection=f"c{uuid.uuid4().hex[:12]}", **kwargs)
        opened.append(index)
        return index

    make.kind = kind
    yield make
    for index in opened:
        index.close(commit=False)
