"""Image I/O shared by datasets, prediction and the command line.

PNG/JPEG through Pillow (16-bit colour PNGs through OpenCV, which keeps their 16 bits),
TIFF through tifffile (memory-mapped where the file allows it). Images keep their type:
asking for a mode ("L", "RGB") never clips a 16-bit or float image to 8 bits.
Every failure is a :class:`UnetlabError` naming the file.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ._headers import check_png_data, tiff_header
from .errors import UnetlabError
from .limits import check_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path, *, mode: str | None = None, allow_nonfinite: bool = False) -> np.ndarray:
    """Read an image as ``(H, W)`` or ``(H, W, C)`` array, dtype preserved (a
    band-sequential TIFF, ``(C, H, W)`` on disk, comes back bands last too).

    ``mode``: a Pillow mode to convert to ("L", "RGB", "P" to keep the palette indices),
    or "colour" (masks: palette and 8-bit images as RGB colours, wider ones unchanged).
    The size the header declares is checked against :func:`unetlab.limits.max_pixels`
    before decoding; a PNG whose data stops early, a damaged file and (unless
    ``allow_nonfinite``) NaN or infinite values in a float image are one-line errors.
    """
    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"{path}: no such image file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        shape, pixels = tiff_header(path)
        check_pixels(path, shape, pixels)
        try:
            with tifffile.TiffFile(str(path)) as tif:
                arr = tif.asarray()
                axes = tif.series[0].axes
        except MemoryError:
            raise UnetlabError(f"{path}: not enough memory to decode {shape}") from None
        except Exception as exc:  # tifffile raises many types for damaged files
            raise UnetlabError(f"{path}: unreadable TIFF ({' '.join(str(exc).split())})") \
                from None
        if axes == "SYX" and arr.ndim == 3:  # band-sequential: bands last like other images
            arr = np.moveaxis(arr, 0, -1)
        arr = convert_array(arr, mode, path)
    else:
        arr = _read_pillow(path, mode)
    if not allow_nonfinite:
        check_finite(arr, path)
    return arr


def _read_pillow(path: Path, mode: str | None) -> np.ndarray:
    from PIL import Image, ImageFile, UnidentifiedImageError

    bomb_limit, truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        # our own limit replaces Pillow's (checked below, from the header); a truncated
        # file is always an error, whatever another library set globally
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
        with Image.open(path) as img:
            width, height = img.size
            check_pixels(path, (height, width), width * height)
            depth = _png_depth(path) if img.format == "PNG" else None
            if depth == 16 and img.mode in ("RGB", "RGBA"):  # Pillow would keep 8 of 16 bits
                return _read_png16_colour(path, mode, channels=len(img.mode))
            img.load()
            if img.format == "PNG" and _rows_may_be_missing(img):
                check_png_data(path)  # Pillow fills the rows of a short stream with 0
            if mode is not None and img.mode != mode:
                if mode == "P":
                    raise UnetlabError(f"{path}: expected a palette image, got mode {img.mode}")
                if img.mode[0] in "IF":  # one channel of 16/32-bit integers or floats:
                    arr = _grey16(img, depth)  # Pillow's conversions would clip it to 8 bits
                    return arr if mode == "colour" else convert_array(arr, mode, path)
                if mode == "colour":  # masks: palette and 8-bit grey as RGB colours
                    mode = "RGB"
                img = img.convert(mode) if img.mode != mode else img
            return _grey16(img, depth) if img.mode[0] == "I" else np.asarray(img)
    except UnetlabError:
        raise
    except MemoryError:
        raise UnetlabError(f"{path}: not enough memory to decode the image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            struct.error, zlib.error, IndexError, TypeError, KeyError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise UnetlabError(f"{path}: unreadable or truncated image ({message})") from None
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = bomb_limit, truncated


def convert_array(arr: np.ndarray, mode: str | None, path) -> np.ndarray:
    """``arr`` (``(H, W)`` or ``(H, W, C)``, any type) as the Pillow ``mode`` "L", "RGB"
    or "RGBA" asks, without changing its type or range (Pillow's own conversions clip
    16-bit and float images to 8 bits): grey from colour is the mean of R, G and B, colour
    from grey repeats it, an added alpha is opaque (the type's maximum, 1.0 for floats),
    grey + alpha keeps its grey (and its alpha for RGBA). Other modes leave ``arr`` as it
    is; a channel count the mode cannot come from is a one-line error."""
    if mode not in ("L", "RGB", "RGBA"):
        return arr
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        grey = convert_array(arr[..., 0], "L" if mode == "L" else "RGB", path)
        return np.concatenate([grey, arr[..., 1:]], axis=-1) if mode == "RGBA" else grey
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    channels = 1 if arr.ndim == 2 else arr.shape[-1]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and channels not in (3, 4)):
        raise UnetlabError(f"{path}: an image of shape {tuple(arr.shape)} cannot be read "
                           f"as {mode} (grey, RGB or RGBA images can)")
    if mode == "L":
        return arr if arr.ndim == 2 else arr[..., :3].mean(-1).astype(arr.dtype)
    rgb = np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr[..., :3]
    if mode == "RGB":
        return rgb
    if channels == 4:
        return arr
    opaque = np.iinfo(arr.dtype).max if arr.dtype.kind in "iu" else 1
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), opaque, arr.dtype)], axis=-1)


def _grey16(img, depth: int | None) -> np.ndarray:
    """A one-channel wide image as an array; a 16-bit grey PNG as uint16 even where
    Pillow (before 10.3) opens it as 32-bit mode "I" (scaling divides by the type's
    maximum, so int32 would make it nearly black)."""
    arr = np.asarray(img)
    return arr.astype(np.uint16) if depth == 16 and arr.dtype.itemsize > 2 else arr


def _png_depth(path: Path) -> int | None:
    """The bit depth a PNG's header declares (None when the header is not where the
    format puts it)."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) == 26 and head[12:16] == b"IHDR" else None


def _read_png16_colour(path: Path, mode: str | None, channels: int) -> np.ndarray:
    """A 16-bit RGB(A) PNG with all its bits (OpenCV; Pillow reads 8 of them), with the
    ``channels`` Pillow reports (OpenCV turns a ``tRNS`` chunk into a fourth). Masks
    (``mode="colour"``) must hold 8-bit colours stored as 16 bits (v * 257 as image
    editors save them, or v * 256); they come back as uint8."""
    import cv2

    if mode == "P":
        raise UnetlabError(f"{path}: expected a palette image, got a 16-bit colour PNG")
    check_png_data(path)  # a short stream is an error, as for other PNGs
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise UnetlabError(f"{path}: unreadable 16-bit PNG")
    arr = np.ascontiguousarray(arr[..., [2, 1, 0, 3][: min(channels, arr.shape[-1])]])
    if mode == "colour":
        arr = arr[..., :3]
        high, low = arr >> 8, arr & 255
        if np.any((low != 0) & (low != high)):
            raise UnetlabError(
                f"{path}: a 16-bit colour mask whose colours are not 8-bit values (v * 257 "
                "or v * 256); save it with 8-bit colours, or as class indices in a grey "
                "image")
        return high.astype(np.uint8)
    return convert_array(arr, mode, path)


def _rows_may_be_missing(img) -> bool:
    """Whether a decoded PNG may hold rows Pillow filled with 0 because its data ended
    early: rows are decoded top to bottom, so a non-zero last row proves the data was
    complete (interlaced files are always checked)."""
    width, height = img.size
    if img.info.get("interlace") or width == 0 or height == 0:
        return True
    return not img.crop((0, height - 1, width, height)).getbbox(alpha_only=False)


def check_finite(array: np.ndarray, source, origin: tuple = ()) -> np.ndarray:
    """``array`` unchanged, or a one-line error naming ``source`` when a float array
    holds NaN or infinite values (a model would turn them into NaN probabilities).
    ``origin``: where ``array`` starts in the whole image (for the reported index)."""
    if array.dtype.kind in "fc" and array.size and not np.isfinite(array).all():
        bad = ~np.isfinite(array)
        first = [int(i) for i in np.argwhere(bad)[0]]
        for axis, start in enumerate(origin[: len(first)]):
            first[axis] += int(start or 0)
        raise UnetlabError(
            f"{source}: {int(bad.sum()):,} NaN or infinite pixel value(s) (first at index "
            f"{tuple(first)}); replace them (e.g. with 0 or the image mean) before using it")
    return array


def read_tiff_memmap(path) -> np.ndarray:
    """Memory-map an uncompressed TIFF (falls back to reading it into memory); the axes
    are the file's (see :func:`tiff_axes`).

    The pixel limit applies here too (the header is checked before mapping)."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"{path}: no such image file")
    shape, pixels = tiff_header(path)
    check_pixels(path, shape, pixels)
    try:
        return tifffile.memmap(str(path), mode="r")
    except ValueError:  # compressed, tiled or short: not memory-mappable; axes as on disk
        try:
            return tifffile.imread(str(path))
        except MemoryError:
            raise UnetlabError(f"{path}: not enough memory to decode {shape}") from None
        except Exception as exc:
            raise UnetlabError(f"{path}: unreadable TIFF ({' '.join(str(exc).split())})") \
                from None
    except Exception as exc:
        raise UnetlabError(f"{path}: unreadable TIFF ({' '.join(str(exc).split())})") from None


def tiff_axes(path) -> str | None:
    """The axes of a TIFF's first series as tifffile names them (``YXS``: pixel-
    interleaved samples, ``SYX``: band-sequential, ``QYX``/``ZYX``/``IYX``: a stack)."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            return tif.series[0].axes
    except Exception:  # unreadable: the reader that follows reports it
        return None


def write_image(path, array: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Write ``array`` as PNG/JPEG/TIFF by suffix; a ``palette`` (K x 3 uint8) makes an
    indexed PNG of a label map."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        tifffile.imwrite(str(path), array)
        return path
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(array))
    if palette is not None:
        img = img.convert("P") if img.mode != "P" else img
        flat = np.zeros((256, 3), dtype=np.uint8)
        flat[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:256]
        img.putpalette(flat.ravel().tolist())
    img.save(path)
    return path
