"""Property: fed random, truncated or lying files, the image and mask readers return the
correct array or raise a one-line UnetlabError naming the file; never another
exception, never a large allocation (issue 12)."""

from __future__ import annotations

import io
import resource
import struct
import zlib

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from safety_helpers import png_chunk, tiff_bytes  # noqa: E402
from unetlab.data.mapping import MaskMapping  # noqa: E402
from unetlab.errors import UnetlabError  # noqa: E402
from unetlab.imageio import read_image  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
MEMORY_SLACK_KB = 300 * 1024  # the readers may not grow the peak RSS by more than this


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.fixture(scope="module", autouse=True)
def _memory_bound():
    before = _peak_kb()
    yield
    assert _peak_kb() - before < MEMORY_SLACK_KB


def _read(path, mode=None):
    """read_image's outcome: an array, or the error text (checked to be one line that
    names the file); any other exception fails the test."""
    try:
        return read_image(path, mode=mode)
    except UnetlabError as exc:
        text = str(exc)
        assert "\n" not in text and str(path) in text, text
        return text


def _encode(array: np.ndarray, fmt: str, compression) -> bytes:
    buf = io.BytesIO()
    if fmt == "tif":
        import tifffile

        tifffile.imwrite(buf, array, compression=compression)
    else:
        from PIL import Image

        Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


images = st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4]),
                   st.sampled_from([np.uint8, np.uint16]), st.integers(0, 2**32 - 1))


@SETTINGS
@given(spec=images, fmt=st.sampled_from(["png", "tif"]),
       compression=st.sampled_from([None, "zlib"]), cut=st.floats(0.0, 1.0))
def test_truncated_image_is_correct_or_an_error(tmp_path, spec, fmt, compression, cut):
    h, w, c, dtype, seed = spec
    if fmt == "png" and dtype == np.uint16 and c > 1:
        dtype = np.uint8  # Pillow writes 16-bit grey only
    shape = (h, w) if c == 1 else (h, w, c)
    array = np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype,
                                                 endpoint=True)
    data = _encode(array, fmt, compression)
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(data[: int(len(data) * cut)])
    result = _read(path)
    if isinstance(result, np.ndarray):  # only ever the true image, never zero-filled rows
        assert result.shape == array.shape and np.array_equal(result, array)


@SETTINGS
@given(prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*",
                               b"\xff\xd8\xff\xe0", b"BM"]),
       body=st.binary(max_size=600), suffix=st.sampled_from([".png", ".tif", ".jpg", ".bmp"]),
       mode=st.sampled_from([None, "L", "RGB", "P"]))
def test_random_bytes_are_an_error_or_an_array(tmp_path, prefix, body, suffix, mode):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(prefix + body)
    result = _read(path, mode)
    assert isinstance(result, str | np.ndarray)


@SETTINGS
@given(width=st.integers(0, 2**31 - 1), height=st.integers(0, 2**31 - 1),
       depth=st.sampled_from([1, 2, 4, 8, 16, 3]), color=st.sampled_from([0, 2, 3, 4, 6, 5]),
       interlace=st.sampled_from([0, 1]), payload=st.binary(max_size=400),
       compress=st.booleans())
def test_png_with_a_random_header_never_allocates_what_it_claims(
        tmp_path, width, height, depth, color, interlace, payload, compress):
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(payload) if compress else payload)
            + png_chunk(b"IEND", b""))
    path = tmp_path / "x.png"
    path.write_bytes(data)
    result = _read(path)
    if isinstance(result, np.ndarray):
        assert result.shape[:2] == (height, width)


@SETTINGS
@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1),
       data=st.binary(max_size=256))
def test_tiff_with_a_random_header_never_allocates_what_it_claims(tmp_path, width, height,
                                                                   data):
    path = tmp_path / "x.tif"
    path.write_bytes(tiff_bytes(width, height, data))
    result = _read(path)
    if isinstance(result, np.ndarray):
        assert result.shape == (height, width) and width * height <= len(data)


@SETTINGS
@given(mask=st.lists(st.sampled_from([0, 1, 7, 255]), min_size=16, max_size=16),
       cut=st.floats(0.5, 1.0))
def test_mask_reader_maps_or_names_the_file(tmp_path, mask, cut):
    """The mask path (read, then the declared mapping): class ids or a one-line error."""
    from PIL import Image

    array = np.array(mask, np.uint8).reshape(4, 4)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    path = tmp_path / "m.png"
    path.write_bytes(buf.getvalue()[: int(len(buf.getvalue()) * cut)])
    mapping = MaskMapping({0: 0, 255: 1})
    try:
        labels = mapping(read_image(path, mode="L"), source=str(path))
    except UnetlabError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert set(np.unique(array)) <= {0, 255}
    assert np.array_equal(labels, (array == 255).astype(np.int64))
