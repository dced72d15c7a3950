"""Reports agree with their labels, checked by an independent keyword + negation reader (the way
rule-based labellers such as CheXpert's or NegBio read reports), and are varied."""

from __future__ import annotations

import re

import numpy as np
import pytest

from radsearch.synth.reports import FINDINGS, write_report

# Mentions of each finding, written independently of the report templates.
MENTIONS = {
    "Enlarged Cardiomediastinum": r"mediastin",
    "Cardiomegaly": r"cardiomegaly|heart|cardiac",
    "Lung Opacity": r"opacit|consolidation|pneumonia|edema|atelectasis|nodul|infiltrate|airspace",
    "Lung Lesion": r"nodul|mass\b",
    "Edema": r"edema",
    "Consolidation": r"consolidation",
    "Pneumonia": r"pneumonia",
    "Atelectasis": r"atelecta",
    "Pneumothorax": r"pneumothorax",
    "Pleural Effusion": r"effusion",
    "Pleural Other": r"pleural thickening|plaque",
    "Fracture": r"fracture",
    "Support Devices": r"tube|catheter|pacemaker|ecg leads",
}
NEGATION = re.compile(r"\bno\b|\bnot\b|without|normal|clear")


def read_labels(report: str) -> set[str]:
    """Findings mentioned without a negation in some sentence of the report."""
    found = set()
    for sentence in re.split(r"(?<=\.)\s+|\n", report.lower()):
        sentence = sentence.replace("findings:", "").replace("impression:", "")
        if NEGATION.search(sentence):
            continue
        found |= {name for name, pattern in MENTIONS.items() if re.search(pattern, sentence)}
    return found


DETAILS = {"side": "left", "size": "moderate", "zone": "lower zone",
           "device": "an endotracheal tube and a nasogastric tube"}


def random_labels(rng: np.random.Generator) -> dict[str, dict[str, str]]:
    names = [f for f in FINDINGS[1:] if f != "Lung Opacity" and rng.random() < 0.2]
    labels = {n: dict(DETAILS, side=("left", "right", "bilateral")[int(rng.integers(3))])
              for n in names}
    for child in ("Edema", "Consolidation", "Pneumonia", "Atelectasis", "Lung Lesion"):
        if child in labels:
            labels["Lung Opacity"] = {**labels[child], "implied": child}
    if not labels and rng.random() < 0.3:
        labels["Lung Opacity"] = dict(DETAILS)  # a standalone opacity
    return labels


def test_reader_recovers_labels_from_many_reports():
    rng = np.random.default_rng(0)
    for _ in range(400):
        labels = random_labels(rng)
        report = write_report(labels, rng)
        assert report.startswith("FINDINGS: ") and "\nIMPRESSION: " in report
        assert read_labels(report) == set(labels), report


def test_normal_studies_say_so_and_mention_no_positive():
    rng = np.random.default_rng(1)
    for _ in range(50):
        report = write_report({}, rng)
        assert read_labels(report) == set()
        impression = report.split("IMPRESSION: ")[1].lower()
        assert "no acute" in impression or "normal" in impression


def test_phrasing_varies_for_the_same_labels():
    rng = np.random.default_rng(2)
    labels = {"Pleural Effusion": DETAILS, "Cardiomegaly": DETAILS}
    texts = {write_report(labels, rng) for _ in range(30)}
    assert len(texts) >= 10
    assert any("No pneumothorax" in t or "no pneumothorax" in t or "or pneumothorax" in t
               for t in texts)  # negations of absent findings appear
    assert not any("No pleural effusion" in t or "no effusion" in t.lower() for t in texts)


def test_unknown_label_is_rejected():
    with pytest.raises(ValueError):
        write_report({"Broken Heart": {}}, np.random.default_rng(0))
