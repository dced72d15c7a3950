"""Real OpenI report text paired with chest phantoms drawn from each report's MeSH findings.

The synthetic chest cohort writes its reports from the same labels the classifier trains on, so
the reports say nothing the labels do not (docs/mmdl.md). This cohort keeps the *real* text of the
3,955 Indiana University reports (``NLMCXR_reports.tgz``, shipped in the ``torchxrayvision`` wheel,
or the ``ecgen-radiology`` folder) and gives each report one phantom radiograph drawn with
:func:`radsearch.synth.chest.draw_from_labels` from the report's MeSH major findings mapped to
CheXpert labels. The text then carries everything a radiologist wrote (negations, findings outside
the 14 labels, wording noise) and the image shows the mapped labels only.

Mapping (``MESH_TO_CHEXPERT``, first MeSH term of a major tag, or "Anatomy/finding" for body-part
tags), following the CheXpert labeller's mention lists: opacity / density / airspace disease /
infiltrate → Lung Opacity; nodule / mass / granuloma → Lung Lesion; congestion / edema → Edema;
devices → Support Devices; blunted costophrenic angle → Pleural Effusion; pleural thickening →
Pleural Other; enlarged heart or cardiac shadow → Cardiomegaly; widened mediastinum → Enlarged
Cardiomediastinum. As in CheXpert, a report with no mapped pathology is "No Finding" (its other
findings, e.g. scoliosis, stay in the text). Reports indexed "No Indexing" only, or without
FINDINGS / IMPRESSION text, are left out.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.cohort import LABEL_SEPARATOR, NO_FINDING
from radsearch.errors import ConfigError
from radsearch.synth.chest import draw_from_labels
from radsearch.datasets.splits import assign_by_subject
from radsearch.synth.common import SynthCohort, finish_cohort, run_subjects, split_rng, write_png

# first MeSH term (lower case) → CheXpert label
MESH_TO_CHEXPERT = {
    "opacity": "Lung Opacity", "density": "Lung Opacity", "airspace disease": "Lung Opacity",
    "infiltrate": "Lung Opacity",
    "cardiomegaly": "Cardiomegaly",
    "pulmonary atelectasis": "Atelectasis",
    "nodule": "Lung Lesion", "mass": "Lung Lesion", "calcified granuloma": "Lung Lesion",
    "granuloma": "Lung Lesion", "cavitation": "Lung Lesion",
    "pleural effusion": "Pleural Effusion",
    "pulmonary congestion": "Edema", "pulmonary edema": "Edema",
    "consolidation": "Consolidation", "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax", "hydropneumothorax": "Pneumothorax",
    "fractures, bone": "Fracture",
    "catheters, indwelling": "Support Devices", "surgical instruments": "Support Devices",
    "implanted medical device": "Support Devices", "tube, inserted": "Support Devices",
    "medical device": "Support Devices", "stents": "Support Devices",
}
# (first MeSH term, a later term of the same tag) → CheXpert label, e.g. "Costophrenic
# Angle/bilateral/blunted" or "Thickening/pleura"
MESH_PAIR_TO_CHEXPERT = {
    ("costophrenic angle", "blunted"): "Pleural Effusion",
    ("pleura", "blunted"): "Pleural Effusion",
    ("thickening", "pleura"): "Pleural Other", ("pleura", "thickening"): "Pleural Other",
    ("cardiac shadow", "enlarged"): "Cardiomegaly", ("heart", "enlarged"): "Cardiomegaly",
    ("mediastinum", "enlarged"): "Enlarged Cardiomediastinum",
    ("mediastinum", "widened"): "Enlarged Cardiomediastinum",
    ("mediastinum", "prominent"): "Enlarged Cardiomediastinum",
}


def openi_reports_source() -> Path:
    """``NLMCXR_reports.tgz`` inside the installed ``torchxrayvision`` package (found without
    importing it); one clear error line when it is not installed."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("--from-openi auto: the torchxrayvision package is not installed; pass "
                          "the path of NLMCXR_reports.tgz or the ecgen-radiology folder instead.")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "NLMCXR_reports.tgz"
    if not path.is_file():
        raise ConfigError(f"{path}: not found in the torchxrayvision package; pass the path of "
                          "NLMCXR_reports.tgz or the ecgen-radiology folder instead.")
    return path


def chexpert_from_mesh(major: str) -> str | None:
    """CheXpert labels ('|'-joined) of a report's MeSH major tags ('|'-joined); None when the
    report is not indexed (only "No Indexing" or no tag)."""
    tags = [t.strip() for t in str(major or "").split(LABEL_SEPARATOR) if t.strip()]
    indexed = [t for t in tags if t.split("/")[0].strip().lower() != "no indexing"]
    if not indexed:
        return None
    found: list[str] = []
    for tag in indexed:
        parts = [p.strip().lower() for p in tag.split("/") if p.strip()]
        label = MESH_TO_CHEXPERT.get(parts[0]) or next(
            (MESH_PAIR_TO_CHEXPERT[(parts[0], p)] for p in parts[1:]
             if (parts[0], p) in MESH_PAIR_TO_CHEXPERT), None)
        if label and label not in found:
            found.append(label)
    pathology = [f for f in found if f != "Support Devices"]
    if not pathology:
        found.insert(0, NO_FINDING)
    return LABEL_SEPARATOR.join(found)


def openi_label_table(source: str | os.PathLike) -> pd.DataFrame:
    """One row per usable report: report_id, report (FINDINGS + IMPRESSION), mesh_major, labels."""
    from radsearch.datasets.openi import read_openi_reports

    reports = read_openi_reports(source)
    labels = reports["mesh_major"].map(chexpert_from_mesh)
    keep = labels.notna() & (reports["report"].fillna("").str.strip() != "")
    out = reports.loc[keep, ["report_id", "report", "mesh_major"]].copy()
    out["labels"] = labels[keep]
    return out.reset_index(drop=True)


def _draw(index: int, labels: list[str], seed: int, size: int, out_dir: str | None
          ) -> tuple[list[dict], list[np.ndarray]]:
    image, _ = draw_from_labels(labels[index].split(LABEL_SEPARATOR), seed=seed * 1_000_003 + index,
                                image_size=size, with_report=False)
    path = f"openi/{index:05d}.png"
    if out_dir is not None:
        write_png(Path(out_dir) / path, image)
        return [{"image": path}], []
    return [{"image": path}], [image]


def generate_openi_chest(source: str | os.PathLike | None = None, seed: int = 0,
                         image_size: int = 128, out_dir: str | os.PathLike | None = None,
                         max_reports: int | None = None, workers: int | None = None,
                         progress=None) -> SynthCohort:
    """One phantom per OpenI report (``source``: NLMCXR_reports.tgz / ecgen-radiology folder;
    None = the copy in torchxrayvision). subject = study = report id; split 70/10/20 by report."""
    table = openi_label_table(source if source is not None else openi_reports_source())
    if max_reports is not None:
        if max_reports < 1:
            raise ConfigError(f"max_reports={max_reports}; give a positive number of reports.")
        table = table.iloc[:max_reports].reset_index(drop=True)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    labels = table["labels"].tolist()
    results = run_subjects(functools.partial(_draw, labels=labels, seed=int(seed),
                                             size=int(image_size),
                                             out_dir=None if out is None else str(out)),
                           len(table), workers, progress)
    split = assign_by_subject(list(table["report_id"]), {"train": 0.7, "val": 0.1, "test": 0.2},
                              split_rng(seed, salt=2), rest=None)
    cohort = pd.DataFrame({
        "image": [r[0][0]["image"] for r in results],
        "subject": table["report_id"], "time": 0.0, "view": "frontal",
        "study": table["report_id"], "split": table["report_id"].map(split),
        "labels": table["labels"], "report": table["report"], "mesh_major": table["mesh_major"]})
    return finish_cohort(cohort, [r[1] for r in results], out)
