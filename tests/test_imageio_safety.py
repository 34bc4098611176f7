"""Image readers against careless and hostile files (issue 12): a pixel limit read from
the header before decoding, truncated data, NaN pixels; one-line errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from safety_helpers import grey_rows, png_bytes, tiff_bytes
from unetlab.errors import UnetlabError
from unetlab.imageio import read_image, read_tiff_memmap, write_image
from unetlab.limits import DEFAULT_MAX_PIXELS, ENV_VAR, max_pixels, pixel_limit


def _error(path, **kwargs) -> str:
    with pytest.raises(UnetlabError) as exc:
        read_image(path, **kwargs)
    text = str(exc.value)
    assert "\n" not in text and str(path) in text
    return text


def test_png_declaring_50000_squared_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(50000, 50000, grey_rows(8, 1)))
    assert path.stat().st_size < 200
    text = _error(path)
    assert "50000 x 50000" in text and "--max-pixels" in text
    assert "DecompressionBomb" not in text


def test_tiff_declaring_50000_squared_is_refused_before_allocating(tmp_path):
    path = tmp_path / "bomb.tif"
    path.write_bytes(tiff_bytes(50000, 50000))
    assert "50000 x 50000" in _error(path)
    with pytest.raises(UnetlabError, match="over the limit"):
        read_tiff_memmap(path)


def test_the_limit_is_raised_by_context_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    write_image(path, np.zeros((20, 30), np.uint8))
    assert max_pixels() == DEFAULT_MAX_PIXELS
    with pixel_limit(599):
        assert "20 x 30 (600 pixels)" in _error(path)
        with pixel_limit(600):
            assert read_image(path).shape == (20, 30)
    monkeypatch.setenv(ENV_VAR, "100")
    assert "over the limit of 100" in _error(path)
    monkeypatch.setenv(ENV_VAR, "many")
    with pytest.raises(UnetlabError, match=ENV_VAR):
        read_image(path)


def test_pillow_limit_does_not_override_ours(tmp_path, monkeypatch):
    """Pillow's own bomb check (2 x MAX_IMAGE_PIXELS) gives way to --max-pixels."""
    path = tmp_path / "a.png"
    write_image(path, np.zeros((20, 30), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert read_image(path).shape == (20, 30)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_png_whose_rows_stop_early_is_an_error_not_zeros(tmp_path):
    path = tmp_path / "short.png"
    path.write_bytes(png_bytes(64, 64, grey_rows(64, 10)))
    with Image.open(path) as img:  # what Pillow alone does: the missing rows are 0
        img.load()
        assert np.asarray(img)[20:].max() == 0
    assert "truncated PNG" in _error(path)
    full = tmp_path / "full.png"
    full.write_bytes(png_bytes(64, 64, grey_rows(64, 64)))
    assert (read_image(full) == 200).all()


def test_126_byte_png_declaring_12000_squared_fails_at_once(tmp_path):
    path = tmp_path / "small.png"
    path.write_bytes(png_bytes(12000, 12000, grey_rows(12000, 1)))
    assert "truncated PNG" in _error(path)


def test_truncated_files_even_when_load_truncated_images_is_set(tmp_path, monkeypatch):
    path = tmp_path / "cut.png"
    write_image(path, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # another library did it
    _error(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_nan_pixels_in_a_float_tiff_name_the_file(tmp_path):
    image = np.ones((8, 8), np.float32)
    image[2, 3] = np.nan
    image[5, 5] = np.inf
    write_image(tmp_path / "nan.tif", image)
    text = _error(tmp_path / "nan.tif")
    assert "2 NaN or infinite" in text and "(2, 3)" in text
    assert np.isnan(read_image(tmp_path / "nan.tif", allow_nonfinite=True)[2, 3])
