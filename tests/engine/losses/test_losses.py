"""Losses on hand-checked small cases: boundaries, kNN, Chamfer, folding, Dice, smoothness."""

import torch

from nimosef_engine.losses.boundary import (
    boundary_mask,
    chamfer_one_way,
    knn,
    knn_edges,
    node_degrees,
    pairwise_sqdist_min,
)
from nimosef_engine.losses.motion import displacement_loss, folding_loss, no_motion_at_ed_loss
from nimosef_engine.losses.priors import code_prior
from nimosef_engine.losses.segmentation import segmentation_loss, soft_dice_loss
from nimosef_engine.losses.smoothness import smoothness_loss


def test_boundary_mask_of_a_cube():
    lab = torch.zeros(5, 5, 5, dtype=torch.long)
    lab[1:4, 1:4, 1:4] = 1
    b = boundary_mask(lab)
    assert int(b.sum()) == 26  # 3x3x3 cube minus its centre
    assert not bool(b[2, 2, 2])
    lab[2, 2, 2] = 2
    assert int(boundary_mask(lab, 1).sum()) == 26  # every shell voxel touches background
    assert int(boundary_mask(lab, 2).sum()) == 1


def test_knn_matches_brute_force():
    torch.manual_seed(0)
    p = torch.rand(300, 3)
    idx, d2 = knn(p, 5, chunk=64)
    full = torch.cdist(p, p).square()
    full.fill_diagonal_(float("inf"))
    ref_d, ref_i = full.topk(5, largest=False)
    torch.testing.assert_close(d2, ref_d)
    assert torch.equal(idx, ref_i)
    edges = knn_edges(p, 5)
    assert edges.shape == (1500, 2)
    assert torch.equal(node_degrees(edges, 300), torch.full((300,), 5))


def test_chamfer_value_and_gradient_match_cdist():
    torch.manual_seed(0)
    a = torch.rand(200, 3, requires_grad=True)
    b = torch.rand(150, 3)
    mine = chamfer_one_way(a, b)
    ref = torch.cdist(a, b).square().min(1).values.mean()
    torch.testing.assert_close(mine, ref)
    (ga,) = torch.autograd.grad(mine, a)
    (gr,) = torch.autograd.grad(ref, a)
    torch.testing.assert_close(ga, gr)
    assert pairwise_sqdist_min(b, b).abs().max() < 1e-6


def test_displacement_and_no_motion_losses():
    b0 = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    bt = b0 + torch.tensor([0.1, 0, 0])
    assert float(displacement_loss(b0, torch.tensor([[0.1, 0, 0]] * 2), bt)) < 1e-9
    torch.testing.assert_close(displacement_loss(b0, torch.zeros(2, 3), bt),
                               torch.tensor(100 * 0.01))
    torch.testing.assert_close(no_motion_at_ed_loss(torch.full((4, 3), 0.1)),
                               torch.tensor(100 * 0.03))


def test_folding_penalises_only_inversions():
    p = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    edges = torch.tensor([[0, 1]])
    assert float(folding_loss(p, torch.zeros(2, 3), edges)) == 0.0
    assert float(folding_loss(p, torch.tensor([[0.0, 0, 0], [-0.5, 0, 0]]), edges)) == 0.0
    # the second point moves past the first: d.du/|d|^2 = -2 -> det -1 -> loss 1
    torch.testing.assert_close(folding_loss(p, torch.tensor([[0.0, 0, 0], [-2.0, 0, 0]]),
                                            edges), torch.tensor(1.0))


def test_segmentation_losses():
    target = torch.tensor([0, 1, 2, 3, 1]).repeat(50)
    good = torch.nn.functional.one_hot(target, 4).float() * 20
    bad = torch.nn.functional.one_hot((target + 1) % 4, 4).float() * 20
    assert float(soft_dice_loss(good, target)) < 0.05
    assert float(soft_dice_loss(bad, target)) > 0.9
    assert float(segmentation_loss(good, target)) < float(segmentation_loss(bad, target))


def test_prior_and_smoothness():
    torch.testing.assert_close(code_prior(torch.ones(2, 4)), torch.tensor(4.0))
    v = torch.tensor([[0.0], [1.0], [3.0]])
    e = torch.tensor([[0, 1], [1, 2]])
    torch.testing.assert_close(smoothness_loss(v, e), torch.tensor(2.5))
    torch.testing.assert_close(smoothness_loss(v, e, torch.tensor([0, 0, 1])), torch.tensor(1.0))
