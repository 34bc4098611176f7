"""The checkerboard-artifact score on hand-made maps."""

import math

import pytest
import torch

from unetlab.compare import checkerboard_score, mean_checkerboard_score


def _grid(n=64):
    return torch.meshgrid(torch.arange(n, dtype=torch.float64),
                          torch.arange(n, dtype=torch.float64), indexing="ij")


def test_pure_checkerboard_scores_high_smooth_scores_low():
    yy, xx = _grid()
    board = ((yy + xx) % 2) * 2 - 1
    blob = torch.exp(-((yy - 30) ** 2 + (xx - 20) ** 2) / 200)
    assert checkerboard_score(board) > 1e6
    assert checkerboard_score(blob) < 1.0
    # a faint checkerboard on a smooth map is still detected, and ranks in between
    mixed = checkerboard_score(blob + 0.05 * board)
    assert 10 < mixed < checkerboard_score(board)


def test_stripes_of_period_two_count_too():
    yy, _ = _grid()
    assert checkerboard_score(yy % 2) > 1e6


def test_white_noise_is_about_one_and_constant_is_exactly_one():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(128, 128, generator=g)
    assert 0.7 < checkerboard_score(noise) < 1.4
    assert math.isclose(checkerboard_score(torch.full((32, 32), 3.0)), 1.0)


def test_channels_are_summed_and_odd_sizes_cropped():
    yy, xx = _grid(65)
    board = ((yy + xx) % 2)
    blob = torch.exp(-((yy - 30) ** 2) / 300)
    two = torch.stack([blob, board])
    assert checkerboard_score(two) > 1e3
    assert mean_checkerboard_score([blob, blob]) == pytest.approx(checkerboard_score(blob))


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(1, 1, 8, 8, 8),
                                 torch.zeros(6, 6)])
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError):
        checkerboard_score(bad)
