"""`radsearch index build --dicomweb` / `index add --dicomweb` against a real Orthanc."""

from __future__ import annotations

import json

import pytest
from test_dicomweb import NAME, dx_instance, orthanc, _store  # noqa: F401 — the fixture

from radsearch.cli.main import main as cli_main


@pytest.fixture
def run(tiny_run):
    return tiny_run[0]


def test_index_build_and_add_from_a_pacs(orthanc, run, tmp_path, capsys):  # noqa: F811
    _store(orthanc, [dx_instance("MRN001", "20150301", seed=1),
                     dx_instance("MRN002", "20160301", seed=2)])
    out = tmp_path / "pacs.index"
    assert cli_main(["index", "build", str(run), "--dicomweb", orthanc, "--out", str(out),
                     "--device", "cpu", "--json"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert result["count"] == 2 and (tmp_path / "pacs.index.dicomweb" / "manifest.csv").is_file()

    _store(orthanc, [dx_instance("MRN003", "20200505", seed=3)])
    assert cli_main(["index", "add", str(out), "--dicomweb", orthanc, "--run", str(run),
                     "--json"]) == 0
    printed = capsys.readouterr().out
    assert "1 fetched, 2 already" in printed
    result = json.loads(printed[printed.index("{"):])
    assert (result["count"], result["added"], result["already_indexed"]) == (3, 1, 2)
    assert cli_main(["index", "info", str(out), "--json"]) == 0
    info = capsys.readouterr().out
    assert NAME not in info and NAME.encode() not in b"".join(
        p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_manifest_or_dicomweb_not_both(run, tmp_path, capsys):
    assert cli_main(["index", "build", str(run), "--out", str(tmp_path / "i")]) == 2
    assert "MANIFEST or --dicomweb" in capsys.readouterr().err
    assert cli_main(["index", "build", str(run), "m.csv", "--dicomweb", "http://x",
                     "--out", str(tmp_path / "i")]) == 2
    assert "not both" in capsys.readouterr().err


def test_pseudonymised_index_holds_no_patient_id(orthanc, run, tmp_path,  # noqa: F811
                                                 capsys, caplog):
    """build + add with --pseudonym-key: no PatientID in the index, the pulled files, the
    output, the logs, the service's answers or its audit log; pseudonyms stable across pulls."""
    import hashlib
    import hmac
    import logging

    from fastapi.testclient import TestClient

    from radsearch.service.app import Settings, create_app
    from radsearch.service.engine import SearchEngine

    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(b"a test-only secret of 32 bytes!!\n")

    def pseudonym(patient_id: str) -> str:
        return hmac.new(b"a test-only secret of 32 bytes!!", patient_id.encode(),
                        hashlib.sha256).hexdigest()[:20]

    _store(orthanc, [dx_instance("MRN001", "20150301", seed=1),
                     dx_instance("MRN002", "20160301", seed=2)])
    out = tmp_path / "pacs.index"
    assert cli_main(["index", "build", str(run), "--dicomweb", orthanc, "--out", str(out),
                     "--device", "cpu", "--pseudonym-key", str(key_file)]) == 0
    _store(orthanc, [dx_instance("MRN001", "20200505", seed=3)])       # a follow-up study
    assert cli_main(["index", "add", str(out), "--dicomweb", orthanc, "--run", str(run),
                     "--pseudonym-key", str(key_file)]) == 0
    assert cli_main(["index", "add", str(out), "--dicomweb", orthanc, "--run",
                     str(run)]) == 2                      # forgetting the key is refused
    printed = capsys.readouterr()

    audit = tmp_path / "audit.jsonl"
    engine = SearchEngine.load(out, run, device="cpu")
    with TestClient(create_app(engine, Settings(audit_log=audit))) as client:
        images = sorted((tmp_path / "pacs.index.dicomweb" / "images").glob("*.dcm"))
        answers = [client.post("/search", files={"images": ("q.dcm", p.read_bytes(),
                                                            "application/dicom")},
                               data={"k": "3", "by": "image"}) for p in images]
        assert all(a.status_code == 200 for a in answers)
        hits = [h for a in answers for h in a.json()["hits"]]
        items = [client.get(f"/items/{h['id']}").json() for h in hits]
        texts = [a.text for a in answers] + [client.get("/index").text] + [str(items)]
    subjects = {h["subject"] for h in hits}
    assert subjects == {pseudonym("MRN001"), pseudonym("MRN002")}
    assert sum(1 for i in items if i["subject"] == pseudonym("MRN001")) >= 2

    stored = b"".join(p.read_bytes() for folder in (out, tmp_path / "pacs.index.dicomweb")
                      for p in folder.rglob("*") if p.is_file())
    for secret in ("MRN001", "MRN002", NAME):
        assert secret.encode() not in stored, secret
        assert secret not in printed.out + printed.err + caplog.text, secret
        assert all(secret not in text for text in texts), secret
        assert secret not in audit.read_text(), secret
