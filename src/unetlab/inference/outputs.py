"""Where ``unetlab predict`` writes, decided before any image is read or predicted.

Each input gets an output *stem* under ``--out`` that mirrors its path relative to the
folder given on the command line (a file given directly: its name), so the names are the
same whatever the number of processes. The plan is refused, in one line naming the
paths, when two inputs would write one output, when an output would replace an input
(never allowed), or when an output exists and ``overwrite`` is not set.

In a folder, files that are this command's own outputs for an image beside them
(``X_labels.png``, ``X_overlay.png``, ``X_probs.tif`` next to ``X.png``) are not inputs.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UnetlabError
from ..imageio import IMAGE_SUFFIXES, TIFF_SUFFIXES

OUTPUT_NAME = re.compile(r"^(?P<stem>.+)_(labels|overlay|probs)\.(png|tif|tiff|nii\.gz)$",
                         re.I)
NIFTI_SUFFIXES = (".nii.gz", ".nii")  # volumes: unetlab.inference.volume writes .nii.gz


def _is_nifti(path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)
DOUBLE_SUFFIXES = (".nii.gz", ".ome.tif", ".ome.tiff")


@dataclass
class PlannedInput:
    """One input: its file, its key (path relative to the folder given, POSIX style),
    its output stem (``out / key`` without the extension) and the outputs it may write."""

    path: Path
    key: str
    stem: Path
    outputs: dict = field(default_factory=dict)
    pixels: int | None = None


def input_stem(name: str) -> str:
    """A file name without its extension (``a.nii.gz`` -> ``a``)."""
    low = name.lower()
    for suffix in DOUBLE_SUFFIXES:
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _is_own_output(f: Path) -> bool:
    """``X_labels.png`` (etc.) with an image ``X.*`` beside it, or ``X_labels.nii.gz``
    beside ``X_0000.nii.gz`` (a case stored one file per modality): an earlier
    prediction."""
    m = OUTPUT_NAME.match(f.name)
    if not m:
        return False
    stem = m.group("stem")
    return any(g.is_file() for g in f.parent.glob(f"{glob_escape(stem)}.*")
               if (g.suffix.lower() in IMAGE_SUFFIXES or _is_nifti(g)) and g.name != f.name
               and input_stem(g.name) == stem) or (
        _is_nifti(f) and any((f.parent / f"{stem}_0000{s}").is_file() for s in NIFTI_SUFFIXES))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def collect_inputs(inputs, *, recursive: bool = False, exclude: Path | None = None
                   ) -> list[tuple[Path, str]]:
    """``(file, key)`` for every image named on the command line, in a stable order.

    A folder contributes its images (with ``recursive``, those of its subfolders too,
    keyed by their relative path); ``exclude`` (the output folder) is never searched.
    The same file reached twice is predicted once.
    """
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    skip = exclude.resolve() if exclude is not None else None
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            pattern = item.rglob("*") if recursive else item.iterdir()
            files = []
            for f in pattern:
                if not f.is_file() or (f.suffix.lower() not in IMAGE_SUFFIXES
                                       and not _is_nifti(f)):
                    continue
                rel = f.relative_to(item)
                if any(part.startswith(".") for part in rel.parts) or _is_own_output(f):
                    continue
                if skip is not None and skip != item.resolve() and \
                        skip in f.resolve().parents:
                    continue
                files.append((f, PurePosixPath(*rel.parts).as_posix()))
            if not files:
                raise UnetlabError(f"{item}: no images ({', '.join(IMAGE_SUFFIXES)}) in "
                                   "folder" + ("" if recursive else " (--recursive searches "
                                               "subfolders)"))
            candidates = sorted(files, key=lambda t: t[1])
        elif item.is_file():
            candidates = [(item, item.name)]
        else:
            raise UnetlabError(f"{item}: no such file or directory")
        for f, key in candidates:
            real = f.resolve()
            if real not in seen:
                seen.add(real)
                found.append((f, key))
    return found


def output_paths(path: Path, stem: Path, *, spatial_dims: int = 2,
                 probabilities: bool = False) -> dict:
    """Every file predicting ``path`` may write (the overlay only for 2-D images)."""
    if _is_nifti(path):  # a label volume on the input's grid (unetlab.inference.volume)
        return {"labels": stem.with_name(f"{stem.name}_labels.nii.gz"), "overlay": None,
                "probabilities": stem.with_name(f"{stem.name}_probs.nii.gz")
                if probabilities else None}
    tif = path.suffix.lower() in TIFF_SUFFIXES or spatial_dims > 2
    out = {"labels": stem.with_name(f"{stem.name}_labels.{'tif' if tif else 'png'}"),
           "overlay": stem.with_name(f"{stem.name}_overlay.png") if spatial_dims == 2
           else None,
           "probabilities": stem.with_name(f"{stem.name}_probs.tif") if probabilities
           else None}
    return out


def plan_outputs(items, out: Path, *, spatial_dims: int = 2, probabilities: bool = False,
                 overwrite: bool = False, reusable=(), ours=None) -> list[PlannedInput]:
    """One :class:`PlannedInput` per ``(file, key)``; UnetlabError when two inputs share
    an output, an output is an input, or (without ``overwrite``) an output exists that is
    not in ``reusable`` (the unfinished outputs of the run being resumed). ``ours``: the
    files an earlier prediction into ``out`` recorded (its manifest); when given, an
    existing file outside it is refused even with ``overwrite``: ``X_labels.tif`` beside
    ``X.tif`` may be the user's ground truth, which predict never wrote."""
    out = Path(out)
    inputs = {f.resolve(): f for f, _ in items}
    owner: dict[Path, Path] = {}
    existing: list[Path] = []
    reusable = {Path(p).resolve() for p in reusable}
    plan = []
    for f, key in items:
        rel = PurePosixPath(key)
        stem = out.joinpath(*rel.parent.parts, input_stem(rel.name))
        outputs = output_paths(f, stem, spatial_dims=spatial_dims, probabilities=probabilities)
        for target in (p for p in outputs.values() if p is not None):
            real = target.resolve()
            if real in inputs:
                raise UnetlabError(f"{target} is an input; predicting {f} would replace it "
                                   "(choose another --out)")
            if real in owner:
                raise UnetlabError(f"{owner[real]} and {f} would both be written to {target}; "
                                   "predict them into separate --out folders")
            owner[real] = f
            if target.exists() and real not in reusable:
                existing.append(target)
        plan.append(PlannedInput(f, key, stem, outputs))
    if ours is not None:
        ours = {Path(p).resolve() for p in ours}
        foreign = [t for t in existing if t.resolve() not in ours]
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise UnetlabError(f"{foreign[0]} exists{more} and no earlier prediction into "
                               f"{out} wrote it (its manifest does not record it): predict "
                               "into another --out; --overwrite replaces only predict's own "
                               "outputs")
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise UnetlabError(f"{existing[0]} exists{more}; pass --overwrite to replace, or "
                           "--resume to continue an interrupted run")
    return plan


def prepare_folders(plan, out: Path) -> None:
    """Create ``out`` and the mirrored subfolders, and prove each is writable."""
    folders = sorted({Path(out), *(p.stem.parent for p in plan)})
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnetlabError(f"--out {folder}: cannot create the folder "
                               f"({exc.strerror or exc})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UnetlabError(f"--out {folder}: the folder is not writable")
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".unetlab-probe-"):
                pass
        except OSError as exc:
            raise UnetlabError(f"--out {folder}: cannot write there "
                               f"({exc.strerror or exc})") from None


def header_dims(path: Path) -> tuple[int, ...] | None:
    """Every axis the file header declares (slices and channels too), or None if the
    header does not read: a damaged file fails (and is recorded) when it is predicted."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                return tuple(int(s) for s in tif.series[0].shape)
        from PIL import Image

        with Image.open(path) as img:
            w, h = img.size
            return (h, w, max(1, len(img.getbands())))
    except Exception:
        return None
