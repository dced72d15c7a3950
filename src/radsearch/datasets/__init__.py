"""Adapters: real datasets (metadata files) → :class:`radsearch.cohort.Cohort`.

Each adapter reads metadata only; whether the image files exist is a separate, optional check
(:func:`missing_images`, ``radsearch cohort validate --check-files``), so splits can be planned
before the download. See docs/data.md for the exact files each one expects.
"""

from radsearch.datasets.chexpert import read_chexpert
from radsearch.datasets.dicom_folder import read_dicom_folder
from radsearch.datasets.files import missing_images
from radsearch.datasets.labels import CHEXPERT_LABELS, POLICIES
from radsearch.datasets.manifest import read_table_manifest
from radsearch.datasets.mimic import read_mimic
from radsearch.datasets.nih import read_nih
from radsearch.datasets.oai import VISIT_MONTHS, read_oai
from radsearch.datasets.openi import read_openi, read_openi_reports

__all__ = [
    "CHEXPERT_LABELS", "POLICIES", "VISIT_MONTHS", "missing_images", "read_chexpert",
    "read_dicom_folder", "read_mimic", "read_nih", "read_oai", "read_openi", "read_openi_reports",
    "read_table_manifest",
]
