"""Radiology report text: split into sections, normalise their names, compose the ``report``.

The ``report`` column of a Cohort holds FINDINGS and IMPRESSION (the parts that describe the image),
each prefixed by its header. Section names follow the conventions of MIMIC-CXR's official section
parser (github.com/MIT-LCP/mimic-cxr, ``txt/section_parser.py``): header names are normalised —
misspellings such as "IMPRESSON", CONCLUSION and "FINDINGS AND IMPRESSION" are the impression, view
titles ("PA AND LATERAL VIEWS OF THE CHEST") are findings — empty FINDINGS / IMPRESSION sections are
dropped, and a report with neither keeps the paragraphs after the first one of its last section
(the "last paragraph" rule) instead of its indication or history.
"""

from __future__ import annotations

import re

# A header is an upper-case phrase at the start of a line followed by a colon ("FINDINGS:",
# "WET READ:", "PA AND LATERAL VIEWS OF THE CHEST:").
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z0-9 ,/&()'-]{1,60}?)[ \t]*:", re.M)
# MIMIC-CXR separates paragraphs by a line holding one space; other sources by an empty line.
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
REPORT_SECTIONS = ("FINDINGS", "IMPRESSION")

# Header spellings seen in MIMIC-CXR → canonical name (the official parser's frequency table).
_CANONICAL = {
    "IMPRESSION": ("IMPRESSIONS", "CONCLUSION", "CONCLUSIONS", "CONCUSION", "COINCLUSION",
                   "FINDINGS AND IMPRESSION", "FINDINGS/IMPRESSION", "FINDINGS/ IMPRESSION",
                   "IMPRESSON", "IMPRRESSION", "IMOPRESSION", "IMORESSION", "IMPRESSOIN",
                   "IMPRSSION", "IMPRESION", "IMPERSSION", "MPRESSION", "IMPESSION"),
    "FINDINGS": ("FINDING", "FINDINS", "FINDINDGS", "FINDGINGS", "FINDNGS", "FINDNINGS",
                 "FINIDNGS", "REFERENCE FINDINGS", "CHEST, TWO VIEWS"),
    "INDICATION": ("REASON FOR EXAMINATION", "REASON FOR EXAM", "CLINICAL INDICATION",
                   "IDICATION"),
    "HISTORY": ("CLINICAL HISTORY", "CLINICAL INFORMATION", "PATIENT HISTORY", "PFI"),
    "COMPARISON": ("COMPARISONS", "REFERENCE EXAM", "COMPARISON EXAM", "COMPARISON FILM",
                   "COMPARISION", "COMPARSION", "COMPARRISON", "COMPARISIONS"),
    "EXAMINATION": ("EXAM", "TYPE OF EXAMINATION"),
    "RECOMMENDATIONS": ("RECOMMENDATION(S)", "RECOMMENDATION"),
    "WET READ": ("WETREAD",),
}
_SPELLINGS = {alias: name for name, aliases in _CANONICAL.items() for alias in aliases}
# a name containing one of these is that section ("IMPRESSION AND RECOMMENDATION" → IMPRESSION)
_MAIN = ("IMPRESSION", "FINDINGS", "HISTORY", "COMPARISON", "ADDENDUM")
# a header describing the study itself is the findings ("PA AND LATERAL VIEWS OF THE CHEST")
_VIEW_TITLE = re.compile(r"CHEST|PORTABLE|PA AND LAT|LATERAL AND PA|AP AND LATERAL|LATERAL AND AP|"
                         r"FRONTAL AND|TWO VIEWS|FRONTAL VIEW|PA VIEW|AP VIEW|ONE VIEW|"
                         r"LATERAL VIEW|BONE WINDOW|FRONTAL UPRIGHT|FRONTAL SEMI-UPRIGHT|RIBS")


def normalise_section_name(header: str) -> str:
    """Canonical upper-case section name of a report header, as the official parser names it."""
    name = " ".join(header.upper().split())
    if name in _SPELLINGS:
        return _SPELLINGS[name]
    for main in _MAIN:
        if main in name:
            return main
    return "FINDINGS" if _VIEW_TITLE.search(name) else name


def split_sections(text: str, keep_paragraphs: bool = False) -> dict[str, str]:
    """Sections keyed by canonical name, in order; text before the first header is under ``""``.

    Sections with the same canonical name are joined. ``keep_paragraphs`` keeps blank lines
    between paragraphs as "\\n\\n" (the last-paragraph rule needs them); otherwise whitespace is
    collapsed to single spaces.
    """
    clean = _paragraphs if keep_paragraphs else _clean
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    starts = [m.start() for m in matches] + [len(text)]
    preamble = clean(text[:starts[0]])
    if preamble.upper().startswith("FINAL REPORT"):  # MIMIC's title line, not content
        preamble = preamble[len("FINAL REPORT"):].strip()
    if preamble:
        sections[""] = preamble
    for match, end in zip(matches, starts[1:]):
        name = normalise_section_name(match.group(1))
        body = clean(text[match.end():end])
        sections[name] = (sections[name] + " " + body).strip() if name in sections else body
    return sections


def compose_report(sections: dict[str, str]) -> str:
    """FINDINGS and IMPRESSION with their headers (names normalised); '' when neither has text.

    Without FINDINGS and IMPRESSION: the paragraphs after the first of the last section (the
    official parser's last-paragraph rule; needs ``split_sections(..., keep_paragraphs=True)``),
    else the text that is not under a header. Indication, history, comparison, technique and
    the like never enter the report.
    """
    named: dict[str, str] = {}
    for name, body in sections.items():
        key = normalise_section_name(name) if name else ""
        body = body.strip()
        if body:
            named[key] = f"{named[key]} {body}" if key in named else body
    parts = [f"{name}: {_clean(named[name])}" for name in REPORT_SECTIONS if name in named]
    if parts:
        return "\n".join(parts)
    if not named:
        return ""
    last = _PARAGRAPH.split(list(named.values())[-1])
    if len(last) > 1:
        return _clean(" ".join(last[1:]))
    return _clean(named.get("", ""))


def report_text(text: str) -> str:
    """The ``report`` of one raw report file: :func:`split_sections` then :func:`compose_report`."""
    return compose_report(split_sections(text, keep_paragraphs=True)) if text else ""


def _clean(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str) -> str:
    return "\n\n".join(p for p in (_clean(part) for part in _PARAGRAPH.split(text)) if p)
