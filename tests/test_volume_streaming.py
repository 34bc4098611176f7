"""NIfTI prediction is streamed along the first axis: the same labels and probabilities
as a whole-volume pass (tiles, then trilinear back to the input grid, then argmax), while
the class probabilities of the whole volume are never held at once."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")

from unetlab import create_model  # noqa: E402
from unetlab.data.volumes import resample  # noqa: E402
from unetlab.inference.tiling import predict_tiled  # noqa: E402
from unetlab.inference.volume import RowResampler, predict_nifti  # noqa: E402

SPACING = (0.8, 0.8, 2.5)


def _volume(path, shape, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 6, shape[0])[:, None, None]
    data = (np.sin(x) + rng.normal(0, 0.5, shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([*SPACING, 1.0])), str(path))
    return data


def _net(classes):
    torch.manual_seed(0)
    return create_model("unet", spatial_dims=3, in_channels=1, num_classes=classes,
                        channels=(4, 8), norm="instance").eval()


def _dense(net, data, medical, tile):
    """The whole-volume reference: what predict_nifti computed before it streamed."""
    image = data[..., None]
    if medical.get("spacing"):
        target = [round(n * s / t) for n, s, t in zip(data.shape, SPACING, medical["spacing"])]
        image = resample(image, target, order=1)
    chw = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    tiles = tuple(min(tile, -(-n // 2) * 2) for n in chw.shape[1:])
    probs = predict_tiled(net, chw, tile_size=tiles, output="probabilities").numpy()
    if probs.shape[1:] != data.shape:
        probs = np.moveaxis(resample(np.moveaxis(probs, 0, -1), data.shape, order=1), -1, 0)
    return probs


@pytest.mark.parametrize("spacing", [None, [1.3, 0.6, 2.5], [0.5, 1.6, 2.5],
                                     [0.25, 0.8, 2.5]])  # model grid 3.2x finer
def test_streamed_volume_equals_the_whole_volume_pass(tmp_path, spacing):
    data = _volume(tmp_path / "v.nii.gz", (37, 18, 8))
    net, medical = _net(3), {"spacing": spacing, "intensity": "none"}
    res = predict_nifti(net, tmp_path / "v.nii.gz", tmp_path / "out", tile_size=8,
                        medical=medical, probabilities=True)
    ref = _dense(net, data, medical, 8)
    probs = nib.load(str(res["probabilities"])).get_fdata(dtype=np.float32)
    labels = np.asarray(nib.load(str(res["labels"])).dataobj)
    assert labels.shape == data.shape and probs.shape == (*data.shape, 3)
    np.testing.assert_allclose(np.moveaxis(probs, -1, 0), ref, atol=2e-6)
    top2 = np.sort(ref, axis=0)[-2:]
    sure = (top2[1] - top2[0]) > 1e-5  # ties within float rounding may go either way
    np.testing.assert_array_equal(labels[sure], ref.argmax(0)[sure])
    assert len(np.unique(labels)) > 1


def test_the_whole_volume_of_class_probabilities_is_never_held(tmp_path):
    shape, classes = (192, 16, 8), 64
    _volume(tmp_path / "v.nii.gz", shape)
    net = _net(classes)
    medical = {"spacing": [0.6, 0.8, 2.5], "intensity": "none"}
    predict_nifti(net, tmp_path / "v.nii.gz", tmp_path / "warm", tile_size=16,
                  medical=medical)  # imports and first-call caches are not the volume's
    held, push = [], RowResampler.push

    def watch(self, values):  # the model-grid rows the resampler holds at once
        yield from push(self, values)
        held.append(self.buf.shape[1])

    tracemalloc.start()  # numpy's allocations (torch's are not traced)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(RowResampler, "push", watch)
            predict_nifti(net, tmp_path / "v.nii.gz", tmp_path / "out", tile_size=16,
                          medical=medical)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    dense = classes * int(np.prod(shape)) * 4  # float32 probabilities on the input grid
    assert peak < dense / 2, (peak, dense)
    assert len(held) > 10 and max(held) <= 2, held  # 256 model-grid rows, never kept


def test_row_resampler_gives_every_row_once_in_order():
    rng = np.random.default_rng(1)
    cases = [(7, 11), (11, 7), (5, 5), (1, 4), (9, 1), (12, 3), (31, 5), (40, 9), (3, 17)]
    for (n_in, n_out), step in itertools.product(cases, (1, 2, 3)):
        grid = rng.random((2, n_in, 3, 4)).astype(np.float32)
        back = RowResampler(n_in, (n_out, 5, 2))
        got, nxt = [], 0
        for lo in range(0, n_in, step):  # rows arrive a few at a time
            assert back.lo + (0 if back.buf is None else back.buf.shape[1]) == lo
            for rows, values in back.push(grid[:, lo:lo + step]):
                assert rows.start == nxt and values.shape == (2, rows.stop - rows.start, 5, 2)
                nxt = rows.stop
                got.append(values)
        assert nxt == n_out
        ref = np.moveaxis(resample(np.moveaxis(grid, 0, -1), (n_out, 5, 2), order=1), -1, 0)
        np.testing.assert_allclose(np.concatenate(got, axis=1), ref, atol=1e-6)
