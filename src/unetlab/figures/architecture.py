"""The U shape and the overlap-tile strategy, drawn from the project's own models."""

from __future__ import annotations

import numpy as np
import torch

from ._plot import new_figure, save_png, show_image


def unet_feature_shapes(input_size: int = 572, padding: str = "valid",
                        channels=(64, 128, 256, 512, 1024)) -> list[tuple[str, int, int]]:
    """(stage, channels, side) of every block's output for a one-channel square input,
    from a forward pass of the real :class:`~unetlab.models.unet.UNet` on the ``meta``
    device (shapes only: no memory, no arithmetic)."""
    from .. import create_model

    shapes: list[tuple[str, int, int]] = []
    with torch.device("meta"):
        model = create_model("unet", in_channels=1, num_classes=2, padding=padding,
                             channels=channels)
        for stage, blocks in (("encoder", model.encoder), ("decoder", model.decoder)):
            for block in blocks:
                block.register_forward_hook(
                    lambda mod, inp, out, s=stage: shapes.append((s, out.shape[1], out.shape[-1])))
        model(torch.empty(1, 1, input_size, input_size))
    return shapes


def u_shape(path):
    """Figure: the paper's U-Net as boxes (height ~ side, width ~ channels), with the
    sizes measured from a forward pass."""
    from matplotlib.patches import FancyArrowPatch, Rectangle

    shapes = unet_feature_shapes()
    levels = (len(shapes) + 1) // 2
    fig, axes = new_figure(8.0, 4.0)
    ax = axes[0, 0]
    top = 10.0
    positions = []
    for i, (stage, ch, side) in enumerate(shapes):
        level = i if stage == "encoder" else 2 * (levels - 1) - i
        x = i * 1.05
        height = 1.2 + 2.4 * side / 572
        y = top - 2.0 * level - height
        width = 0.15 + 0.55 * np.log2(ch / 32) / 5
        colour = "#4c72b0" if stage == "encoder" else "#dd8452"
        ax.add_patch(Rectangle((x, y), width, height, color=colour))
        ax.text(x + width / 2, y - 0.15, f"{ch}\n{side}²", ha="center", va="top", fontsize=7)
        positions.append((x, y, width, height))
    for i in range(levels - 1):  # skip connections: encoder level i -> decoder level i
        xe, ye, we, he = positions[i]
        xd, yd, _, hd = positions[len(shapes) - 1 - i]
        ax.add_patch(FancyArrowPatch((xe + we, ye + he * 0.75), (xd, yd + hd * 0.75),
                                     arrowstyle="->", color="grey", linestyle="--",
                                     mutation_scale=8))
        ax.text((xe + xd) / 2, ye + he * 0.75 + 0.2, "copy & crop, concatenate",
                ha="center", fontsize=6, color="grey")
    ax.text(0, top + 0.4, "input 572² -> output 388² (valid 3x3 convolutions)", fontsize=9)
    ax.set_xlim(-0.3, len(shapes) * 1.05)
    ax.set_ylim(top - 2.0 * levels - 2.3, top + 1)
    ax.axis("off")
    ax.set_title("The U: contracting path (blue) and expanding path (orange); "
                 "channels and side of each block", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92)
    return save_png(fig, path, colors=32)


def overlap_tile_layout(image_size: int = 200, output_tile: int = 60, levels: int = 3):
    """Geometry of the overlap-tile strategy for a valid-padding U-Net with ``levels``
    levels: the input tile that yields an ``output_tile`` square, the context margin read
    on each side, and the output tiles' start offsets covering the image."""
    from ..models.unet import valid_input_size

    input_tile = valid_input_size(output_tile, levels)
    margin = (input_tile - output_tile) // 2
    starts = list(range(0, image_size - output_tile, output_tile)) + [image_size - output_tile]
    return {"input_tile": input_tile, "output_tile": output_tile, "margin": margin,
            "starts": sorted(set(starts))}


def overlap_tile(path):
    """Figure: a mirror-extended image, one input tile (blue) and the output tile it
    predicts (yellow), the grid of output tiles (thin lines)."""
    from matplotlib.patches import Rectangle

    from ..data.synthetic import make_membrane_image

    size = 200
    image = make_membrane_image(np.random.default_rng(1), size, 30.0)[0]
    layout = overlap_tile_layout(size)
    m, out_t, in_t = layout["margin"], layout["output_tile"], layout["input_tile"]
    extended = np.pad(image, m, mode="reflect")
    fig, axes = new_figure(7.0, 3.6, ncols=2)
    ax = axes[0, 0]
    show_image(ax, extended, f"image {size}² mirrored by {m} px on each side")
    ax.add_patch(Rectangle((m - 0.5, m - 0.5), size, size, fill=False, edgecolor="white",
                           linestyle="--", linewidth=1))
    for sy in layout["starts"]:
        for sx in layout["starts"]:
            ax.add_patch(Rectangle((m + sx - 0.5, m + sy - 0.5), out_t, out_t, fill=False,
                                   edgecolor="yellow", linewidth=0.8))
    ax.add_patch(Rectangle((-0.5, -0.5), in_t, in_t, fill=False, edgecolor="cyan",
                           linewidth=2))
    ax.add_patch(Rectangle((m - 0.5, m - 0.5), out_t, out_t, fill=False, edgecolor="yellow",
                           linewidth=2))
    ax2 = axes[0, 1]
    ax2.axis("off")
    ax2.text(0.0, 0.5,
             f"valid U-Net, {3} levels:\n"
             f"input tile {in_t}² (cyan)\n-> output tile {out_t}² (yellow)\n\n"
             f"each output pixel sees {m} px of\ncontext on every side;\n"
             "at the border the context is\nthe image mirrored.\n\n"
             "tiles are predicted one by one\nand stitched without seams.",
             fontsize=9, va="center")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.02)
    return save_png(fig, path, colors=48)


def unet_layer_table(input_size: int = 572, channels=(64, 128, 256, 512, 1024),
                     in_channels: int = 1, num_classes: int = 2) -> list[dict]:
    """Every layer of the paper's U-Net (valid padding) with its output shape, from a
    forward pass of the real :class:`~unetlab.models.unet.UNet` on the ``meta`` device.

    Rows in execution order: ``{"step", "level", "operation", "shape"}`` where
    ``shape`` is ``(channels, height, width)``. Besides the layers (3x3 convolutions,
    max pooling, 2x2 up-convolutions, the 1x1 head) the table shows the two steps that
    are not modules: the centre crop of each skip map to the up-convolution's size and
    the concatenation (e.g. 512 + 512 = 1024 channels).
    """
    from .. import create_model

    rows: list[dict] = []
    level = [0]

    def add(operation: str, shape) -> None:
        rows.append({"step": len(rows), "level": level[0], "operation": operation,
                     "shape": tuple(int(s) for s in shape)})

    with torch.device("meta"):
        model = create_model("unet", in_channels=in_channels, num_classes=num_classes,
                             padding="valid", channels=tuple(channels), norm=None)
        hooks = []

        def on_pool(mod, inp, out):
            level[0] += 1
            add("max pool 2x2, stride 2", out.shape[1:])

        hooks.append(model.pool.register_forward_hook(on_pool))
        for block in [*model.encoder, *(up.conv for up in model.decoder)]:
            for conv in block.children():
                hooks.append(conv.register_forward_hook(
                    lambda mod, inp, out: add("conv 3x3 (valid) + ReLU", out.shape[1:])))
        for up in model.decoder:
            def on_up(mod, inp, out, up=up):
                level[0] -= 1
                skip = up.last_skip_shape
                add("up-conv 2x2 (transposed, stride 2)", out.shape[1:])
                add(f"crop skip {skip[-1]}x{skip[-2]} -> {out.shape[-1]}x{out.shape[-2]}",
                    (skip[1], *out.shape[2:]))
                add(f"concatenate skip + up-conv: {skip[1]} + {out.shape[1]} = "
                    f"{skip[1] + out.shape[1]}", (skip[1] + out.shape[1], *out.shape[2:]))

            def remember(mod, args, up=up):
                up.last_skip_shape = tuple(args[1].shape)

            hooks.append(up.register_forward_pre_hook(remember))
            hooks.append(up.up.register_forward_hook(on_up))
        hooks.append(model.head.register_forward_hook(
            lambda mod, inp, out: add("conv 1x1 (classes)", out.shape[1:])))
        add("input", (in_channels, input_size, input_size))
        model(torch.empty(1, in_channels, input_size, input_size))
        for h in hooks:
            h.remove()
    return rows


def layer_table_markdown(rows: list[dict]) -> str:
    """:func:`unet_layer_table` as a Markdown table (step, level, operation, output)."""
    lines = ["| step | level | operation | output (channels x height x width) |",
             "|---:|---:|---|---|"]
    lines += [f"| {r['step']} | {r['level']} | {r['operation']} | "
              f"{' x '.join(str(s) for s in r['shape'])} |" for r in rows]
    return "\n".join(lines)
