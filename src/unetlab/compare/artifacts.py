"""Upsampling artifacts of an output map: the checkerboard score and the blockiness score.

**Checkerboard.** A stride-2 transposed convolution whose kernel overlaps unevenly
(Odena et al., 2016, "Deconvolution and checkerboard artifacts") gives the output pixels
at the four positions of the 2x2 grid systematically different gains: the output is a
smooth map times a pattern of period 2. The score measures that pattern directly. Split
the (even-cropped) map into its four polyphase images ``p_ij = x[i::2, j::2]`` and form
the three period-2 components of every 2x2 cell (a Hadamard transform)::

    rows  = (p00 + p01 - p10 - p11) / 4          stripes  (-1)^y
    cols  = (p00 - p01 + p10 - p11) / 4          stripes  (-1)^x
    board = (p00 - p01 - p10 + p11) / 4          checkerboard  (-1)^(x+y)

For a map without a grid-locked pattern these are local derivatives of the content and
average out over a neighbourhood; a period-2 gain pattern makes them a smooth map that
does not. So each component is averaged over ``window x window`` cells (a box filter,
valid part only) and::

    share = mean(rows_avg^2 + cols_avg^2 + board_avg^2) / var(x)     (0 for a constant map)
    score = min of share over the 4 placements of the 2x2 cells (row/column offset 0 or 1)

The minimum over placements keeps blocks out: a period-2 pattern is there whatever the
placement, while a blocky map has constant cells (share 0) at one of them.

It lies in [0, 1] (the three components are orthogonal to the cell means, and
averaging only removes energy): 1 = the map is a pure period-2 pattern; about 0 =
none. On the synthetic cases of the tests (``window=8``): nearest-neighbour upsampling
exactly 0 (its 2x2 cells are constant), bilinear ~0.003, a kernel-3 stride-2
zero-insertion transposed convolution 0.2-0.3. Floors of maps with no pattern: white
noise ~3 / (4 window^2) = 0.012, a smooth blob ~0.003, a linear ramp ~0.001. Being a share
of the map's own variance, it is stable for smooth maps (the earlier
Nyquist-to-neighbour spectral ratio divided two vanishing numbers and gave 94 and 0.43
for two runs of one model). For a (C, H, W) map the channels are summed in numerator
and denominator.

**Blockiness.** Nearest-neighbour upsampling by 2 repeats each value over a 2x2 block:
differences *inside* a block vanish while those *across* block borders do not, which
the eye sees as blocks but which is not a checkerboard. The score compares squared
neighbour differences at the two phases of the 2-pixel grid, per axis::

    e0, e1     = mean squared difference x[i+1] - x[i] for even i, for odd i (per axis)
    blockiness = (|e0 - e1|_rows + |e0 - e1|_cols) / (sum of the four)  (0 if constant)

0 = both phases alike (smooth, bilinear, natural images); 1 = all change at one phase
(nearest-neighbour upsampling of any map). Both scores are validated on synthetic
upsamplings with known answers in ``tests/test_compare_artifacts.py``.
"""

from __future__ import annotations

import torch


def _as_maps(x, name: str, min_side: int) -> torch.Tensor:
    x = torch.as_tensor(x).detach().double().cpu()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name} expects a (H, W) or (C, H, W) map, got shape "
                         f"{tuple(x.shape)}")
    if x.shape[-2] < min_side or x.shape[-1] < min_side:
        raise ValueError(f"{name}: a map of {x.shape[-2]}x{x.shape[-1]} is too small "
                         f"(needs at least {min_side} pixels per side)")
    return x


def checkerboard_score(x, window: int = 8) -> float:
    """Share (0..1) of a (H, W) or (C, H, W) map's variance in a period-2 pattern that
    survives local averaging over ``window`` 2x2 cells; see the module docstring."""
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    x = _as_maps(x, "checkerboard_score", 2 * window + 1)
    return min(_period2_share(x, oy, ox, window) for oy in (0, 1) for ox in (0, 1))


def _period2_share(x: torch.Tensor, oy: int, ox: int, window: int) -> float:
    """The score with the 2x2 cells starting at row ``oy`` and column ``ox``."""
    x = x[:, oy:, ox:]
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    x = x[:, :h, :w]
    var = float(x.var(dim=(-2, -1), unbiased=False).sum())
    if var <= 1e-300:
        return 0.0
    p00, p01 = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
    p10, p11 = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    parts = torch.stack([p00 + p01 - p10 - p11, p00 - p01 + p10 - p11,
                         p00 - p01 - p10 + p11]) / 4  # (3, C, h/2, w/2)
    averaged = torch.nn.functional.avg_pool2d(parts.flatten(0, 1)[:, None], window, stride=1)
    return float(averaged.square().mean(dim=(-2, -1)).sum()) / var


def blockiness_score(x) -> float:
    """Imbalance (0..1) between neighbour differences at the two phases of the 2-pixel
    grid, both axes, of a (H, W) or (C, H, W) map; see the module docstring."""
    x = _as_maps(x, "blockiness_score", 4)
    dy = (x[:, 1:, :] - x[:, :-1, :]).square()
    dx = (x[:, :, 1:] - x[:, :, :-1]).square()
    # each axis on its own grid phase (a crop may shift one axis and not the other)
    y0, y1 = float(dy[:, 0::2, :].mean()), float(dy[:, 1::2, :].mean())
    x0, x1 = float(dx[:, :, 0::2].mean()), float(dx[:, :, 1::2].mean())
    total = y0 + y1 + x0 + x1
    if total <= 1e-300:
        return 0.0
    return (abs(y0 - y1) + abs(x0 - x1)) / total


def mean_checkerboard_score(maps, window: int = 8) -> float:
    """Mean :func:`checkerboard_score` over a batch (N, C, H, W) or a list of maps."""
    scores = [checkerboard_score(m, window) for m in maps]
    if not scores:
        raise ValueError("mean_checkerboard_score needs at least one map")
    return sum(scores) / len(scores)
