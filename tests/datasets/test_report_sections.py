"""Report text: sections split by upper-case headers; FINDINGS + IMPRESSION kept."""

from __future__ import annotations

import pytest

from radsearch.datasets.reports import compose_report, split_sections


def test_sections_of_a_mimic_style_report():
    text = ("                                 FINAL REPORT\n"
            " WET READ: ___ ___ 2:30 PM  No pneumonia.\n"
            " EXAMINATION:  CHEST (PORTABLE AP)\n\n INDICATION:  ___M with fever\n\n"
            " FINDINGS:\n\n Lungs are clear.\n No effusion.\n\n IMPRESSION:\n\n Normal.\n")
    sections = split_sections(text)
    assert list(sections) == ["WET READ", "EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION"]
    assert sections["WET READ"] == "___ ___ 2:30 PM No pneumonia."
    assert compose_report(sections) == "FINDINGS: Lungs are clear. No effusion.\nIMPRESSION: Normal."


@pytest.mark.parametrize("text, expected", [
    ("FINDINGS AND IMPRESSION: Heart is enlarged.", "FINDINGS AND IMPRESSION: Heart is enlarged."),
    ("IMPRESSION: Stable.\nFINDINGS: Small effusion.",
     "FINDINGS: Small effusion.\nIMPRESSION: Stable."),
    ("FINAL REPORT\nPortable chest. Lines in place.", "Portable chest. Lines in place."),
    ("INDICATION: cough\nNo acute process.", "INDICATION: cough No acute process."),
    ("", ""),
])
def test_compose_keeps_findings_and_impression_or_all_text(text, expected):
    assert compose_report(split_sections(text)) == expected
