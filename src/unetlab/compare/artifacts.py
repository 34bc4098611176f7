"""The checkerboard-artifact score: how much of an output's energy sits at the Nyquist
frequency compared with the frequencies just below it.

A stride-2 transposed convolution whose kernel overlaps unevenly (Odena et al., 2016,
"Deconvolution and checkerboard artifacts") adds a pattern that repeats every 2 pixels:
in the power spectrum it is a peak on the Nyquist lines (row ``H/2`` and column ``W/2``
of the 2-D DFT). Smooth outputs and natural edges have spectra that decay with
frequency, so their Nyquist lines hold *less* energy than the lines just below them.

Definition, for one 2-D map ``x`` (cropped to even height and width, mean removed)::

    P        = |FFT2(x)|^2                                  (power spectrum)
    nyquist  = mean of P over row H/2 and column W/2
    around   = mean of P over rows H/2 +- d and columns W/2 +- d, d = 1..radius,
               excluding the Nyquist row and column
    score    = (nyquist + eps) / (around + eps),   eps = 1e-12 * mean(P) + 1e-30

For a (C, H, W) map the spectra of the channels are summed first. Reading it: about 1
or below = no periodic artifact; well above 1 = a period-2 (checkerboard or stripe)
pattern; a pure checkerboard scores in the millions.
"""

from __future__ import annotations

import torch


def checkerboard_score(x, radius: int = 3) -> float:
    """Nyquist-to-neighbourhood spectral energy ratio of a (H, W) or (C, H, W) map
    (e.g. one image's logits); see the module docstring."""
    x = torch.as_tensor(x).detach().double().cpu()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"checkerboard_score expects a (H, W) or (C, H, W) map, got shape "
                         f"{tuple(x.shape)}")
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    if h < 2 * (radius + 1) or w < 2 * (radius + 1):
        raise ValueError(f"map of {x.shape[-2]}x{x.shape[-1]} is too small for radius "
                         f"{radius} (needs at least {2 * (radius + 1)} pixels per side)")
    x = x[:, :h, :w]
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square().sum(0)  # (h, w)
    ny, nx = h // 2, w // 2
    nyq = torch.zeros(h, w, dtype=torch.bool)
    nyq[ny, :] = True
    nyq[:, nx] = True
    near = torch.zeros(h, w, dtype=torch.bool)
    for d in range(1, radius + 1):
        near[(ny - d) % h, :] = True
        near[(ny + d) % h, :] = True
        near[:, (nx - d) % w] = True
        near[:, (nx + d) % w] = True
    near &= ~nyq
    eps = 1e-12 * float(power.mean()) + 1e-30
    return float((power[nyq].mean() + eps) / (power[near].mean() + eps))


def mean_checkerboard_score(maps, radius: int = 3) -> float:
    """Mean :func:`checkerboard_score` over a batch (N, C, H, W) or a list of maps."""
    scores = [checkerboard_score(m, radius) for m in maps]
    if not scores:
        raise ValueError("mean_checkerboard_score needs at least one map")
    return sum(scores) / len(scores)
