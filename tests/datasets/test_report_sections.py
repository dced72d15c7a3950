"""Report text: sections split by upper-case headers; FINDINGS + IMPRESSION kept."""

from __future__ import annotations

import pytest

from radsearch.datasets.reports import (compose_report, normalise_section_name, report_text,
                                       split_sections)


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
    ("FINDINGS AND IMPRESSION: Heart is enlarged.", "IMPRESSION: Heart is enlarged."),
    ("IMPRESSION: Stable.\nFINDINGS: Small effusion.",
     "FINDINGS: Small effusion.\nIMPRESSION: Stable."),
    ("FINAL REPORT\nPortable chest. Lines in place.", "Portable chest. Lines in place."),
    # an indication alone is not a description of the image (official parser: nothing is kept)
    ("INDICATION: cough\nNo acute process.", ""),
    ("INDICATION: cough\n\nNo acute process.", "No acute process."),
    ("", ""),
])
def test_compose_keeps_findings_and_impression_or_the_last_paragraph(text, expected):
    assert report_text(text) == expected


# ------------------------------------------- issue 11, item 5: the official section conventions
# Reports in MIMIC-CXR's file format (title line, one leading space per line, " \n" between
# paragraphs); the wording is made up, the layout and the header spellings are the real ones.
def _mimic(*paragraphs: str) -> str:
    return "                                 FINAL REPORT\n" + " \n".join(
        "".join(f" {line}\n" for line in p.splitlines()) for p in paragraphs)


def test_a_misspelt_impresson_header_is_the_impression():
    text = _mimic("EXAMINATION:  CHEST (PA AND LAT)", "INDICATION:  ___ with cough",
                  "FINDINGS:", "Heart size is normal.  No pleural effusion.",
                  "IMPRESSON:", "No acute cardiopulmonary process.")
    assert report_text(text) == ("FINDINGS: Heart size is normal. No pleural effusion.\n"
                                 "IMPRESSION: No acute cardiopulmonary process.")


def test_a_conclusion_header_is_the_impression_and_the_indication_stays_out():
    text = _mimic("EXAMINATION:  CHEST (PORTABLE AP)",
                  "INDICATION:  ___ year old man with fever, evaluate for pneumonia",
                  "COMPARISON:  ___", "CONCLUSION:", "Mild pulmonary edema, new since ___.")
    report = report_text(text)
    assert report == "IMPRESSION: Mild pulmonary edema, new since ___."
    assert "fever" not in report and "INDICATION" not in report


@pytest.mark.parametrize("header, canonical", [
    ("IMPRESSION", "IMPRESSION"), ("IMPRESSIONS", "IMPRESSION"), ("CONCLUSION", "IMPRESSION"),
    ("IMPRESION", "IMPRESSION"), ("IMPESSION", "IMPRESSION"), ("FINDINGS AND IMPRESSION",
                                                                "IMPRESSION"),
    ("FINDINGS/IMPRESSION", "IMPRESSION"), ("FINDING", "FINDINGS"), ("FINIDNGS", "FINDINGS"),
    ("CHEST, TWO VIEWS", "FINDINGS"), ("PA AND LATERAL VIEWS OF THE CHEST", "FINDINGS"),
    ("PORTABLE AP CHEST RADIOGRAPH", "FINDINGS"), ("REASON FOR EXAM", "INDICATION"),
    ("CLINICAL HISTORY", "HISTORY"), ("COMPARISONS", "COMPARISON"), ("WETREAD", "WET READ"),
    ("RECOMMENDATION(S)", "RECOMMENDATIONS"), ("TECHNIQUE", "TECHNIQUE"),
])
def test_header_names_are_normalised(header, canonical):
    assert normalise_section_name(header) == canonical


def test_an_empty_view_title_is_not_the_findings():
    # a report that opens with a view title and no text under it (the official parser's example)
    text = _mimic("CHEST, PA LATERAL:", "INDICATION:  ___ with chest pain",
                  "FINDINGS:  Lungs are clear.", "IMPRESSION:  No acute process.")
    assert report_text(text) == "FINDINGS: Lungs are clear.\nIMPRESSION: No acute process."


def test_without_findings_or_impression_the_last_paragraphs_are_kept():
    text = _mimic("EXAMINATION:  CHEST", "INDICATION:  ___ with dyspnea\n"
                  "Portable AP chest.", "No acute cardiopulmonary process.",
                  "Lines and tubes in place.")
    assert report_text(text) == "No acute cardiopulmonary process. Lines and tubes in place."


def test_wet_read_and_notification_stay_out_of_the_report():
    text = _mimic("WET READ: ___ ___ 2:30 PM  No pneumothorax.", "FINDINGS:  Lungs are clear.",
                  "IMPRESSION:  Normal chest.",
                  "NOTIFICATION:  The findings were discussed with Dr. ___.")
    assert report_text(text) == "FINDINGS: Lungs are clear.\nIMPRESSION: Normal chest."
