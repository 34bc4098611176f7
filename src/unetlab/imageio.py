"""Image I/O shared by datasets, prediction and the command line.

PNG/JPEG through Pillow, TIFF through tifffile (memory-mapped where the file allows it).
Every failure is a :class:`UnetlabError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UnetlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path, *, mode: str | None = None) -> np.ndarray:
    """Read an image as ``(H, W)`` or ``(H, W, C)`` array, dtype preserved.

    ``mode``: a Pillow mode to convert to ("L", "RGB", "P" to keep the palette indices).
    """
    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"{path}: no such image file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            arr = tifffile.imread(str(path))
        except Exception as exc:  # tifffile raises many types for damaged files
            raise UnetlabError(f"{path}: unreadable TIFF ({exc})") from None
        if mode == "L" and arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = arr[..., :3].mean(-1).astype(arr.dtype)
        return arr
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if mode is not None and img.mode != mode:
                if mode == "P":
                    raise UnetlabError(f"{path}: expected a palette image, got mode {img.mode}")
                img = img.convert(mode)
            return np.asarray(img)
    except UnetlabError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnetlabError(f"{path}: unreadable or truncated image ({exc})") from None


def read_tiff_memmap(path) -> np.ndarray:
    """Memory-map an uncompressed TIFF (falls back to reading it into memory)."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"{path}: no such image file")
    try:
        return tifffile.memmap(str(path), mode="r")
    except ValueError:  # compressed or tiled: not memory-mappable
        return read_image(path)
    except Exception as exc:
        raise UnetlabError(f"{path}: unreadable TIFF ({exc})") from None


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
