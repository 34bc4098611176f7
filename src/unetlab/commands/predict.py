"""``unetlab predict``: segment images of any size with a trained model."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import UnetlabError
from ._common import (
    add_backend_arguments,
    add_json_argument,
    add_max_pixels_argument,
    add_precision_argument,
    add_tta_argument,
    inference_model,
    write_json,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="segment images (any size) with a trained model",
        description="Predict label maps with overlap-tile inference. Writes "
        "<name>_labels.png (.tif for TIFF inputs, stacks and volumes), <name>_overlay.png "
        "and, with --probabilities, <name>_probs.tif into --out, mirroring the inputs' "
        "paths under the folders given, and a manifest (predict_manifest.json). Nothing "
        "existing is replaced without --overwrite. Runs across processes and machines "
        "under torchrun (docs/inference.md). GeoTIFFs and other GDAL rasters give a label "
        "GeoTIFF with the input's CRS, transform and no-data (docs/remote_sensing.md).")
    p.add_argument("checkpoint", type=Path,
                   help="a model file (.safetensors) or a training-run folder")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files or folders of images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--tile-size", type=int, default=None,
                   help="input tile size in pixels (default 256, NIfTI volumes 96 per axis; "
                   "valid-padding models: a valid input size such as 572)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    p.add_argument("--blend", default="gaussian", choices=("gaussian", "linear", "constant"))
    add_tta_argument(p)
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    add_backend_arguments(p)
    add_precision_argument(p, "auto (default): fp32, or with --calibration the fastest "
                           "precision that keeps fp32's answers; bf16: CPUs with "
                           "AVX512-BF16/AMX and recent GPUs; fp16: CUDA only; int8: "
                           "--backend openvino --calibration DIR")
    p.add_argument("--probabilities", action="store_true",
                   help="also write per-class probability maps (float32 TIFF)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:1, ... (under torchrun: cuda = one GPU per process)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_max_pixels_argument(p)
    p.add_argument("--recursive", action="store_true",
                   help="also predict the images in subfolders (outputs mirror them)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs an earlier prediction into --out wrote (its "
                   "manifest records them; other files and inputs are never replaced)")
    p.add_argument("--resume", action="store_true",
                   help="skip the inputs the manifest in --out records as complete")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process (default: all cores, divided by "
                   "the processes on the node under torchrun)")
    p.add_argument("--nodata", type=float, default=None, metavar="VALUE",
                   help="raster inputs: their no-data value, in place of the files' own "
                   "(pixels equal to it in any band the model reads get no label, as "
                   "tagged no-data; e.g. 0 for a file without a no-data tag)")
    p.add_argument("--any-dtype", action="store_true",
                   help="raster inputs: predict bands whose dtype has other units than "
                   "the training rasters' (e.g. float32 reflectance to a model trained "
                   "on uint16 counts) with a warning, not an error; the labels may be "
                   "wrong")
    p.add_argument("--split-above", type=int, default=None, metavar="PIXELS",
                   help="under torchrun, predict an image of more pixels in row bands "
                   "across all processes (default: one process's fair share)")
    add_json_argument(p)
    p.set_defaults(run=run)
    return p




def run(args) -> int:
    from ..inference import distributed as D

    if not args.checkpoint.exists():
        raise UnetlabError(f"{args.checkpoint}: no such checkpoint")
    if not 0.0 <= args.overlap < 1.0:  # also NaN
        raise UnetlabError(f"--overlap {args.overlap}: must be at least 0 and below 1")
    if args.batch_size < 1:
        raise UnetlabError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.tile_size is not None and args.tile_size < 1:
        raise UnetlabError(f"--tile-size {args.tile_size}: must be positive")
    if args.backend == "eager" and args.precision not in ("auto", "fp32"):
        raise UnetlabError(f"--precision {args.precision} needs --backend torch, openvino "
                           "or auto (eager runs the model as it is)")
    info, device = D.start(args.device, args.threads)
    ok = False
    try:
        failed, total = _run(args, info, device)
        ok = failed is not None  # a refused plan: no rank waits for the others
    finally:
        D.stop(info, ok)
    if failed is None:
        return 2
    if not failed:
        return 0
    if not info.is_main:
        return 1
    first = failed[0]
    where = "" if first["error"].startswith(first["input"]) else f"{first['input']}: "
    others = ", the others were written" if len(failed) < total else ""
    raise UnetlabError(f"{len(failed)} of {total} input(s) failed{others} "
                       f"(see {args.out / 'predict_manifest.json'}); {where}{first['error']}")


def _settings(args, tta) -> dict:
    """What the outputs depend on (``tta``: the views used, resolved from the card)."""
    return {"checkpoint": str(args.checkpoint), "tile_size": args.tile_size,
            "overlap": args.overlap, "blend": args.blend, "tta": tta or None,
            "backend": args.backend, "precision": args.precision,
            "probabilities": args.probabilities,
            "nodata": "nan" if args.nodata != args.nodata else args.nodata}  # NaN != NaN


def _can_split(path, geo) -> bool:
    """Row bands across ranks write one plain TIFF: not for rasters (their label GeoTIFF
    keeps the CRS) nor volumes (their NIfTI keeps the affine); those go whole to a rank."""
    from ..data.volumes import is_nifti
    from ..inference.raster import is_raster

    return not (is_nifti(path) or is_raster(Path(path), geo))


def _model_dims(checkpoint) -> int:
    """The model's spatial dims from its card (the header only: nothing is built)."""
    from ..card import read_card

    try:
        return int(read_card(checkpoint, warn=False)["architecture"]["spatial_dims"])
    except UnetlabError:
        raise
    except ValueError as exc:
        raise UnetlabError(str(exc)) from None


def _check_tile(model, scale: float, args, longest: int | None = None) -> int | None:
    """A tile size this model (at its card's ``scale``) cannot take is one line before
    the backend is built or any input read, not a failure per input. (2-D models: a 3-D
    model's tiles depend on the input's kind.) Returns the tile the backend is built and
    probed for: ``--tile-size``, no larger than the longest input side (``longest``, from
    the headers) needs, as the tiler caps it per image."""
    from ..inference.scaled import ScaledModel
    from ..inference.tiling import cap_tiles, model_geometry, plan_axis

    if int(getattr(model, "spatial_dims", 2)) != 2:
        return args.tile_size
    tile = args.tile_size or 256
    padding, levels, align = model_geometry(ScaledModel(model, scale) if scale != 1.0
                                            else model)
    if longest:
        tile = cap_tiles((tile,), (longest,), padding=padding, levels=levels, align=align)[0]
    try:
        plan_axis(tile, tile, args.overlap, padding=padding, levels=levels, align=align)
    except ValueError as exc:
        raise UnetlabError(f"--tile-size {tile}: {exc}") from None
    return tile if args.tile_size else None


def _plan(args, world: int) -> dict:
    """Rank 0: every input, its outputs and its process; refuses before any work."""
    from ..card import read_card
    from ..inference import manifest as M
    from ..inference.distributed import shard_by_pixels
    from ..inference.outputs import collect_inputs, header_dims, plan_outputs, prepare_folders
    from ..inference.tiling import tta_for_card

    card = read_card(args.checkpoint, warn=False)
    tta = tta_for_card(args.tta, card)  # the views bare --tta means (warned on rank 0 only)
    out, settings = args.out, _settings(args, tta)
    if out.exists() and not out.is_dir():
        raise UnetlabError(f"--out {out}: exists and is not a folder")
    previous = M.read_previous(out) if args.resume else None
    if previous is not None:
        M.check_same_settings(previous, settings, out / M.MANIFEST)
    elif (out / M.MANIFEST).exists() and not args.overwrite and \
            M.summarize(M.read_previous(out)["inputs"])["complete"]:
        # (a manifest of a run that wrote nothing records no output: it may be replaced)
        raise UnetlabError(f"{out / M.MANIFEST} exists: an earlier prediction wrote to this "
                           "folder; pass --resume to continue it or --overwrite to redo it")
    old = {e["input"]: e for e in (previous or {}).get("inputs", [])}
    items = collect_inputs(args.inputs, recursive=args.recursive, exclude=out)
    spatial_dims = _model_dims(args.checkpoint)
    channels = {}  # a volume stored one file per modality: {its first file: every file}
    if spatial_dims == 3:
        from ..inference.volume import group_channel_inputs

        items, channels = group_channel_inputs(items, int(card["architecture"]["in_channels"]))
    reusable = [p for e in old.values() for p in (e.get("planned") or {}).values() if p]
    geo = _geo(card)
    ours = _recorded(out)
    plan = plan_outputs(items, out, spatial_dims=spatial_dims,
                        probabilities=args.probabilities, overwrite=args.overwrite,
                        reusable=reusable, ours=ours)
    prepare_folders(plan, out)
    entries, todo, longest = [], [], None
    for i, p in enumerate(plan):
        before = old.get(str(p.path))
        planned = {k: str(v) if v is not None else None for k, v in p.outputs.items()}
        files = channels.get(str(p.path))
        if before is not None and before.get("planned") == planned and \
                before.get("channels") == files and M.is_complete(before):
            entries.append(before)
            continue
        dims = header_dims(p.path)
        if dims is not None:
            longest = max(longest or 0, *dims)
        entries.append({"input": str(p.path), "key": p.key,
                        "pixels": None if dims is None else math.prod(dims),
                        "status": "pending", "rank": None, "outputs": None,
                        "planned": planned, "error": None, "seconds": None,
                        **({"channels": files} if files else {})})
        todo.append(i)
    pixels = [entries[i]["pixels"] for i in todo]
    limit = args.split_above if args.split_above is not None else \
        (sum(p or 1 for p in pixels) / world if world > 1 else None)
    split = [i for i in todo if world > 1 and limit is not None and
             (entries[i]["pixels"] or 0) > limit and _can_split(entries[i]["input"], geo)]
    banded = set(split)
    rest = [i for i in todo if i not in banded]
    ranks = shard_by_pixels([entries[i]["pixels"] for i in rest], world)
    for i in split:
        entries[i]["rank"] = "all"
    for i, r in zip(rest, ranks):
        entries[i]["rank"] = r
    for journal in M.journals(out):  # their records are in the entries now
        journal.unlink()
    doc = {"schema": M.SCHEMA, "command": "predict", "settings": settings,
           "world_size": world, "inputs": entries, "counts": M.summarize(entries),
           "written": _written(ours, plan, out)}
    write_json(out / M.MANIFEST, doc)
    skipped = len(plan) - len(todo)
    if skipped:
        print(f"resuming: {skipped} of {len(plan)} inputs already complete")
    return {"doc": doc, "stems": [str(p.stem) for p in plan], "split": split, "tta": tta,
            "longest": longest,
            "shards": [[i for i, r in zip(rest, ranks) if r == k] for k in range(world)]}


def _run(args, info, device) -> tuple[list | None, int]:
    """Predict this rank's share; returns every rank's failed records and the number of
    inputs (None on the other ranks when rank 0 refused the plan)."""
    import time

    from ..card import palette_of
    from ..data.volumes import is_nifti
    from ..inference import bands, predict_file
    from ..inference import distributed as D
    from ..inference import manifest as M
    from ..inference.volume import predict_nifti
    from ..models.serialization import load_model
    from ..preprocess import Preprocessing

    payload = None
    if info.is_main:
        try:
            payload = _plan(args, info.world_size)
        except UnetlabError as exc:
            payload = {"error": str(exc)}
    payload = D.broadcast(payload, info)
    if "error" in payload:  # rank 0 says it; the others leave quietly (exit status 2)
        if info.is_main:
            raise UnetlabError(payload["error"])
        return None, 0
    model = load_model(args.checkpoint, map_location=device)
    card = model.unetlab_card  # what the model was trained to see, and its classes
    tta = payload["tta"]  # the views bare --tta means for it, resolved by rank 0
    scale = float(card["input"].get("scale", 1.0))
    probe_tile = _check_tile(model, scale, args, payload.get("longest"))
    model = inference_model(model, args, device=device,
                            preprocessing=Preprocessing.from_card(card),
                            tile_size=probe_tile, batch_size=args.batch_size)
    palette = palette_of(card)
    if scale != 1.0:  # trained at another resolution: the model works at it inside
        from ..inference.scaled import ScaledModel

        model = ScaledModel(model, scale)
    entries, stems = payload["doc"]["inputs"], payload["stems"]
    options = dict(tile_size=args.tile_size or 256, overlap=args.overlap, blend=args.blend,
                   tta=tta, batch_size=args.batch_size,
                   probabilities=args.probabilities,
                   preprocessing=Preprocessing.from_card(card), device=device)
    tag = f"[rank {info.rank}] " if info.enabled else ""
    records = []

    def finish(i, res, err, t0):
        entry = entries[i]
        record = {"input": entry["input"], "status": "failed" if err else "complete",
                  "rank": entry["rank"], "error": err, "seconds": round(time.time() - t0, 3),
                  "outputs": None if err else
                  {k: str(res[k]) if res.get(k) else None
                   for k in ("labels", "overlay", "probabilities")}}
        if err:
            _discard(entry["planned"])
            print(f"{tag}{entry['input']}: FAILED: {err}")
        else:
            print(f"{tag}{entry['input']}: {res['labels']}"
                  + (f", {res['overlay']}" if res["overlay"] else ""))
        M.append_journal(args.out, info.rank, record)
        records.append(record)

    for i in payload["split"]:  # every rank predicts a band of rows of each
        t0, stem, path = time.time(), Path(stems[i]), Path(entries[i]["input"])
        err = None
        if info.is_main:
            _, err = _attempt(bands.create_outputs, model, path, stem,
                              probabilities=args.probabilities)
        errors = D.gather(err, info)
        if not any(errors):
            _, err = _attempt(bands.predict_rows, model, path, stem, info.rank,
                              info.world_size, **options)
            errors = D.gather(err, info)
        if info.is_main:
            res, err = None, next((e for e in errors if e), None)
            if err is None:
                res, err = _attempt(bands.finish_outputs, model, path, stem,
                                    probabilities=args.probabilities, palette=palette)
            if err:
                bands.discard_partial(stem)
            finish(i, res, err, t0)
    for i in payload["shards"][info.rank]:
        t0, entry = time.time(), entries[i]
        stem = Path(stems[i]).relative_to(args.out)
        if is_nifti(entry["input"]):  # a volume: its own reader and writer (affine kept)
            res, err = _attempt(predict_nifti, model, Path(entry["input"]), args.out,
                                stem=stem, **{**options, "tile_size": args.tile_size or 96,
                                              "preprocessing": None},
                                channels=entry.get("channels"),  # one file per modality
                                medical=(card.get("extensions") or {}).get("medical"),
                                overwrite=True,  # the plan already refused existing outputs
                                progress=not args.no_progress)
            finish(i, res, err, t0)
            continue
        res, err = _attempt(predict_file, model, Path(entry["input"]), args.out,
                            stem=stem, palette=palette,
                            progress=not args.no_progress, geo=_geo(card),
                            class_names=card["classes"]["names"],
                            overwrite=True,  # the plan refused existing outputs already
                            nodata=args.nodata, any_dtype=args.any_dtype, **options)
        finish(i, res, err, t0)
    everything = [r for rs in D.gather(records, info) for r in rs]
    failed = sum(r["status"] == "failed" for r in everything)
    if info.is_main:
        by_input = {r["input"]: r for r in everything}
        for entry in entries:
            entry.update(by_input.get(entry["input"], {}))
        doc = {**payload["doc"], "inputs": entries, "counts": M.summarize(entries)}
        write_json(args.out / M.MANIFEST, doc)
        for journal in M.journals(args.out):
            journal.unlink()
        if args.json:
            write_json(args.json, {"checkpoint": args.checkpoint,
                                   "outputs": {e["input"]: e["outputs"] for e in entries},
                                   "failed": {e["input"]: e["error"] for e in entries
                                              if e["status"] == "failed"}})
        print(f"manifest: {args.out / M.MANIFEST} ({doc['counts']['complete']} complete, "
              f"{failed} failed)")
    return [r for r in everything if r["status"] == "failed"], len(entries)


def _recorded(out: Path) -> set | None:
    """Every file an earlier prediction into ``out`` recorded writing (resolved paths):
    its manifest's cumulative ``written`` list (paths relative to ``out``, so a run from
    another working folder matches) and the planned outputs of its inputs. An empty set
    without a manifest; None when the manifest does not read (nothing is then known, and
    ``--overwrite`` replaces as it always did)."""
    from ..inference import manifest as M

    try:
        previous = M.read_previous(out)
    except UnetlabError:
        return None
    if previous is None:
        return set()
    base = Path(out).resolve()
    paths = {(base / rel).resolve() for rel in previous.get("written") or []
             if isinstance(rel, str)}
    for entry in previous.get("inputs", []):
        for group in (entry.get("planned"), entry.get("outputs")):
            if isinstance(group, dict):
                paths.update(Path(v).resolve() for v in group.values() if v)
    return paths


def _written(ours: set | None, plan, out: Path) -> list[str]:
    """The manifest's cumulative record of predict's own files in ``out``: the earlier
    runs' and this plan's outputs, relative to ``out``."""
    import os

    base = Path(out).resolve()
    paths = set(ours or ())
    for p in plan:
        paths.update(Path(v).resolve() for v in p.outputs.values() if v is not None)
    return sorted(os.path.relpath(q, base) for q in paths
                  if q == base or base in q.parents)


def _geo(card: dict) -> dict | None:
    """The card's ``geo`` extension (bands, no-data of the training rasters), if any."""
    extensions = card.get("extensions")
    geo = extensions.get("geo") if isinstance(extensions, dict) else None
    return geo if isinstance(geo, dict) else None


def _attempt(fn, *args, **kwargs) -> tuple:
    """``(fn(*args, **kwargs), None)``, or ``(None, the error in one line)``: a failing
    input is recorded as failed and the run goes on."""
    try:
        return fn(*args, **kwargs), None
    except (UnetlabError, ValueError, OSError, RuntimeError, MemoryError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, UnetlabError):
            message = f"{type(exc).__name__}: {message}"
        return None, message


def _discard(planned: dict) -> None:
    """Remove what a failed input left half-written (planned outputs are ours to
    replace: they were free, ours from the resumed run, or --overwrite was given)."""
    for p in (planned or {}).values():
        if p:
            Path(p).unlink(missing_ok=True)
