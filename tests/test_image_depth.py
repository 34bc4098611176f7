"""Images keep their bits: 16-bit grey and colour PNGs, TIFFs asked for in another mode,
NIfTI label maps with a trailing axis of 1, and the sizes ``unetlab stats`` reports."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unetlab.errors import UnetlabError
from unetlab.imageio import convert_array, read_image


def _grey16(path, array):
    Image.fromarray(array.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    return path


def _colour16(path, rgb):
    cv2 = pytest.importorskip("cv2")
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1].astype(np.uint16)))
    return path


def test_16bit_grey_png_asked_for_as_l_or_rgb_keeps_its_values(tmp_path):
    grey = (np.arange(32 * 24).reshape(24, 32) * 83 % 65536).astype(np.uint16)
    path = _grey16(tmp_path / "g16.png", grey)
    # Pillow's own convert("L") would give at most 255 here
    for mode in (None, "L"):
        got = read_image(path, mode=mode)
        assert got.dtype == np.uint16 and np.array_equal(got, grey)
    rgb = read_image(path, mode="RGB")
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint16
    assert all(np.array_equal(rgb[..., c], grey) for c in range(3))
    rgba = read_image(path, mode="RGBA")
    assert rgba.shape == (24, 32, 4) and (rgba[..., 3] == 65535).all()
    assert np.array_equal(read_image(path, mode="colour"), grey)  # masks: values as stored


def test_16bit_colour_png_keeps_all_16_bits_in_rgb_order(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    rgb[0, 0] = (65535, 0, 1)  # red first: OpenCV's BGR must not leak out
    path = _colour16(tmp_path / "c16.png", rgb)
    got = read_image(path)
    assert got.dtype == np.uint16 and np.array_equal(got, rgb)
    assert np.array_equal(read_image(path, mode="RGB"), rgb)
    grey = read_image(path, mode="L")
    assert grey.dtype == np.uint16 and np.array_equal(grey, rgb.mean(-1).astype(np.uint16))
    with pytest.raises(UnetlabError, match="c16.png.*palette"):
        read_image(path, mode="P")


def test_16bit_colour_png_with_alpha(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgba = np.random.default_rng(1).integers(0, 65536, (8, 9, 4)).astype(np.uint16)
    path = tmp_path / "c16a.png"
    assert cv2.imwrite(str(path), rgba[..., [2, 1, 0, 3]])
    assert np.array_equal(read_image(path), rgba)
    assert np.array_equal(read_image(path, mode="RGB"), rgba[..., :3])


def test_16bit_colour_masks_must_hold_8bit_colours(tmp_path):
    colours = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 64]], np.uint16)
    index = np.random.default_rng(2).integers(0, 3, (16, 16))
    path = _colour16(tmp_path / "mask16.png", colours[index] * 257)  # 8-bit saved as 16
    got = read_image(path, mode="colour")
    assert got.dtype == np.uint8 and np.array_equal(got, colours[index].astype(np.uint8))
    odd = _colour16(tmp_path / "odd16.png", colours[index] * 257 + 1)
    with pytest.raises(UnetlabError, match="odd16.png.*8-bit"):
        read_image(odd, mode="colour")


def test_truncated_16bit_colour_png_is_a_one_line_error(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 65536, (64, 64, 3)).astype(np.uint16)
    whole = _colour16(tmp_path / "whole.png", rgb).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnetlabError, match="cut.png"):
        read_image(cut)


def test_tiff_modes_convert_without_clipping(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    grey = (np.arange(12 * 10).reshape(10, 12) * 500).astype(np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", grey)
    rgb = read_image(tmp_path / "g.tif", mode="RGB")
    assert rgb.shape == (10, 12, 3) and np.array_equal(rgb[..., 2], grey)
    five = np.zeros((10, 12, 5), np.uint16)
    tifffile.imwrite(tmp_path / "five.tif", five, photometric="minisblack", planarconfig="contig")
    with pytest.raises(UnetlabError, match="five.tif.*cannot be read as L"):
        read_image(tmp_path / "five.tif", mode="L")


def test_convert_array_float_alpha_is_one():
    out = convert_array(np.full((2, 3), 0.25, np.float32), "RGBA", "x")
    assert out.shape == (2, 3, 4) and out.dtype == np.float32
    assert (out[..., :3] == 0.25).all() and (out[..., 3] == 1.0).all()
    same = np.zeros((2, 3, 5), np.uint8)
    assert convert_array(same, None, "x") is same and convert_array(same, "P", "x") is same


def test_folder_of_16bit_grey_pngs_with_image_mode_l_trains_on_full_range(tmp_path):
    from unetlab.data import build_dataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):
        image = rng.integers(0, 65536, (32, 32)).astype(np.uint16)
        image[0, 0] = 60000
        _grey16(tmp_path / "images" / f"im{i}.png", image)
        Image.fromarray((image > 30000).astype(np.uint8)).save(tmp_path / "masks" / f"im{i}.png")
    ds = build_dataset("folder", tmp_path, split="train", image_mode="L", cache=False)
    x = ds[0]["image"]
    stored = np.asarray(Image.open(ds.samples[0][1]), dtype=np.float64) / 65535
    assert x.shape == (1, 32, 32)
    # divided by 65535, not clipped to 255 and divided by 255 (Pillow's convert("L"))
    np.testing.assert_allclose(x[0].numpy(), stored, atol=1e-6)
    assert float(x.max()) < 1.0


def test_nifti_label_map_with_a_trailing_axis_of_one(tmp_path):
    nib = pytest.importorskip("nibabel")
    from unetlab.data.volumes import read_volume

    labels = np.random.default_rng(5).integers(0, 3, (6, 5, 4, 1)).astype(np.uint8)
    path = tmp_path / "lab.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(path))
    vol = read_volume(path, labels=True)
    assert vol.array.shape == (6, 5, 4) and np.array_equal(vol.array, labels[..., 0])
    two = tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 2), np.uint8), np.eye(4)), str(two))
    with pytest.raises(UnetlabError, match="two.nii.gz.*3-D"):
        read_volume(two, labels=True)


def test_stats_reports_a_volumes_three_axes(tmp_path, capsys):
    pytest.importorskip("nibabel")
    from unetlab.cli import main
    from unetlab.data.synthetic3d import write_synthetic_volumes

    write_synthetic_volumes(tmp_path / "v", num_cases=2, shape=(12, 10, 6),
                            spacing=(1.0, 1.0, 2.0), seed=0)
    assert main(["stats", "--dataset", "nifti", "--data", str(tmp_path / "v"),
                 "--no-progress", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "2 volumes; sizes: 12x10x6 (2)" in out and "ignored voxels" in out
    import json

    sizes = json.loads((tmp_path / "s.json").read_text())["image_sizes"]
    assert sizes == [{"shape": [12, 10, 6], "count": 2}]


def test_16bit_rgb_png_with_trns_keeps_three_channels(tmp_path):
    """OpenCV turns a tRNS chunk into a fourth channel; Pillow reports RGB, and so do we."""
    import struct
    import zlib

    from safety_helpers import png_chunk

    rgb = np.random.default_rng(6).integers(0, 65536, (8, 8, 3)).astype(">u2")
    rows = b"".join(b"\x00" + rgb[y].tobytes() for y in range(8))
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
            + png_chunk(b"tRNS", struct.pack(">HHH", 1, 2, 3))
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))
    path = tmp_path / "trns.png"
    path.write_bytes(data)
    got = read_image(path)
    assert got.shape == (8, 8, 3) and np.array_equal(got, rgb.astype(np.uint16))


def test_16bit_colour_masks_stored_as_v_times_256_are_read_too(tmp_path):
    colours = np.array([[0, 0, 0], [128, 0, 0], [255, 255, 0]], np.uint16)
    index = np.random.default_rng(7).integers(0, 3, (12, 12))
    path = _colour16(tmp_path / "shift.png", colours[index] << 8)
    assert np.array_equal(read_image(path, mode="colour"), colours[index].astype(np.uint8))


def test_old_pillow_mode_i_for_16bit_grey_becomes_uint16():
    from unetlab.imageio import _grey16

    img = Image.fromarray(np.array([[0, 300, 65535]], np.int32), mode="I")
    got = _grey16(img, 16)
    assert got.dtype == np.uint16 and got.tolist() == [[0, 300, 65535]]
    assert _grey16(img, None).dtype == np.int32  # not a 16-bit PNG: as it is


def test_folder_of_16bit_colour_masks_without_a_mapping(tmp_path):
    from unetlab.data import build_dataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    colours = np.array([[0, 128, 0], [128, 0, 0]], np.uint16)
    rng = np.random.default_rng(8)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
            tmp_path / "images" / f"m{i}.png")
        index = rng.integers(0, 2, (16, 16))
        _colour16(tmp_path / "masks" / f"m{i}.png", colours[index] * 257)
    ds = build_dataset("folder", tmp_path, split="train", cache=False)
    assert ds.num_classes == 2
    mask = ds[0]["mask"].numpy()
    assert set(np.unique(mask)) <= {0, 1}


def test_grey_plus_alpha_tiff_reads_as_its_grey(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    la = np.stack([np.arange(20, dtype=np.uint16).reshape(4, 5) * 1000,
                   np.full((4, 5), 65535, np.uint16)], axis=-1)
    tifffile.imwrite(tmp_path / "la.tif", la, photometric="minisblack", planarconfig="contig",
                     extrasamples=["unassalpha"])
    assert np.array_equal(read_image(tmp_path / "la.tif", mode="L"), la[..., 0])
    rgba = read_image(tmp_path / "la.tif", mode="RGBA")
    assert rgba.shape == (4, 5, 4) and np.array_equal(rgba[..., 3], la[..., 1])


def test_an_itk_vector_nifti_reads_as_channels_last(tmp_path):
    """(X, Y, Z, 1, C), the shape ITK and SimpleITK write for multi-channel images, is
    (X, Y, Z, C); other 5-D shapes are a one-line error."""
    nib = pytest.importorskip("nibabel")
    from unetlab.data.volumes import read_volume

    data = np.random.default_rng(0).random((6, 5, 4, 1, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    vol = read_volume(tmp_path / "v.nii.gz")
    assert vol.array.shape == (6, 5, 4, 2)
    assert np.allclose(vol.array, data[:, :, :, 0, :])
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 2, 2), np.float32), np.eye(4)),
             tmp_path / "w.nii.gz")
    with pytest.raises(UnetlabError, match="expected a 3-D or 4-D"):
        read_volume(tmp_path / "w.nii.gz")
