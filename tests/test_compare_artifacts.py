"""The artifact scores, validated on synthetic upsamplings whose answers are known:
nearest = blocky but no checkerboard; bilinear = neither; stride-2 zero-insertion
transposed convolution with an uneven kernel overlap = checkerboard."""

import math

import pytest
import torch
import torch.nn.functional as F

from unetlab.compare import blockiness_score, checkerboard_score, mean_checkerboard_score


def _smooth(n=32, seed=0):
    """A smooth random low-resolution map (1, 1, n, n): noise blurred twice by a 5x5 box,
    plus a constant (logits are rarely zero-mean)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, n, n, generator=g, dtype=torch.float64)
    k = torch.ones(1, 1, 5, 5, dtype=torch.float64) / 25
    for _ in range(2):
        x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="circular"), k)
    return x / x.std() + 1.0


def _upsampled(method, seed=0):
    x = _smooth(seed=seed)
    if method in ("nearest", "bilinear"):
        return F.interpolate(x, scale_factor=2, mode=method)[0, 0]
    g = torch.Generator().manual_seed(100 + seed)
    if method == "transpose3":  # kernel 3, stride 2: output pixels get 1, 2 or 4 taps
        w = torch.rand(1, 1, 3, 3, generator=g, dtype=torch.float64) + 0.5
        return F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)[0, 0]
    if method == "transpose4_even":  # kernel 4 of ones, stride 2: even overlap, no board
        w = torch.ones(1, 1, 4, 4, dtype=torch.float64)
        return F.conv_transpose2d(x, w, stride=2, padding=1)[0, 0]
    raise ValueError(method)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_the_known_cases(seed):
    scores = {m: checkerboard_score(_upsampled(m, seed))
              for m in ("nearest", "bilinear", "transpose3", "transpose4_even")}
    blocks = {m: blockiness_score(_upsampled(m, seed)) for m in scores}
    # checkerboard: only the uneven zero-insertion transpose has it
    assert scores["transpose3"] > 0.1
    assert scores["nearest"] < 1e-9 and scores["transpose4_even"] < 1e-9
    assert scores["bilinear"] < 0.05 * scores["transpose3"]
    # blockiness: nearest (and the even transpose, a shifted nearest) is blocky;
    # bilinear and the checkerboard are not
    assert blocks["nearest"] > 0.95 and blocks["transpose4_even"] > 0.95
    assert blocks["bilinear"] < 0.15 and blocks["transpose3"] < 0.15


def test_pure_patterns_score_one_and_constant_zero():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    assert checkerboard_score((yy + xx) % 2) == pytest.approx(1.0)
    assert checkerboard_score(yy % 2) == pytest.approx(1.0)
    assert checkerboard_score(torch.full((32, 32), 3.0)) == 0.0
    assert blockiness_score(torch.full((32, 32), 3.0)) == 0.0


def test_stable_where_the_old_ratio_was_not():
    """A smooth map scores ~0, and a vanishing perturbation moves a score by a
    vanishing amount (the old Nyquist/neighbour ratio swung between ~0.4 and ~100)."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((yy - 30) ** 2 + (xx - 20) ** 2) / 200).double()
    assert checkerboard_score(blob) < 0.01
    for base in (blob, _upsampled("bilinear"), _upsampled("transpose3")):
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            noisy = base + 1e-7 * torch.randn(base.shape, generator=g, dtype=torch.float64)
            assert abs(checkerboard_score(noisy) - checkerboard_score(base)) < 1e-6


def test_scale_invariant_and_graded():
    board = _upsampled("transpose3")
    assert checkerboard_score(7.0 * board + 3.0) == pytest.approx(checkerboard_score(board))
    smooth = _upsampled("bilinear")
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    pattern = ((yy + xx) % 2 - 0.5).double() * smooth.std()
    faint, strong = (checkerboard_score(smooth + a * pattern) for a in (0.1, 0.5))
    assert 0 < faint < strong < 1


def test_white_noise_scores_near_zero_checkerboard_and_blockiness():
    noise = torch.randn(128, 128, generator=torch.Generator().manual_seed(0))
    assert checkerboard_score(noise) < 0.02
    assert blockiness_score(noise) < 0.05


def test_channels_summed_odd_sizes_and_mean():
    x = torch.stack([_upsampled("transpose3")[:63, :63], _upsampled("bilinear")[:63, :63]])
    assert checkerboard_score(x) > 0.01
    one = _upsampled("bilinear")
    assert mean_checkerboard_score([one, one]) == pytest.approx(checkerboard_score(one))
    assert math.isfinite(blockiness_score(x))


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(1, 1, 8, 8, 8),
                                 torch.zeros(3, 3)])
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError):
        checkerboard_score(bad)
    with pytest.raises(ValueError):
        blockiness_score(bad)
