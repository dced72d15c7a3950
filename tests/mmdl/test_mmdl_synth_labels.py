"""`draw_from_labels`: a phantom showing given findings, deterministic per seed."""

import numpy as np
import pytest

from radsearch.errors import ConfigError
from radsearch.synth.chest import draw_from_labels


def test_same_labels_and_seed_give_the_same_image_and_findings_change_it():
    a, report = draw_from_labels(["Cardiomegaly", "Pleural Effusion"], seed=4, image_size=48)
    b, _ = draw_from_labels(["Cardiomegaly", "Pleural Effusion"], seed=4, image_size=48)
    normal, normal_report = draw_from_labels(["No Finding"], seed=4, image_size=48)
    assert a.dtype == np.uint8 and a.shape == (48, 48)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, normal)  # same anatomy and acquisition, the findings differ
    assert "effusion" in report.lower() and ("cardiomegaly" in report.lower()
                                             or "enlarge" in report.lower())
    assert "effusion." not in normal_report.lower().replace("no pleural effusion.", "")


def test_unknown_label_is_one_line():
    with pytest.raises(ConfigError) as info:
        draw_from_labels(["Cardiomegally"])
    assert "\n" not in str(info.value) and "Cardiomegally" in str(info.value)
