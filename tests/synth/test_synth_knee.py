"""Knee phantom cohort: schema, determinism, knobs, files on disk, and the forensic property
(identity persists across visits while matching gets harder with the years)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError
from radsearch.synth import KNEE_KNOBS, generate_knee
from radsearch.synth.common import Acquisition, render
from radsearch.synth.knee import VISIT_MONTHS, KneeState, _anatomy, draw_knee


@pytest.fixture(scope="module")
def small():
    return generate_knee(12, seed=5, image_size=64, workers=1)


def test_schema_and_visits(small):
    t = small.cohort.table
    assert list(t.columns) == ["image", "subject", "time", "side", "view", "study", "split",
                               "site", "kl", "tkr", "age", "visit_months"]
    assert small.images.shape == (12 * 7 * 2, 64, 64) and small.images.dtype == np.uint8
    assert t.subject.str.fullmatch(r"K\d{5}").all()
    for (_, side), g in t.groupby(["subject", "side"]):
        assert tuple(g.visit_months) == VISIT_MONTHS
        np.testing.assert_allclose(g.time, np.array(VISIT_MONTHS) / 12)
        np.testing.assert_allclose(np.diff(g.age), np.diff(g.time), atol=0.011)
    assert set(t.side) == {"L", "R"} and set(t.view) == {"PA"}
    assert set(t.kl) <= set(range(5)) and set(t.tkr) <= {0, 1}
    assert t.study.nunique() == 12 * 7  # one bilateral film per visit
    # every subject has one site, split follows the site (test = C) and is grouped by subject
    assert (t.groupby("subject")[["site", "split"]].nunique() == 1).all().all()
    assert ((t.split == "test") == (t.site == "C")).all()


def test_kl_never_decreases_and_replacement_is_permanent():
    t = generate_knee(60, seed=11, image_size=32, workers=1).cohort.table
    for _, g in t.groupby(["subject", "side"]):
        assert (np.diff(g.kl.to_numpy()) >= 0).all()
        assert (np.diff(g.tkr.to_numpy()) >= 0).all()  # once replaced, always replaced
        if g.tkr.iloc[-1]:
            first = int(np.argmax(g.tkr.to_numpy()))
            assert first > 0 and g.kl.iloc[first - 1] >= 3  # replaced after severe OA was seen
    assert t.kl.nunique() >= 4
    assert (t.tkr == 1).any()


def test_val_split_is_about_15_percent_of_non_test_subjects():
    t = generate_knee(120, seed=2, image_size=32).cohort.table
    per_subject = t.drop_duplicates("subject")
    others = per_subject[per_subject.site != "C"]
    share = (others.split == "val").mean()
    assert abs(share - 0.15) < 0.02
    assert set(others.split) == {"train", "val"}
    assert 0.1 < (per_subject.site == "C").mean() < 0.35


def test_deterministic_and_independent_of_worker_count(small):
    again = generate_knee(12, seed=5, image_size=64, workers=2)
    pd.testing.assert_frame_equal(small.cohort.table, again.cohort.table)
    np.testing.assert_array_equal(small.images, again.images)
    other = generate_knee(12, seed=6, image_size=64, workers=1)
    assert not np.array_equal(small.images, other.images)


def test_acquisition_knob_keeps_anatomy_and_disease_course(small):
    quiet = generate_knee(12, seed=5, image_size=64, workers=1, acquisition_noise=0.0)
    pd.testing.assert_frame_equal(small.cohort.table, quiet.cohort.table)
    assert not np.array_equal(small.images, quiet.images)


@pytest.mark.parametrize("kwargs", [{"subject_similarity": 1.5}, {"change_per_year": -1},
                                    {"acquisition_noise": float("nan")},
                                    {"replacement_rate": "lots"}, {"similarity": 0.3}])
def test_bad_knobs_raise_config_error(kwargs):
    with pytest.raises(ConfigError) as err:
        generate_knee(2, image_size=32, **kwargs)
    assert list(kwargs)[0] in str(err.value)


@pytest.mark.parametrize("n, size", [(0, 64), (2.5, 64), (3, 8), (3, True)])
def test_bad_sizes_raise_config_error(n, size):
    with pytest.raises(ConfigError):
        generate_knee(n, image_size=size)


def test_knobs_are_documented_with_defaults_in_range():
    for name, knob in KNEE_KNOBS.items():
        assert knob.low <= knob.default <= knob.high and knob.help, name


def test_files_and_manifest_on_disk(tmp_path, small):
    out = tmp_path / "knees"
    synth = generate_knee(12, seed=5, image_size=64, out_dir=out, workers=2)
    assert synth.images is None and synth.manifest == out / "manifest.csv"
    loaded = Cohort.load(out / "manifest.csv")
    pd.testing.assert_frame_equal(loaded.table, small.cohort.table)
    paths = loaded.image_paths()
    assert all(p.is_file() for p in paths)
    for i in (0, 13, 100):
        np.testing.assert_array_equal(np.asarray(Image.open(paths[i])), small.images[i])
    leftovers = [p for p in out.rglob(".*")]
    assert leftovers == []  # atomic writes leave no temporary files


def test_radiograph_contrast_bone_brighter_than_soft_tissue_than_air():
    rng = np.random.default_rng(0)
    a = _anatomy(rng, 0.0)
    texture = np.zeros((64, 64), np.float32)
    att = draw_knee(128, a, KneeState(0.0, False, 0.0), texture, (0.0, 1.0, (0.0, 0.0), 0.0), 1.0)
    img = render(att, Acquisition(noise=0.0, blur=0.0), rng).astype(float)
    centre_femur = img[20:40, 60:68].mean()      # femoral shaft, above the joint
    soft = img[20:40, 14:20].mean()             # beside the bone, inside the leg
    assert centre_femur > soft + 40
    a_thin = _anatomy(rng, 0.0)
    a_thin.soft_half = 0.7                       # a thin leg leaves air at the image edge
    att = draw_knee(128, a_thin, KneeState(0.0, False, 0.0), texture, (0, 1.0, (0, 0), 0), 1.0)
    air = render(att, Acquisition(noise=0.0, blur=0.0), rng).astype(float)[:, :4].mean()
    assert air < soft - 20


def test_osteoarthritis_narrows_the_joint_and_replacement_adds_metal():
    rng = np.random.default_rng(1)
    a = _anatomy(rng, 0.0)
    texture = np.zeros((64, 64), np.float32)
    pose = (0.0, 1.0, (0.0, 0.0), 0.0)

    def image(state):
        att = draw_knee(128, a, state, texture, pose, 1.0)
        return render(att, Acquisition(gain=2.2, noise=0.0, blur=0.0), rng).astype(float)

    healthy, severe = image(KneeState(0.0, False, 0.0)), image(KneeState(3.8, False, 0.0))
    replaced = image(KneeState(3.8, True, 0.0))
    row = int((a.joint_y + 1) / 2 * 128)
    # The medial compartment is on the image's left (left-knee frame): count the dark rows of
    # the joint space below the middle of the medial condyle.
    col = int((-a.condyle_half + a.condyle_m[0] + 1) / 2 * 128)
    def gap(img):
        bone = img[row - 24:row - 14, col].mean()  # the condyle above the joint
        return int((img[row - 10:row + 10, col] < 0.75 * bone).sum())

    assert gap(healthy) >= 3 and gap(severe) <= gap(healthy) - 2
    assert (replaced >= 250).sum() > 200 and (healthy >= 250).sum() == 0


def _pixel_retrieval(synth, months):
    """Downsampled-pixel cosine descriptor: CMC@1 of follow-up queries against baselines."""
    t = synth.cohort.table
    imgs = synth.images.astype(np.float32)
    right = (t.side == "R").to_numpy()
    imgs[right] = imgs[right][:, :, ::-1]  # right knees mirrored, as the pipeline does
    n, h, w = imgs.shape
    feats = imgs.reshape(n, h // 4, 4, w // 4, 4).mean((2, 4)).reshape(n, -1)
    feats -= feats.mean(1, keepdims=True)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    gallery = (t.visit_months == 0).to_numpy()
    query = t.visit_months.isin(months).to_numpy()
    best = (feats[query] @ feats[gallery].T).argmax(1)
    subjects = t.subject.to_numpy()
    return float((subjects[gallery][best] == subjects[query]).mean())


def test_identity_persists_but_matching_gets_harder_with_years():
    synth = generate_knee(40, seed=0, image_size=64)
    near = _pixel_retrieval(synth, (12, 24))
    far = _pixel_retrieval(synth, (72, 96))
    chance = 1 / 40
    assert near > 5 * chance          # the same subject is found much better than chance
    assert near < 0.9                 # ... but far from perfectly: subjects look alike
    assert far < near - 0.03          # and it gets harder with the years apart
