"""Radiology report text: split into FINDINGS / IMPRESSION / … sections and compose the report.

The ``report`` column of a Cohort holds FINDINGS and IMPRESSION (the parts that describe the image),
each prefixed by its header; reports without either keep their whole text.
"""

from __future__ import annotations

import re

# A header is an upper-case phrase at the start of a line followed by a colon ("FINDINGS:",
# "WET READ:", "PA AND LATERAL VIEWS OF THE CHEST:").
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z0-9 /&()'-]{1,60}?)[ \t]*:", re.M)
REPORT_SECTIONS = ("FINDINGS", "IMPRESSION")


def split_sections(text: str) -> dict[str, str]:
    """Sections keyed by upper-case header; text before the first header is under ``""``."""
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    starts = [m.start() for m in matches] + [len(text)]
    preamble = _clean(text[:starts[0]])
    if preamble.upper().startswith("FINAL REPORT"):  # MIMIC's title line, not content
        preamble = preamble[len("FINAL REPORT"):].strip()
    if preamble:
        sections[""] = preamble
    for match, end in zip(matches, starts[1:]):
        name = " ".join(match.group(1).split())
        body = _clean(text[match.end():end])
        sections[name] = (sections[name] + " " + body).strip() if name in sections else body
    return sections


def compose_report(sections: dict[str, str]) -> str:
    """FINDINGS and IMPRESSION with their headers; else all sections' text; '' when empty."""
    # Exact FINDINGS / IMPRESSION headers first, else variants ("FINDINGS AND IMPRESSION",
    # "IMPRESSIONS") in the order they appear.
    parts = [f"{name}: {sections[name]}" for name in REPORT_SECTIONS if sections.get(name)]
    if not parts:
        parts = [f"{name}: {text}" for name, text in sections.items() if text
                 and any(key[:-1] in name for key in REPORT_SECTIONS)]
    if parts:
        return "\n".join(parts)
    return "\n".join(f"{k}: {v}" if k else v for k, v in sections.items() if v)


def _clean(text: str) -> str:
    return " ".join(text.split())
