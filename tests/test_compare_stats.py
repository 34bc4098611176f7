"""Seeds: spread, intervals and verdicts (unetlab.compare.stats) on hand-made rows; the
benchmark scripts that read such rows."""

import importlib.util
import json
from pathlib import Path

import pytest

from unetlab.compare.stats import (
    aggregate,
    bootstrap_interval,
    budget_mode,
    summarize,
    verdict_sentence,
    verdicts,
)


def test_three_seed_interval_is_their_range_and_one_seed_has_none():
    assert bootstrap_interval([0.2, 0.5, 0.3]) == pytest.approx([0.2, 0.5])
    assert bootstrap_interval([0.4]) is None
    assert bootstrap_interval([0.4, None, float("nan")]) is None
    many = bootstrap_interval([float(i) for i in range(20)])
    assert 6 < many[0] < 9.5 < many[1] < 13  # narrower than the range, around the mean
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0) and s["n"] == 3


def _bench(name):
    """A script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs(label, mious, latencies):
    return [{"label": label, "model": "unet", "seed": i, "miou": m, "latency_ms": t,
             "class_names": ["a", "b"], "iou_per_class": [m, 2 * m], "fingerprint": "x"}
            for i, (m, t) in enumerate(zip(mious, latencies))]


def test_aggregate_and_verdicts_separate_only_without_overlap():
    a = aggregate(_runs("a", [0.80, 0.82, 0.81], [10.0, 30.0, 20.0]))
    b = aggregate(_runs("b", [0.70, 0.72, 0.71], [12.0, 25.0, 18.0]))
    c = aggregate(_runs("c", [0.79, 0.83, 0.75], [50.0, 55.0, 60.0]))
    assert a["miou"] == pytest.approx(0.81) and a["seeds"] == [0, 1, 2]
    assert a["iou_per_class"] == pytest.approx([0.81, 1.62])
    assert "fingerprint" not in a and len(a["runs"]) == 3
    found = {v["metric"]: v for v in verdicts([a, b, c])}
    assert found["miou"]["best"] == "a"
    assert found["miou"]["separated"] == ["b"]          # 0.80..0.82 vs 0.70..0.72
    assert found["miou"]["not_separated"] == ["c"]      # 0.75..0.83 overlaps
    assert "latency_ms" not in found  # timed numbers: intervals, never verdicts
    text = verdict_sentence(found["miou"])
    assert "separated from b" in text and "not separated from c" in text


def test_two_seeds_give_an_interval_but_no_verdict():
    rows = [aggregate(_runs("a", [0.90, 0.91], [1, 1])),
            aggregate(_runs("b", [0.10, 0.11], [1, 1]))]
    assert rows[0]["miou_interval"] == pytest.approx([0.90, 0.91])
    assert verdicts(rows)[0]["separated"] == []


def test_one_seed_never_separates():
    rows = [aggregate(_runs("a", [0.9], [1.0])), aggregate(_runs("b", [0.1], [9.0]))]
    found = verdicts(rows)
    assert all(not v["separated"] for v in found)
    assert "one seed: no interval" in verdict_sentence(found[0])


def test_budget_mode_names_equal_steps_or_equal_time():
    assert budget_mode({"train": {"max_steps": 200, "epochs": None}}).startswith(
        "equal steps: each entry trains for 200 optimizer steps")
    assert budget_mode({"train": {"time_budget_s": 60, "epochs": None}}).startswith(
        "equal time: each entry trains for 60 s")
    assert "first of 10 optimizer steps, 5 s" in budget_mode(
        {"train": {"max_steps": 10, "time_budget_s": 5}})


def test_paired_images_separates_only_a_consistent_difference(tmp_path):
    paired = _bench("paired_images")

    def write(path, values):
        path.write_text("name,miou\n" + "".join(f"im{i},{v}\n" for i, v in enumerate(values)))
        return paired.read_rows(path)

    base = [0.40, 0.55, 0.31, 0.62, 0.47, 0.52, 0.38, 0.44]
    a = write(tmp_path / "a.csv", base)
    better = write(tmp_path / "b.csv", [v + 0.05 + 0.01 * (i % 3) for i, v in enumerate(base)])
    noisy = write(tmp_path / "c.csv", [v + (0.1 if i % 2 else -0.1) for i, v in enumerate(base)])
    (row,) = paired.compare(a, better, ["miou"])
    assert row["separated"] and row["interval"][0] > 0 and row["images"] == 8
    assert abs(row["mean_diff"] - (0.05 + 0.01 * (0 + 1 + 2 + 0 + 1 + 2 + 0 + 1) / 8)) < 1e-9
    (row,) = paired.compare(a, noisy, ["miou"])
    assert not row["separated"] and row["interval"][0] < 0 < row["interval"][1]


def test_seeds_compare_needs_the_difference_to_beat_the_seed_spread(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("seeds_compare",
                                                      bench / "seeds_compare.py")
        seeds = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(seeds)
    finally:
        sys.path.remove(str(bench))
        sys.modules.pop("paired_images", None)

    base = [0.40, 0.55, 0.31, 0.62, 0.47, 0.52, 0.38, 0.44]

    def write(name, shift):
        path = tmp_path / f"{name}.csv"
        path.write_text("name,miou\n" + "".join(f"im{i},{v + shift}\n"
                                                for i, v in enumerate(base)))
        return path

    a = [write("a0", 0.0), write("a1", 0.004), write("a2", -0.003)]
    steady = [write("b0", 0.05), write("b1", 0.053), write("b2", 0.047)]
    (row,) = seeds.compare(a, steady, ["miou"])
    assert row["separated"] and row["bootstrap"][0] > 0 and row["welch"][0] > 0
    assert abs(row["mean_diff"] - (0.05 - 0.001 / 3)) < 1e-9
    # the same mean gain, but one seed of B is far off: the seeds do not carry it
    spread = [write("c0", 0.15), write("c1", -0.03), write("c2", 0.03)]
    (row,) = seeds.compare(a, spread, ["miou"])
    assert not row["separated"] and row["welch"][0] < 0 < row["welch"][1]
    assert row["bootstrap"][0] < 0          # the runs are resampled, not only the images


def test_val_curve_reads_validations_and_splits_them_by_fifths(tmp_path, capsys):
    curve = _bench("val_curve")
    run = tmp_path / "run"
    run.mkdir()
    rows = ["epoch,step,train_loss,pixel_error"]
    rows += [f"{i},{i * 10},0.5," + (f"{0.2 - i * 0.01:.2f}" if i % 2 else "")
             for i in range(1, 11)]                    # validations at the odd epochs
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    points = curve.validations(run, "pixel_error")
    assert points[0] == (10, 0.19) and points[-1] == (90, 0.11) and len(points) == 5
    parts = curve.by_part(points, "min")                 # fifths of step 90: 18 steps each
    assert [p[2] for p in parts] == [1, 1, 1, 1, 1]
    assert parts[-1][0] == pytest.approx(0.11) and parts[0][0] == pytest.approx(0.19)
    assert curve.by_part(points, "max")[0][0] == pytest.approx(0.19)
    assert curve.main([str(run)]) == 0
    assert "| 90 | 5 | 0.1100 |" in capsys.readouterr().out
    assert curve.main([str(run), "--metric", "miou"]) == 2          # no such column
    assert curve.main([str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("script", ["profile_openvino_layers.py", "bench_int8_saturation.py",
                                    "bench_split_levels.py", "bench_int8_variants.py",
                                    "bench_winograd_training.py",
                                    "bench_torch_winograd.py"])
def test_benchmarks_never_replace_an_earlier_result(tmp_path, script):
    """``--json PATH`` that exists stops the benchmark before any work, in one line."""
    import subprocess
    import sys
    from pathlib import Path

    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"kept": true}\n')
    bench = Path(__file__).parents[1] / "benchmarks" / script
    done = subprocess.run([sys.executable, str(bench), "--json", str(earlier)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "exists; not replacing it" in done.stderr.strip().splitlines()[-1]
    assert earlier.read_text() == '{"kept": true}\n'


def test_threshold_sweep_counts_errors_and_refuses_bad_input(tmp_path, capsys):
    """Pixel error per threshold on made-up probabilities, one-line errors otherwise."""
    import imageio.v3 as iio
    import numpy as np
    import tifffile

    sweep = _bench("threshold_sweep")
    probs, labels = tmp_path / "probs", tmp_path / "labels"
    probs.mkdir()
    labels.mkdir()
    fg = np.array([[0.9, 0.6], [0.4, 0.1]], dtype=np.float32)     # foreground probability
    tifffile.imwrite(probs / "a_probs.tif", np.stack([1 - fg, fg]))
    iio.imwrite(labels / "a.png", np.array([[0, 0], [0, 255]], dtype=np.uint8))  # 0 = fg
    out = tmp_path / "sweep.json"
    assert sweep.main([str(probs), str(labels), "--foreground-value", "0",
                       "--thresholds", "0.5", "0.7", "--json", str(out)]) == 0
    rows = {r["threshold"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows[0.5]["pixel_error"] == 0.25 and rows[0.5]["false_negative"] == 0.25
    assert rows[0.7]["pixel_error"] == 0.5 and rows[0.7]["false_positive"] == 0.0
    capsys.readouterr()
    for argv in ([str(probs), str(labels), "--json", str(out)],          # result kept
                 [str(tmp_path / "none"), str(labels)],                    # no maps
                 [str(probs), str(labels), "--channel", "5"]):             # no such plane
        with pytest.raises(SystemExit) as stop:
            sweep.main(argv)
        assert stop.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()[-1]) < 300
