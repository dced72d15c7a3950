"""DICOMweb ingestion against a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``).

The fixture starts ``/usr/sbin/Orthanc`` on a free loopback port with a temporary storage folder
and a JSON configuration, stores synthetic DX instances through STOW-RS, and stops it afterwards.
Without the packages the tests skip with one reason locally and fail when CI=true.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radsearch.cohort import Cohort
from radsearch.datasets import dicomweb
from radsearch.errors import ConfigError, DataError
from radsearch.images import read_image

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
NAME = "SECRETNAME^JANE"       # must never leave the PACS
BIRTH = "19420317"


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports: every socket stays bound until all are chosen (asked
    one at a time, the kernel can hand out the same port twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def orthanc(tmp_path, require_system):
    """URL of the DICOMweb root of a fresh Orthanc server; the server dies with the test."""
    require_system(ORTHANC.is_file() and DICOMWEB_PLUGIN.exists(),
            "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc "
            "orthanc-dicomweb)")
    http, dicom = _free_ports(2)
    storage = tmp_path / "orthanc"
    storage.mkdir()
    config = storage / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "radsearch-test", "StorageDirectory": str(storage / "db"),
        "IndexDirectory": str(storage / "db"), "HttpPort": http, "DicomPort": dicom,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }))
    log = open(storage / "orthanc.log", "wb")
    proc = subprocess.Popen([str(ORTHANC), str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}/dicom-web"
    try:
        _wait_ready(proc, url, storage / "orthanc.log")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_ready(proc, url: str, log: Path, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Orthanc exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/studies", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"Orthanc did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")


def dx_instance(patient_id: str, study_date: str, study_uid: str | None = None,
                seed: int = 0, laterality: str = "L") -> Dataset:
    """A small 12-bit DX image with a patient name, birth date and a private tag (all PHI)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)   # Part 10 file, as from a modality
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.ViewPosition, ds.ImageLaterality = "DX", "PA", laterality
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, patient_id, BIRTH
    ds.ReferringPhysicianName = "DRWHO^SECRET"
    ds.InstitutionName = "Secret General Hospital"
    ds.StudyDate, ds.StudyTime = study_date, "101500"
    block = ds.private_block(0x0011, "radsearch-test", create=True)
    block.add_new(0x01, "LO", "private note SECRET")
    ds.Rows, ds.Columns = 48, 40
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    pixels = np.random.default_rng(seed).integers(0, 4096, (48, 40), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def _store(url: str, datasets: list[Dataset]) -> None:
    dicomweb.connect(url).store_instances(datasets)   # STOW-RS


def _all_text(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_ingest_resume_and_new_studies(orthanc, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    first = [dx_instance("MRN001", "20150301", seed=1), dx_instance("MRN001", "20170301", seed=2),
             dx_instance("MRN002", "20200102", seed=3, laterality="R")]
    twin = dx_instance("MRN002", "20200102", study_uid=first[2].StudyInstanceUID, seed=4)
    _store(orthanc, [*first, twin])
    out = tmp_path / "pacs"

    # interrupted after two instances: those two files are complete, nothing else is there
    class Interrupt(Exception):
        pass

    def stop_after_two(done, total):
        if done == 2:
            raise Interrupt
    with pytest.raises(Interrupt):
        dicomweb.ingest_dicomweb(orthanc, out, progress=stop_after_two)
    assert len(list((out / "images").glob("*.dcm"))) == 2
    assert not list((out / "images").glob(".*.tmp"))

    cohort, stats = dicomweb.ingest_dicomweb(orthanc, out)       # resume
    assert (stats.studies, stats.instances, stats.fetched, stats.already_present) == (3, 4, 2, 2)
    assert len(cohort) == 4
    table = cohort.table.sort_values(["subject", "time"])
    assert list(table["subject"]) == ["MRN001", "MRN001", "MRN002", "MRN002"]
    np.testing.assert_allclose(table["time"].to_numpy(),
                               [0.0, (pydicom.valuerep.DA("20170301") - pydicom.valuerep.DA(
                                   "20150301")).days / 365.25, 0.0, 0.0])
    assert sorted(set(table["study"])) == sorted({d.StudyInstanceUID for d in first})
    assert set(table["side"]) == {"L", "R"} and set(table["view"]) == {"PA"}

    # pixels arrive intact: same grey levels as the image we stored
    by_sop = {d.SOPInstanceUID: d for d in [*first, twin]}
    for path in cohort.image_paths():
        stored = pydicom.dcmread(path)
        original = by_sop[stored.SOPInstanceUID]
        np.testing.assert_array_equal(stored.pixel_array, original.pixel_array)
        assert read_image(path).shape == (48, 40)

    # a new study on the PACS is picked up; nothing else is fetched again
    _store(orthanc, [dx_instance("MRN003", "20210505", seed=5)])
    cohort, stats = dicomweb.ingest_dicomweb(orthanc, out)
    assert (stats.instances, stats.fetched, stats.already_present) == (5, 1, 4)
    assert sorted(set(cohort.table["subject"])) == ["MRN001", "MRN002", "MRN003"]

    # PHI: never on disk (files, manifest), never in the log, never in the returned cohort
    blob = _all_text(out)
    for secret in (NAME, "SECRETNAME", BIRTH, "DRWHO", "Secret General", "private note"):
        assert secret.encode() not in blob, secret
        assert secret not in caplog.text, secret
        assert secret not in cohort.table.to_csv(), secret
    assert "MRN001" in (out / "manifest.csv").read_text()


def test_study_filter_is_sent_to_the_server(orthanc, tmp_path):
    _store(orthanc, [dx_instance("MRN010", "20190101", seed=7),
                     dx_instance("MRN011", "20230101", seed=8)])
    filters = dicomweb.parse_study_filters(["StudyDate=20220101-20241231"])
    cohort, stats = dicomweb.ingest_dicomweb(orthanc, tmp_path / "f", study_filters=filters)
    assert stats.studies == 1 and list(cohort.table["subject"]) == ["MRN011"]
    with pytest.raises(DataError, match="no instance"):
        dicomweb.ingest_dicomweb(orthanc, tmp_path / "g",
                                 study_filters={"PatientID": "NOBODY"})


def test_unreachable_server_is_one_line_error(tmp_path):
    client = dicomweb.connect(f"http://127.0.0.1:{_free_port()}/dicom-web")
    client.set_http_retry_params(retry=False)   # the default backs off for ~30 s
    with pytest.raises(DataError, match="QIDO-RS") as info:
        dicomweb.ingest_dicomweb(client, tmp_path / "x")
    assert "\n" not in str(info.value)


def test_bad_filters_and_urls():
    assert dicomweb.parse_study_filters(["ModalitiesInStudy = DX"]) == {"ModalitiesInStudy": "DX"}
    for bad in (["StudyDate"], ["=DX"], ["StudyDate="]):
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            dicomweb.parse_study_filters(bad)
    with pytest.raises(ConfigError, match="http"):
        dicomweb.connect("/etc/passwd")


def test_deidentify_removes_names_in_sequences_and_private_tags():
    ds = dx_instance("MRN1", "20200101")
    item = Dataset()
    item.PersonName = "NESTED^NAME"
    ds.OperatorIdentificationSequence = [item]
    dicomweb.deidentify(ds)
    assert "PatientName" not in ds and "ReferringPhysicianName" not in ds
    assert "PersonName" not in ds.OperatorIdentificationSequence[0]
    assert "PatientBirthDate" not in ds and "InstitutionName" not in ds
    assert not any(elem.tag.is_private for elem in ds)
    assert ds.PatientID == "MRN1" and ds.StudyDate == "20200101"


def _hmac_reference(key: bytes, patient_id: str) -> str:
    import hashlib
    import hmac

    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:20]


def test_pseudonym_key_replaces_patient_id_everywhere(orthanc, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key"
    key_file.write_text("Zm9yIHRlc3RzIG9ubHk6IG5vdCBhIHJlYWwga2V5IQ==\n")
    key = dicomweb.load_pseudonym_key(key_file)
    assert key == key_file.read_bytes().strip()
    _store(orthanc, [dx_instance("MRN001", "20150301", seed=1),
                     dx_instance("MRN001", "20170301", seed=2),
                     dx_instance("MRN002", "20200102", seed=3)])
    out = tmp_path / "pacs"
    cohort, _ = dicomweb.ingest_dicomweb(orthanc, out, pseudonym_key=key)
    expected = {_hmac_reference(key, "MRN001"): 2, _hmac_reference(key, "MRN002"): 1}
    assert cohort.table["subject"].value_counts().to_dict() == expected
    first = pydicom.dcmread(cohort.image_paths()[0])
    assert first.PatientID in expected and first.PatientIdentityRemoved == "YES"
    assert "HMAC-SHA256" in first.DeidentificationMethod

    # a later pull (new study of a known patient) and a pull into another folder with the same
    # key: the same patient has the same pseudonym every time
    _store(orthanc, [dx_instance("MRN001", "20210505", seed=4)])
    again, stats = dicomweb.ingest_dicomweb(orthanc, out, pseudonym_key=key)
    assert stats.fetched == 1
    assert again.table["subject"].value_counts().to_dict() == {
        _hmac_reference(key, "MRN001"): 3, _hmac_reference(key, "MRN002"): 1}
    other, _ = dicomweb.ingest_dicomweb(orthanc, tmp_path / "other", pseudonym_key=key)
    assert sorted(other.table["subject"]) == sorted(again.table["subject"])

    for place in (out, tmp_path / "other"):
        blob = _all_text(place)
        for secret in ("MRN001", "MRN002", NAME, BIRTH, "Secret General"):
            assert secret.encode() not in blob, (place, secret)
    for secret in ("MRN001", "MRN002"):
        assert secret not in caplog.text and secret not in again.table.to_csv()
    assert key.decode() not in (out / "pseudonyms.json").read_text()

    # one folder never mixes PatientIDs and pseudonyms, or two keys
    with pytest.raises(ConfigError, match="same --pseudonym-key"):
        dicomweb.ingest_dicomweb(orthanc, out)
    with pytest.raises(ConfigError, match="another key"):
        dicomweb.ingest_dicomweb(orthanc, out, pseudonym_key=b"another secret key, 32 bytes..")
    plain = tmp_path / "plain"
    dicomweb.ingest_dicomweb(orthanc, plain)
    with pytest.raises(ConfigError, match="without --pseudonym-key"):
        dicomweb.ingest_dicomweb(orthanc, plain, pseudonym_key=key)
    assert len(_all_text(out)) > 0 and "MRN001" not in (out / "manifest.csv").read_text()


def test_pseudonym_key_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read") as info:
        dicomweb.load_pseudonym_key(tmp_path / "missing")
    assert "\n" not in str(info.value)
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        dicomweb.load_pseudonym_key(short)
    with pytest.raises(ConfigError, match="applies to --dicomweb"):
        dicomweb.manifest_for_index("m.csv", None, None, tmp_path / "i", pseudonym_key=short)


def test_deidentify_with_key_replaces_patient_id():
    ds = dx_instance("MRN1", "20200101")
    ds.IssuerOfPatientID = "SECRET-HOSPITAL"
    key = b"0123456789abcdef0123"
    dicomweb.deidentify(ds, key)
    assert ds.PatientID == _hmac_reference(key, "MRN1") and len(ds.PatientID) == 20
    assert "IssuerOfPatientID" not in ds and ds.PatientIdentityRemoved == "YES"
    assert "PatientName" not in ds and not any(elem.tag.is_private for elem in ds)
    other = dx_instance("MRN1", "20210101")
    dicomweb.deidentify(other, b"another key, 16+ bytes")
    assert other.PatientID != ds.PatientID
