"""A PACS over DICOMweb → local de-identified DICOM files + a Cohort manifest.

Studies are listed with QIDO-RS and instances fetched with WADO-RS through the maintained
``dicomweb-client`` package. Each instance is stored as ``<folder>/images/<sha256(SOP UID)>.dcm``
after removing every person-name element, a list of identifying attributes and all private tags,
so PatientName and similar PHI never reach the disk, the manifest, the log or a return value.
PatientID / StudyDate / StudyInstanceUID become subject / time / study (through the DICOM-folder
adapter, which reads only those header tags back).

With a pseudonym key (``pseudonym_key``, the bytes of a secret key file), PatientID itself is
replaced before the file is written by ``HMAC-SHA256(key, PatientID)`` cut to its first
:data:`PSEUDONYM_HEX` hex digits (80 bits): the same patient gets the same pseudonym in every pull
made with the same key, so follow-up studies still match, while the files, the manifest, the
index and the service hold no direct identifier, and nobody without the key can recompute or
test a pseudonym from a known PatientID (a plain hash could be). A folder remembers whether it
was pulled with a key, and which (``pseudonyms.json``: an HMAC of a fixed text, not the key), and
refuses a later pull that would mix pseudonyms with PatientIDs or two keys.

Resumable by construction: a file is written atomically, so after an interruption every file
present is complete, and a rerun (or a later run that should pick up new studies) fetches only
the SOP instances that have no file yet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, DataError
from radsearch.io import atomic_path, write_text

log = logging.getLogger(__name__)

# QIDO-RS JSON keys (tag numbers) read from listings.
_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
# Identifying attributes removed besides every PN element and private tags (after PS3.15 Annex E).
PHI_KEYWORDS = (
    "PatientBirthDate", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "OtherPatientIDs", "OtherPatientIDsSequence", "PatientMotherBirthName", "MilitaryRank",
    "EthnicGroup", "PatientReligiousPreference", "MedicalRecordLocator", "AccessionNumber",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "PatientComments",
    "AdditionalPatientHistory", "RequestAttributesSequence", "DeviceSerialNumber",
    "ImageComments", "StudyDescription", "SeriesDescription", "StudyID",
)
IMAGES = "images"
MANIFEST = "manifest.csv"
PSEUDONYMS = "pseudonyms.json"
PSEUDONYM_HEX = 20                  # 80 bits: no collision expected below ~10^11 patients
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class IngestStats:
    """What one ingestion run did (counts only: safe to print and log)."""

    studies: int
    instances: int
    fetched: int
    already_present: int
    manifest: Path


def parse_study_filters(items: list[str] | None) -> dict[str, str]:
    """``["StudyDate=20200101-20201231", "ModalitiesInStudy=DX"]`` → QIDO-RS search filters."""
    filters: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--study-filter {item!r}: write KEY=VALUE with a DICOM keyword, "
                              "e.g. StudyDate=20200101-20201231 or ModalitiesInStudy=DX.")
        filters[key.strip()] = value.strip()
    return filters


def connect(url: str, headers: Mapping[str, str] | None = None, timeout: float = 30):
    """A DICOMweb client for a server root such as ``http://pacs:8042/dicom-web``."""
    from dicomweb_client.api import DICOMwebClient

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--dicomweb {url!r}: give the server's DICOMweb root as an http:// or "
                          "https:// URL, e.g. http://localhost:8042/dicom-web.")
    return DICOMwebClient(url=url.rstrip("/"), headers=dict(headers or {}), timeout=timeout)


def ingest_dicomweb(client_or_url, folder: str | os.PathLike, *,
                    study_filters: Mapping[str, str] | None = None,
                    subject_salt: str | None = None, pseudonym_key: bytes | None = None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[Cohort, IngestStats]:
    """Fetch every (new) instance of the matching studies into ``folder``; write its manifest.

    Returns the Cohort of everything under ``folder`` (earlier runs included) and the run's counts.
    ``pseudonym_key``: store a keyed pseudonym instead of PatientID (see the module docstring).
    ``progress(done, total)`` is called after each instance.
    """
    from radsearch.datasets.dicom_folder import read_dicom_folder

    client = connect(client_or_url) if isinstance(client_or_url, str) else client_or_url
    folder = Path(folder)
    images = folder / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    _check_pseudonym_mode(folder, pseudonym_key)
    instances, studies = _list_instances(client, dict(study_filters or {}))
    fetched = present = 0
    for done, (study, series, sop) in enumerate(instances, 1):
        target = images / f"{instance_key(sop)}.dcm"
        if target.is_file():
            present += 1
        else:
            _fetch(client, study, series, sop, target, pseudonym_key)
            fetched += 1
        if progress is not None:
            progress(done, len(instances))
    log.info("DICOMweb: %d studies, %d instances listed, %d fetched, %d already present",
             studies, len(instances), fetched, present)
    if not any(images.glob("*.dcm")):
        raise DataError(f"{folder}: the DICOMweb server listed no instance for the filters "
                        f"{dict(study_filters or {}) or '(none)'}; check the URL and filters.")
    cohort = read_dicom_folder(images, subject_salt=subject_salt)
    manifest = cohort.save(folder / MANIFEST)
    return Cohort.load(manifest), IngestStats(studies, len(instances), fetched, present, manifest)


def instance_key(sop_instance_uid: str) -> str:
    """File stem of an instance: a hash, so no server-supplied text becomes a path."""
    return hashlib.sha256(sop_instance_uid.encode()).hexdigest()[:32]


def _list_instances(client, filters: dict[str, str]) -> tuple[list[tuple[str, str, str]], int]:
    """(study, series, SOP instance) UIDs of every instance of every matching study."""
    from requests import RequestException

    try:
        studies = client.search_for_studies(search_filters=filters, get_remaining=True,
                                            fields=[_STUDY_UID])
        found = []
        for study in studies:
            study_uid = _value(study, _STUDY_UID)
            for inst in client.search_for_instances(study_instance_uid=study_uid,
                                                    get_remaining=True,
                                                    fields=[_SERIES_UID, _SOP_UID]):
                found.append((study_uid, _value(inst, _SERIES_UID), _value(inst, _SOP_UID)))
    except RequestException as exc:
        raise DataError(f"DICOMweb listing (QIDO-RS) failed: {_reason(exc)}; check the URL, "
                        "that the server is up and that the filters are valid.") from None
    return sorted(set(found)), len(studies)


def load_pseudonym_key(path: str | os.PathLike) -> bytes:
    """The secret of a key file (its bytes, surrounding whitespace stripped)."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"--pseudonym-key {path}: cannot read it ({exc.strerror or exc}); give "
                          "a file holding a secret, e.g. `head -c 32 /dev/urandom | base64 > "
                          "key`.") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"--pseudonym-key {path}: {len(key)} bytes; use a random secret of at "
                          f"least {MIN_KEY_BYTES} bytes, e.g. `head -c 32 /dev/urandom | base64 "
                          "> key`.")
    return key


def keyed_pseudonym(patient_id: str, key: bytes) -> str:
    """HMAC-SHA256(key, PatientID as UTF-8), first PSEUDONYM_HEX hex digits."""
    return hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def key_check(key: bytes) -> str:
    """Tells keys apart without revealing them: the HMAC of a fixed text under the key."""
    return hmac.new(key, b"radsearch pseudonym key check", hashlib.sha256).hexdigest()[:16]


def _check_pseudonym_mode(folder: Path, key: bytes | None) -> None:
    """Refuse to mix PatientIDs and pseudonyms, or two keys, in one folder; record the mode."""
    marker = folder / PSEUDONYMS
    wanted = ({"pseudonyms": "HMAC-SHA256", "hex_digits": PSEUDONYM_HEX,
               "key_check": key_check(key)} if key is not None else {"pseudonyms": "none"})
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"{marker}: unreadable; delete the folder and pull again.") from None
    elif any((folder / IMAGES).glob("*.dcm")):
        recorded = {"pseudonyms": "none"}      # pulled before pseudonyms existed: PatientIDs
    else:
        recorded = None
    if recorded is not None and recorded != wanted:
        if recorded.get("pseudonyms") == "none":
            had = "PatientIDs from a pull without --pseudonym-key"
        elif key is None:
            had = "pseudonyms from a pull with --pseudonym-key"
        else:
            had = "pseudonyms made with another key"
        raise ConfigError(f"{folder}: already holds {had}; pull into a new index (folder) or "
                          "give the same --pseudonym-key as before.")
    if recorded is None:
        write_text(marker, json.dumps(wanted, indent=1) + "\n")


def _fetch(client, study: str, series: str, sop: str, target: Path,
           pseudonym_key: bytes | None = None) -> None:
    """WADO-RS retrieve one instance, strip PHI (PatientID too with a key), write atomically."""
    from requests import RequestException

    try:
        ds = client.retrieve_instance(study, series, sop)
    except RequestException as exc:
        raise DataError(f"DICOMweb retrieve (WADO-RS) of an instance of study {study} failed: "
                        f"{_reason(exc)}; rerun to resume where it stopped.") from None
    deidentify(ds, pseudonym_key)
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def deidentify(ds, pseudonym_key: bytes | None = None) -> None:
    """Remove every person name, the identifying attributes above and private tags, in place;
    with a key, PatientID becomes its keyed pseudonym."""
    def drop_names(dataset, element):
        if element.VR == "PN":
            del dataset[element.tag]

    ds.walk(drop_names)
    for keyword in PHI_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    ds.remove_private_tags()
    if pseudonym_key is None:
        ds.PatientIdentityRemoved = "NO"  # PatientID is kept on purpose: it is the subject
        return
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        ds.PatientID = keyed_pseudonym(patient_id, pseudonym_key)
    for keyword in ("IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "radsearch: PHI removed, PatientID = HMAC-SHA256 pseudonym"


def _value(item: dict, tag: str) -> str:
    try:
        return str(item[tag]["Value"][0])
    except (KeyError, IndexError, TypeError):
        raise DataError(f"DICOMweb listing: an entry has no {tag} value; the server's QIDO-RS "
                        "answer is incomplete.") from None


def _reason(exc: Exception) -> str:
    """The HTTP status or exception class, never the response body (it may contain names)."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(exc).__name__


def default_folder(index_path: str | os.PathLike) -> Path:
    """Where `index build/add --dicomweb` keeps the fetched files: ``INDEX.dicomweb`` beside it
    (the index refers to them by path, so they must outlive the command)."""
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + ".dicomweb")


def manifest_for_index(manifest: str | os.PathLike | None, url: str | None,
                       study_filters: list[str] | None, index_path: str | os.PathLike,
                       folder: str | os.PathLike | None = None,
                       pseudonym_key: str | os.PathLike | None = None) -> Path:
    """MANIFEST as given, or the manifest of a DICOMweb pull (``--dicomweb URL``) for INDEX.

    The CLI's ``index build`` / ``index add`` call this, so a PACS is one more manifest source.
    ``pseudonym_key``: a key file; PatientIDs are stored as keyed pseudonyms.
    """
    if url is None:
        if manifest is None:
            raise ConfigError("give a MANIFEST or --dicomweb URL (a PACS DICOMweb root).")
        if pseudonym_key is not None:
            raise ConfigError("--pseudonym-key applies to --dicomweb pulls; pseudonymise a "
                              "manifest's subject column before indexing it.")
        return Path(manifest)
    if manifest is not None:
        raise ConfigError(f"give either MANIFEST ({manifest}) or --dicomweb, not both.")
    key = load_pseudonym_key(pseudonym_key) if pseudonym_key is not None else None
    target = Path(folder) if folder is not None else default_folder(index_path)
    _, stats = ingest_dicomweb(url, target, study_filters=parse_study_filters(study_filters),
                               pseudonym_key=key)
    print(f"DICOMweb: {stats.instances} instances in {stats.studies} studies; "
          f"{stats.fetched} fetched, {stats.already_present} already in {target}", flush=True)
    return stats.manifest
