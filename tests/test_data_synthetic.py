"""Synthetic membranes and shapes: deterministic by seed, plausible, fast to make."""

from __future__ import annotations

import numpy as np
import torch

from unetlab.data import build_dataset
from unetlab.data.synthetic import make_membrane_image


def test_membranes_deterministic_by_seed_and_split():
    a = build_dataset("membranes", num_images=3, size=64, seed=7)
    b = build_dataset("membranes", num_images=3, size=64, seed=7, cache=False)
    c = build_dataset("membranes", num_images=3, size=64, seed=8)
    v = build_dataset("membranes", split="val", num_images=3, size=64, seed=7)
    assert torch.equal(a[2]["image"], b[2]["image"]) and torch.equal(a[2]["mask"], b[2]["mask"])
    assert not torch.equal(a[2]["image"], c[2]["image"])
    assert not torch.equal(a[0]["mask"], v[0]["mask"])
    # sample i does not depend on the order of access
    assert torch.equal(b[1]["mask"], build_dataset("membranes", num_images=2, size=64,
                                                   seed=7)[1]["mask"])


def test_membranes_look_like_em():
    ds = build_dataset("membranes", num_images=2, size=128)
    assert ds.num_classes == 2 and ds.in_channels == 1 and ds.class_names[1] == "membrane"
    item = ds[0]
    image, mask = item["image"][0], item["mask"]
    assert set(mask.unique().tolist()) == {0, 1}
    frac = mask.float().mean().item()
    assert 0.08 < frac < 0.35  # a minority class like ISBI's ~22 %
    assert image[mask == 1].mean() < image[mask == 0].mean() - 0.2  # dark membranes
    # cells are separated: several connected components of cell interior
    from scipy import ndimage

    _, n = ndimage.label(mask.numpy() == 0)
    assert n >= 5


def test_membrane_generator_signature():
    image, mask = make_membrane_image(np.random.default_rng(0), 256)
    assert image.shape == (256, 256) and image.dtype == np.uint8
    assert mask.shape == (256, 256) and mask.dtype == np.uint8


def test_shapes_multiclass_imbalanced():
    ds = build_dataset("shapes", num_images=40, size=64, seed=0)
    assert ds.num_classes == 5 and ds.in_channels == 3 and ds.palette.shape == (5, 3)
    counts = np.zeros(5, np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds.load_mask(i).ravel(), minlength=5)
    assert (counts > 0).all()
    assert counts[0] > counts[1] > counts[3] and counts[1] > counts[4]
    assert counts[1] > 5 * counts[4]  # crosses are rare
