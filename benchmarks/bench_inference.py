"""Inference speed and memory of unetlab against plain eager PyTorch, ONNX Runtime and MONAI.

Three parts, each printed as a Markdown table and saved in one JSON file:

1. ``model``: one forward pass of the classic U-Net (64..1024, batch norm, 3 -> 2
   classes) at each ``--sizes``: eager PyTorch, ``optimize_for_inference`` (torch
   backend; ``--bf16`` adds its bfloat16 variant), ONNX Runtime on the exported model,
   MONAI ``BasicUNet`` with the same widths. ``--openvino`` adds OpenVINO fp32
   (``backend="openvino"``, with its Winograd layers chosen for the input's shape, and
   ``openvino_no_winograd`` without them), ``backend="auto"`` fp32 (the probe's pick),
   unetlab's int8 (NNCF on the folded graph, first conv and 1x1 head in fp32), OpenVINO's
   own int8 of the plain exported graph (NNCF defaults, OpenVINO's default precision
   hint) and ONNX Runtime's static int8 quantization (QDQ), all calibrated on the same 4
   inputs. The runners are interleaved (``--rounds``; the rounds start further along
   the list and alternate direction, so no runner always follows the same one) and the
   medians reported.
2. ``train`` (``--train``): one training step (Adam, cross-entropy, batch 2) of a plain
   loop, unetlab U-Net vs MONAI BasicUNet, and ``unetlab_trainer``: the step of
   ``unetlab train`` itself (``Trainer.train_step``, channels-last); ``--bf16`` adds each
   under bfloat16 autocast.
3. ``tiled``: an image of each ``--tiled-sizes`` (a TIFF on disk) segmented with tile 256,
   overlap 0.25, gaussian blending, by ``unetlab.inference.predict_file`` (streaming) and by
   MONAI ``sliding_window_inference`` on the image in memory, same model (U-Net 16..128,
   batch norm). Each run is its own subprocess, so peak RSS (``VmHWM``) is its own.
   ``--runners auto auto_calibrated`` run what ``unetlab predict`` runs by default
   (``backend="auto"``, without and with 4 calibration tiles). Mpx/s counts the
   segmentation; the model's set-up (export, compilation, quantization, auto's probe on
   an empty cache) is reported beside it and in "Mpx/s with setup".

Peers are optional: ``pip install 'unetlab[bench]'`` (monai). Missing peers are skipped.

    python benchmarks/bench_inference.py --sizes 256 --tiled-sizes 1024 --json out.json

AVX2 rows on an AVX-512 machine: oneDNN (PyTorch's convolutions, OpenVINO's CPU plugin),
ATen and oneMKL (PyTorch's matrix products, e.g. the Winograd layers) run their AVX2
kernels when told to, and unetlab's CPU-aware defaults follow the limits (no bf16; the
CPU line names them). ONNX Runtime ignores them, so keep it out of ``auto`` and read its
rows as not limited:

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        UNETLAB_AUTO_BACKENDS=torch,openvino \
        python benchmarks/bench_inference.py --sizes 256 512 --openvino --train ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

WIDE = (64, 128, 256, 512, 1024)
TILED = (16, 32, 64, 128)


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _median_time(fn, repeats: int, *args, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        fn(*args)
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _monai():
    try:
        import monai  # noqa: F401

        return True
    except ImportError:
        return False


def _unet(channels, classes=2, in_channels=3):
    import unetlab

    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=in_channels, num_classes=classes,
                                channels=channels, norm="batch").eval()


def _basic_unet(channels, classes=2, in_channels=3):
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=classes,
                     features=(*channels, channels[0])).eval()


def refuse_existing(parser, path) -> None:
    """Stop (exit 2, one line) before any work when ``--json PATH`` already exists: a
    benchmark never replaces an earlier result."""
    if path is not None and Path(path).exists():
        parser.error(f"--json {path} exists; not replacing it (choose another path)")


def _cpu_line() -> str:
    from unetlab.inference.cpu import cpu_features

    return cpu_features().describe()


def _int8_runners(model, x, calibration, threads):
    """OpenVINO int8 (unetlab's graph, first conv and head in fp32 or every layer, and the
    plain graph) and ONNX Runtime static int8."""
    import copy
    import io
    import logging

    from unetlab.inference import optimize_for_inference
    from unetlab.inference.export import onnx_bytes

    out = {"openvino": optimize_for_inference(model, backend="openvino",
                                              probe_shape=tuple(x.shape)),
           # OpenVINO's fp32 without unetlab's Winograd layers (the graph before session 27)
           "openvino_no_winograd": optimize_for_inference(model, backend="openvino",
                                                          winograd=False),
           "openvino_int8": optimize_for_inference(model, backend="openvino",
                                                   precision="int8", calibration=calibration),
           # every layer in int8: the variant `auto` with calibration also tries
           "openvino_int8_all": optimize_for_inference(model, backend="openvino",
                                                       precision="int8",
                                                       calibration=calibration, keep_fp32=())}
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    plain = onnx_bytes(copy.deepcopy(model).eval())  # batch norm not folded
    quantized = nncf.quantize(ov.convert_model(io.BytesIO(plain)),
                              nncf.Dataset([c.numpy() for c in calibration]),
                              subset_size=len(calibration))
    compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          **_default_hint()})
    out["openvino_int8_plain"] = lambda t: compiled(t.numpy())[0]
    try:
        out["onnxruntime_int8"] = _ort_static_int8(plain, calibration, threads)
    except Exception as exc:  # a peer's quantizer failing is a result, not a crash
        print(f"onnxruntime int8 skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return out


def _default_hint() -> dict:
    """OpenVINO's default precision for the layers int8 leaves in float, as the CPU in
    use would get it: bf16 where it is native, else f32. Under ``ONEDNN_MAX_CPU_ISA=AVX2``
    OpenVINO still reads the real CPU and picks bf16, which its AVX2 kernels then get
    wrong (argmax agreement 0.44 with fp32 on an AMX machine), so the hint is explicit."""
    from unetlab.inference.cpu import cpu_features

    return {} if cpu_features().bf16 else {"INFERENCE_PRECISION_HINT": "f32"}


def _ort_static_int8(onnx_model: bytes, calibration, threads):
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": c.numpy()} for c in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("m.onnx", "pre.onnx", "q.onnx"))
        src.write_bytes(onnx_model)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])
    return lambda t: session.run(None, {"image": t.numpy()})[0]


def bench_model(sizes, repeats, device="cpu", compile=False, bf16=False, openvino=False,
                rounds=1, threads=2):
    from unetlab.inference import optimize_for_inference

    rows = []
    for size in sizes:
        x = torch.rand(1, 3, size, size, device=device)
        model = _unet(WIDE).to(device)
        runs = {}
        with torch.no_grad():
            runs["eager"] = _median_time(model, repeats, x)
        fast = optimize_for_inference(model, backend="torch")
        runs["unetlab"] = _median_time(fast, repeats, x)
        if compile:
            compiled = optimize_for_inference(model, backend="torch", compile=True)
            t = time.perf_counter()
            compiled(x)
            runs["compile_seconds"] = time.perf_counter() - t
            runs["unetlab_compiled"] = _median_time(compiled, repeats, x)
        if bf16:
            half = optimize_for_inference(model, backend="torch", precision="bf16")
            runs["unetlab_bf16"] = _median_time(half, repeats, x)
            with torch.no_grad():
                ref, got = model(x), half(x)
            runs["bf16_max_abs_diff"] = float((got - ref).abs().max())
            runs["bf16_argmax_agreement"] = float((got.argmax(1) == ref.argmax(1)).float().mean())
        try:
            ort = optimize_for_inference(model, backend="onnxruntime")
            if ort.device.type == torch.device(device).type:  # not a CPU session for a GPU
                runs["onnxruntime"] = _median_time(ort, repeats, x)
        except (ImportError, ValueError) as exc:
            print(f"onnxruntime skipped: {exc}", file=sys.stderr)
        if _monai():
            basic = _basic_unet(WIDE).to(device)
            with torch.no_grad():
                runs["monai_basicunet"] = _median_time(basic, repeats, x)
        if openvino:
            runs.update(_interleaved(model, x, fast, basic if _monai() else None, repeats,
                                     rounds, threads))
        rows.append({"size": size, "seconds": runs})
    return rows


def _interleaved(model, x, fast, basic, repeats, rounds, threads):
    """MONAI, torch, auto, OpenVINO fp32 and the int8 runners, interleaved ``rounds``
    times (medians), with int8's argmax agreement with fp32 on a held-out input."""
    from unetlab.inference import optimize_for_inference

    torch.manual_seed(1)
    calibration = [torch.rand_like(x) for _ in range(4)]
    runners = {"unetlab": fast}
    if basic is not None:
        runners["monai_basicunet"] = basic
    auto = optimize_for_inference(model, backend="auto", precision="fp32",
                                  probe_shape=tuple(x.shape))
    runners["auto"] = auto
    runners.update(_int8_runners(model, x, calibration, threads))
    times = {name: [] for name in runners}
    names = list(runners)
    shift = -(-len(names) // max(1, rounds))  # each round starts further along the list,
    with torch.no_grad():                     # and every other round runs it backwards
        for r in range(rounds):
            k = (r * shift) % len(names)
            order = names[k:] + names[:k]
            for name in (order[::-1] if r % 2 else order):
                times[name].append(_median_time(runners[name], repeats, x))
        held_out = torch.rand_like(x)
        ref = model(held_out).argmax(1)
        agreement = {f"{name}_argmax_agreement": float(
            (torch.as_tensor(fn(held_out)).argmax(1) == ref).float().mean())
            for name, fn in runners.items() if "int8" in name}
    out = {f"{name}" if name not in ("unetlab", "monai_basicunet") else f"{name}_interleaved":
           statistics.median(t) for name, t in times.items()}
    out["auto_choice"] = f"{auto.choice['backend']} {auto.choice['precision']}"
    return {**out, **agreement}


def _trainer_step(size, device, amp, out, channels_last=True):
    """``Trainer.train_step`` itself (the loop ``unetlab train`` runs) on a batch of 2 RGB
    images: U-Net 64..1024 + batch norm, Adam, cross-entropy, ``train.channels_last``
    (``unetlab_trainer``; ``_nchw`` is without it). channels-last made this step 13 %
    shorter on an AMX machine in float32 and 26 % longer with AVX2 kernels (session 26);
    it is not the default, as it also slows FCNs; ``unetlab plan`` measures both and
    picks."""
    from unetlab.config import load_config
    from unetlab.training import Trainer

    cfg = load_config(None, [
        f"model.options.channels={list(WIDE)}", "model.options.norm=batch",
        "data.dataset=shapes", "data.options.num_images=2", f"data.options.size={size}",
        "data.val_options.num_images=1", "data.tile_size=null", "data.augment=none",
        "data.batch_size=2", "loss.name=ce", "optim.name=adam", "optim.lr=0.0001",
        "schedule.name=none", "train.progress=false", f"train.device={device}",
        f"train.amp={amp}", f"train.out_dir={out}", "train.boundary_metric=false",
        f"train.channels_last={str(channels_last).lower()}"])
    trainer = Trainer(cfg)
    batch = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=2)))
    trainer.model.train()
    return lambda: trainer.train_step(batch, first=True, last=True)


def bench_train(size, repeats, device="cpu", bf16=False):
    rows = {}
    x = torch.rand(2, 3, size, size, device=device)
    y = torch.randint(0, 2, (2, size, size), device=device)
    models = {"unetlab": _unet(WIDE).to(device)}
    from unetlab.training.builder import train_with_winograd

    winograd = _unet(WIDE).to(device)  # a plain loop with what the trainer does in float32
    if train_with_winograd("auto", winograd, torch.device(device), None) is not None:
        models["unetlab_winograd"] = winograd
    if _monai():
        models["monai_basicunet"] = _basic_unet(WIDE).to(device)
    for name, model in models.items():
        model.train()
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()
        # (Winograd is float32 only: under bf16 autocast it is the plain model)
        for half in (False, True) if bf16 and name != "unetlab_winograd" else (False,):
            def step(model=model, opt=opt, loss_fn=loss_fn, half=half):
                with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=half):
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            rows[name + ("_bf16" if half else "")] = _median_time(step, repeats)
    for amp in ("none", "bf16") if bf16 else ("none",):
        for channels_last in (True, False):
            with tempfile.TemporaryDirectory() as out:
                step = _trainer_step(size, device, amp, out, channels_last)
                rows["unetlab_trainer" + ("_bf16" if amp == "bf16" else "")
                     + ("" if channels_last else "_nchw")] = _median_time(step, repeats)
    return {"size": size, "batch": 2, "seconds": rows}


# ---- tiled inference, one subprocess per run --------------------------------------------

def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss survives exec on Linux and
    would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args) -> None:
    """Run one tiled prediction and print JSON with seconds and peak RSS."""
    import numpy as np
    import tifffile

    torch.set_num_threads(args.threads)
    path = Path(args.child_image)
    device = torch.device(args.device)
    model = _unet(TILED, classes=args.classes, in_channels=1).to(device)
    _sync()
    t = time.perf_counter()
    setup_s = 0.0
    if args.child == "monai":
        from monai.inferers import sliding_window_inference

        image = torch.from_numpy(tifffile.imread(str(path)).astype(np.float32) / 255.0)
        with torch.no_grad():
            out = sliding_window_inference(image[None, None], (256, 256), 4, model,
                                           overlap=0.25, mode="gaussian", sw_device=device,
                                           device="cpu")
            labels = out.argmax(1)[0].to(torch.uint8).numpy()
        tifffile.imwrite(str(path.with_name("monai_labels.tif")), labels)
    else:
        from unetlab.inference import optimize_for_inference, predict_file

        def calibration():  # 4 tiles of the image itself, as `--calibration` would give
            image = tifffile.imread(str(path), key=0)
            return [torch.from_numpy(image[None, None, i:i + 256, :256].astype(
                np.float32) / 255.0) for i in range(0, 1024, 256)]

        if args.child == "unetlab":
            model = optimize_for_inference(model)
        elif args.child == "unetlab_bf16":
            model = optimize_for_inference(model, precision="bf16")
        elif args.child == "onnxruntime":
            model = optimize_for_inference(model, backend="onnxruntime")
        elif args.child == "openvino":
            model = optimize_for_inference(model, backend="openvino",
                                           probe_shape=(4, 1, 256, 256))
        elif args.child == "openvino_int8":
            model = optimize_for_inference(model, backend="openvino", precision="int8",
                                           calibration=calibration())
        elif args.child in ("auto", "auto_calibrated"):
            # what `unetlab predict` does by default (without / with --calibration); the
            # probe runs here (an empty cache), so setup_s is a first call's cost
            from unetlab.inference.auto import choose

            os.environ["UNETLAB_CACHE_DIR"] = str(path.parent / f"cache_{args.child}_"
                                                  f"{path.stem}")
            model = choose(model, probe_shape=(4, 1, 256, 256),
                           calibration=calibration() if args.child == "auto_calibrated"
                           else None)
            print(json.dumps({"choice": model.choice}), file=sys.stderr)
        _sync()
        setup_s = time.perf_counter() - t
        t = time.perf_counter()
        predict_file(model, path, path.parent / args.child, tile_size=256, overlap=0.25,
                     blend="gaussian", batch_size=4, write_overlay=False, device=device)
    _sync()
    seconds = time.perf_counter() - t
    rss_mb = _peak_rss_mb()
    print(json.dumps({"seconds": seconds, "setup_s": setup_s, "peak_rss_mb": rss_mb}))


def bench_tiled(sizes, classes, threads, runners, device="cpu"):
    import numpy as np
    import tifffile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"image{size}.tif"
            rng = np.random.default_rng(0)
            with tifffile.TiffWriter(str(path)) as tw:  # uncompressed: memory-mappable
                tw.write((rng.random((size, size)) * 255).astype(np.uint8))
            runs = {}
            for runner in runners:
                if runner == "monai" and not _monai():
                    continue
                cmd = [sys.executable, __file__, "--child", runner, "--child-image", str(path),
                       "--classes", str(classes), "--threads", str(threads),
                       "--device", str(device)]
                res = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if res.returncode:
                    print(res.stderr[-2000:], file=sys.stderr)
                    continue
                out = json.loads(res.stdout.strip().splitlines()[-1])
                out["mpx_per_s"] = size * size / 1e6 / out["seconds"]
                out["mpx_per_s_with_setup"] = size * size / 1e6 / (out["seconds"]
                                                                   + out["setup_s"])
                for line in res.stderr.splitlines():
                    if line.startswith('{"choice"'):
                        out["choice"] = json.loads(line)["choice"]
                runs[runner] = out
            rows.append({"size": size, "classes": classes, "runs": runs})
            path.unlink()
    return rows


# ---- report -----------------------------------------------------------------------------

def _ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def markdown(results) -> str:
    cpu = results.get("machine", {}).get("cpu", "?")
    lines = [f"CPU: {cpu}, {results.get('machine', {}).get('threads')} threads", ""]
    if "kernels limited" in cpu:  # e.g. AVX2 kernels on an AVX-512 machine
        lines[-1:] = ["ONNX Runtime ignores ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY and "
                      "MKL_ENABLE_INSTRUCTIONS: its "
                      "rows ran its full kernels (set UNETLAB_AUTO_BACKENDS=torch,openvino "
                      "to keep it out of auto).", ""]
    if results.get("model"):
        lines += ["| forward 1x3xSxS | unetlab variant | eager s | unetlab s | onnxruntime s "
                  "| MONAI s | unetlab vs eager | vs ORT | vs MONAI |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r, variant in [(r, v) for r in results["model"]
                           for v in ("unetlab", "unetlab_compiled", "unetlab_bf16")
                           if v in r["seconds"]]:
            s = r["seconds"]
            u = s[variant]
            lines.append(
                f"| {r['size']} | {variant} | {s['eager']:.3f} | {u:.3f} | "
                f"{s.get('onnxruntime', float('nan')):.3f} | "
                f"{s.get('monai_basicunet', float('nan')):.3f} | {_ratio(s['eager'], u)} | "
                f"{_ratio(s.get('onnxruntime'), u)} | {_ratio(s.get('monai_basicunet'), u)} |")
        lines.append("")
    ov_rows = [r for r in results.get("model", []) if "openvino" in r["seconds"]]
    if ov_rows:
        lines += ["| forward 1x3xSxS, interleaved medians | runner | s | vs MONAI | "
                  "vs OpenVINO int8 (plain graph) | argmax agreement with fp32 | CPU |",
                  "|---|---|---|---|---|---|---|"]
        for r in ov_rows:
            s = r["seconds"]
            monai = s.get("monai_basicunet_interleaved")
            plain = s.get("openvino_int8_plain")
            for name in ("monai_basicunet_interleaved", "unetlab_interleaved", "auto",
                         "openvino", "openvino_no_winograd", "openvino_int8_plain",
                         "onnxruntime_int8",
                         "openvino_int8", "openvino_int8_all"):
                if name not in s:
                    continue
                label = name.replace("_interleaved", "")
                if name == "auto":
                    label = f"auto ({s['auto_choice']})"
                agree = s.get(f"{name}_argmax_agreement")
                lines.append(f"| {r['size']} | {label} | {s[name]:.3f} | "
                             f"{_ratio(monai, s[name])} | {_ratio(plain, s[name])} | "
                             f"{'' if agree is None else f'{agree:.4f}'} | {cpu} |")
        lines.append("")
    if results.get("train"):
        s = results["train"]["seconds"]
        lines += ["| train step, batch 2, " f"{results['train']['size']}² | seconds | "
                  "vs MONAI fp32 | vs MONAI, same precision | CPU |", "|---|---|---|---|---|"]
        for name, t in s.items():
            same = s.get("monai_basicunet_bf16" if name.endswith("bf16")
                         else "monai_basicunet")
            lines.append(f"| {name} | {t:.3f} | {_ratio(s.get('monai_basicunet'), t)} | "
                         f"{_ratio(same, t)} | {cpu} |")
        lines.append("")
    if results.get("tiled"):
        lines += ["| tiled image | runner | Mpx/s | setup s | Mpx/s with setup | peak RSS MB "
                  "| Mpx/s vs MONAI | with setup vs MONAI | CPU |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results["tiled"]:
            monai = r["runs"].get("monai", {}).get("mpx_per_s")
            for name, run in r["runs"].items():
                with_setup = run.get("mpx_per_s_with_setup", run["mpx_per_s"])
                choice = run.get("choice")
                label = f"{name} ({choice['backend']} {choice['precision']})" if choice \
                    else name
                lines.append(f"| {r['size']}² ({r['classes']} classes) | {label} | "
                             f"{run['mpx_per_s']:.3f} | {run.get('setup_s', 0.0):.1f} | "
                             f"{with_setup:.3f} | {run['peak_rss_mb']:.0f} | "
                             f"{_ratio(run['mpx_per_s'], monai)} | "
                             f"{_ratio(with_setup, monai)} | {cpu} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[256],
                   help="square sizes for the forward-pass benchmark (default 256)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train", action="store_true", help="also time a training step")
    p.add_argument("--compile", action="store_true",
                   help="also time optimize_for_inference(compile=True) (slow to compile)")
    p.add_argument("--bf16", action="store_true",
                   help="also time optimize_for_inference(precision='bf16') and its error")
    p.add_argument("--tiled-sizes", type=int, nargs="*", default=[1024],
                   help="square image sizes for tiled inference (default 1024)")
    p.add_argument("--classes", type=int, default=2, help="classes for tiled inference")
    p.add_argument("--runners", nargs="*", default=["unetlab", "eager", "monai"],
                   choices=("unetlab", "unetlab_bf16", "onnxruntime", "openvino",
                            "openvino_int8", "auto", "auto_calibrated", "eager", "monai"),
                   help="tiled runners: unetlab (optimised model, torch fp32), onnxruntime / "
                   "openvino[_int8] (unetlab tiler, that backend), auto / auto_calibrated "
                   "(what `unetlab predict` runs by default, without / with --calibration: "
                   "the probe's pick), eager (unetlab tiler, plain model), monai "
                   "(sliding_window_inference)")
    p.add_argument("--openvino", action="store_true",
                   help="also time OpenVINO fp32, backend='auto', int8 (unetlab's graph, "
                   "OpenVINO's plain graph, ONNX Runtime static), interleaved")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds of the --openvino runners (medians)")
    p.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 2))
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, default=Path("bench_inference.json"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-image", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    torch.set_num_threads(args.threads)
    results = {"machine": {"threads": args.threads, "torch": torch.__version__,
                           "cpu_count": os.cpu_count(), "device": args.device,
                           "cpu": _cpu_line()}}
    if args.device.startswith("cuda"):
        results["machine"]["gpu"] = torch.cuda.get_device_name(0)
    if _monai():
        import monai

        results["machine"]["monai"] = monai.__version__
    if args.sizes:
        results["model"] = bench_model(args.sizes, args.repeats, args.device, args.compile,
                                       args.bf16, args.openvino, args.rounds, args.threads)
    if args.train:
        results["train"] = bench_train(args.sizes[0] if args.sizes else 256, args.repeats,
                                       args.device, args.bf16)
    if args.tiled_sizes:
        results["tiled"] = bench_tiled(args.tiled_sizes, args.classes, args.threads,
                                       args.runners, args.device)
    print(markdown(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
