"""Chest phantom cohort: schema, labels and reports per study, splits, knobs, and that every
CheXpert finding has a visible signature in the image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError
from radsearch.synth import CHEST_KNOBS, generate_chest
from radsearch.synth.chest import StudyState, _anatomy, draw_chest
from radsearch.synth.common import Acquisition, render
from radsearch.synth.reports import FINDINGS

from test_synth_reports import read_labels  # same folder (pytest puts it on sys.path)


@pytest.fixture(scope="module")
def cohort():
    return generate_chest(40, seed=3, image_size=64, report_fraction=0.5, workers=1)


def test_schema_views_and_times(cohort):
    t = cohort.cohort.table
    assert list(t.columns) == ["image", "subject", "time", "view", "study", "split", "labels",
                               "report", "age", "sex"]
    assert cohort.images.shape == (len(t), 64, 64) and cohort.images.dtype == np.uint8
    assert set(t.view) == {"PA", "AP"}
    for _, g in t.groupby("subject"):
        assert g.time.iloc[0] == 0.0 and (np.diff(g.time) >= 0).all()
        assert g.study.nunique() >= 2  # longitudinal: every subject has follow-ups
    assert t.time.max() > 4  # some subjects are followed for years
    per_study = t.groupby("study").size()
    assert per_study.min() >= 1 and per_study.max() <= 3 and (per_study > 1).any()


def test_labels_are_chexpert_names_and_shared_by_a_study(cohort):
    t = cohort.cohort.table
    sets = cohort.cohort.label_sets()
    for labels in sets:
        assert labels <= set(FINDINGS) and labels
        assert "No Finding" not in labels or labels == {"No Finding"}
    assert (t.groupby("study")[["labels", "report"]].nunique() == 1).all().all()
    seen = set().union(*sets)
    assert len(seen) >= 10  # most of the 14 findings occur in a 40-subject cohort
    assert 0.15 < (t.labels == "No Finding").mean() < 0.8


def test_reports_agree_with_labels_and_fraction_is_respected(cohort):
    t = cohort.cohort.table.drop_duplicates("study")
    with_report = t[t.report != ""]
    assert 0.3 < len(with_report) / len(t) < 0.7
    for labels, report in zip(with_report.labels, with_report.report):
        expected = set(labels.split("|")) - {"No Finding"}
        assert read_labels(report) == expected, report
    none = generate_chest(4, seed=3, image_size=32, report_fraction=0.0).cohort.table
    assert (none.report == "").all()
    full = generate_chest(4, seed=3, image_size=32).cohort.table
    assert (full.report != "").all()
    pd.testing.assert_series_equal(none.labels, full.labels)  # reports do not change the labels


def test_split_is_patient_disjoint_about_70_10_20():
    t = generate_chest(100, seed=1, image_size=32).cohort.table
    assert (t.groupby("subject").split.nunique() == 1).all()
    share = t.drop_duplicates("subject").split.value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.02 and abs(share["val"] - 0.1) < 0.02
    assert abs(share["test"] - 0.2) < 0.02


def test_deterministic_across_workers_and_written_to_disk(tmp_path, cohort):
    again = generate_chest(40, seed=3, image_size=64, report_fraction=0.5, workers=2,
                           out_dir=tmp_path / "chest")
    loaded = Cohort.load(tmp_path / "chest" / "manifest.csv")
    pd.testing.assert_frame_equal(loaded.table, cohort.cohort.table)
    assert again.images is None and all(p.is_file() for p in loaded.image_paths())


@pytest.mark.parametrize("kwargs", [{"finding_rate": -0.1}, {"subject_similarity": 2},
                                    {"report_fraction": 1.5}, {"severity": 1}])
def test_bad_knobs_raise_config_error(kwargs):
    with pytest.raises(ConfigError) as err:
        generate_chest(2, image_size=32, **kwargs)
    assert list(kwargs)[0] in str(err.value)


def test_knobs_documented():
    assert set(CHEST_KNOBS) >= {"subject_similarity", "change_per_year", "acquisition_noise"}


DETAILS = {"side": "left", "size": "moderate", "zone": "lower zone"}
SIGNATURES = [
    ("Cardiomegaly", {}), ("Enlarged Cardiomediastinum", {}), ("Lung Lesion", {}),
    ("Edema", {}), ("Consolidation", {}), ("Pneumonia", {}), ("Atelectasis", {}),
    ("Pneumothorax", {}), ("Pleural Effusion", {}), ("Pleural Other", {}), ("Fracture", {}),
    ("Lung Opacity", {}), ("Support Devices", {"devices": ("pacemaker",)}),
    ("Support Devices", {"devices": ("endotracheal tube", "nasogastric tube")}),
]


@pytest.mark.parametrize("finding, extra", SIGNATURES)
def test_every_finding_changes_the_image(finding, extra):
    rng = np.random.default_rng(0)
    anatomy = _anatomy(rng, 0.5)
    texture = rng.standard_normal((96, 96)).astype(np.float32)
    pose = (0.0, 1.0, (0.0, 0.0), 0.0)

    def image(state):
        att = draw_chest(128, anatomy, state, texture, pose, 1.0)
        return render(att, Acquisition(gain=2.3, noise=0.0, blur=0.0), rng).astype(int)

    base = StudyState(nodule=(0.4, -0.1, 0.05), fracture=(1, 4, 0.4))
    with_finding = StudyState(findings={finding: DETAILS}, nodule=base.nodule,
                              fracture=base.fracture, **extra)
    diff = np.abs(image(with_finding) - image(base))
    assert (diff > 6).sum() >= 25, f"{finding}: too faint to see"


def test_identity_is_retrievable_but_not_trivially(cohort):
    """Downsampled-pixel cosine: later images find the subject's first study above chance."""
    t = cohort.cohort.table
    imgs = cohort.images.astype(np.float32)
    feats = imgs.reshape(len(imgs), 16, 4, 16, 4).mean((2, 4)).reshape(len(imgs), -1)
    feats -= feats.mean(1, keepdims=True)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    gallery = (t.time == 0).to_numpy()
    query = (t.time > 0).to_numpy()
    best = (feats[query] @ feats[gallery].T).argmax(1)
    subjects = t.subject.to_numpy()
    cmc1 = float((subjects[gallery][best] == subjects[query]).mean())
    chance = 1 / t.subject.nunique()
    assert 3 * chance < cmc1 < 0.9
