"""Class statistics: SegNet median-frequency and inverse-frequency weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unetlab.cli import main
from unetlab.data.stats import ClassStatistics, median_frequency_weights


def test_median_frequency_by_hand():
    # image A: 3 px class 0, 1 px class 1; image B: 2 px class 0, 2 px class 2
    a = np.array([[0, 0], [0, 1]])
    b = np.array([[0, 2], [0, 2]])
    s = ClassStatistics(3)
    s.update(a)
    s.update(b)
    r = s.compute()
    # freq(0) = 5/8, freq(1) = 1/4 (only image A has it), freq(2) = 2/4
    assert r["median_frequency_freq"] == pytest.approx([5 / 8, 1 / 4, 1 / 2])
    assert r["class_weights"]["median_frequency"] == pytest.approx([0.8, 2.0, 1.0])
    # inverse: N / (K n_c) = 8 / (3 * [5, 1, 2])
    assert r["class_weights"]["inverse_frequency"] == pytest.approx([8 / 15, 8 / 3, 4 / 3])
    assert r["class_frequencies"] == pytest.approx([5 / 8, 1 / 8, 2 / 8])
    assert r["images_with_class"] == [2, 1, 1]


def test_ignore_and_absent_classes():
    m = np.array([[0, 0, 9], [1, 9, 9]])
    w = median_frequency_weights([m], num_classes=3, ignore_index=9)
    # labelled pixels: 3; freq(0) = 2/3, freq(1) = 1/3, class 2 absent -> weight 0
    assert w.tolist() == pytest.approx([0.75, 1.5, 0.0])
    s = ClassStatistics(3, ignore_index=9)
    s.update(m)
    assert s.compute()["ignored_pixels"] == 3
    with pytest.raises(ValueError, match="outside 0..2"):
        ClassStatistics(3).update(np.array([[0, 5]]))


def test_stats_cli_json_on_synthetic(tmp_path, capsys):
    out = tmp_path / "s.json"
    code = main(["stats", "--dataset", "shapes", "--json", str(out), "--no-progress"])
    assert code == 0
    table = capsys.readouterr().out
    assert "median_freq_w" in table and "triangle" in table
    data = json.loads(out.read_text())
    assert set(data["class_weights"]) == {"median_frequency", "inverse_frequency"}
    assert len(data["class_frequencies"]) == 5
    assert sum(data["class_frequencies"]) == pytest.approx(1.0)
    assert data["image_sizes"] == [{"height": 128, "width": 128, "count": 64}]


def test_camvid_weights_match_segnet(camvid_root, tmp_path, capsys):
    from unetlab.data.camvid import SEGNET_WEIGHTS

    out = tmp_path / "camvid.json"
    assert main(["stats", "--dataset", "camvid", "--data", str(camvid_root), "--split",
                 "train", "--json", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    weights = np.array(json.loads(out.read_text())["class_weights"]["median_frequency"])
    ratio = weights / np.array(SEGNET_WEIGHTS)
    close = np.abs(ratio - 1) <= 0.2
    assert close.sum() == 10 and not close[6]  # SignSymbol is the exception
    assert np.argsort(weights)[-1] == 10  # Bicyclist is the rarest
