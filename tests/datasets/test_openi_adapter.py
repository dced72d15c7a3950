"""OpenI (Indiana) report adapter: XML fixtures in the ecgen-radiology format + the real archive."""

from __future__ import annotations

import html
import importlib.util
import re
import tarfile
from pathlib import Path

import pytest

from radsearch.datasets import read_openi, read_openi_reports
from radsearch.datasets.openi import cohort_from_reports, mesh_labels
from radsearch.errors import ManifestError

TEMPLATE = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{n}"/>
   <pmcId id="{n}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{n}"/>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
            <AbstractText Label="COMPARISON">{comparison}</AbstractText>
            <AbstractText Label="INDICATION">XXXX-year-old male, chest pain.</AbstractText>
            <AbstractText Label="FINDINGS">{findings}</AbstractText>
            <AbstractText Label="IMPRESSION">{impression}</AbstractText>
         </Abstract>
      </Article>
   </MedlineCitation>
   <MeSH>
      {mesh}
   </MeSH>
   {images}
</eCitation>
"""


def _report(n, findings, impression, mesh, images, comparison="None."):
    return TEMPLATE.format(
        n=n, findings=findings, impression=impression, comparison=comparison,
        mesh="\n      ".join(f"<{kind}>{tag}</{kind}>" for kind, tag in mesh),
        images="\n   ".join(f'<parentImage id="{i}"><figureId>F1</figureId>'
                            "<caption>Xray Chest PA and Lateral</caption></parentImage>"
                            for i in images))


REPORTS = {
    "1.xml": _report(1, "The cardiac silhouette and mediastinum size are within normal limits.",
                     "Normal chest x-XXXX.", [("major", "normal")],
                     ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]),
    "10.xml": _report(10, "Stable calcified granuloma within the right upper lung.",
                      "No acute cardiopulmonary process.",
                      [("major", "Calcified Granuloma/lung/upper lobe/right"),
                       ("major", "Lung/hypoinflation"), ("automatic", "calcified granuloma")],
                      ["CXR10_IM-0002-1001"]),
    "2.xml": _report(2, "", "", [("major", "No Indexing")], []),
}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ecgen-radiology"
    folder.mkdir()
    for name, text in REPORTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_reports_sections_mesh_and_images(tmp_path):
    reports = read_openi_reports(_folder(tmp_path))
    assert reports["report_id"].tolist() == ["CXR1", "CXR2", "CXR10"]  # numeric order
    first = reports.iloc[0]
    assert first["report"] == ("FINDINGS: The cardiac silhouette and mediastinum size are within "
                               "normal limits.\nIMPRESSION: Normal chest x-XXXX.")
    assert first["comparison"] == "None." and first["labels"] == "No Finding"
    last = reports.iloc[2]
    assert last["labels"] == "Calcified Granuloma|Lung/hypoinflation"
    assert last["mesh_automatic"] == "calcified granuloma"
    assert reports.iloc[1]["labels"] == "" and reports.iloc[1]["report"] == ""


def test_cohort_has_one_row_per_image_and_reads_the_archive(tmp_path):
    folder = _folder(tmp_path)
    archive = tmp_path / "NLMCXR_reports.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="ecgen-radiology")
    for source in (folder, archive):
        t = read_openi(source, images=tmp_path / "png").table
        assert [Path(p).name for p in t["image"]] == [
            "CXR1_1_IM-0001-3001.png", "CXR1_1_IM-0001-4001.png", "CXR10_IM-0002-1001.png"]
        assert t["subject"].tolist() == ["CXR1", "CXR1", "CXR10"]
        assert t["time"].eq(0).all()


@pytest.mark.parametrize("tags, expected", [
    (["normal"], "No Finding"),
    (["Cardiomegaly/mild", "Cardiomegaly/severe"], "Cardiomegaly"),
    (["normal", "Opacity/lung/base/left"], "Opacity"),
    (["Spine/degenerative", "Aorta/tortuous"], "Spine/degenerative|Aorta/tortuous"),
    (["No Indexing"], ""),
])
def test_mesh_labels(tags, expected):
    assert mesh_labels(tags) == expected


def test_not_a_report(tmp_path):
    bad = tmp_path / "x.xml"
    bad.write_text("<eCitation><oops></eCitation>")
    with pytest.raises(ManifestError, match="not a valid OpenI report XML"):
        read_openi_reports(bad)
    with pytest.raises(ManifestError, match="not found"):
        read_openi_reports(tmp_path / "missing")


def test_real_indiana_reports():
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None:
        pytest.skip("torchxrayvision (test extra) is not installed; it ships the real reports")
    path = Path(spec.origin).parent / "data" / "NLMCXR_reports.tgz"
    reports = read_openi_reports(path)
    assert len(reports) == 3_955
    # Independent reference: regular expressions over the raw XML bytes.
    expected_images, expected_findings = {}, {}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.name.endswith(".xml"):
                raw = tar.extractfile(member).read().decode()
                uid = re.search(r'<uId id="([^"]+)"', raw).group(1)
                expected_images[uid] = re.findall(r'<parentImage id="([^"]+)"', raw)
                found = re.search(r'<AbstractText Label="FINDINGS">(.*?)</AbstractText>', raw, re.S)
                expected_findings[uid] = (" ".join(html.unescape(found.group(1)).split())
                                          if found else "")
    assert dict(zip(reports["report_id"], reports["images"].str.split("|").map(
        lambda xs: [x for x in xs if x]))) == expected_images
    assert dict(zip(reports["report_id"], reports["findings"])) == expected_findings
    cohort = cohort_from_reports(reports)
    assert len(cohort) == sum(map(len, expected_images.values()))
    assert (reports["images"] == "").sum() == sum(1 for v in expected_images.values() if not v)
