"""OpenI reports + phantoms drawn from their MeSH findings (radsearch synth chest --from-openi)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from radsearch.cli.main import main
from radsearch.cohort import Cohort
from radsearch.synth.chest import draw_from_labels
from radsearch.synth.chest_openi import (chexpert_from_mesh, generate_openi_chest,
                                         openi_label_table)

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="INDICATION">XXXX-year-old, cough.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation><MeSH>{mesh}</MeSH>
<parentImage id="CXR{n}_IM-0001-1001"><caption>PA</caption></parentImage></eCitation>
"""

REPORTS = [  # n, findings, impression, MeSH major tags
    (1, "Heart size normal. Lungs clear.", "No acute disease.", ["normal"]),
    (2, "Enlarged heart. Small left effusion.", "Cardiomegaly and effusion.",
     ["Cardiomegaly/mild", "Pleural Effusion/left/small"]),
    (3, "Scoliosis of the thoracic spine. Lungs clear.", "No acute process.",
     ["Scoliosis/thoracic/mild"]),
    (4, "Blunted right costophrenic angle. Right chest catheter.", "Small effusion.",
     ["Costophrenic Angle/right/blunted", "Catheters, Indwelling"]),
    (5, "", "", ["normal"]),                       # no text: left out
    (6, "Limited film.", "See prior.", ["No Indexing"]),  # not indexed: left out
    (7, "Calcified granuloma right upper lobe.", "No acute disease.",
     ["Calcified Granuloma/lung/upper lobe/right"]),
]


@pytest.fixture
def openi_folder(tmp_path):
    folder = tmp_path / "ecgen-radiology"
    folder.mkdir()
    for n, findings, impression, mesh in REPORTS:
        tags = "".join(f"<major>{t}</major>" for t in mesh)
        (folder / f"{n}.xml").write_text(XML.format(n=n, findings=findings,
                                                    impression=impression, mesh=tags))
    return folder


def test_mesh_to_chexpert_by_hand():
    assert chexpert_from_mesh("normal") == "No Finding"
    assert chexpert_from_mesh("Cardiomegaly/mild|Pleural Effusion/left/small") == \
        "Cardiomegaly|Pleural Effusion"
    # outside the 14 labels → No Finding, as the CheXpert labeller does; the text keeps it
    assert chexpert_from_mesh("Scoliosis/thoracic|Calcinosis/aorta") == "No Finding"
    assert chexpert_from_mesh("Costophrenic Angle/right/blunted") == "Pleural Effusion"
    assert chexpert_from_mesh("Thickening/pleura/apex") == "Pleural Other"
    assert chexpert_from_mesh("Opacity/lung|Density/lung|Airspace Disease") == "Lung Opacity"
    assert chexpert_from_mesh("Catheters, Indwelling") == "No Finding|Support Devices"
    assert chexpert_from_mesh("No Indexing") is None and chexpert_from_mesh("") is None


def test_label_table_keeps_real_text_and_drops_unusable_reports(openi_folder):
    table = openi_label_table(openi_folder)
    assert table["report_id"].tolist() == ["CXR1", "CXR2", "CXR3", "CXR4", "CXR7"]
    assert table.set_index("report_id")["labels"].to_dict() == {
        "CXR1": "No Finding", "CXR2": "Cardiomegaly|Pleural Effusion", "CXR3": "No Finding",
        "CXR4": "Pleural Effusion|Support Devices", "CXR7": "Lung Lesion"}
    text = table.set_index("report_id")["report"]
    assert "Small left effusion" in text["CXR2"] and "IMPRESSION" in text["CXR2"]
    assert "INDICATION" not in text["CXR2"] and "cough" not in text["CXR2"]


def test_phantoms_are_drawn_from_the_mapped_labels(openi_folder):
    synth = generate_openi_chest(openi_folder, seed=4, image_size=32, workers=1)
    table = synth.cohort.table
    assert len(table) == 5 and synth.images.shape == (5, 32, 32)
    assert (table["subject"] == table["study"]).all()
    assert set(table["split"]) <= {"train", "val", "test"}
    # each image is exactly draw_from_labels(labels, its seed): deterministic and reproducible
    for i, labels in enumerate(table["labels"]):
        expected, _ = draw_from_labels(labels.split("|"), seed=4 * 1_000_003 + i, image_size=32,
                                       with_report=False)
        assert np.array_equal(synth.images[i], expected)
    again = generate_openi_chest(openi_folder, seed=4, image_size=32, workers=1)
    assert np.array_equal(again.images, synth.images)


def test_cli_writes_a_loadable_cohort(openi_folder, tmp_path, capsys):
    out = tmp_path / "cohort"
    code = main(["synth", "chest", "--from-openi", str(openi_folder), "--image-size", "32",
                 "--out", str(out), "--workers", "1"])
    assert code == 0, capsys.readouterr()
    cohort = Cohort.load(out / "manifest.csv")
    assert len(cohort) == 5 and all(p.is_file() for p in cohort.image_paths())
    assert "5 real OpenI reports" in capsys.readouterr().out


def test_cli_missing_source_is_one_line(tmp_path, capsys):
    code = main(["synth", "chest", "--from-openi", str(tmp_path / "nope.tgz"), "--out",
                 str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.tgz" in err and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("torchxrayvision") is None,
                    reason="torchxrayvision (which ships NLMCXR_reports.tgz) is not installed")
def test_real_archive_label_counts():
    from radsearch.synth.chest_openi import openi_reports_source

    table = openi_label_table(openi_reports_source())
    assert len(table) == 3832  # of 3,955 reports: indexed and with FINDINGS / IMPRESSION text
    assert (table["labels"] == "No Finding").sum() > 1000
