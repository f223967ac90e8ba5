"""Augmented copies for auto-decoder training: a seeded table of similarity maps and gammas."""

from __future__ import annotations

import numpy as np
import torch

from nimosef_engine.training.augment import AugmentConfig, augmentation_table


def test_table_puts_the_originals_first_and_is_reproducible():
    cfg = AugmentConfig(copies=3)
    a = augmentation_table(5, cfg, seed=1)
    b = augmentation_table(5, cfg, seed=1)
    c = augmentation_table(5, cfg, seed=2)
    assert len(a) == 20
    assert [x.subject for x in a] == list(range(5)) * 4
    for x in a[:5]:
        assert np.array_equal(x.matrix, np.eye(4)) and x.gamma == 1.0
        assert x.coords_fn() is None and x.intensity_fn() is None
    assert all(np.array_equal(x.matrix, y.matrix) and x.gamma == y.gamma
               for x, y in zip(a, b, strict=True))
    assert not np.allclose(a[7].matrix, c[7].matrix)


def test_copies_stay_inside_the_configured_ranges():
    cfg = AugmentConfig(copies=20, rotate_deg=20, tilt_deg=5, scale=0.1, translate=0.05,
                        gamma=0.3)
    table = augmentation_table(4, cfg, seed=0)[4:]
    angles_z, scales = [], []
    for x in table:
        lin = x.matrix[:3, :3]
        s = np.cbrt(np.linalg.det(lin))
        rot = lin / s
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
        scales.append(s)
        # tilt: the long axis moves by at most tilt_deg
        tilt = np.degrees(np.arccos(np.clip(rot[2, 2], -1, 1)))
        assert tilt <= 5 + 1e-6
        angles_z.append(np.degrees(np.arctan2(rot[1, 0], rot[0, 0])))
        assert np.all(np.abs(x.matrix[:3, 3]) <= 0.05)
        assert np.exp(-0.3) - 1e-9 <= x.gamma <= np.exp(0.3) + 1e-9
    assert 0.9 - 1e-9 <= min(scales) and max(scales) <= 1.1 + 1e-9
    assert max(np.abs(angles_z)) <= 20 + 5 + 1e-6  # in-plane angle, tilt mixed in
    assert np.std(angles_z) > 5  # the rotations do vary


def test_maps_apply_the_matrix_and_gamma():
    x = augmentation_table(1, AugmentConfig(copies=1), seed=3)[1]
    pts = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]])
    got = x.coords_fn()(pts)
    want = pts.double() @ torch.from_numpy(x.matrix[:3, :3]).T + torch.from_numpy(x.matrix[:3, 3])
    torch.testing.assert_close(got, want.float())
    inten = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(x.intensity_fn()(inten), inten ** x.gamma)
