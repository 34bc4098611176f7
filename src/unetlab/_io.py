"""Atomic writes and JSON output, shared by every layer (commands, training, compare,
models). A file written here is either the old one or the complete new one: the data
goes to a temporary file beside the target, then one rename replaces it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .errors import UnetlabError


def _tmp_for(path: Path) -> Path:
    # keep the suffix (savefig and friends choose the format by it)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def _umask() -> int:
    """The process's umask (read by setting it: once, then cached)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def as_any_new_file(path) -> None:
    """safetensors writes its files 0600, whatever the umask: give such a file the mode
    any new file gets (0644 under the usual umask), so that others on a shared runs
    folder can read the model beside its card. Other modes (an ACL's) are left alone."""
    path = Path(path)
    if path.is_file() and path.stat().st_mode & 0o777 == 0o600:
        os.chmod(path, 0o666 & ~_umask())


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``.

    An OSError (full disk, no permission) becomes a one-line UnetlabError naming
    ``path``; the earlier file at ``path``, if any, is left untouched.
    """
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        as_any_new_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise UnetlabError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def to_jsonable(obj):
    """Tensors, numpy values, paths and non-finite floats to plain JSON values
    (NaN and infinities become null)."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (no NaN tokens)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, dumps(obj) + "\n")
