"""Overlap-tile inference: geometry, windows, exactness against whole-image passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unetlab
from unetlab.inference import plan_tiles, predict_tiled, reflect_indices, window_1d
from unetlab.inference.tiling import tta_transforms


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def small_unet():
    torch.manual_seed(0)
    return _randomise_bn(unetlab.create_model("unet", in_channels=1, num_classes=2,
                                              channels=(8, 16, 32), norm="batch"))


def test_reflect_indices_hand_example():
    # size 4 -> pixels 0 1 2 3; mirrored about the border pixels
    assert reflect_indices(-2, 8, 4).tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    assert reflect_indices(0, 3, 1).tolist() == [0, 0, 0]
    assert reflect_indices(-7, 3, 3).tolist() == [1, 2, 1]  # ... 1 2 1 0 [1 2] 1 0 1 2


def test_linear_windows_are_a_partition_of_unity():
    # two 8-pixel tiles overlapping by 4: weights in the overlap sum to 1
    left = window_1d(8, "linear", 4, False, True)
    right = window_1d(8, "linear", 4, True, False)
    assert np.allclose(left[:4], 1) and np.allclose(right[4:], 1)  # image borders: full
    assert np.allclose(left[4:] + right[:4], 1)
    assert np.all(np.diff(left[4:]) < 0)


def test_gaussian_window_border_aware_and_margin():
    w = window_1d(16, "gaussian", 8, True, True, 3)
    assert np.all(w[:3] == 0) and np.all(w[-3:] == 0) and np.all(w[3:-3] > 0)
    assert w[8] == pytest.approx(1.0, abs=0.05)
    edge = window_1d(16, "gaussian", 8, False, True)
    assert np.all(edge[:8] == 1.0) and edge[-1] < 0.1


def test_plan_covers_image_and_aligns_to_pooling():
    (ax,) = plan_tiles((102,), 64, 0.5, model=unetlab.create_model(
        "unet", in_channels=1, num_classes=2, channels=(8, 16, 32)))
    assert ax.starts == (0, 32, 40)  # last tile ends at 104 = 102 rounded up to 4
    assert all(s % 4 == 0 for s in ax.starts)


def test_bad_arguments_name_valid_options(small_unet):
    x = torch.rand(1, 32, 32)
    with pytest.raises(ValueError, match="multiple of 4.*60 or 64"):
        predict_tiled(small_unet, x, tile_size=62)
    with pytest.raises(ValueError, match="gaussian"):
        predict_tiled(small_unet, x, tile_size=32, blend="cosine")
    with pytest.raises(ValueError, match="overlap"):
        predict_tiled(small_unet, x, tile_size=32, overlap=1.0)


@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
def test_tiled_equals_whole_image_same_padding(small_unet, blend):
    x = torch.rand(1, 100, 132)
    with torch.no_grad():
        whole = small_unet(x[None])[0]
    tiled = predict_tiled(small_unet, x, tile_size=64, overlap=0.75, blend=blend, margin=24,
                          batch_size=3)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5)
    # without the margin, tiles blend seamlessly but approximately
    approx = predict_tiled(small_unet, x, tile_size=64, overlap=0.25, blend=blend)
    assert 0 < (approx - whole).abs().max() < 0.5


def test_constant_model_gives_seamless_map():
    def constant(x):
        out = torch.empty(x.shape[0], 3, *x.shape[2:])
        out[:, 0], out[:, 1], out[:, 2] = 1.5, -2.0, 0.25
        return out

    out = predict_tiled(constant, np.zeros((1, 77, 95), np.float32), tile_size=32,
                        overlap=0.3, blend="gaussian")
    expected = torch.tensor([1.5, -2.0, 0.25])[:, None, None].expand(3, 77, 95)
    assert torch.allclose(out, expected, atol=1e-6)


def test_valid_padding_tiled_matches_direct_output_interior():
    torch.manual_seed(0)
    model = _randomise_bn(unetlab.create_model("unet", in_channels=1, num_classes=2,
                                               channels=(8, 16, 32), padding="valid"))
    x = torch.rand(1, 124, 124)
    with torch.no_grad():
        direct = model(x[None])[0]  # 84 x 84, the centre of the input
    c = (124 - direct.shape[-1]) // 2
    tiled = predict_tiled(model, x, tile_size=60, overlap=0.3)
    assert tiled.shape == (2, 124, 124)  # full size: borders from mirrored context
    assert torch.allclose(tiled[:, c:c + 84, c:c + 84], direct, atol=1e-5)


def test_3d_volume_with_3d_model():
    torch.manual_seed(0)
    model = _randomise_bn(unetlab.create_model("unet", in_channels=1, num_classes=3,
                                               spatial_dims=3, channels=(4, 8)))
    x = torch.rand(1, 40, 48, 36)
    with torch.no_grad():
        whole = model(x[None])[0]
    tiled = predict_tiled(model, x, tile_size=(32, 32, 24), overlap=0.7, margin=8)
    assert tiled.shape == (3, 40, 48, 36)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_tta_averages_dihedral_transforms(small_unet):
    x = torch.rand(1, 32, 32)
    got = predict_tiled(small_unet, x, tile_size=32, tta=True, output="probabilities")
    expected = torch.zeros(2, 32, 32)
    with torch.no_grad():
        for k in range(4):
            for flip in (False, True):
                t = x[None].flip(-1) if flip else x[None]
                y = torch.rot90(small_unet(torch.rot90(t, k, (2, 3))), -k, (2, 3))
                y = y.flip(-1) if flip else y
                expected += torch.softmax(y[0], 0) / 8
    assert torch.allclose(got, expected, atol=1e-5)
    plain = predict_tiled(small_unet, x, tile_size=32, output="probabilities")
    assert (plain - got).abs().max() > 1e-4
    assert len(tta_transforms(3, "flips", True)) == 8


def test_batch_of_images(small_unet):
    x = torch.rand(2, 1, 40, 36)
    out = predict_tiled(small_unet, x, tile_size=32, overlap=0.5)
    assert out.shape == (2, 2, 40, 36)
    assert torch.allclose(out[1], predict_tiled(small_unet, x[1], tile_size=32, overlap=0.5))


def test_tta_mirror_modes_average_the_tile_and_its_mirror(small_unet):
    x = torch.rand(1, 32, 40)                          # non-square: no rotations anyway
    for mode, dim in (("hflip", -1), ("vflip", -2)):
        got = predict_tiled(small_unet, x, tile_size=(32, 40), tta=mode,
                            output="probabilities")
        with torch.no_grad():
            a = torch.softmax(small_unet(x[None])[0], 0)
            b = torch.softmax(small_unet(x[None].flip(dim))[0].flip(dim), 0)
        assert torch.allclose(got, (a + b) / 2, atol=1e-5)
    assert len(tta_transforms(2, "hflip", True)) == 2
    assert len(tta_transforms(2, "flips", False)) == 4
    with pytest.raises(ValueError, match="not valid"):
        tta_transforms(2, "rot45", True)


@pytest.mark.parametrize("preset, symmetries, mode", [
    ("upright", ("hflip",), "hflip"),          # road scenes: never upside down
    ("light", ("hflip", "vflip"), "flips"),    # 15-degree rotations are no 90-degree turn
    ("paper", ("hflip", "vflip", "rot90"), "dihedral"),
    ("flips", ("hflip", "vflip", "rot90"), "dihedral"),
    ("none", (), None),
])
def test_tta_follows_the_views_the_training_augmentation_showed(preset, symmetries, mode):
    from unetlab.data import augment_symmetries
    from unetlab.inference.tiling import card_tta_mode

    assert augment_symmetries(preset) == symmetries
    assert card_tta_mode(symmetries) == mode
    assert augment_symmetries(preset, rot90=0.5, vflip=0.5, hflip=0.5) == (
        "hflip", "vflip", "rot90")
    assert card_tta_mode(augment_symmetries("light", spatial_dims=3), 3) == "flips"
    assert card_tta_mode(augment_symmetries("none", spatial_dims=3), 3) is None


def test_tta_for_card_keeps_to_the_trained_views_and_warns(caplog):
    from unetlab.inference.tiling import tta_for_card

    def card(tta=None, augment="upright"):
        return {"training": {"augment": augment, "tta": tta}} if tta else {"training": {}}

    with caplog.at_level("WARNING"):
        assert tta_for_card("auto", card("hflip")) == "hflip" and not caplog.records
        assert tta_for_card(None, card("hflip")) is False
        assert tta_for_card("auto", card("none", "none")) is False
        assert "trained without flips" in caplog.text
        caplog.clear()
        assert tta_for_card("auto", card()) == "dihedral"        # an older card: as before
        assert "does not say" in caplog.text
        caplog.clear()
        assert tta_for_card("dihedral", card("hflip")) == "dihedral"  # as asked, warned
        assert "never did" in caplog.text
        caplog.clear()
        assert tta_for_card("hflip", card("dihedral", "paper")) == "hflip"
        assert not caplog.records


def test_evaluate_under_torchrun_warns_about_tta_on_rank_0_only(caplog):
    from unetlab.commands.evaluate import tta_for_rank
    from unetlab.training.distributed import DistInfo

    older = {"training": {}}                                    # warns: "does not say"
    with caplog.at_level("WARNING"):
        assert tta_for_rank("auto", older, DistInfo(rank=1, world_size=2)) == "dihedral"
        assert not caplog.records
        assert tta_for_rank("auto", older, DistInfo(rank=0, world_size=2)) == "dihedral"
        assert "does not say" in caplog.text
        from unetlab.inference.tiling import log

        level = log.level
        with pytest.raises(ValueError, match="not valid"):     # errors still on every rank
            tta_for_rank("rot45", older, DistInfo(rank=1, world_size=2))
        assert log.level == level                               # and the level restored


def test_tta_for_card_of_volumes_and_odd_cards(caplog):
    from unetlab.inference.tiling import tta_for_card

    volume = {"architecture": {"spatial_dims": 3}, "training": {}}
    with caplog.at_level("WARNING"):
        assert tta_for_card("auto", volume) == "flips"          # no 90-degree turns in 3-D
        assert tta_for_card("dihedral", volume) == "flips"
        with pytest.raises(ValueError, match="for 2-D images"):
            tta_for_card("hflip", volume)
        caplog.clear()
        odd = {"training": {"tta": "spin", "augment": "x"}}     # hand-edited or newer card
        assert tta_for_card("auto", odd) == "dihedral" and "unknown" in caplog.text
    with pytest.raises(ValueError, match="not valid"):
        tta_for_card("rot45", {})


def test_class_argmax_matches_torch_with_ties_and_strided_bands():
    from unetlab.inference.tiling import class_argmax

    torch.manual_seed(0)
    values = torch.randn(12, 40, 70)[:, 5:35, 3:60]               # a strided crop, as a band
    values[3, :4] = values[7, :4] = 10.0                            # ties: the lower class
    got = class_argmax(values)
    assert got.dtype == np.uint8 and got.shape == (30, 57)
    assert np.array_equal(got, values.argmax(0).numpy())
    assert (got[:4] == 3).all()
    many = torch.randn(300, 4, 5)                                   # > 256 classes
    assert np.array_equal(class_argmax(many), many.argmax(0).numpy())


def test_predict_refuses_a_2d_mirror_for_a_3d_model_in_one_line(tmp_path, capsys):
    import tifffile

    from unetlab.cli import main

    path = tmp_path / "vol.safetensors"
    unetlab.save_model(unetlab.create_model("unet", in_channels=1, num_classes=2,
                                            spatial_dims=3, channels=(4, 8)), path)
    volume = tmp_path / "vol.tif"
    tifffile.imwrite(volume, np.zeros((8, 16, 16), np.uint8))
    out = tmp_path / "out"
    assert main(["predict", str(path), str(volume), "--out", str(out), "--tta", "hflip"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is for 2-D images" in err[0], err
    assert not (out / "vol_labels.tif").exists()
