"""The numbers behind docs/course/errata.md that need no training (seconds on a CPU).

    python docs/course/errata_numbers.py
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unetlab.compare import blockiness_score, checkerboard_score
from unetlab.data.synthetic import make_membrane_image
from unetlab.figures.upsampling import upsampling_methods


def main() -> None:
    image = make_membrane_image(np.random.default_rng(3), 64, 18.0)[0] / 255.0
    out = upsampling_methods(image)
    print("method: share of exact zeros, checkerboard, blockiness (membrane image 64x64, "
          "max-pooled to 32x32 and brought back)")
    for name in ("nearest", "bilinear", "max_unpool", "transpose_bilinear_init",
                 "transpose_random_init"):
        a = out[name]
        print(f"  {name}: {np.mean(a == 0):.3f}, {checkerboard_score(a):.3f}, "
              f"{blockiness_score(a):.2f}")

    # "average unpooling": average pooling keeps no positions; spreading each average
    # back over its 2x2 window is nearest-neighbour interpolation, exactly
    x = torch.as_tensor(image, dtype=torch.float32)[None, None]
    avg = F.avg_pool2d(x, 2)
    spread = avg.repeat_interleave(2, -2).repeat_interleave(2, -1)
    same = torch.equal(spread, F.interpolate(avg, scale_factor=2, mode="nearest"))
    print(f"average 'unpooling' == nearest interpolation: {same}")

    # a transposed convolution is the adjoint of the convolution, not its inverse
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 1, 3, 3, generator=g)
    y = F.conv2d(x, w, stride=2, padding=1)
    back = F.conv_transpose2d(y, w, stride=2, padding=1, output_padding=1)
    rel = float((back - x).norm() / x.norm())
    u = torch.randn(y.shape, generator=g)
    adjoint = float((F.conv2d(x, w, stride=2, padding=1) * u).sum()
                    - (x * F.conv_transpose2d(u, w, stride=2, padding=1,
                                              output_padding=1)).sum())
    print(f"transpose(conv(x)) vs x, relative error: {rel:.2f}; "
          f"<conv x, u> - <x, transpose u>: {adjoint:.1e}")


if __name__ == "__main__":
    main()
