"""Figures about the data: what a segmentation label is, and the paper's elastic
deformation (the project's own :class:`~unetlab.data.elastic.GridElastic`)."""

from __future__ import annotations

import numpy as np

from ._plot import draw_matrix, new_figure, save_png, show_image


def semantic_segmentation(path):
    """Figure: a synthetic image, its label map (one class per pixel) and the overlay."""
    from ..data.synthetic import SHAPE_CLASSES, SHAPE_PALETTE, make_shapes_image

    image, mask = make_shapes_image(np.random.default_rng(4), 128, 6)
    colour = SHAPE_PALETTE[mask]
    overlay = (0.55 * image + 0.45 * colour).astype(np.uint8)
    fig, axes = new_figure(8.0, 2.9, ncols=4)
    show_image(axes[0, 0], image, "image (H x W x 3)")
    y, x = boundary_crop(mask, 8)
    draw_matrix(axes[0, 1], mask[y:y + 8, x:x + 8], title="label map, 8x8 crop (red box)",
                fmt="{:.0f}", cmap="Greys", vmin=-2, vmax=12)
    show_image(axes[0, 2], colour, "the same, with the palette")
    show_image(axes[0, 3], overlay, "overlay")
    from matplotlib.patches import Rectangle

    axes[0, 2].add_patch(Rectangle((x - 0.5, y - 0.5), 8, 8, fill=False, edgecolor="red"))
    present = sorted(set(np.unique(mask).tolist()))
    names = ", ".join(f"{i} = {SHAPE_CLASSES[i]}" for i in present)
    fig.suptitle(f"Semantic segmentation: classify every pixel ({names})", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8, wspace=0.05)
    return save_png(fig, path, colors=48)


def boundary_crop(mask: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of a ``size`` square crop centred on the first pixel (row-major)
    of the least frequent class present: a crop that shows a boundary."""
    classes, counts = np.unique(mask, return_counts=True)
    rare = classes[np.argmin(counts)]
    y, x = np.argwhere(mask == rare)[0]
    limit = np.array(mask.shape) - size
    return (int(np.clip(y - size // 2, 0, limit[0])), int(np.clip(x - size // 2, 0, limit[1])))


def elastic_example(size: int = 128, sigma: float = 10.0, grid: int = 3, seed: int = 2):
    """Deform a synthetic membrane image and its mask with the paper's elastic transform.

    Returns ``image``, ``mask``, ``warped_image``, ``warped_mask``, the displacement
    fields ``dy``, ``dx`` (pixels) and a ``lines`` image (a regular grid, warped the same
    way) to show the deformation.
    """
    from ..data.elastic import GridElastic, grid_displacement
    from ..data.synthetic import make_membrane_image

    image, mask = make_membrane_image(np.random.default_rng(seed), size, 24.0)
    dy, dx = grid_displacement((size, size), grid, sigma, np.random.default_rng(seed))
    yy, xx = np.indices((size, size), dtype=np.float32)
    map_x, map_y = xx + dx, yy + dy
    elastic = GridElastic(grid=grid, sigma=sigma, p=1.0)
    lines = np.zeros((size, size), np.uint8)
    lines[::16, :] = 255
    lines[:, ::16] = 255
    return {"image": image, "mask": mask, "dy": dy, "dx": dx,
            "warped_image": elastic.apply(image, map_x=map_x, map_y=map_y),
            "warped_mask": elastic.apply_to_mask(mask, map_x=map_x, map_y=map_y),
            "lines": elastic.apply(lines, map_x=map_x, map_y=map_y)}


def elastic_deformation(path):
    """Figure: image and mask before and after the elastic deformation, the warped grid,
    and the coarse 3x3 displacement lattice."""
    ex = elastic_example()
    size = ex["image"].shape[0]
    fig, axes = new_figure(8.0, 2.5, ncols=5)
    show_image(axes[0, 0], ex["image"], "image")
    show_image(axes[0, 1], ex["warped_image"], "deformed image")
    show_image(axes[0, 2], ex["warped_mask"], "deformed mask (nearest)", cmap="gray_r",
               interpolation="nearest")
    show_image(axes[0, 3], ex["lines"], "a grid, same warp")
    ax = axes[0, 4]
    step = size // 8
    ys, xs = np.mgrid[step // 2:size:step, step // 2:size:step]
    ax.quiver(xs, ys, ex["dx"][ys, xs], -ex["dy"][ys, xs], angles="xy", scale_units="xy",
              scale=0.5, color="tab:red")
    ax.set_xlim(0, size)
    ax.set_ylim(size, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("displacement (x2)", fontsize=9)
    fig.suptitle("Elastic deformation (U-Net paper): N(0, 10 px) on a 3x3 grid, "
                 "bicubic in between", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.78, wspace=0.05)
    return save_png(fig, path, colors=48)
