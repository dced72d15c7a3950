"""OpenI / Indiana University chest X-ray reports (``ecgen-radiology/*.xml``) → reports and Cohort.

Each XML file is one report (``CXR####``) with ``AbstractText`` sections (COMPARISON, INDICATION,
FINDINGS, IMPRESSION; "XXXX" marks de-identified words), MeSH ``major`` / ``automatic`` finding tags
and ``parentImage`` ids (the images of the study). The report id is a study, not a person: OpenI
has no patient identity, so ``subject`` = report id and the cohort is for diagnostic retrieval, not
for forensic matching. ``labels`` come from the MeSH major tags: the first term is the finding
("Cardiomegaly/mild" → Cardiomegaly) unless it is a body part, then the first two terms are
("Lung/hypoinflation", "Spine/degenerative"); ``normal`` → "No Finding"; "No Indexing" → no label.
"""

from __future__ import annotations

import logging
import os
import tarfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from radsearch.cohort import LABEL_SEPARATOR, NO_FINDING, Cohort
from radsearch.datasets._tables import image_column
from radsearch.datasets.reports import compose_report
from radsearch.errors import ManifestError

log = logging.getLogger(__name__)


def read_openi_reports(source: str | os.PathLike) -> pd.DataFrame:
    """One row per report: report_id, comparison, indication, findings, impression, report,
    mesh_major, mesh_automatic (tags joined by '|'), labels, images (parentImage ids, '|')."""
    rows = [_parse(name, data) for name, data in _xml_files(Path(source))]
    if not rows:
        raise ManifestError(f"{source}: no OpenI report XML found (expected ecgen-radiology/*.xml, "
                            "as a folder or the NLMCXR_reports.tgz archive).")
    return pd.DataFrame(rows).sort_values("report_id", key=_report_number,
                                          kind="stable").reset_index(drop=True)


def read_openi(source: str | os.PathLike, images: str | os.PathLike | None = None,
               extension: str = ".png") -> Cohort:
    """Cohort with one row per image of the reports (reports without images are left out).

    ``image`` = ``{parentImage id}{extension}`` (OpenI's PNG names), under ``images`` if given.
    """
    return cohort_from_reports(read_openi_reports(source), images=images, extension=extension,
                               source=str(source))


def cohort_from_reports(reports: pd.DataFrame, images: str | os.PathLike | None = None,
                        extension: str = ".png", source: str = "OpenI reports") -> Cohort:
    """The per-image Cohort of a :func:`read_openi_reports` table."""
    without = int((reports["images"] == "").sum())
    if without:
        log.warning("%s: %d report(s) have no image and are left out of the cohort", source,
                    without)
    parents = reports["images"].str.split(LABEL_SEPARATOR)
    per_image = reports.assign(parent=parents).explode("parent")
    per_image = per_image[per_image["parent"].fillna("") != ""]
    names = per_image["parent"] + extension
    image = image_column(names, images)
    table = pd.DataFrame({
        "image": image.to_numpy(dtype=object),
        "subject": per_image["report_id"].to_numpy(dtype=object),
        "time": 0.0,
        "study": per_image["report_id"].to_numpy(dtype=object),
        "labels": per_image["labels"].to_numpy(dtype=object),
        "report": per_image["report"].to_numpy(dtype=object),
        "mesh_major": per_image["mesh_major"].to_numpy(dtype=object),
        "mesh_automatic": per_image["mesh_automatic"].to_numpy(dtype=object),
    })
    return Cohort(table, root=None, source=source)


def _xml_files(source: Path) -> Iterator[tuple[str, bytes]]:
    if source.is_dir():
        for path in sorted(source.rglob("*.xml")):
            yield str(path), path.read_bytes()
    elif source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".xml"):
                    yield f"{source}:{member.name}", archive.extractfile(member).read()
    elif source.is_file() and source.suffix == ".xml":
        yield str(source), source.read_bytes()
    else:
        raise ManifestError(f"{source}: not found; pass the ecgen-radiology folder, one report XML "
                            "or NLMCXR_reports.tgz.")


def _parse(name: str, data: bytes) -> dict[str, str]:
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise ManifestError(f"{name}: not a valid OpenI report XML ({exc}).") from exc
    uid = root.find("uId")
    if uid is None or not uid.get("id"):
        raise ManifestError(f"{name}: no <uId id=…> element; is this an OpenI report?")
    sections = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").strip().upper()
        sections[label] = " ".join("".join(node.itertext()).split())
    major = [_text(n) for n in root.iterfind("MeSH/major") if _text(n)]
    automatic = [_text(n) for n in root.iterfind("MeSH/automatic") if _text(n)]
    return {
        "report_id": uid.get("id"),
        "comparison": sections.get("COMPARISON", ""),
        "indication": sections.get("INDICATION", ""),
        "findings": sections.get("FINDINGS", ""),
        "impression": sections.get("IMPRESSION", ""),
        "report": compose_report({k: v for k, v in sections.items()
                                  if k in ("FINDINGS", "IMPRESSION")}),
        "mesh_major": LABEL_SEPARATOR.join(major),
        "mesh_automatic": LABEL_SEPARATOR.join(automatic),
        "labels": mesh_labels(major),
        "images": LABEL_SEPARATOR.join(n.get("id", "") for n in root.iterfind("parentImage")
                                       if n.get("id")),
    }


# First terms of OpenI MeSH major tags that name a body part rather than a finding.
ANATOMY = frozenset(t.lower() for t in (
    "Lung", "Thoracic Vertebrae", "Spine", "Aorta", "Aorta, Thoracic", "Diaphragm",
    "Costophrenic Angle", "Cardiac Shadow", "Mediastinum", "Shoulder", "Pulmonary Artery",
    "Lumbar Vertebrae", "Heart", "Ribs", "Heart Atria", "Heart Ventricles", "Pleura",
    "Bone and Bones", "Lymph Nodes", "Humerus", "Cervical Vertebrae", "Abdomen", "Trachea",
    "Trachea, Carina", "Thorax", "Blood Vessels", "Sulcus", "Adipose Tissue", "Clavicle",
    "Sternum", "Hilum", "Breast", "Neck", "Arm", "Colon", "Pulmonary Alveoli", "Stomach"))


def mesh_labels(major: list[str]) -> str:
    """Finding labels from MeSH major tags ('normal' → No Finding; 'No Indexing' → none)."""
    terms: list[str] = []
    for tag in major:
        parts = [p.strip() for p in tag.split("/") if p.strip()]
        if not parts or parts[0].lower() == "no indexing":
            continue
        if parts[0].lower() == "normal":
            term = NO_FINDING
        elif parts[0].lower() in ANATOMY and len(parts) > 1:
            term = f"{parts[0]}/{parts[1]}"
        else:
            term = parts[0]
        if term not in terms:
            terms.append(term)
    if len(terms) > 1 and NO_FINDING in terms:
        terms.remove(NO_FINDING)
    return LABEL_SEPARATOR.join(terms)


def _text(node: ElementTree.Element) -> str:
    return " ".join("".join(node.itertext()).split())


def _report_number(ids: pd.Series) -> pd.Series:
    return pd.to_numeric(ids.str.extract(r"(\d+)", expand=False), errors="coerce")
