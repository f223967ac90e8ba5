"""The slice network's geometry (crop <-> network grid), its shapes and its checkpoint checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.evaluation.metrics import dice
from nimosef_engine.model.bundled import BUNDLED_PRIOR, load_slice_net
from nimosef_engine.model.slice_unet import (
    FIELD_MM,
    GRID_PX,
    SliceUNet,
    SliceUNetConfig,
    from_grid,
    standardise,
    to_grid,
)
from nimosef_engine.refinement.slice_evidence import slice_probabilities


def disc(n: int, spacing: float, radius_mm: float, centre_mm=(0.0, 0.0)) -> np.ndarray:
    """A disc on an ``n``-square grid of ``spacing`` mm pixels, centred on the grid's centre
    plus ``centre_mm`` (along the array's first and second axes)."""
    c = (np.arange(n) - (n - 1) / 2) * spacing
    x, y = np.meshgrid(c - centre_mm[0], c - centre_mm[1], indexing="ij")
    return (x ** 2 + y ** 2 <= radius_mm ** 2).astype(np.float32)


@pytest.mark.parametrize("spacing", [0.8, 1.5625, 1.9])
def test_a_disc_keeps_its_size_and_place_in_mm_on_the_grid_and_back(spacing):
    n = int(round(FIELD_MM / spacing))
    crop = disc(n, spacing, 20.0, centre_mm=(12.0, -6.0))
    on_grid = to_grid(torch.from_numpy(crop)[None, None], spacing)[0, 0].numpy()
    assert on_grid.shape == (GRID_PX, GRID_PX)
    expect = disc(GRID_PX, FIELD_MM / GRID_PX, 20.0, centre_mm=(12.0, -6.0))
    assert dice(on_grid > 0.5, expect > 0.5, True) > 0.97
    back = from_grid(torch.from_numpy(on_grid)[None, None], n, spacing)[0, 0].numpy()
    assert back.shape == (n, n)
    assert dice(back > 0.5, crop > 0.5, True) > 0.97


def test_the_network_maps_slices_to_class_logits_of_the_same_size():
    net = SliceUNet(SliceUNetConfig(base=4, levels=3)).eval()
    out = net(torch.randn(2, 1, 32, 48))
    assert out.shape == (2, 4, 32, 48)
    x = standardise(torch.rand(3, 1, 16, 16) * 5 + 2)
    np.testing.assert_allclose(x.mean((2, 3)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std((2, 3)).numpy(), 1.0, atol=1e-4)


def test_slice_probabilities_cover_every_slice_and_sum_to_one():
    net = SliceUNet(SliceUNetConfig(base=4, levels=2)).eval()
    image = np.random.default_rng(0).uniform(0, 1, (90, 90, 21)).astype(np.float32)
    probs = slice_probabilities(net, image, 1.7)  # more slices than one batch holds
    assert probs.shape == (4, 90, 90, 21) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="square"):
        slice_probabilities(net, image[:80], 1.7)


def test_flips_average_the_mirror_views_each_mapped_back():
    """``flips=True`` is the mean of the network run on the frame and on its three in-plane
    mirror images, each result mirrored back onto the frame; a mirrored frame gets the mirror
    of the frame's probabilities."""
    torch.manual_seed(0)
    net = SliceUNet(SliceUNetConfig(base=4, levels=2)).eval()
    image = np.random.default_rng(1).uniform(0, 1, (60, 60, 3)).astype(np.float32)
    got = slice_probabilities(net, image, 2.5, flips=True)
    views = []
    for ax in ((), (0,), (1,), (0, 1)):
        p = slice_probabilities(net, np.ascontiguousarray(np.flip(image, ax)), 2.5)
        views.append(np.flip(p, tuple(a + 1 for a in ax)))
    np.testing.assert_allclose(got, np.mean(views, 0), atol=1e-5)
    assert np.abs(got - views[0]).max() > 1e-3  # the views differ: an untrained network
    mirrored = slice_probabilities(net, np.ascontiguousarray(image[::-1]), 2.5, flips=True)
    np.testing.assert_allclose(mirrored, got[:, ::-1], atol=1e-5)


def test_a_checkpoint_that_is_not_a_slice_network_is_refused(tmp_path):
    with pytest.raises(NimosefInputError, match="not a slice-network checkpoint"):
        load_slice_net(BUNDLED_PRIOR)
    with pytest.raises(NimosefInputError, match="checkpoint not found"):
        load_slice_net(tmp_path / "missing.pt")
