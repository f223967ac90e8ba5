"""Segment & Track on real cines with the bundled prior: geometry, every output, resample,
cancel, locking, determinism, and bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from nimosef_engine.cli import main
from nimosef_engine.core.geometry import resample_grid_z
from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.evaluation.metrics import dice
from nimosef_engine.fitting.pose import POSE_WARMUP_STEPS, pose_hypotheses
from nimosef_engine.io.meshes import polydata_points, read_vtp
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.model.bundled import BUNDLED_PRIOR, load_slice_net
from nimosef_engine.model.checkpoint import load_checkpoint
from nimosef_engine.pipeline.cycle_time import align_to_systole
from nimosef_engine.pipeline.outputs import foreign_entries
from nimosef_engine.pipeline.subject_file import read_subject_file, write_subject_file
from nimosef_engine.refinement.refine import REFINE_BETA, REFINE_ITERATIONS, SLICE_GAMMA

pytestmark = pytest.mark.slow  # every test here runs the engine end to end

DATA = Path(__file__).resolve().parents[2] / "data"
P090 = DATA / "acdc" / "patient090"
CINE = P090 / "patient090_4d.nii.gz"
SUNNY = DATA / "sunnybrook" / "dicoms" / "SCD0000101"
FAST = ["--quality", "fast", "--fit-steps", "60", "--device", "cpu", "--progress", "none"]


@pytest.fixture(scope="module")
def st_090(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("st") / "p090"
    assert main(["segment-track", str(CINE), "--out", str(out), "--res-factor-z", "2",
                 *FAST]) == 0
    return out


def test_outputs_overlay_the_input_and_are_complete(st_090):
    img, aff = load_nifti(CINE)
    seg, seg_aff = load_nifti(st_090 / "seg.nii.gz", ndim=4, dtype=np.uint8)
    assert seg.shape == img.shape
    np.testing.assert_allclose(seg_aff, aff)
    assert set(np.unique(seg)) <= {0, 1, 2, 3}
    seg2, aff2 = load_nifti(st_090 / "seg_z2.nii.gz", ndim=4, dtype=np.uint8)
    rec2, aff2r = load_nifti(st_090 / "rec_z2.nii.gz", ndim=4)
    exp_aff, exp_shape = resample_grid_z(aff, img.shape[:3], 2)
    assert seg2.shape == (*exp_shape, 12) and rec2.shape == seg2.shape
    np.testing.assert_allclose(aff2, exp_aff)
    np.testing.assert_allclose(aff2r, exp_aff)
    # the super-resolved intensity is in the input's units, close to the input in the ROI
    ed = json.loads((st_090 / "summary.json").read_text())["ed_frame"]
    lv = seg[..., ed] == 1
    assert lv.sum() > 100
    # super-resolved labels agree with the native ones in most LV voxels
    up = seg2[:, :, 0::2, ed] == 1
    assert dice(up, lv, True) > 0.7
    summary = json.loads((st_090 / "summary.json").read_text())
    for key in ("ed_frame", "es_frame", "LV_EDV_mL", "LV_ESV_mL", "LV_SV_mL", "LV_EF_pct",
                "RV_EDV_mL", "RV_EF_pct", "MYO_mass_g", "runtime_s", "device", "prior_id"):
        assert key in summary, key
    assert summary["n_frames"] == 12 and summary["device"] == "cpu"
    assert 0 < summary["LV_EF_pct"] < 100
    # the bundled prior saw ED and ES only: model times run from 0 at the localised ED up to
    # the prior's mean ES time at the localised ES and back, each frame placed on that path by
    # its own intensities: systole advances, diastole returns
    ck = load_checkpoint(BUNDLED_PRIOR)
    times = np.asarray(summary["model_times"])
    ed_l, es_l = summary["localised_ed_frame"], summary["localised_es_frame"]
    assert summary["time_model"]["method"].startswith("read from each frame's intensities")
    assert times[ed_l] == 0.0
    assert times[es_l] == pytest.approx(ck["es_time_mean"], abs=1e-4)
    assert times.max() == pytest.approx(ck["es_time_mean"], abs=1e-4)
    cyc = times[[(ed_l + j) % 12 for j in range(12)]]
    p_es = (es_l - ed_l) % 12
    assert np.all(np.diff(cyc[:p_es + 1]) >= -1e-6) and np.all(np.diff(cyc[p_es:]) <= 1e-6)
    # the prior's labels are compared with the slice network's in every frame
    agree = summary["refinement"]["prior_slice_agreement_per_frame"]
    assert len(agree) == 12 and all(0.3 < a <= 1.0 for a in agree)
    vols = pd.read_csv(st_090 / "volumes.csv")
    assert list(vols.columns) == ["frame", "time", "time_ms", "LV_mL", "MYO_mL", "RV_mL"]
    assert len(vols) == 12
    voxel_ml = abs(np.linalg.det(aff[:3, :3])) / 1000
    np.testing.assert_allclose(vols["LV_mL"], [(seg[..., f] == 1).sum() * voxel_ml
                                               for f in range(12)])
    assert summary["LV_EDV_mL"] == pytest.approx(vols["LV_mL"].max(), abs=1e-3)
    # the myocardium is nearly incompressible: its volume stays within 35 % of its median
    myo = vols["MYO_mL"].to_numpy()
    assert np.abs(myo / np.median(myo) - 1).max() < 0.35, myo
    motion = pd.read_parquet(st_090 / "motion.parquet")
    assert {"frame", "time", "x", "y", "z", "ux", "uy", "uz"} <= set(motion.columns)
    assert sorted(motion["frame"].unique()) == list(range(12))
    np.testing.assert_allclose(motion["x"], motion["x0"] + motion["ux"], atol=1e-6)
    # no motion at the reference frame (trained with the no-motion-at-ED loss)
    at_ed = motion[motion["frame"] == ed]
    assert np.abs(at_ed[["ux", "uy", "uz"]].to_numpy()).mean() < 2.0
    meshes = sorted((st_090 / "meshes").glob("*.vtp"))
    assert len(meshes) == 36
    pts = polydata_points(read_vtp(st_090 / "meshes" / f"frame_{ed:02d}_LV.vtp"))
    assert len(pts) > 50
    # LV surface points lie near the LV voxels in world coordinates
    lv_world = nib.affines.apply_affine(aff, np.argwhere(lv))
    assert np.linalg.norm(pts.mean(0) - lv_world.mean(0)) < 10.0
    assert (st_090 / "report.png").stat().st_size > 10_000
    assert (st_090 / "subject.nimosef").is_file() and (st_090 / "config.json").is_file()
    # every file segment-track wrote is one --overwrite may replace (outputs.py's list)
    assert foreign_entries(st_090) == []
    assert not list(st_090.parent.glob("*.lock")) and not list(st_090.parent.glob(".*tmp"))


def test_dense_motion_fields_and_strain(st_090):
    """motion/to_ed_NN and from_ed_NN for every frame, on the input's grid as SimpleITK reads
    it; ED's fields are the identity; the inverse composes to the identity on the heart;
    strain.csv has every frame and segment."""
    import SimpleITK as sitk

    summary = json.loads((st_090 / "summary.json").read_text())
    ed, motion = summary["ed_frame"], summary["motion"]
    assert motion["ed_frame"] == ed and motion["folding_share_max"] < 0.005
    assert motion["inverse_error_mean_mm"] < 0.5
    ref = sitk.ReadImage(str(CINE))
    for f in range(12):
        for name in (f"to_ed_{f:02d}.nii.gz", f"from_ed_{f:02d}.nii.gz"):
            img = sitk.ReadImage(str(st_090 / "motion" / name), sitk.sitkVectorFloat64)
            assert img.GetSize() == ref.GetSize()[:3]
            np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing()[:3], rtol=1e-5)
            np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin()[:3], atol=1e-3)
            arr = sitk.GetArrayFromImage(img)
            assert (np.abs(arr).max() == 0) == (f == ed), (name, np.abs(arr).max())
    strain = pd.read_csv(st_090 / "strain.csv", dtype={"segment": str})
    assert list(strain.columns) == ["frame", "time", "segment", "radial_pct",
                                    "circumferential_pct", "longitudinal_pct"]
    assert len(strain) == 12 * 17
    assert set(strain["segment"]) == {*map(str, range(1, 17)), "global"}
    es = summary["es_frame"]
    g = strain[(strain["segment"] == "global") & (strain["frame"] == es)].iloc[0]
    assert g["circumferential_pct"] < 0 < g["radial_pct"]


def test_resample_reproduces_and_extends_without_fitting(st_090, tmp_path):
    assert main(["resample", str(st_090 / "subject.nimosef"), "--res-factor-z", "2",
                 "--out", str(tmp_path / "r2"), "--device", "cpu", "--progress", "none"]) == 0
    a, _ = load_nifti(st_090 / "seg_z2.nii.gz", ndim=4, dtype=np.uint8)
    b, _ = load_nifti(tmp_path / "r2" / "seg_z2.nii.gz", ndim=4, dtype=np.uint8)
    assert np.array_equal(a, b)
    assert main(["resample", str(st_090 / "subject.nimosef"), "--res-factor-z", "3",
                 "--out", str(tmp_path / "r3"), "--device", "cpu", "--progress", "none"]) == 0
    img, aff = load_nifti(CINE)
    s3, a3 = load_nifti(tmp_path / "r3" / "seg_z3.nii.gz", ndim=4, dtype=np.uint8)
    assert s3.shape == (154, 224, 21, 12)
    np.testing.assert_allclose(a3, resample_grid_z(aff, img.shape[:3], 3)[0])


def test_labels_are_refined_by_the_image_the_subject_file_keeps(st_090, tmp_path, capsys):
    summary = json.loads((st_090 / "summary.json").read_text())
    subj = read_subject_file(st_090 / "subject.nimosef")
    ref = summary["refinement"]
    # the prior's weight, gated by its agreement with the slice network (kept for resample)
    assert ref["beta_full"] == REFINE_BETA and ref["iterations"] == REFINE_ITERATIONS
    assert 0.0 <= ref["beta"] <= REFINE_BETA
    assert subj["refine_beta"] == pytest.approx(ref["beta"], abs=1e-4)
    # ... and by the bundled slice network, whose id the subject file keeps
    net_id = load_slice_net()[1]
    assert ref["slice_net"] == {"id": net_id, "gamma": SLICE_GAMMA}
    assert subj["slice_net_id"] == net_id and subj["slice_net_path"] is None
    # each slice's in-plane shift onto the image: kept in the subject file, within reach
    shift = np.array(ref["slice_shift_voxels"])
    assert shift.shape == (subj["crop_shape"][2], 2)
    np.testing.assert_array_equal(subj["slice_shift"].numpy(), shift)
    assert np.abs(shift).max() <= round(ref["slice_shift_max_mm"] / 1.78571)
    img, _ = load_nifti(CINE)
    (ox, oy, oz), (nx, ny, nz) = subj["crop_offset"], subj["crop_shape"]
    crop = np.moveaxis(img[ox:ox + nx, oy:oy + ny, oz:oz + nz], -1, 0)
    kept = subj["image_u8"].numpy()
    assert kept.shape == crop.shape and kept.dtype == np.uint8
    lo, hi = subj["intensity_range"]
    np.testing.assert_allclose(kept / 255, np.clip((crop - lo) / (hi - lo), 0, 1), atol=0.5 / 255)

    def resampled(subject, name, *extra, status=0):
        assert main(["resample", str(subject), "--res-factor-z", "2", "--out",
                     str(tmp_path / name), "--device", "cpu", "--progress", "none",
                     *extra]) == status
        if status:
            return None
        return load_nifti(tmp_path / name / "seg_z2.nii.gz", ndim=4, dtype=np.uint8)[0]

    refined, _ = load_nifti(st_090 / "seg_z2.nii.gz", ndim=4, dtype=np.uint8)
    raw = resampled(st_090 / "subject.nimosef", "raw", "--no-refine")
    # the refinement moves boundaries, not whole structures
    assert (raw != refined).mean() > 0.001
    assert dice(raw, refined, 1) > 0.8
    # resample samples the slices where segment-track did: without the shifts, other labels
    assert np.array_equal(resampled(st_090 / "subject.nimosef", "again"), refined)
    assert shift.any()  # patient090's slices do sit off the fast fit, by up to 3 voxels
    # without the slice network's probabilities, other labels; another network is refused
    write_subject_file(tmp_path / "no_net.nimosef", dict(subj, slice_net_id=None))
    assert not np.array_equal(resampled(tmp_path / "no_net.nimosef", "no_net"), refined)
    write_subject_file(tmp_path / "other_net.nimosef", dict(subj, slice_net_id="0123456789ab"))
    resampled(tmp_path / "other_net.nimosef", "other_net", status=2)
    assert "was refined with slice network 0123456789ab, not" in capsys.readouterr().err
    write_subject_file(tmp_path / "no_shift.nimosef", dict(subj, slice_shift=None))
    assert not np.array_equal(resampled(tmp_path / "no_shift.nimosef", "no_shift"), refined)
    write_subject_file(tmp_path / "bad_shift.nimosef", dict(subj, slice_shift=torch.zeros(3, 2)))
    resampled(tmp_path / "bad_shift.nimosef", "bad_shift", status=2)
    assert "bad_shift.nimosef: not a valid subject file: slice_shift has shape (3, 2)" \
        in capsys.readouterr().err
    # a subject file that keeps no image (written with --no-refine) gives the network's labels
    subj["image_u8"] = None
    write_subject_file(tmp_path / "no_image.nimosef", subj)
    assert np.array_equal(resampled(tmp_path / "no_image.nimosef", "no_image"), raw)
    # ... and one whose image does not fit its crop is refused
    subj["image_u8"] = torch.zeros((2, 3, 4, 5), dtype=torch.uint8)
    write_subject_file(tmp_path / "bad_image.nimosef", subj)
    resampled(tmp_path / "bad_image.nimosef", "bad", status=2)
    assert "bad_image.nimosef: not a valid subject file: image_u8 has shape (2, 3, 4, 5)" \
        in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_ed_es_pair_finds_the_lv_where_the_labels_say(tmp_path):
    frames = [P090 / "patient090_frame04.nii.gz", P090 / "patient090_frame11.nii.gz"]
    out = tmp_path / "pair"
    assert main(["segment-track", *map(str, frames), "--frame-numbers", "4", "11",
                 "--n-frames", "12", "--out", str(out), "--res-factor-z", "1", "--no-meshes",
                 *FAST]) == 0
    seg, _ = load_nifti(out / "seg.nii.gz", ndim=4, dtype=np.uint8)
    gt, _ = load_nifti(P090 / "patient090_frame04_gt.nii.gz", dtype=np.uint8)
    gt = remap_acdc_labels(gt)
    d = dice(seg[..., 0], gt, 1)
    chance = 2 * (gt == 1).mean() * (seg[..., 0] == 1).mean() / (
        (gt == 1).mean() + (seg[..., 0] == 1).mean())
    assert d > 0.5 and d > 20 * chance, (d, chance)
    vols = pd.read_csv(out / "volumes.csv")
    np.testing.assert_allclose(vols["time"], [0.0, 7 / 12], atol=1e-6)


def test_pose_hypotheses_fit_three_starting_poses_and_keep_the_best(tmp_path):
    """--pose-hypotheses 3: the rotation search's best, its runner-up and the best with a pose
    warm-up are each fitted in full; the lowest final loss wins, and the first is exactly
    what a run without the option fits."""
    frames = [str(P090 / "patient090_frame04.nii.gz"), str(P090 / "patient090_frame11.nii.gz")]
    summaries = {}
    for n in ("1", "3"):
        out = tmp_path / n
        assert main(["segment-track", *frames, "--frame-numbers", "4", "11", "--n-frames",
                     "12", "--out", str(out), "--res-factor-z", "1", "--no-meshes",
                     "--pose-hypotheses", n, "--fit-steps", "12", "--device", "cpu",
                     "--progress", "none"]) == 0
        summaries[n] = json.loads((out / "summary.json").read_text())
    rot = summaries["3"]["localisation"]["rotation_search_loss"]
    ranked = sorted(rot, key=rot.get)
    hyps = summaries["3"]["fit"]["pose_hypotheses"]
    assert [(h["rotation_deg"], h["pose_warmup_steps"]) for h in hyps] == [
        (int(ranked[0]), 0), (int(ranked[1]), 0), (int(ranked[0]), POSE_WARMUP_STEPS)]
    chosen = [h for h in hyps if h["chosen"]]
    assert len(chosen) == 1 and chosen[0]["final_loss"] == min(h["final_loss"] for h in hyps)
    assert summaries["3"]["fit"]["final_loss"] == chosen[0]["final_loss"]
    single = summaries["1"]["fit"]["pose_hypotheses"]
    assert len(single) == 1 and single[0] == {**hyps[0], "chosen": True}
    assert main(["segment-track", *frames, "--out", str(tmp_path / "bad"),
                 "--pose-hypotheses", "4", "--progress", "none"]) == 2
    assert not (tmp_path / "bad").exists()


def test_evaluate_scores_segment_track_against_the_labels_it_never_saw(tmp_path):
    """nimosef evaluate --layout acdc: Segment & Track of the ED/ES pair, Dice and EF error
    per patient, the chosen starting pose, and the summary; a missing patient is refused."""
    out = tmp_path / "eval"
    assert main(["evaluate", "--layout", "acdc", "--root", str(DATA / "acdc"), "--subjects",
                 "patient090", "--out", str(out), "--quality", "fast", "--fit-steps", "40",
                 "--device", "cpu", "--progress", "none"]) == 0
    row = pd.read_csv(out / "per_subject.csv").iloc[0]
    assert row["subject"] == "patient090" and row["group"] == "RV"
    assert 0.5 < row["dice_LV"] <= 1 and 0 <= row["dice_MYO"] <= 1
    assert row["dice_LV"] == pytest.approx((row["dice_LV_ED"] + row["dice_LV_ES"]) / 2)
    assert row["pose_hypothesis"] == 0 and row["fit_loss"] > 0
    assert abs(row["LV_EF_pred"] - row["LV_EF_gt"]) == pytest.approx(row["LV_EF_abs_err"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_subjects"] == 1 and summary["mean_dice_LV"] == round(row["dice_LV"], 4)
    # tracking: the expert ED labels carried to ES through the engine's own to_ed field
    assert row["track_dice_mean"] > row["identity_dice_mean"] + 0.1
    assert row["track_folding_pct"] < 0.5 and row["track_hd95_LV"] > 0
    assert row["peak_global_circumferential_strain_pct"] < 0
    assert summary["mean_track_dice_mean"] == round(row["track_dice_mean"], 4)
    assert main(["evaluate", "--layout", "acdc", "--root", str(DATA / "acdc"), "--subjects",
                 "patient999", "--out", str(tmp_path / "none"), "--progress", "none"]) == 2
    assert not (tmp_path / "none").exists()


def test_sunnybrook_dicom_cine(tmp_path):
    out = tmp_path / "sb"
    assert main(["segment-track", str(SUNNY), "--out", str(out), "--res-factor-z", "1",
                 "--no-meshes", *FAST]) == 0
    seg, aff = load_nifti(out / "seg.nii.gz", ndim=4, dtype=np.uint8)
    assert seg.shape == (256, 256, 3, 20)
    # voxel (0,0,0) is the first slice's ImagePositionPatient, LPS -> RAS
    np.testing.assert_allclose(aff[:3, 3], [-209.708, 11.0335, 121.848], atol=1e-3)
    vols = pd.read_csv(out / "volumes.csv")
    assert vols["time_ms"].notna().all() and vols["time_ms"].is_monotonic_increasing
    assert (seg == 1).sum() > 0


def test_same_seed_same_segmentation(tmp_path):
    frames = [str(P090 / "patient090_frame04.nii.gz"), str(P090 / "patient090_frame11.nii.gz")]
    segs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["segment-track", *frames, "--out", str(out), "--res-factor-z", "1",
                     "--no-meshes", "--seed", "3", "--quality", "fast", "--fit-steps", "15",
                     "--device", "cpu", "--progress", "none"]) == 0
        segs.append(load_nifti(out / "seg.nii.gz", ndim=4, dtype=np.uint8)[0])
    assert np.array_equal(segs[0], segs[1])


def test_existing_output_and_concurrent_run_are_refused(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["segment-track", str(CINE), "--out", str(out), *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"
    # --overwrite replaces only segment-track's own outputs: a folder with others is refused
    assert main(["segment-track", str(CINE), "--out", str(out), "--overwrite", *FAST]) == 2
    assert "holds files segment-track did not write (keep.txt)" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["keep.txt"]
    # ... and so is one that holds the input
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "cine.nii.gz").write_bytes(CINE.read_bytes())
    assert main(["segment-track", str(inside / "cine.nii.gz"), "--out", str(inside),
                 "--overwrite", *FAST]) == 2
    assert "holds the input" in capsys.readouterr().err
    assert (inside / "cine.nii.gz").read_bytes() == CINE.read_bytes()
    # a lock held by a running process (this one) keeps another run out
    lock = tmp_path / "new.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert main(["segment-track", str(CINE), "--out", str(tmp_path / "new"), *FAST]) == 2
    assert "another segment-track run" in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and lock.exists()


def test_sigint_cancels_promptly_and_leaves_nothing(tmp_path):
    out = tmp_path / "cancelled"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimosef_engine", "segment-track", str(CINE), "--out", str(out),
         "--quality", "fast", "--fit-steps", "100000", "--device", "cpu", "--progress", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stages = []
    for line in proc.stdout:
        msg = json.loads(line)
        assert set(msg) == {"stage", "fraction", "message"}
        stages.append(msg["stage"])
        if msg["stage"] == "fit":
            break
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=60)
    assert rc == 130 and time.monotonic() - t0 < 2  # checked at every fitting step
    assert stages[:2] == ["load", "localise"]
    assert os.listdir(tmp_path) == []


def _write(path: Path, data: np.ndarray, zooms=(1.5, 1.5, 8.0, 1.0)) -> Path:
    img = nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0]))
    img.header.set_zooms(zooms[: data.ndim])
    nib.save(img, str(path))
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    rng = np.random.default_rng(0)
    cine = np.asarray(nib.load(str(CINE)).dataobj, dtype=np.float32)
    nan = cine[..., :3].copy()
    nan[5, 5, 2, 1] = np.nan
    trunc = tmp / "trunc.nii.gz"
    trunc.write_bytes(CINE.read_bytes()[:5000])
    (tmp / "nodicom").mkdir()
    (tmp / "nodicom" / "a.dcm").write_bytes(b"\0" * 300)
    return {
        "unreadable": ([str(trunc)], "trunc.nii.gz"),
        "2d": ([str(_write(tmp / "2d.nii.gz", cine[:, :, 0, 0]))], "2D"),
        "single frame": ([str(_write(tmp / "one.nii.gz", cine[..., :1]))], "frame"),
        "mismatched frames": ([str(_write(tmp / "f1.nii.gz", cine[..., 0])),
                               str(_write(tmp / "f2.nii.gz", cine[:100, :, :, 1]))], "shape"),
        "dicom folder without a cine": ([str(tmp / "nodicom")], "nodicom"),
        "nan": ([str(_write(tmp / "nan.nii.gz", nan))], "NaN"),
        "output under a file": ([str(CINE)], "is a file"),
        "no heart": ([str(_write(tmp / "noise.nii.gz",
                                 rng.random((120, 120, 8, 6)).astype(np.float32)))], "heart"),
    }


def test_bad_inputs_give_a_clear_error_and_no_output(tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    for name, (inputs, needle) in cases.items():
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        if name == "output under a file":
            out = tmp_path / "a_file" / "out"
        rc = main(["segment-track", *inputs, "--out", str(out), *FAST])
        err = capsys.readouterr().err
        assert rc == 2, (name, err)
        assert needle.lower() in err.lower(), (name, err)
        assert err.count("\n") == 1, (name, err)
        assert not out.exists(), name
        assert not Path(str(out) + ".lock").exists(), name


def test_pose_hypotheses_rank_the_rotation_search():
    losses = {0: 0.70, 45: 0.67, 90: 0.80, 315: 0.77}
    assert pose_hypotheses(losses, 1) == [(45, 0)]
    assert pose_hypotheses(losses, 3) == [(45, 0), (0, 0), (45, POSE_WARMUP_STEPS)]
    # no rotation search (--rv-point, or quality fast): the localised frame, then its warm-up
    assert pose_hypotheses({}, 3) == [(0, 0), (0, POSE_WARMUP_STEPS)]


def test_cycle_alignment_maps_systole_and_mirrors_diastole():
    tau = np.arange(12) / 12  # ED at 0, ES at 5/12
    t = align_to_systole(tau, 5 / 12, 0.37)
    np.testing.assert_allclose(t[:6], np.arange(6) / 5 * 0.37)  # systole stretched linearly
    assert t[5] == pytest.approx(0.37) and t.max() == pytest.approx(0.37)
    assert np.all(np.diff(t[5:]) < 0)  # relaxation runs back towards ED
    assert t[11] == pytest.approx(0.37 * (1 / 12) / (7 / 12))
    np.testing.assert_allclose(align_to_systole(tau, 0.0, 0.37), tau)  # no ES: unchanged
