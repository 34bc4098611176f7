"""Upsampling, computed and drawn: the zero-insertion view of transposed convolution,
max-unpooling with indices, checkerboard artifacts, and the methods side by side.

The ``*_arrays`` / computing functions return plain numpy arrays (tested); the figure
functions draw them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._plot import draw_matrix, new_figure, save_png, show_image

#: The 4x4 example of the course chapter (section 2.3.2).
COURSE_UNPOOL_INPUT = np.array([[1, 3, 2, 4], [2, 1, 3, 2], [5, 2, 4, 6], [1, 3, 2, 1]],
                               dtype=np.float32)
#: A small smoothing kernel: with it, a transposed convolution interpolates.
TENT_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4


def zero_insert(x, stride: int) -> np.ndarray:
    """Put ``stride - 1`` zeros between neighbouring values of a 2-D array:
    (n, m) -> ((n - 1) * stride + 1, (m - 1) * stride + 1)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or stride < 1:
        raise ValueError(f"zero_insert needs a 2-D array and stride >= 1, got shape "
                         f"{x.shape}, stride {stride}")
    out = np.zeros(((x.shape[0] - 1) * stride + 1, (x.shape[1] - 1) * stride + 1), np.float32)
    out[::stride, ::stride] = x
    return out


def transposed_conv_as_convolution(x, kernel, stride: int = 2, padding: int = 1,
                                   output_padding: int = 1) -> dict[str, np.ndarray]:
    """A transposed convolution computed the long way: insert zeros, pad, convolve.

    Returns ``inserted`` (after zero insertion), ``padded`` (``k - 1 - padding`` zeros on
    the top/left, that plus ``output_padding`` on the bottom/right) and ``output`` (an
    ordinary convolution of ``padded`` with the kernel flipped). ``output`` equals
    ``F.conv_transpose2d(x, kernel, stride=stride, padding=padding,
    output_padding=output_padding)``.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    k = kernel.shape[0]
    inserted = zero_insert(x, stride)
    lead = k - 1 - padding
    padded = np.pad(inserted, ((lead, lead + output_padding), (lead, lead + output_padding)))
    flipped = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1]))[None, None]
    output = F.conv2d(torch.from_numpy(padded)[None, None], flipped)[0, 0].numpy()
    return {"inserted": inserted, "padded": padded, "output": output}


def max_unpool_example(x=COURSE_UNPOOL_INPUT) -> dict[str, np.ndarray]:
    """2x2 max pooling that keeps the argmax indices, then max-unpooling with them."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))[None, None]
    pooled, indices = F.max_pool2d(t, 2, stride=2, return_indices=True)
    unpooled = F.max_unpool2d(pooled, indices, 2, stride=2, output_size=t.shape[-2:])
    return {"input": t[0, 0].numpy(), "pooled": pooled[0, 0].numpy(),
            "indices": indices[0, 0].numpy(), "unpooled": unpooled[0, 0].numpy()}


def overlap_counts(kernel_size: int, stride: int = 2, size: int = 8) -> np.ndarray:
    """How many kernel taps of a stride-``stride`` transposed convolution land on each
    output pixel (input and kernel all ones). Uneven counts are the checkerboard."""
    padding = (kernel_size - stride + 1) // 2
    output_padding = (kernel_size - stride) % 2
    ones = torch.ones(1, 1, size, size)
    weight = torch.ones(1, 1, kernel_size, kernel_size)
    out = F.conv_transpose2d(ones, weight, stride=stride, padding=padding,
                             output_padding=output_padding)
    return out[0, 0].numpy()


def bilinear_kernel(stride: int = 2) -> np.ndarray:
    """The ``2 * stride`` square kernel with which a transposed convolution (padding
    ``stride // 2``) reproduces bilinear interpolation; FCN initialises its upsampling
    layers with it."""
    size = 2 * stride
    centre = (size - 1) / 2
    ramp = 1 - np.abs(np.arange(size) - centre) / stride
    return np.outer(ramp, ramp).astype(np.float32)


def upsampling_methods(image, seed: int = 0) -> dict[str, np.ndarray]:
    """Pool a 2-D image by 2 (max pooling, indices kept), then bring it back to full size
    with each method. Returns 2-D arrays keyed by method."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]
    small, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
    gen = torch.Generator().manual_seed(seed)
    random_weight = torch.empty(1, 1, 3, 3).uniform_(-1, 1, generator=gen) / 3 + 1 / 9
    out = {
        "pooled": small,
        "nearest": F.interpolate(small, scale_factor=2, mode="nearest"),
        "bilinear": F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False),
        "max_unpool": F.max_unpool2d(small, indices, 2, stride=2, output_size=x.shape[-2:]),
        "transpose_bilinear_init": F.conv_transpose2d(
            small, torch.from_numpy(bilinear_kernel(2))[None, None], stride=2, padding=1),
        "transpose_random_init": F.conv_transpose2d(small, random_weight, stride=2,
                                                    padding=1, output_padding=1),
    }
    return {k: v[0, 0].numpy() for k, v in out.items()}


def zero_insertion(path):
    """Figure: a 2x2 input, zeros inserted and padded, the kernel, the 4x4 output."""
    x = np.array([[1, 2], [3, 4]], dtype=np.float32)
    parts = transposed_conv_as_convolution(x, TENT_KERNEL)
    fig, axes = new_figure(8.0, 2.6, ncols=4)
    draw_matrix(axes[0, 0], x, title="input (2x2)", vmax=4)
    frame = np.zeros_like(parts["padded"], dtype=bool)
    frame[1:4, 1:4] = True  # where the zero-inserted input sits inside the padding
    draw_matrix(axes[0, 1], parts["padded"], title="zeros inserted + padding (6x6)",
                highlight=frame & (parts["padded"] != 0), vmax=4)
    draw_matrix(axes[0, 2], TENT_KERNEL, title="kernel (3x3)", fmt="{:.2f}", cmap="Greens",
                vmax=1)
    draw_matrix(axes[0, 3], parts["output"], title="output = convolution (4x4)",
                fmt="{:.2f}", vmax=4)
    fig.suptitle("Transposed convolution, stride 2 = insert zeros, then convolve",
                 fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.78, wspace=0.15)
    return save_png(fig, path)


def max_unpooling(path):
    """Figure: the course's 4x4 example through max pooling with indices and back."""
    parts = max_unpool_example()
    winners = parts["unpooled"] != 0
    fig, axes = new_figure(8.0, 2.6, ncols=4)
    draw_matrix(axes[0, 0], parts["input"], title="input (4x4)", highlight=winners, vmax=6)
    draw_matrix(axes[0, 1], parts["pooled"], title="max pool 2x2", vmax=6)
    draw_matrix(axes[0, 2], parts["indices"], title="saved indices (flat)", cmap="Oranges",
                vmax=15)
    draw_matrix(axes[0, 3], parts["unpooled"], title="max unpool with indices",
                highlight=winners, vmax=6)
    fig.suptitle("Max-unpooling puts each maximum back where it came from; "
                 "the rest is zero", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.78, wspace=0.15)
    return save_png(fig, path)


def _smooth_blob(size: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / (size - 1) - 0.5
    return np.exp(-(yy ** 2 + xx ** 2) / 0.08).astype(np.float32)


def checkerboard(path):
    """Figure: uneven kernel overlap (top) and what a randomly initialised transposed
    convolution does to a smooth input (bottom), with the checkerboard score."""
    from ..compare.artifacts import checkerboard_score

    blob = torch.from_numpy(_smooth_blob(8))[None, None]
    gen = torch.Generator().manual_seed(0)
    fig, axes = new_figure(7.2, 5.0, ncols=3, nrows=2)
    for col, k in enumerate((3, 4, 2)):
        counts = overlap_counts(k, 2, 6)
        draw_matrix(axes[0, col], counts, title=f"taps per pixel, kernel {k}, stride 2",
                    fmt="{:.0f}", vmin=0, vmax=8)
        padding = (k - 1) // 2
        weight = torch.rand(1, 1, k, k, generator=gen)
        out = F.conv_transpose2d(blob, weight, stride=2, padding=padding,
                                 output_padding=(k - 2) % 2)[0, 0]
        show_image(axes[1, col], out.numpy(), cmap="magma",
                   title=f"random kernel {k}: score {checkerboard_score(out, window=4):.2f}")
    fig.suptitle("Checkerboard artifacts: kernel 3 / stride 2 overlaps unevenly",
                 fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.88, hspace=0.25,
                        wspace=0.1)
    return save_png(fig, path)


def upsampling_comparison(path, image=None):
    """Figure: one image pooled by 2, then upsampled by each method."""
    from ..compare.artifacts import blockiness_score, checkerboard_score

    if image is None:
        from ..data.synthetic import make_membrane_image

        image = make_membrane_image(np.random.default_rng(3), 64, 18.0)[0] / 255.0
    out = upsampling_methods(image)
    panels = [("original 64x64", np.asarray(image)), ("max pooled 32x32", out["pooled"]),
              ("nearest", out["nearest"]), ("bilinear", out["bilinear"]),
              ("max-unpool (indices)", out["max_unpool"]),
              ("transposed, bilinear init", out["transpose_bilinear_init"]),
              ("transposed 3x3, random init", out["transpose_random_init"])]
    fig, axes = new_figure(8.0, 4.4, ncols=4, nrows=2)
    for ax, (title, array) in zip(axes.ravel(), panels):
        score = "" if array.shape[0] != 64 or title.startswith("original") else \
            f"\nchecker {checkerboard_score(array):.2f}, blocks {blockiness_score(array):.2f}"
        show_image(ax, array, title + score)
    text = axes[1, 3]
    text.axis("off")
    text.text(0.0, 0.5, "learnable parameters,\n64 -> 32 channels:\n\n"
              "transposed 2x2: 8,224\nbilinear + 1x1: 2,080\nunpool: 0 (+ 1x1)",
              fontsize=9, va="center")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, hspace=0.35,
                        wspace=0.05)
    return save_png(fig, path, colors=40)
