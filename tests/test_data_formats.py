"""Dataset formats: small fixtures in each real layout, read back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetlab.data import build_dataset, list_datasets
from unetlab.errors import UnetlabError
from unetlab.imageio import write_image


def _rgb(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_list_datasets_names_contract():
    assert set(list_datasets()) >= {"folder", "isbi2012", "camvid", "voc", "cityscapes",
                                    "membranes", "shapes"}


def test_folder_grey_mapping_and_ignore(tmp_path):
    mask = np.array([[0, 255, 128], [255, 0, 128]], dtype=np.uint8)
    img = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    write_image(tmp_path / "images" / "a.png", img)
    write_image(tmp_path / "masks" / "a.png", mask)
    ds = build_dataset("folder", tmp_path, mapping={0: 0, 255: 1}, ignore_values=[128],
                       ignore_index=255, class_names=["bg", "fg"])
    item = ds[0]
    assert item["name"] == "a"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 2, 3)
    assert torch.allclose(item["image"][0], torch.from_numpy(img).float() / 255)
    assert item["mask"].dtype == torch.int64
    assert item["mask"].tolist() == [[0, 1, 255], [1, 0, 255]]
    assert ds.num_classes == 2 and ds.ignore_index == 255 and ds.in_channels == 1
    assert ds.palette.shape == (2, 3) and ds.palette.dtype == np.uint8


def test_folder_infers_mapping_from_values(tmp_path):
    write_image(tmp_path / "images" / "a.png", _rgb(2, 2))
    write_image(tmp_path / "masks" / "a.png", np.array([[0, 255], [255, 255]], np.uint8))
    ds = build_dataset("folder", tmp_path)
    assert ds.num_classes == 2 and ds.in_channels == 3
    assert ds[0]["mask"].tolist() == [[0, 1], [1, 1]]


def test_folder_rgb_colour_mask_and_split_dir_and_tiff(tmp_path):
    red, green = (128, 0, 0), (0, 128, 0)
    mask = np.zeros((2, 2, 3), np.uint8)
    mask[0, 0] = red
    mask[1, 1] = green
    base = tmp_path / "val"
    write_image(base / "images" / "x.tif", np.full((2, 2), 1000, np.uint16))
    write_image(base / "masks" / "x_mask.png", mask)
    ds = build_dataset("folder", tmp_path, split="val", mask_suffix="_mask",
                       mapping={"#000000": 0, red: 1, "#008000": 2})
    item = ds[0]
    assert item["mask"].tolist() == [[1, 0], [0, 2]]
    assert torch.allclose(item["image"], torch.full((1, 2, 2), 1000 / 65535))


def test_folder_palette_mask(tmp_path):
    from PIL import Image

    write_image(tmp_path / "images" / "p.jpg", _rgb(4, 4))
    pal = Image.fromarray(np.array([[0, 1, 2, 2]] * 4, np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    (tmp_path / "masks").mkdir()
    pal.save(tmp_path / "masks" / "p.png")
    ds = build_dataset("folder", tmp_path, num_classes=3)
    assert ds[0]["mask"][0].tolist() == [0, 1, 2, 2]


def test_isbi_png_layout_splits_and_mapping(tmp_path):
    for i in range(4):
        label = np.full((8, 8), 255, np.uint8)
        label[i, :] = 0  # membrane row
        write_image(tmp_path / "train" / "image" / f"{i:02d}.png", np.full((8, 8), i * 10,
                                                                              np.uint8))
        write_image(tmp_path / "train" / "label" / f"{i:02d}.png", label)
    write_image(tmp_path / "test" / "image" / "00.png", np.zeros((8, 8), np.uint8))
    train = build_dataset("isbi2012", tmp_path, "train", val_slices=(3,))
    val = build_dataset("isbi2012", tmp_path, "val", val_slices=(3,))
    every = build_dataset("isbi2012", tmp_path, "all")
    test = build_dataset("isbi2012", tmp_path, "test")
    assert train.names == ["00", "01", "02"] and val.names == ["03"] and len(every) == 4
    mask = val[0]["mask"]
    assert mask[3].tolist() == [1] * 8 and int(mask.sum()) == 8  # membrane = class 1
    assert train.class_names == ("cell", "membrane")
    assert "mask" not in test[0] and test.has_masks is False
    with pytest.raises(UnetlabError, match="unknown split 'tset'"):
        build_dataset("isbi2012", tmp_path, "tset")
    # few-data experiments: the first N training slices; val is unaffected
    few = build_dataset("isbi2012", tmp_path, "train", val_slices=(0,), train_slices=2)
    assert few.names == ["01", "02"]
    assert build_dataset("isbi2012", tmp_path, "val", val_slices=(0,),
                         train_slices=2).names == ["00"]
    for bad, message in ((4, "only 3 training slices"), (0, "train_slices must be")):
        with pytest.raises(UnetlabError, match=message):
            build_dataset("isbi2012", tmp_path, "train", val_slices=(0,), train_slices=bad)


def test_isbi_tiff_stacks(tmp_path):
    import tifffile

    vol = np.stack([np.full((6, 6), k * 20, np.uint8) for k in range(5)])
    lab = np.full((5, 6, 6), 255, np.uint8)
    lab[:, :, 0] = 0
    tifffile.imwrite(tmp_path / "train-volume.tif", vol)
    tifffile.imwrite(tmp_path / "train-labels.tif", lab)
    tifffile.imwrite(tmp_path / "test-volume.tif", vol[:2])
    train = build_dataset("isbi2012", tmp_path, "train", val_slices=(1, 4))
    assert len(train) == 3
    item = train[1]  # slice 2
    assert torch.allclose(item["image"], torch.full((1, 6, 6), 40 / 255))
    assert item["mask"][:, 0].tolist() == [1] * 6 and int(item["mask"].sum()) == 6
    assert len(build_dataset("isbi2012", tmp_path, "val", val_slices=(1, 4))) == 2
    test = build_dataset("isbi2012", tmp_path, "test")
    assert len(test) == 2 and "mask" not in test[0]


def test_isbi_weight_map_moves_with_mask(tmp_path):
    pytest.importorskip("unetlab.losses")
    from unetlab import losses

    if not hasattr(losses, "border_weight_map"):
        pytest.skip("unetlab.losses.border_weight_map not written yet")
    label = np.full((32, 32), 255, np.uint8)
    label[:, 15:17] = 0  # one membrane between two cells
    write_image(tmp_path / "train" / "image" / "00.png", np.zeros((32, 32), np.uint8))
    write_image(tmp_path / "train" / "label" / "00.png", label)
    ds = build_dataset("isbi2012", tmp_path, "all", weight_map=True, w0=10, sigma=5)
    item = ds[0]
    w = item["weight"]
    assert w.shape == (32, 32) and w.dtype == torch.float32
    # on the thin membrane both cells are close: weight near 1 + w0; far away near 1
    assert float(w[16, 16]) > 8.0 and float(w[16, 0]) < float(w[16, 12])


def test_camvid_layout_with_list(tmp_path):
    mask = np.array([[0, 3, 11], [10, 11, 5]], np.uint8)
    for split in ("train", "val"):
        write_image(tmp_path / split / "f1.png", _rgb(2, 3))
        write_image(tmp_path / f"{split}annot" / "f1.png", mask)
    (tmp_path / "train.txt").write_text("/SegNet/CamVid/train/f1.png "
                                        "/SegNet/CamVid/trainannot/f1.png\n")
    ds = build_dataset("camvid", tmp_path, "train")
    assert ds.num_classes == 11 and ds.ignore_index == 11 and ds.class_names[6] == "SignSymbol"
    assert ds[0]["mask"].tolist() == mask.tolist()
    assert len(build_dataset("camvid", tmp_path, "val")) == 1  # no val.txt: directories
    assert len(build_dataset("camvid", tmp_path, "trainval")) == 2


def test_voc_layout(tmp_path):
    from PIL import Image

    root = tmp_path / "VOCdevkit" / "VOC2012"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n")
    write_image(root / "JPEGImages" / "2007_000032.jpg", _rgb(3, 4))
    ids = np.array([[0, 15, 255, 20]] * 3, np.uint8)
    pal = Image.fromarray(ids, mode="P")
    from unetlab.data.palettes import voc_palette

    pal.putpalette(voc_palette(256).ravel().tolist())
    (root / "SegmentationClass").mkdir()
    pal.save(root / "SegmentationClass" / "2007_000032.png")
    ds = build_dataset("voc", tmp_path, "train")
    assert ds.num_classes == 21 and ds.ignore_index == 255
    assert ds[0]["mask"][0].tolist() == [0, 15, 255, 20]
    assert ds.palette[15].tolist() == [192, 128, 128]  # person in the VOC colour map


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    stem = "aachen_000000_000019"
    write_image(tmp_path / "leftImg8bit" / "val" / "aachen" / f"{stem}_leftImg8bit.png",
                _rgb(2, 3))
    ids = np.array([[7, 26, 0], [33, 4, 24]], np.uint8)
    write_image(tmp_path / "gtFine" / "val" / "aachen" / f"{stem}_gtFine_labelIds.png", ids)
    ds = build_dataset("cityscapes", tmp_path, "val")
    assert ds.num_classes == 19
    assert ds[0]["mask"].tolist() == [[0, 13, 255], [18, 255, 11]]


def test_normalize_and_cache(tmp_path):
    write_image(tmp_path / "images" / "a.png", np.full((2, 2, 3), 255, np.uint8))
    write_image(tmp_path / "masks" / "a.png", np.zeros((2, 2), np.uint8))
    ds = build_dataset("folder", tmp_path, num_classes=1, normalize="imagenet", cache=True)
    first = ds[0]["image"]
    assert torch.allclose(first[:, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406]))
                          / torch.tensor([0.229, 0.224, 0.225]))
    first.zero_()  # items are copies: the cache is not touched
    assert torch.allclose(ds[0]["image"], build_dataset(
        "folder", tmp_path, num_classes=1, normalize="imagenet")[0]["image"])
    assert 0 in ds._cache


def test_real_isbi(isbi_root):
    ds = build_dataset("isbi2012", isbi_root, "val")
    assert len(ds) == 5 and len(build_dataset("isbi2012", isbi_root, "train")) == 20
    item = ds[0]
    assert item["image"].shape == (1, 512, 512)
    frac = item["mask"].float().mean().item()
    assert 0.1 < frac < 0.35  # membranes are the minority class (~22%)
    assert len(build_dataset("isbi2012", isbi_root, "test")) == 30


def test_real_camvid(camvid_root):
    ds = build_dataset("camvid", camvid_root, "val")
    assert len(ds) == 101
    item = ds[0]
    assert item["image"].shape == (3, 360, 480) and item["mask"].shape == (360, 480)
    assert int(item["mask"].max()) <= 11
