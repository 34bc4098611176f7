"""The docs' figures: each function writes a PNG of the expected size, and the arrays
behind the pictures are what the captions say."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from unetlab.figures import (
    FIGURES,
    architecture,
    data,
    figure_function,
    list_figures,
    make_figures,
    upsampling,
)
from unetlab.figures._plot import DPI

# figure name -> figsize in inches (the PNG is figsize * DPI pixels)
SIZES = {
    "semantic_segmentation": (8.0, 2.9), "u_shape": (8.0, 4.0),
    "zero_insertion": (8.0, 2.6), "max_unpooling": (8.0, 2.6), "checkerboard": (7.2, 5.0),
    "upsampling_comparison": (8.0, 4.4), "overlap_tile": (7.0, 3.6),
    "elastic_deformation": (8.0, 2.5), "attention_maps": (8.0, 2.4),
    "remote_sensing": (8.0, 2.6),
}
TRAINED = ("attention_maps", "remote_sensing")  # train a model: tested with a few steps


@pytest.mark.parametrize("name", [n for n in FIGURES if n not in TRAINED])
def test_figure_png_size(name, tmp_path):
    path = figure_function(name)(tmp_path / f"{name}.png")
    w, h = SIZES[name]
    with Image.open(path) as image:
        assert image.size == (round(w * DPI), round(h * DPI))
        assert len(image.getcolors(256) or range(257)) > 4  # not blank
    assert 1_000 < path.stat().st_size < 120_000


def test_attention_figure_trains_briefly(tmp_path):
    from unetlab.figures.attention import attention_maps

    path = attention_maps(tmp_path / "a.png", steps=2)
    with Image.open(path) as image:
        assert image.size == (8 * DPI, round(2.4 * DPI))


def test_make_figures_and_unknown_name(tmp_path):
    written = make_figures(tmp_path, ["zero_insertion", "max_unpooling"])
    assert [p.name for p in written] == ["zero_insertion.png", "max_unpooling.png"]
    with pytest.raises(ValueError, match="choose from semantic_segmentation"):
        make_figures(tmp_path, ["zero_insertion", "zero_insert"])
    assert "checkerboard" in list_figures()


def test_zero_insert_by_hand():
    got = upsampling.zero_insert([[1, 2], [3, 4]], 2)
    np.testing.assert_array_equal(got, [[1, 0, 2], [0, 0, 0], [3, 0, 4]])
    assert upsampling.zero_insert(np.ones((3, 2)), 3).shape == (7, 4)
    with pytest.raises(ValueError):
        upsampling.zero_insert(np.ones(3), 2)


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (2, 2, 0, 0), (4, 2, 1, 0), (3, 3, 0, 2)])
def test_zero_insertion_equals_conv_transpose(k, s, p, op):
    rng = np.random.default_rng(k * 10 + s)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    kernel = rng.normal(size=(k, k)).astype(np.float32)
    parts = upsampling.transposed_conv_as_convolution(x, kernel, s, p, op)
    # the inserted map really holds zeros between the input values
    inserted = parts["inserted"]
    np.testing.assert_array_equal(inserted[::s, ::s], x)
    holes = np.ones_like(inserted, dtype=bool)
    holes[::s, ::s] = False
    assert holes.sum() == inserted.size - x.size and np.all(inserted[holes] == 0)
    ref = F.conv_transpose2d(torch.from_numpy(x)[None, None], torch.from_numpy(kernel)[None, None],
                             stride=s, padding=p, output_padding=op)[0, 0].numpy()
    np.testing.assert_allclose(parts["output"], ref, atol=1e-5)


def test_zero_insertion_figure_example_by_hand():
    parts = upsampling.transposed_conv_as_convolution([[1, 2], [3, 4]], upsampling.TENT_KERNEL)
    # output[0, 0] sits on input 1 (centre weight 1); output[0, 1] is halfway 1..2
    assert parts["output"].shape == (4, 4)
    assert parts["output"][0, 0] == pytest.approx(1.0)
    assert parts["output"][0, 1] == pytest.approx(1.5)
    assert parts["output"][1, 1] == pytest.approx(2.5)  # mean of 1, 2, 3, 4


def test_max_unpool_course_example():
    parts = upsampling.max_unpool_example()
    np.testing.assert_array_equal(parts["pooled"], [[3, 4], [5, 6]])
    np.testing.assert_array_equal(parts["indices"], [[1, 3], [8, 11]])
    np.testing.assert_array_equal(parts["unpooled"],
                                  [[0, 3, 0, 4], [0, 0, 0, 0], [5, 0, 0, 6], [0, 0, 0, 0]])


def test_overlap_counts_show_the_checkerboard():
    c3 = upsampling.overlap_counts(3, 2, 6)[2:-2, 2:-2]
    assert set(np.unique(c3)) == {1.0, 2.0, 4.0}       # uneven: the checkerboard
    assert np.all(upsampling.overlap_counts(4, 2, 6)[1:-1, 1:-1] == 4)   # even overlap
    assert np.all(upsampling.overlap_counts(2, 2, 6) == 1)               # no overlap


def test_upsampling_methods():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(16, 16)).astype(np.float32)
    out = upsampling.upsampling_methods(image)
    small = out["pooled"]
    np.testing.assert_array_equal(small, image.reshape(8, 2, 8, 2).max(axis=(1, 3)))
    np.testing.assert_array_equal(out["nearest"], np.kron(small, np.ones((2, 2))))
    unpool = out["max_unpool"]
    assert (unpool != 0).sum() == 64                  # one survivor per 2x2 window
    np.testing.assert_array_equal(unpool[unpool != 0], image[unpool != 0])
    # the bilinear-initialised transposed convolution equals bilinear interpolation
    # away from the border
    np.testing.assert_allclose(out["transpose_bilinear_init"][1:-1, 1:-1],
                               out["bilinear"][1:-1, 1:-1], atol=1e-5)
    assert all(v.shape == (16, 16) for k, v in out.items() if k != "pooled")


def test_bilinear_kernel():
    np.testing.assert_allclose(upsampling.bilinear_kernel(2)[0], [1 / 16, 3 / 16, 3 / 16, 1 / 16])


def test_unet_feature_shapes_match_the_paper():
    shapes = architecture.unet_feature_shapes()
    assert [s[2] for s in shapes] == [568, 280, 136, 64, 28, 52, 100, 196, 388]
    assert [s[1] for s in shapes] == [64, 128, 256, 512, 1024, 512, 256, 128, 64]
    same = architecture.unet_feature_shapes(64, "same", (8, 16, 32))
    assert [s[2] for s in same] == [64, 32, 16, 32, 64]


def test_overlap_tile_layout():
    layout = architecture.overlap_tile_layout(200, 60, 3)
    assert layout["input_tile"] == 100 and layout["margin"] == 20
    starts = layout["starts"]
    assert starts[0] == 0 and starts[-1] + 60 == 200
    assert all(b - a <= 60 for a, b in zip(starts, starts[1:]))  # no gaps


def test_elastic_example_moves_image_and_mask_together():
    ex = data.elastic_example(size=64, seed=1)
    assert ex["warped_image"].shape == ex["image"].shape
    assert set(np.unique(ex["warped_mask"])) <= {0, 1}        # labels never interpolated
    assert not np.array_equal(ex["warped_image"], ex["image"])
    assert np.abs(ex["dx"]).max() > 1                           # it really moved
    # nearest-neighbour warp of the mask = the mask read at the rounded positions
    iy = np.clip(np.rint(np.indices((64, 64))[0] + ex["dy"]).astype(int), 0, 63)
    ix = np.clip(np.rint(np.indices((64, 64))[1] + ex["dx"]).astype(int), 0, 63)
    inside = (np.indices((64, 64))[0] + ex["dy"] >= 0) & (np.indices((64, 64))[0] + ex["dy"] <= 63)
    inside &= (np.indices((64, 64))[1] + ex["dx"] >= 0) & (np.indices((64, 64))[1] + ex["dx"] <= 63)
    agree = ex["warped_mask"][inside] == ex["mask"][iy, ix][inside]
    assert agree.mean() > 0.99


def test_attention_training_is_real():
    from unetlab.figures.attention import train_tiny_attention_unet

    model, images, masks, dice = train_tiny_attention_unet(steps=2, size=32, batch_size=2)
    assert images.shape == (4, 1, 32, 32) and masks.shape == (4, 32, 32)
    with torch.no_grad():
        model(images[:1])
    maps = model.attention_maps()
    assert [tuple(m.shape) for m in maps] == [(1, 1, 32, 32), (1, 1, 16, 16)]
    assert all(0 <= float(m.min()) and float(m.max()) <= 1 for m in maps)
    assert 0.0 <= dice <= 1.0


def test_cli_main_writes_only(tmp_path):
    from unetlab.figures.__main__ import main

    assert main(["--out", str(tmp_path), "--only", "max_unpooling"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["max_unpooling.png"]


def test_boundary_crop_shows_two_classes():
    mask = np.zeros((20, 20), dtype=np.int64)
    mask[12:15, 3:6] = 2
    y, x = data.boundary_crop(mask, 8)
    assert (y, x) == (8, 0)                      # centred on (12, 3), clipped at the left
    assert set(np.unique(mask[y:y + 8, x:x + 8])) == {0, 2}


def test_unet_layer_table_follows_the_paper_and_its_page_is_current():
    from unetlab.figures.architecture import layer_table_markdown, unet_layer_table

    rows = unet_layer_table(572)
    ops = [r["operation"] for r in rows]
    assert rows[-1]["shape"] == (2, 388, 388)
    assert ops.count("conv 3x3 (valid) + ReLU") == 18 and ops.count("max pool 2x2, stride 2") == 4
    ups = [r for r in rows if r["operation"].startswith("up-conv")]
    assert [r["shape"] for r in ups] == [(512, 56, 56), (256, 104, 104), (128, 200, 200),
                                         (64, 392, 392)]
    crops = [r["operation"] for r in rows if r["operation"].startswith("crop")]
    assert crops[0] == "crop skip 64x64 -> 56x56" and crops[-1] == "crop skip 568x568 -> 392x392"
    concat = [r for r in rows if r["operation"].startswith("concatenate")]
    assert concat[0]["operation"].endswith("512 + 512 = 1024") and concat[0]["shape"][0] == 1024
    # another width and size follow the same arithmetic
    from unetlab.models.unet import valid_output_size

    small = unet_layer_table(188, channels=(4, 8, 16))
    assert small[-1]["shape"] == (2, valid_output_size(188, 3), valid_output_size(188, 3))
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    for page in (docs / "course" / "unet_shapes.md", docs / "curso" / "formas_da_unet.md"):
        assert layer_table_markdown(rows) in page.read_text(), page.name
