"""Fitting with a frozen network, generation in true scanner geometry at F = 1 and F = 2."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nimosef_engine.cli import main
from nimosef_engine.core.geometry import ras_to_voxel, voxel_to_ras
from nimosef_engine.data.manifest import subject_npz_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.fitting.fit import FitConfig, fit_subject, rotation_search_losses
from nimosef_engine.fitting.pose import rotated_frame
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint

ACDC = Path(__file__).resolve().parents[2] / "data" / "acdc"


def test_fit_freezes_the_network_and_lowers_the_loss(preprocessed_acdc, tiny_prior):
    ck = load_checkpoint(tiny_prior)
    net = model_from_checkpoint(ck)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sd = SubjectData.load(subject_npz_path(preprocessed_acdc, "sub-090"))
    res = fit_subject(net, subject_tensors(sd), FitConfig(steps=40, n_points=1000, pose=True),
                      ck["code_mean"])
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert np.mean(res.losses[-5:]) < np.mean(res.losses[:5])
    assert not torch.equal(res.code, ck["code_mean"])
    assert res.pose_matrix.shape == (4, 4)


def test_pose_warmup_moves_the_pose_and_holds_the_code(preprocessed_acdc, tiny_prior):
    ck = load_checkpoint(tiny_prior)
    net = model_from_checkpoint(ck)
    st = subject_tensors(SubjectData.load(subject_npz_path(preprocessed_acdc, "sub-090")))
    warm = fit_subject(net, st, FitConfig(steps=0, pose=True, pose_warmup=8, n_points=1000),
                       ck["code_mean"])
    assert len(warm.losses) == 8 and torch.equal(warm.code, ck["code_mean"])
    assert not torch.equal(warm.pose_matrix, torch.eye(4))
    both = fit_subject(net, st, FitConfig(steps=4, pose=True, pose_warmup=8, n_points=1000),
                       ck["code_mean"])
    assert len(both.losses) == 12 and not torch.equal(both.code, ck["code_mean"])
    # no warm-up without pose refinement
    plain = fit_subject(net, st, FitConfig(steps=4, pose_warmup=8, n_points=1000),
                        ck["code_mean"])
    assert len(plain.losses) == 4 and torch.equal(plain.pose_matrix, torch.eye(4))


def test_batched_rotation_search_matches_one_fit_per_rotated_frame(preprocessed_acdc,
                                                                  tiny_prior):
    """The rotation search fits all rotations in one batched pass: each rotation's loss is
    what a fit of the subject in that rotated heart frame gives, and the ranking agrees."""
    ck = load_checkpoint(tiny_prior)
    net = model_from_checkpoint(ck)
    sd = SubjectData.load(subject_npz_path(preprocessed_acdc, "sub-090"))
    angles = (0, 90, 180, 270)
    # groups of 2 rotations (max_batch_points) check that grouping changes nothing
    batched = rotation_search_losses(net, subject_tensors(sd), angles, 12, 500,
                                     ck["code_mean"], seed=3, max_batch_points=1000)  # 2 per group
    one_by_one = [fit_subject(net, subject_tensors(replace(sd, heart=rotated_frame(sd.heart, a))),
                              FitConfig(steps=12, n_points=500, seed=3), ck["code_mean"]
                              ).final_loss for a in angles]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4)
    assert np.argsort(batched).tolist() == np.argsort(one_by_one).tolist()
    assert len(set(np.round(one_by_one, 4))) == len(angles)  # the rotations do differ


def test_fit_and_generate_cli_geometry(preprocessed_acdc, tiny_prior, tmp_path):
    codes = tmp_path / "codes.pt"
    assert main(["fit", "--root", str(preprocessed_acdc), "--subjects", "sub-090",
                 "--checkpoint", str(tiny_prior), "--out", str(codes), "--steps", "10",
                 "--device", "cpu", "--progress", "none"]) == 0
    for factor in (1, 2):
        out = tmp_path / f"gen{factor}"
        assert main(["generate", "--root", str(preprocessed_acdc), "--subjects", "sub-090",
                     "--checkpoint", str(tiny_prior), "--codes", str(codes), "--out", str(out),
                     "--res-factor-z", str(factor), "--device", "cpu",
                     "--progress", "none"]) == 0
        src = ACDC / "patient090" / "patient090_frame04_gt.nii.gz"
        gt_src, aff_src = load_nifti(src, dtype=np.uint8)
        seg, aff = load_nifti(out / "sub-090_seg.nii.gz", ndim=4, dtype=np.uint8)
        gt, aff_gt = load_nifti(out / "sub-090_seg_gt.nii.gz", ndim=4, dtype=np.uint8)
        rec, _ = load_nifti(out / "sub-090_rec.nii.gz", ndim=4)
        assert seg.shape == (*gt_src.shape[:2], gt_src.shape[2] * factor, 2)
        np.testing.assert_allclose(aff, aff_gt)
        # every generated voxel centre lies in the original voxel it subdivides
        ijk = np.array([[10, 20, k] for k in range(seg.shape[2])])
        old = ras_to_voxel(aff_src, voxel_to_ras(aff, ijk))
        np.testing.assert_allclose(old[:, :2], ijk[:, :2], atol=1e-6)
        assert np.array_equal(np.floor(old[:, 2] + 0.5).astype(int), ijk[:, 2] // factor)
        # the ground-truth copy overlays the source labels voxel for voxel (ED is frame 0)
        acdc_to_nimosef = np.array([0, 3, 2, 1], np.uint8)
        assert np.array_equal(gt[:, :, ::factor, 0], acdc_to_nimosef[gt_src])
        assert rec.shape == seg.shape and np.isfinite(rec).all()
        frames = json.loads((out / "sub-090_frames.json").read_text())
        assert frames["frame_indices"] == [3, 10] and frames["es_index"] == 1
        tb = pd.read_parquet(out / "sub-090_true_boundaries.parquet")
        assert set(tb["label"]) == {1, 2, 3} and set(tb["frame"]) == {3, 10}
        # true boundary points are world positions of labelled voxels of the source
        pts = tb[(tb["frame"] == 3) & (tb["label"] == 1)][["x", "y", "z"]].to_numpy()
        vox = np.round(ras_to_voxel(aff_src, pts)).astype(int)
        assert np.all(acdc_to_nimosef[gt_src[tuple(vox.T)]] == 1)
        disp = pd.read_parquet(out / "sub-090_displacement.parquet")
        assert {"x0", "y0", "z0", "ux", "uy", "uz", "time"} <= set(disp.columns)
    # metrics on the generated folder
    assert main(["metrics", "--pred-dir", str(tmp_path / "gen1")]) == 0
    summary = pd.read_csv(tmp_path / "gen1" / "metrics" / "summary.csv")
    assert summary.loc[0, "LV_EF_pct_gt"] > 0


def test_generate_without_a_code_is_a_user_error(preprocessed_acdc, tiny_prior, tmp_path,
                                                 capsys):
    import torch as _t

    ck = load_checkpoint(tiny_prior)
    ck["subject_ids"] = []
    ck["codes"] = ck["codes"][:0]
    _t.save(ck, tmp_path / "nocodes.pt")
    rc = main(["generate", "--root", str(preprocessed_acdc), "--subjects", "sub-001",
               "--checkpoint", str(tmp_path / "nocodes.pt"), "--out", str(tmp_path / "g"),
               "--device", "cpu", "--progress", "none"])
    assert rc == 2
    assert "no fitted code" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_fit_matches_the_eager_fit(preprocessed_acdc, tiny_prior):
    """On a GPU the fit replays its steps as a CUDA graph: the same points, objective and
    updates as the step-by-step fit (Adam's capturable form rounds differently), with and
    without pose, and the pose warm-up before the graph still holds the code."""
    ck = load_checkpoint(tiny_prior)
    net = model_from_checkpoint(ck, "cuda")
    st = subject_tensors(SubjectData.load(subject_npz_path(preprocessed_acdc, "sub-090")),
                         "cuda")
    code0 = ck["code_mean"].cuda()
    for cfg in (FitConfig(steps=40, n_points=1000), FitConfig(steps=40, n_points=1000,
                                                              pose=True, pose_warmup=5)):
        graphed = fit_subject(net, st, cfg, code0)
        eager = fit_subject(net, st, replace(cfg, cuda_graphs=False), code0)
        assert len(graphed.losses) == len(eager.losses) == cfg.steps + cfg.pose_warmup
        np.testing.assert_allclose(graphed.losses, eager.losses, rtol=2e-3)
        torch.testing.assert_close(graphed.code, eager.code, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(graphed.pose_matrix, eager.pose_matrix, rtol=1e-3,
                                   atol=1e-4)
        assert np.mean(graphed.losses[-5:]) < np.mean(graphed.losses[:5])
