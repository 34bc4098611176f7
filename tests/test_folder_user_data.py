"""A user's own folder of images and masks: the odd but legitimate layouts it may have
(macOS metadata files, a validation split missing a class, grey masks among colour
ones, a single image) and the ambiguous ones that must be one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unetlab.cli import main
from unetlab.config import config_from_dict, load_config
from unetlab.data import build_dataset
from unetlab.errors import UnetlabError
from unetlab.imageio import write_image
from unetlab.training.builder import build_datasets


def _pair(root, name, mask, image=None):
    image = np.full(mask.shape[:2], 100, np.uint8) if image is None else image
    write_image(root / "images" / f"{name}.png", image)
    write_image(root / "masks" / f"{name}.png", mask)


def _bars(values, shape=(8, 12)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for i, v in enumerate(values):
        mask[:, i * 3:(i + 1) * 3] = v
    return mask


def test_hidden_files_are_not_images(tmp_path):
    _pair(tmp_path, "a", _bars([0, 255]))
    # the AppleDouble files macOS writes beside every file on a shared drive
    for sub in ("images", "masks"):
        (tmp_path / sub / "._a.png").write_bytes(b"\x00\x05\x16\x07 not a png")
    ds = build_dataset("folder", tmp_path)
    assert ds.names == ["a"] and ds.num_classes == 2


@pytest.mark.parametrize("where", ["images", "masks"])
def test_two_files_with_one_stem_are_an_error_not_a_silent_choice(tmp_path, where):
    _pair(tmp_path, "a", _bars([0, 1]))
    write_image(tmp_path / where / "a.tif", _bars([0, 1]))
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    text = str(exc.value)
    assert "\n" not in text and "a.png" in text and "a.tif" in text


def test_a_grey_mask_among_colour_masks_is_read_as_its_grey_colours(tmp_path):
    red = np.zeros((8, 12, 3), np.uint8)
    red[:, :6] = (200, 0, 0)
    _pair(tmp_path, "a", red)
    _pair(tmp_path, "b", np.zeros((8, 12), np.uint8))  # an empty mask saved as grey
    ds = build_dataset("folder", tmp_path)
    assert ds.num_classes == 2                      # black, red
    assert ds[0]["mask"][:, :6].eq(1).all() and ds[1]["mask"].eq(0).all()
    # a declared colour mapping reads it the same way
    declared = build_dataset("folder", tmp_path, mapping={"#000000": 0, "#c80000": 1})
    assert declared[1]["mask"].eq(0).all()


def test_palette_indices_among_colour_masks_are_an_error(tmp_path):
    red = np.zeros((8, 12, 3), np.uint8)
    red[:, :6] = (200, 0, 0)
    _pair(tmp_path, "a", red)
    _pair(tmp_path, "b", _bars([0, 1]))  # indices, not colours: not a class of (1, 1, 1)
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    assert "\n" not in str(exc.value) and "b.png" in str(exc.value)


def _train_val_config(root, out) -> object:
    return config_from_dict({
        "data": {"dataset": "folder", "root": str(root), "split": "train",
                 "val_split": "val", "augment": "none", "tile_size": None},
        "train": {"out_dir": str(out)}})


def test_the_validation_split_numbers_classes_as_training_does(tmp_path):
    # training masks hold 0, 1 and 2; the validation masks lack class 1, so read alone
    # they would be the binary pair 0/2 -> 0/1 (and 2 would be called class 1)
    _pair(tmp_path / "train", "a", _bars([0, 1, 2]))
    _pair(tmp_path / "val", "v", _bars([0, 2, 0]))
    sets = build_datasets(_train_val_config(tmp_path, tmp_path / "run"))
    assert sets.info.num_classes == 3 and sets.val.num_classes == 3
    assert sets.val[0]["mask"][:, 3:6].eq(2).all()


def test_a_single_image_folder_plans_a_run_that_can_train(tmp_path):
    _pair(tmp_path / "d", "only", _bars([0, 255, 0, 255], shape=(48, 64)))
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"device": "cpu", "tile": 48, "batch": 4, "depth": 4,
                                 "steps_per_s": {"8": 6.0}, "cached": True}))
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--dataset", "folder", "--data", str(tmp_path / "d"), "--budget",
                 "10m", "--out", str(out), "--probe", str(probe), "--device", "cpu"]) == 0
    cfg = load_config(out)
    assert cfg.data.val_split == "val" and "single image" in out.read_text()
    sets = build_datasets(cfg)  # holding out 0.2 of one image left nothing to train on
    assert len(sets.train) == 1 and len(sets.val) == 1


def test_colour_masks_give_the_classes_their_own_colours(tmp_path):
    """Predictions are drawn in the masks' colours (the card takes the dataset's palette),
    not in the default colours, which swapped green and red in an earlier version."""
    from unetlab.card import card_for_dataset

    mask = np.zeros((8, 12, 3), np.uint8)
    mask[:, :4] = (0, 200, 0)      # green
    mask[:, 4:8] = (200, 0, 0)     # red
    _pair(tmp_path, "a", mask)
    ds = build_dataset("folder", tmp_path)
    assert ds.num_classes == 3
    by_class = {tuple(ds.palette[int(ds[0]["mask"][0, c])]) for c in (0, 5, 9)}
    assert by_class == {(0, 200, 0), (200, 0, 0), (0, 0, 0)}
    assert tuple(ds.palette[int(ds[0]["mask"][0, 0])]) == (0, 200, 0)
    import unetlab

    net = unetlab.create_model("unet", in_channels=1, num_classes=3, channels=(4, 8))
    card = card_for_dataset(net, ds)
    assert card["classes"]["palette"] == ds.palette.tolist()


def test_a_palette_mask_among_colour_masks_reads_as_its_palette_colours(tmp_path):
    """A palette PNG stores indices; among colour masks it means its palette's colours
    (Pillow's RGB conversion), not the greys (i, i, i) of its indices."""
    from PIL import Image

    mask = np.zeros((8, 12, 3), np.uint8)
    mask[:, :6] = (0, 128, 0)
    _pair(tmp_path, "a", mask)
    write_image(tmp_path / "images" / "b.png", np.full((8, 12), 100, np.uint8))
    pal = Image.fromarray(np.zeros((8, 12), np.uint8), mode="P")
    pal.putpalette([0, 128, 0] + [0, 0, 0] * 255)          # index 0 is green
    pal.save(tmp_path / "masks" / "b.png")
    ds = build_dataset("folder", tmp_path)
    assert ds.num_classes == 2
    green = int(ds[0]["mask"][0, 0])
    assert ds[1]["mask"].eq(green).all()                   # all green, not black
    declared = build_dataset("folder", tmp_path, mapping={"#000000": 0, "#008000": 1})
    assert declared[1]["mask"].eq(1).all()


def test_a_class_only_in_the_validation_split_is_a_one_line_error_at_build_time(tmp_path):
    _pair(tmp_path / "train", "a", _bars([0, 1]))
    _pair(tmp_path / "val", "v", _bars([0, 1, 2]))
    with pytest.raises(UnetlabError) as exc:
        build_datasets(_train_val_config(tmp_path, tmp_path / "run"))
    assert "\n" not in str(exc.value) and "v.png" in str(exc.value)
    assert "validation split" in str(exc.value) and ": 2 (" in str(exc.value)


def test_a_validation_split_readable_with_the_training_mapping_is_accepted(tmp_path):
    # val masks hold {1, 2} of the training classes {0, 1, 2, 3}: read alone, the
    # folder heuristics would refuse them; through the training mapping they are fine
    _pair(tmp_path / "train", "a", _bars([0, 1, 2, 3]))
    _pair(tmp_path / "val", "v", _bars([1, 2, 1, 2]))
    sets = build_datasets(_train_val_config(tmp_path, tmp_path / "run"))
    assert sets.val.num_classes == 4 and set(sets.val[0]["mask"].unique().tolist()) == {1, 2}


def test_palette_indices_above_zero_among_colour_masks_are_colours_not_classes(tmp_path):
    from PIL import Image

    mask = np.zeros((8, 12, 3), np.uint8)
    mask[:, :6] = (0, 128, 0)
    _pair(tmp_path, "a", mask)
    write_image(tmp_path / "images" / "b.png", np.full((8, 12), 100, np.uint8))
    pal = Image.fromarray(_bars([0, 1, 0, 1]), mode="P")
    pal.putpalette([0, 0, 0, 0, 128, 0] + [0, 0, 0] * 254)  # 0 black, 1 green
    pal.save(tmp_path / "masks" / "b.png")
    ds = build_dataset("folder", tmp_path)
    assert ds.num_classes == 2                              # no class for the index 1
    assert ds[1]["mask"][:, 3:6].eq(int(ds[0]["mask"][0, 0])).all()


def test_a_16_bit_mask_among_colour_masks_is_an_error_not_clipped(tmp_path):
    from PIL import Image

    mask = np.zeros((8, 12, 3), np.uint8)
    mask[:, :6] = (255, 255, 255)
    _pair(tmp_path, "a", mask)
    write_image(tmp_path / "images" / "b.png", np.full((8, 12), 100, np.uint8))
    Image.fromarray(np.full((8, 12), 300, np.uint16)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    assert "\n" not in str(exc.value) and "b.png" in str(exc.value)


def test_evaluate_numbers_the_classes_as_the_card_says(tmp_path, capsys):
    """The training masks' mapping travels in the card: evaluation masks that lack a class
    (and hold the ignore value) are numbered as in training, not re-read on their own."""
    import unetlab
    from unetlab.card import card_for_dataset
    from unetlab.models.serialization import save_model

    _pair(tmp_path / "train", "a", _bars([0, 1, 2, 7]))
    ds = build_dataset("folder", tmp_path / "train", ignore_values=[7])
    card = card_for_dataset(unetlab.create_model("unet", in_channels=1, num_classes=3,
                                                 channels=(4, 8)), ds)
    assert card["extensions"]["folder"]["mapping"] == {0: 0, 1: 1, 2: 2}
    assert card["extensions"]["folder"]["ignore_values"] == [7]
    net = unetlab.create_model("unet", in_channels=1, num_classes=3, channels=(4, 8))
    path = save_model(net, tmp_path / "m.safetensors", card=card)
    _pair(tmp_path / "eval", "e", _bars([0, 2, 7, 0]))     # no class 1; alone: 0/2 -> 0/1
    out = tmp_path / "e.json"
    assert main(["evaluate", str(path), "--dataset", "folder", "--data",
                 str(tmp_path / "eval"), "--json", str(out), "--no-boundary"]) == 0
    matrix = json.loads(out.read_text())["confusion_matrix"]   # rows: true classes
    assert [sum(row) for row in matrix] == [48, 0, 24]          # the 7s (ignored) counted nowhere


def test_16_bit_images_read_as_rgb_keep_three_channels(tmp_path):
    """Images asked for in RGB still come back with 3 channels whatever their depth (only
    masks keep wide values as they are)."""
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.full((8, 12), 3000, np.uint16)).save(tmp_path / "images" / "a.png")
    write_image(tmp_path / "masks" / "a.png", _bars([0, 1]))
    ds = build_dataset("folder", tmp_path, image_mode="RGB")
    assert ds.in_channels == 3 and ds[0]["image"].shape[0] == 3


def test_evaluate_takes_classes_and_ignore_index_from_the_card():
    from unetlab.commands.evaluate import _folder_options

    card = {"architecture": {"num_classes": 3},
            "classes": {"names": ["bg", "road", "roof"], "ignore_index": 255},
            "extensions": {"folder": {"mapping": {"0": 0, "255": 2}, "ignore_values": [],
                                      "ignore_index": 255}}}
    out = _folder_options(card, {})
    assert out["num_classes"] == 3 and out["class_names"] == ["bg", "road", "roof"]
    assert out["ignore_index"] == 255 and "ignore_values" not in out
    assert _folder_options(card, {"num_classes": 3}) == {}       # the user's classes win
    assert _folder_options({"architecture": {"num_classes": 2}}, {}) == {}  # an old card
