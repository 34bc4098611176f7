"""unetlab.preprocess: the dataset path and the streaming predictor's path give the same
model input for every image type, with and without normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetlab.data.base import SegmentationDataset
from unetlab.errors import UnetlabError
from unetlab.inference.tiling import iter_bands, plan_tiles
from unetlab.preprocess import Preprocessing, dtype_scale, resolve_normalize


class _Arrays(SegmentationDataset):
    """Images held in memory (no files): the dataset path without decoding."""

    class_names = ("a", "b")

    def __init__(self, images, **options):
        super().__init__(cache=False, **options)
        self.images = images
        self.names = [str(i) for i in range(len(images))]
        first = images[0]
        self.in_channels = 1 if first.ndim == 2 else first.shape[-1]

    def _load_raw(self, index):
        return self.images[index], None, f"array {index}"


def _predictor_input(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """What the streaming predictor feeds the model: the file's channels-first array read
    band by band, each band scaled and normalised in place (identity model, one tile)."""
    chw = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    plans = plan_tiles(chw.shape[1:], chw.shape[1:], 0.25)
    out = np.empty(chw.shape, dtype=np.float32)
    for rows, values in iter_bands(lambda x: x, chw, plans, blend="constant",
                                   preprocess=prep.band_function(image.dtype)):
        out[:, rows] = values.numpy()
    return out


def _sample(dtype, shape, rng):
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind == "f":
        return rng.normal(0.3, 0.2, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -30000), min(info.max, 60000), size=shape,
                        dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32,
                                   np.float64, np.bool_])
@pytest.mark.parametrize("channels, normalize", [
    (1, None), (3, None), (1, "imagenet"), (3, "imagenet"),
    (3, {"mean": [0.2, 0.3, 0.4], "std": [0.1, 0.2, 0.3]}), (1, {"mean": [0.5], "std": [2.0]}),
])
def test_dataset_and_predictor_paths_are_identical(dtype, channels, normalize):
    rng = np.random.default_rng(0)
    shape = (12, 10) if channels == 1 else (12, 10, channels)
    image = _sample(dtype, shape, rng)
    dataset = _Arrays([image], normalize=normalize)
    from_dataset = dataset[0]["image"].numpy()
    prep = Preprocessing(channels=channels, normalize=normalize)
    assert dataset.preprocessing() == prep  # what the card records
    from_predictor = _predictor_input(image, prep)
    assert from_dataset.dtype == from_predictor.dtype == np.float32
    np.testing.assert_array_equal(from_dataset, from_predictor)
    chw = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    np.testing.assert_array_equal(prep(chw), from_predictor)
    # and the values are what the module documents
    expected = chw.astype(np.float64) * dtype_scale(dtype)
    norm = resolve_normalize(normalize, channels)
    if norm is not None:
        shape = (-1, 1, 1)
        expected = (expected - np.reshape(norm["mean"], shape)) / np.reshape(norm["std"], shape)
    np.testing.assert_allclose(from_predictor, expected, rtol=1e-5, atol=1e-5)


def test_scaling_by_type():
    assert dtype_scale(np.uint8) == 1 / 255
    assert dtype_scale(np.uint16) == 1 / 65535
    assert dtype_scale(np.int16) == 1 / 32767
    assert dtype_scale(np.int32) == 1 / (2**31 - 1)
    assert dtype_scale(np.float32) == dtype_scale(np.bool_) == 1.0
    assert dtype_scale(np.uint16, "none") == 1.0
    prep = Preprocessing(channels=1, scaling="none")
    np.testing.assert_array_equal(prep(np.array([[[1000]]], dtype=np.uint16)), [[[1000.0]]])


def test_one_channel_imagenet_uses_the_mean_statistics():
    norm = resolve_normalize("imagenet", 1)
    assert norm["mean"] == pytest.approx([np.mean([0.485, 0.456, 0.406])])
    assert norm["std"] == pytest.approx([np.mean([0.229, 0.224, 0.225])])
    prep = Preprocessing(channels=1, normalize="imagenet")
    out = prep(np.full((1, 4, 4), 255, dtype=np.uint8))
    assert out.shape == (1, 4, 4)
    assert out[0, 0, 0] == pytest.approx((1.0 - norm["mean"][0]) / norm["std"][0])


def test_the_caller_array_is_never_modified():
    image = np.full((1, 3, 3), 7, dtype=np.int16)
    Preprocessing(channels=1, normalize="imagenet")(image)
    assert (image == 7).all()


def test_round_trip_through_the_card():
    import unetlab
    from unetlab.card import build_card

    prep = Preprocessing(channels=3, normalize={"mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]})
    model = unetlab.create_model("unet", in_channels=3, num_classes=2, channels=(4, 8))
    assert Preprocessing.from_card(build_card(model, preprocessing=prep)) == prep


@pytest.mark.parametrize("normalize, message", [
    ("imagenette", "expected None, 'imagenet'"),
    ({"mean": [0.1, 0.2], "std": [1, 1]}, "mean has 2 values but the images have 3"),
    ({"mean": [0.1], "std": [0.0]}, "std must be positive"),
    ({"mean": ["a"], "std": [1]}, "must be numbers"),
    ({"mean": [float("nan")], "std": [1]}, "must be finite"),
])
def test_bad_normalisation_is_a_one_line_error(normalize, message):
    with pytest.raises(UnetlabError, match=message):
        Preprocessing(channels=3, normalize=normalize)


def test_wrong_channel_count_is_an_error():
    with pytest.raises(UnetlabError, match="1 channel.*expects 3"):
        Preprocessing(channels=3).apply_inplace(np.zeros((1, 2, 2), np.float32), np.uint8)


def test_tensor_normalisation_matches_numpy():
    prep = Preprocessing(channels=3, normalize="imagenet")
    x = np.random.default_rng(1).random((3, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(prep.normalize_tensor(torch.from_numpy(x)).numpy(),
                                  prep(x))


def test_predictor_preprocessing_never_touches_a_float32_source():
    """Bands overlap and are re-read: normalising a view in place would change the
    caller's image and normalise the overlap twice."""
    image = np.random.default_rng(2).random((1, 40, 8)).astype(np.float32)
    before = image.copy()
    prep = Preprocessing(channels=1, normalize={"mean": [0.5], "std": [0.25]})
    plans = plan_tiles((40, 8), (16, 8), 0.5)
    out = np.empty_like(image)
    for rows, values in iter_bands(lambda x: x, image, plans, blend="constant",
                                   preprocess=prep.band_function(image.dtype)):
        out[:, rows] = values.numpy()
    np.testing.assert_array_equal(image, before)
    np.testing.assert_allclose(out, (before - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
