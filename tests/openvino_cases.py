"""The OpenVINO backend: int8 (NNCF) keeps a trained model's answers, goes through the
tiler, exports and loads back with its card; a missing OpenVINO is a one-line error."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import unetlab
from unetlab.cli import main
from unetlab.data.synthetic import make_shapes_image
from unetlab.errors import UnetlabError
from unetlab.inference import optimize_for_inference, predict_tiled


def _shapes(n, seed, size=64):
    rng = np.random.default_rng(seed)
    pairs = [make_shapes_image(rng, size) for _ in range(n)]
    x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im, _ in pairs])
    y = torch.stack([torch.from_numpy(m).long() for _, m in pairs])
    return x, y


@pytest.fixture(scope="module")
def trained():
    """A U-Net (8, 16, 32) + batch norm trained ~10 s on synthetic 5-class shapes, and
    its validation images."""
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=3, num_classes=5, channels=(8, 16, 32),
                                 norm="batch")
    x, y = _shapes(32, seed=1)
    opt = torch.optim.Adam(model.parameters(), 0.01)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is as fast and never oversubscribes
    try:
        for _ in range(150):
            i = torch.randint(0, len(x), (8,))
            loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    val_x, val_y = _shapes(8, seed=2)
    return model, val_x, val_y


def test_int8_agrees_with_fp32_on_trained_model(trained):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    model, val_x, val_y = trained
    with torch.no_grad():
        ref = model(val_x)
    assert (ref.argmax(1) == val_y).float().mean() > 0.8  # the model did learn
    calibration = list(_shapes(8, seed=3)[0].split(2))  # not the validation images
    fast = optimize_for_inference(model, backend="openvino", precision="int8",
                                  calibration=calibration)
    got = fast(val_x)
    assert got.shape == ref.shape and got.dtype == torch.float32
    agreement = (got.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agreement >= 0.99
    assert fast.optimization["precision"] == "int8"
    assert fast.optimization["calibration"]["batches"] == 4
    assert (fast.num_classes, fast.in_channels, fast.spatial_dims) == (5, 3, 2)


def test_openvino_fp32_through_tiler_with_tta_on_odd_size(trained):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    model = trained[0]
    fast = optimize_for_inference(model, backend="openvino")
    x = torch.rand(2, 3, 75, 90)  # not a multiple of the pooling factor
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() < 1e-4
    image = x[0]
    got = predict_tiled(fast, image, tile_size=48, tta=True)
    assert got.shape == (5, 75, 90)
    # the tiler treats every exported-graph backend alike
    ort = optimize_for_inference(model, backend="onnxruntime")
    assert (got - predict_tiled(ort, image, tile_size=48, tta=True)).abs().max() < 1e-4


def test_int8_needs_calibration_and_the_openvino_backend(trained):
    pytest.importorskip("openvino")
    model = trained[0]
    with pytest.raises(ValueError, match="calibration"):
        optimize_for_inference(model, backend="openvino", precision="int8")
    with pytest.raises(ValueError, match="openvino"):
        optimize_for_inference(model, backend="torch", precision="int8",
                               calibration=[torch.rand(1, 3, 32, 32)])
    with pytest.raises(ValueError, match=r"calibration batch 0 has shape \(1, 1, 32, 32\)"):
        optimize_for_inference(model, backend="openvino", precision="int8",
                               calibration=[torch.rand(1, 1, 32, 32)])


def _write_images(folder, n, seed):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(make_shapes_image(rng, 64)[0]).save(folder / f"img{i}.png")
    return folder


def test_export_openvino_int8_round_trips_with_its_card(trained, tmp_path, capsys):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from unetlab.card import build_card
    from unetlab.inference.openvino import load_openvino, read_card
    from unetlab.models.serialization import save_model
    from unetlab.preprocess import Preprocessing

    model = trained[0]
    prep = Preprocessing(channels=3, normalize={"mean": [0.5] * 3, "std": [0.25] * 3})
    ckpt = save_model(model, tmp_path / "model.safetensors",
                      card=build_card(model, class_names=list("abcde"), preprocessing=prep))
    calib = _write_images(tmp_path / "calib", 3, seed=5)
    out = tmp_path / "ov" / "model.xml"
    args = ["export", str(ckpt), "--format", "openvino", "--int8", "--calibration",
            str(calib), "--tile-size", "64", "--out", str(out)]
    assert main(args) == 0
    assert "argmax agreement" in capsys.readouterr().out
    card = read_card(out)
    opt = card["extensions"]["optimization"]
    assert (opt["backend"], opt["precision"]) == ("openvino", "int8")
    assert opt["calibration"]["batches"] == 3 and opt["calibration"]["folder"] == str(calib)
    assert card["classes"]["names"] == list("abcde")
    assert card["input"]["normalize"]["mean"] == [0.5] * 3  # the card travels whole
    assert card["architecture"]["num_classes"] == 5
    assert out.with_suffix(".bin").is_file()
    assert (tmp_path / "ov" / "model.xml.card.json").is_file()
    loaded = load_openvino(out)
    assert (loaded.in_channels, loaded.num_classes, loaded.size_multiple) == (3, 5, 4)
    x = _shapes(2, seed=7, size=60)[0]
    with torch.no_grad():
        ref = model(x)
    assert (loaded(x).argmax(1) == ref.argmax(1)).float().mean() >= 0.99
    # a size that is not a multiple of the pooling factor is padded as the model pads it
    x = _shapes(1, seed=8, size=62)[0]
    with torch.no_grad():
        ref = model(x)
    out62 = loaded(x)
    assert out62.shape == ref.shape
    assert (out62.argmax(1) == ref.argmax(1)).float().mean() >= 0.99
    # an existing export is never replaced without --overwrite
    before = out.read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(args + ["--overwrite"]) == 0


def test_auto_probes_both_int8_variants_and_caches_the_one_it_keeps(trained, tmp_path,
                                                                     monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from unetlab.inference import auto

    monkeypatch.setenv("UNETLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("UNETLAB_AUTO_BACKENDS", "openvino")
    model, val_x, _ = trained
    calibration = list(_shapes(4, seed=3)[0].split(2))
    first = optimize_for_inference(model, backend="auto", precision="int8",
                                   calibration=calibration)
    assert set(first.choice["agreement"]) == {"openvino_int8", "openvino_int8_all"}
    keep = first.choice["keep_fp32"]
    assert keep in (["first", "last"], [])
    assert first.optimization["calibration"]["keep_fp32"] == keep
    second = optimize_for_inference(model, backend="auto", precision="int8",
                                    calibration=calibration)
    assert second.choice["cached"] and second.choice["keep_fp32"] == keep
    assert second.optimization["calibration"]["keep_fp32"] == keep  # rebuilt as chosen
    with torch.no_grad():
        ref = model(val_x).argmax(1)
    assert (second(val_x).argmax(1) == ref).float().mean() >= 0.99
    # a keep_fp32 the caller names is the only variant: nothing to probe
    named = optimize_for_inference(model, backend="auto", precision="int8",
                                   calibration=calibration, keep_fp32=("last",))
    assert named.choice == {"backend": "openvino", "precision": "int8", "probed": False,
                            "keep_fp32": ["last"]}
    assert auto.variants([("openvino", "int8")], ("last",)) == [("openvino", "int8", ("last",))]


def test_predict_cli_int8_with_calibration(trained, tmp_path, capsys):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from unetlab.models.serialization import save_model

    ckpt = save_model(trained[0], tmp_path / "model.safetensors")
    images = _write_images(tmp_path / "images", 2, seed=8)
    out = tmp_path / "pred"
    code = main(["predict", str(ckpt), str(images), "--out", str(out), "--backend",
                 "openvino", "--precision", "int8", "--calibration", str(images),
                 "--tile-size", "32", "--no-progress"])
    assert code == 0
    from PIL import Image

    labels = np.asarray(Image.open(out / "img0_labels.png"))
    assert labels.shape == (64, 64) and labels.max() < 5
    assert main(["predict", str(ckpt), str(images), "--out", str(tmp_path / "p2"),
                 "--precision", "int8", "--backend", "openvino", "--no-progress"]) == 2
    assert "--calibration" in capsys.readouterr().err


def test_missing_openvino_is_one_line_naming_the_extra(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(UnetlabError, match=r'pip install "unetlab\[openvino\]"'):
        optimize_for_inference(trained[0], backend="openvino")
    from unetlab.models.serialization import save_model

    ckpt = save_model(trained[0], tmp_path / "model.safetensors")
    code = main(["export", str(ckpt), "--format", "openvino", "--out",
                 str(tmp_path / "m.xml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unetlab[openvino]" in err and len(err.splitlines()) == 1


def test_openvino_fp32_winograd_layers_agree_at_any_size(tmp_path, capsys):
    """The fp32 graph writes the wide 3x3 layers as Winograd for the expected shape, and
    still agrees with PyTorch at other sizes; `winograd=False` and exported files keep
    the plain graph."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from unetlab.card import build_card
    from unetlab.models.serialization import save_model

    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=3, num_classes=3, channels=(8, 256, 256),
                                 norm="batch").eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.1, 0.1)  # folded batch norm that changes something
        bn.running_var.uniform_(0.5, 2.0)
    fast = optimize_for_inference(model, backend="openvino", winograd=True,
                                  probe_shape=(1, 3, 32, 32))
    assert fast.optimization["winograd"]["layers"] >= 2
    ops = [op.get_type_name() for op in fast.ov_model.get_ordered_ops()]
    assert ops.count("MatMul") > fast.optimization["winograd"]["layers"]  # mixing + output
    for shape in [(1, 3, 32, 32), (2, 3, 44, 60), (1, 3, 20, 36)]:
        x = torch.rand(shape)
        with torch.no_grad():
            ref = model(x)
        got = fast(x)
        assert got.shape == ref.shape
        assert (got - ref).abs().max() <= 1e-4 * ref.abs().max(), shape
    plain = optimize_for_inference(model, backend="openvino", winograd=False)
    assert "winograd" not in plain.optimization
    assert "MatMul" not in [op.get_type_name() for op in plain.ov_model.get_ordered_ops()]
    # `unetlab export --format openvino` hands on the plain graph (CPUs unknown here)
    ckpt = save_model(model, tmp_path / "m.safetensors", card=build_card(model))
    out = tmp_path / "m.xml"
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(out)]) == 0
    capsys.readouterr()
    assert 'type="MatMul"' not in out.read_text()
