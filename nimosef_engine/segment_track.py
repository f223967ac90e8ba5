"""Segment & Track a new cine with no labels: the job the Slicer module runs.

Stages: load the cine -> find the heart and its axes (:mod:`localise`) -> crop and normalise
-> fit the subject's code (and a pose) with the prior frozen -> align each slice in-plane
with the image (breath-hold offsets) -> sample segmentation, intensity and motion -> refine
the labels by the image and clean them up -> meshes, motion table, volumes, summary, report.
Everything is written into a temporary folder beside ``out_dir`` and renamed at the end, so a
cancel or an error leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nimosef_engine import LABEL_NAMES, __version__
from nimosef_engine.atomic import atomic_path, atomic_write_text
from nimosef_engine.data.preprocess import crop_last3, normalise_intensity, roi_box_at
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.device import resolve_device
from nimosef_engine.errors import NimosefInputError
from nimosef_engine.fit import FitConfig, fit_subject, rotation_search_losses
from nimosef_engine.generate import boundary_table, displacement_table
from nimosef_engine.geometry import (
    HeartFrame,
    crop_affine,
    ras_to_voxel,
    resample_grid_z,
    rotation_about_z,
    spacing_of,
)
from nimosef_engine.io.cine import Cine, load_cine
from nimosef_engine.io.nifti_stream import NiftiFrameWriter
from nimosef_engine.localise import localise_heart
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.metrics import cardiac_indices, volumes_ml
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint, prior_id
from nimosef_engine.outputs import check_output_folder, is_segment_track_output, output_lock
from nimosef_engine.progress import ProgressReporter, ShareReporter
from nimosef_engine.quality import class_agreement, lv_enclosed, lv_slices, verdict
from nimosef_engine.refine import (
    MAX_SLICE_SHIFT_MM,
    REFINE_BETA,
    REFINE_ITERATIONS,
    SLICE_GAMMA,
    final_labels,
    image_on_grid,
    quantise_image,
    slice_shifts,
)
from nimosef_engine.sample import (
    DEFAULT_MEMORY_BUDGET_GB,
    crop_grid,
    embed_frame,
    frame_bytes,
    iter_frames,
    plan_chunk,
    slice_shift_ras,
)
from nimosef_engine.segment_track_checks import check_cine, check_options
from nimosef_engine.slice_likelihood import SliceEvidence
from nimosef_engine.subject_file import write_subject_file

log = logging.getLogger(__name__)

BUNDLED_PRIOR = Path(__file__).resolve().parent / "priors" / "acdc_prior.pt"
QUALITY = {  # fitting presets: steps multiplier, restarts, pose refinement, points per step,
    # in-plane rotations (degrees) tried around the localised LV -> RV axis, short-fit steps each
    "fast": {"steps_scale": 0.5, "restarts": 1, "pose": False, "n_points": 3000,
             "rotations": (0,), "rotation_steps": 0},
    "standard": {"steps_scale": 1.0, "restarts": 1, "pose": True, "n_points": 4000,
                 "rotations": (0, 45, 90, 135, 180, 225, 270, 315), "rotation_steps": 25},
    "thorough": {"steps_scale": 2.0, "restarts": 3, "pose": True, "n_points": 6000,
                 "rotations": tuple(range(0, 360, 30)), "rotation_steps": 40},
}
ROTATION_POINTS = 2000  # points per step of the rotation search's short fits
POSE_WARMUP_STEPS = 60  # the third starting pose: pose alone for this many steps first
MAX_POSE_HYPOTHESES = 3
STAGES = ("load", "localise", "fit", "align", "sample", "meshes", "motion", "write")
MIN_LOCALISATION_CONFIDENCE = 0.3  # noise scores ~0.16, the least certain ACDC cine 0.53
PRIOR_GATE = (0.5, 0.7)  # prior / slice-network agreement over which the prior's weight rises


@dataclass
class SegmentTrackOptions:
    prior: str | None = None
    res_factor_z: int = 2
    device: str = "auto"
    seed: int = 0
    quality: str = "standard"
    fit_steps: int | None = None
    roi_mm: float = 160.0
    clean: bool = True
    refine: bool = True  # label maps refined by the image's intensities (:mod:`refine`)
    slice_net: bool = True  # ... and by the slice network (:mod:`slice_likelihood`)
    slice_net_path: str | None = None  # its checkpoint (None: the bundled one)
    meshes: bool = True
    overwrite: bool = False
    frame_times: list[float] | None = None
    frame_numbers: list[int] | None = None
    n_frames: int | None = None
    series: str | None = None
    lv_center: list[float] | None = None
    rv_point: list[float] | None = None
    ed_frame: int | None = None
    pose_hypotheses: int = 1  # starting poses fitted in full, the lowest loss kept (1-3)
    force: bool = False  # keep a result whose quality verdict is "fail"
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB

    def to_dict(self) -> dict:
        return asdict(self)


def load_prior(prior: str | Path | None, device) -> tuple[dict, torch.nn.Module, str]:
    path = Path(prior) if prior else BUNDLED_PRIOR
    if not prior and not path.is_file():
        raise NimosefInputError(path, "the bundled prior is missing from this installation")
    ckpt = load_checkpoint(path, need=("code_mean",))
    return ckpt, model_from_checkpoint(ckpt, device), prior_id(ckpt)


def rotated_frame(frame: HeartFrame, degrees: float) -> HeartFrame:
    """``frame`` turned by ``degrees`` about its long axis (z)."""
    return HeartFrame(frame.origin_ras, frame.rotation @ rotation_about_z(degrees),
                      frame.scale_mm)


def choose_rotation(net, ckpt: dict, sd: SubjectData, opts, preset: dict, device,
                    reporter: ProgressReporter) -> tuple[HeartFrame, dict[int, float]]:
    """Try in-plane rotations of ``sd``'s localised heart frame; keep the one whose short fit
    explains the intensities best (lowest loss). The image-only LV -> RV direction is off by
    more than 45 degrees in a few percent of cines; the prior's intensity model tells.
    All rotations are fitted together (:func:`fit.rotation_search_losses`)."""
    angles = preset["rotations"]
    if len(angles) == 1 or opts.rv_point is not None:
        return sd.heart, {}
    found = rotation_search_losses(net, subject_tensors(sd, device), angles,
                                   preset["rotation_steps"], ROTATION_POINTS,
                                   ckpt["code_mean"].to(device), seed=opts.seed,
                                   reporter=reporter)
    losses = {int(a): round(v, 5) for a, v in zip(angles, found, strict=True)}
    best = min(losses, key=losses.get)
    return rotated_frame(sd.heart, best), losses


def pose_hypotheses(rotation_losses: dict[int, float], n: int) -> list[tuple[int, int]]:
    """Starting poses to fit in full, as (rotation in degrees, pose warm-up steps): the
    rotation search's best; its runner-up (the short fits misrank rotations a few tens of
    degrees apart); the best again with the mean shape moved into place before it is
    reshaped (:attr:`FitConfig.pose_warmup`). The first ``n`` of these."""
    ranked = sorted(rotation_losses, key=rotation_losses.get) or [0]
    hyps = [(ranked[0], 0)]
    if len(ranked) > 1:
        hyps.append((ranked[1], 0))
    hyps.append((ranked[0], POSE_WARMUP_STEPS))
    return hyps[:n]


def fit_hypotheses(net, ckpt: dict, sd: SubjectData, hyps: list[tuple[int, int]],
                   cfg: FitConfig, device, reporter: ProgressReporter):
    """Fit ``sd`` from each starting pose of ``hyps`` (rotations of ``sd.heart``); keep the
    fit that explains the intensities best (lowest final loss). Returns the fit, ``sd`` in
    its heart frame, and one row per hypothesis."""
    best = None
    rows = []
    for i, (angle, warm) in enumerate(hyps):
        cand = replace(sd, heart=rotated_frame(sd.heart, angle))
        share = ShareReporter(reporter, i / len(hyps), (i + 1) / len(hyps),
                              f"pose {i + 1}/{len(hyps)}, " if len(hyps) > 1 else "")
        res = fit_subject(net, subject_tensors(cand, device), replace(cfg, pose_warmup=warm),
                          ckpt["code_mean"].to(device), reporter=share)
        rows.append({"rotation_deg": int(angle), "pose_warmup_steps": int(warm),
                     "final_loss": round(res.final_loss, 5)})
        if best is None or res.final_loss < best[0].final_loss:
            best = (res, cand, i)
    for i, row in enumerate(rows):
        row["chosen"] = i == best[2]
    return best[0], best[1], rows


def cycle_times_from_ed(cine: Cine, ed_index: int, es_index: int | None = None,
                        es_model_time: float | None = None) -> np.ndarray:
    """Model time of each frame: the cine's cycle fraction relative to end-diastole, in [0,1).

    With ``es_index`` and ``es_model_time`` (a prior trained on ED and ES frames only, which
    knows systole and nothing after it), the cycle is aligned on its ED and ES landmarks: see
    :func:`align_to_systole`.
    """
    tau = np.mod(np.asarray(cine.frame_times, np.float64) - cine.frame_times[ed_index], 1.0)
    if es_index is not None and es_model_time is not None and 0 <= es_index < len(tau):
        tau = align_to_systole(tau, float(tau[es_index]), es_model_time)
    return tau.astype(np.float32)


def cycle_model_times(cine: Cine, ckpt: dict, ed_index: int,
                      es_index: int) -> tuple[np.ndarray, int | None]:
    """Model time of each frame of ``cine`` for the prior ``ckpt``, and the ES frame the cycle
    was aligned on (None if not). A prior trained on ED and ES frames only knows systole: the
    cycle is aligned on ED and the localised ES (:func:`cycle_times_from_ed`) when the
    checkpoint says so and ``es_index`` is a frame other than ED."""
    es_time = ckpt.get("es_time_mean") if ckpt.get("time_coverage") == "ed_es" else None
    es_model = es_index if (es_time and es_index not in (-1, ed_index)) else None
    return cycle_times_from_ed(cine, ed_index, es_model, es_time), es_model


def align_to_systole(tau: np.ndarray, tau_es: float, es_model_time: float) -> np.ndarray:
    """Cycle fractions ``tau`` (0 = ED) -> model times, piecewise linear on the ED and ES
    landmarks: systole ``[0, tau_es]`` onto ``[0, es_model_time]`` (the mean ES time of the
    prior's training subjects), then diastole back from ``es_model_time`` to 0 at the next ED
    (relaxation as contraction reversed), so every model time lies where the prior was trained.
    """
    tau = np.asarray(tau, np.float64)
    if not 0.0 < tau_es < 1.0:
        return tau
    return np.where(tau <= tau_es, tau / tau_es * es_model_time,
                    es_model_time * (1.0 - tau) / (1.0 - tau_es))


def subject_from_cine(cine: Cine, heart: HeartFrame, roi_center_ras, frame_times: np.ndarray,
                      roi_mm: float, source: str) -> SubjectData:
    """Crop ``roi_mm`` around ``roi_center_ras`` and normalise as in preprocessing;
    ``frame_times`` the model time of each frame (:func:`cycle_times_from_ed`)."""
    from nimosef_engine.data.preprocess import intensity_percentiles

    lo_hi = intensity_percentiles(cine.frames, source)
    centre = ras_to_voxel(cine.affine_ras, np.asarray(roi_center_ras)[None])[0]
    offset, shape = roi_box_at(centre, cine.shape, cine.affine_ras, roi_mm)
    return SubjectData(
        subject_id="subject",
        intensity=np.ascontiguousarray(normalise_intensity(
            crop_last3(cine.frames, offset, shape), lo_hi)),
        frame_times=np.asarray(frame_times, np.float32),
        crop_affine_ras=crop_affine(cine.affine_ras, offset),
        heart=heart, frame_indices=np.asarray(cine.frame_indices, np.int32),
        n_frames_cycle=int(cine.n_frames_cycle), source_shape=tuple(cine.shape),
        crop_offset=tuple(int(o) for o in offset),
        source_affine_ras=np.asarray(cine.affine_ras), intensity_range=lo_hi)


def segment_track(inputs, out_dir, reporter: ProgressReporter | None = None,
                  **options) -> dict:
    """Run Segment & Track on a cine (see module docstring); returns the summary dict."""
    opts = SegmentTrackOptions(**options)
    reporter = reporter or ProgressReporter()
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in ([inputs] if isinstance(inputs, str | Path) else inputs)]
    check_options(opts)  # before any work: numbers in range, prior and slice network readable
    check_output_folder(out_dir, inputs, opts.overwrite)  # never the input or others' files
    with output_lock(out_dir), atomic_path(out_dir, is_segment_track_output) as tmp:
        tmp.mkdir()
        summary = _run(inputs, tmp, opts, reporter)
    reporter.close()
    return summary


def _run(inputs: list[Path], out: Path, opts: SegmentTrackOptions,
         reporter: ProgressReporter) -> dict:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    source = ", ".join(str(p) for p in inputs)
    torch.manual_seed(opts.seed)
    device = resolve_device(opts.device)

    reporter.update("load", 0.0, "reading the cine")
    cine = load_cine(inputs, frame_times=opts.frame_times, frame_numbers=opts.frame_numbers,
                     n_frames=opts.n_frames, series=opts.series)
    check_cine(cine, opts, source)
    ckpt, net, pid = load_prior(opts.prior, device)
    check_memory_budget(cine, net, opts)
    timings["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    reporter.update("localise", 0.0, "finding the heart")
    pose = localise_heart(cine.frames, cine.affine_ras, lv_center_ras=opts.lv_center,
                          rv_point_ras=opts.rv_point,
                          scale_mm=float(ckpt.get("norm_scale_mm", 100.0)), source=source)
    if pose.confidence < MIN_LOCALISATION_CONFIDENCE and opts.lv_center is None:
        raise NimosefInputError(source, "no heart found in the image (localisation confidence "
                                        f"{pose.confidence:.2f}); give --lv-center x y z")
    ed_index = pose.ed_index if opts.ed_frame is None else int(opts.ed_frame)
    if not 0 <= ed_index < cine.n_frames:
        raise NimosefInputError("--ed-frame", f"must be in 0..{cine.n_frames - 1}")
    preset = QUALITY[opts.quality]
    times, es_model = cycle_model_times(cine, ckpt, ed_index, pose.es_index)
    sd = subject_from_cine(cine, pose.frame, pose.roi_center_ras, times, opts.roi_mm, source)
    _, rotation_losses = choose_rotation(net, ckpt, sd, opts, preset, device, reporter)
    timings["localise"] = time.perf_counter() - t

    t = time.perf_counter()
    base_steps = int((ckpt.get("fit_defaults") or {}).get("steps", FitConfig.steps))
    steps = opts.fit_steps if opts.fit_steps is not None \
        else max(1, int(round(base_steps * preset["steps_scale"])))
    fit_cfg = FitConfig(steps=steps, n_points=preset["n_points"], pose=preset["pose"],
                        restarts=preset["restarts"], seed=opts.seed)
    res, sd, hypotheses = fit_hypotheses(
        net, ckpt, sd, pose_hypotheses(rotation_losses, int(opts.pose_hypotheses)), fit_cfg,
        device, reporter)
    code, pose_m = res.code, res.pose_matrix.cpu()
    timings["fit"] = time.perf_counter() - t

    f = int(opts.res_factor_z)
    image = quantise_image(sd.intensity) if opts.refine else None
    t = time.perf_counter()
    evidence = SliceEvidence.load(opts.slice_net_path, device, sd) \
        if image is not None and opts.slice_net else None
    shift = None if image is None else align_slices(
        net, code, pose_m, sd, image, [ed_index, pose.es_index], device, reporter, evidence)
    agreement = None if evidence is None else prior_slice_agreement(
        net, code, pose_m, sd, image, [ed_index, pose.es_index], device, shift, evidence)
    beta = refine_beta(agreement)
    timings["align"] = time.perf_counter() - t
    seg1, vols = sample_and_write(net, code, pose_m, sd, cine, out, opts, device, reporter,
                                  timings, image, shift, evidence, beta)
    t = time.perf_counter()
    tms = cine.trigger_times_ms
    dt_ms = frame_spacing_ms(tms)
    cycle_ms = float(tms[-1] + dt_ms - tms[0]) if dt_ms else None
    volumes = pd.DataFrame({
        "frame": np.arange(sd.n_frames),
        "time": np.asarray(cine.frame_times, np.float64),
        "time_ms": tms if tms is not None else np.full(sd.n_frames, np.nan),
        "LV_mL": [v["LV"] for v in vols], "MYO_mL": [v["MYO"] for v in vols],
        "RV_mL": [v["RV"] for v in vols]})
    with atomic_path(out / "volumes.csv") as p:
        volumes.to_csv(p, index=False)
    if volumes["LV_mL"].max() <= 0:
        raise NimosefInputError(source, "no left ventricle was segmented: the image may not "
                                        "show a short-axis view of the heart")
    idx = cardiac_indices(volumes["LV_mL"], volumes["RV_mL"], volumes["MYO_mL"],
                          frame_times=volumes["time"].to_numpy(), cycle_ms=cycle_ms)
    quality = assess_quality(pose.confidence, res.final_loss, agreement or {}, vols, seg1,
                             idx)
    if quality["verdict"] == "fail" and not opts.force:
        raise NimosefInputError(source, "the result fails its quality check ("
                                + "; ".join(quality["reasons"]) + "); --force keeps it")
    if quality["verdict"] != "ok":
        log.warning("quality %s: %s", quality["verdict"], "; ".join(quality["reasons"]))

    # motion of the ED boundary, in RAS mm
    bt = boundary_table(seg1[[ed_index]], crop_grid(sd, 1)[0], [0.0])
    pts = bt[["x", "y", "z"]].to_numpy()
    disp = displacement_table(net, code, sd.heart, pts, bt["label"].to_numpy(), sd.frame_times,
                              None, device, pose_m,
                              slice_shift_ras(pts, crop_grid(sd, 1)[0], shift))
    disp["time"] = np.asarray(cine.frame_times)[disp["frame"].to_numpy()]
    motion = disp[["frame", "time", "label", "x", "y", "z", "ux", "uy", "uz", "x0", "y0", "z0"]]
    with atomic_path(out / "motion.parquet") as p:
        motion.to_parquet(p, index=False)
    timings["write"] += time.perf_counter() - t
    t = time.perf_counter()
    from nimosef_engine.motion.track import track_motion

    dense_motion, strain = track_motion(net, code, sd, seg1, int(idx["ed_index"]), out,
                                        cine.frame_times, pose_m, shift, device, reporter)
    timings["motion"] = time.perf_counter() - t
    t = time.perf_counter()

    subject = {
        "code": code.cpu(), "pose_matrix": pose_m,
        "heart_frame": sd.heart.to_dict(), "prior_id": pid,
        "prior_path": str(Path(opts.prior).resolve()) if opts.prior else None,
        "input_affine_ras": np.asarray(cine.affine_ras).tolist(),
        "input_shape": list(cine.shape), "crop_offset": list(sd.crop_offset),
        "image_u8": None if image is None else torch.from_numpy(image),
        "slice_shift": None if shift is None else torch.from_numpy(shift),
        "slice_net_id": None if evidence is None else evidence.net_id,
        "refine_beta": beta,
        "slice_net_path": str(Path(opts.slice_net_path).resolve())
        if evidence is not None and opts.slice_net_path else None,
        "crop_shape": list(sd.grid_shape), "intensity_range": list(sd.intensity_range),
        "model_times": [float(x) for x in sd.frame_times],
        "frame_times": [float(x) for x in cine.frame_times],
        "time_ms": None if tms is None else [float(x) for x in tms],
        "engine_version": __version__, "source": source,
    }
    write_subject_file(out / "subject.nimosef", subject)

    from nimosef_engine.plots import plot_report

    plot_report(cine, seg1, sd, volumes, idx, out / "report.png", strain, quality)
    timings["write"] += time.perf_counter() - t
    summary = {
        "ed_frame": int(idx["ed_index"]), "es_frame": int(idx["es_index"]),
        "localised_ed_frame": int(ed_index),
        "localised_es_frame": int(pose.es_index),
        "model_times": [round(float(x), 4) for x in sd.frame_times],
        "time_model": "aligned on ED and ES, diastole as systole reversed (the prior was "
                      "trained on ED and ES frames)"
                      if es_model is not None else "cycle fraction from ED",
        **{k: _num(v) for k, v in idx.items() if k not in ("ed_index", "es_index")},
        "n_frames": int(sd.n_frames), "res_factor_z": f,
        "runtime_s": round(time.perf_counter() - t0, 2), "stage_seconds":
            {k: round(v, 2) for k, v in timings.items()},
        "device": str(device), "prior_id": pid, "input": source, "engine_version": __version__,
        "localisation": {"confidence": round(float(pose.confidence), 3), "notes": pose.notes,
                         "rotation_search_loss": rotation_losses},
        "fit": {"steps": steps, "final_loss": round(res.final_loss, 5), "quality": opts.quality,
                "pose_hypotheses": hypotheses},
        "refinement": {"beta": round(beta, 4), "beta_full": REFINE_BETA,
                       "prior_gate": list(PRIOR_GATE), "iterations": REFINE_ITERATIONS,
                       "slice_shift_voxels": shift.tolist(),
                       "slice_shift_max_mm": MAX_SLICE_SHIFT_MM,
                       "slice_net": None if evidence is None else
                       {"id": evidence.net_id, "gamma": SLICE_GAMMA}}
        if shift is not None else None,
        "quality": quality,
        "motion": dense_motion,
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "disclaimer": "Research software, not a medical device.",
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    atomic_write_text(out / "config.json", json.dumps(
        {"inputs": [str(p) for p in inputs], **opts.to_dict(), "fit": fit_cfg.to_dict()},
        indent=1))
    reporter.update("write", 1.0, "done")
    return summary


def assess_quality(confidence: float, fit_loss: float,
                   agreement: dict[int, dict[str, float]], vols: list[dict],
                   seg1: np.ndarray, idx: dict) -> dict:
    """The result's quality (:mod:`quality`): ``{verdict, reasons, signals}`` from the
    localisation confidence, the fit's final loss, the prior / slice network agreement per
    frame (the lowest per class is kept), the native labels ``seg1 (T, x, y, z)`` and the
    per-frame volumes ``vols`` at the ED frame of the cardiac indices ``idx``."""
    ed = int(idx["ed_index"])
    low = {c: float(np.nanmin([a[c] for a in agreement.values()])) if agreement else None
           for c in ("LV", "MYO", "RV")}
    signals = {"localisation_confidence": round(float(confidence), 3),
               "fit_loss": round(float(fit_loss), 5),
               "agreement": {c: None if v is None or not np.isfinite(v) else round(v, 3)
                             for c, v in low.items()} if agreement else None,
               "ed_volumes_ml": {c: round(float(vols[ed][c]), 2) for c in ("LV", "MYO", "RV")},
               "lv_slices": lv_slices(seg1[ed]), "lv_enclosed": _num(lv_enclosed(seg1[ed])),
               **{k: _num(idx[k]) for k in ("LV_EDV_mL", "RV_EDV_mL", "LV_EF_pct",
                                            "RV_EF_pct", "MYO_mass_g")}}
    return {**verdict(signals), "signals": signals}


def frame_spacing_ms(trigger_ms) -> float | None:
    """Median time between frames (ms), or None without trigger times."""
    if trigger_ms is None or len(trigger_ms) < 2:
        return None
    return float(np.median(np.diff(trigger_ms)))


def output_frame_bytes(crop_shape, source_shape, factor: int, meshes: bool,
                       n_frames: int, refine: bool = False) -> int:
    """Memory (bytes) :func:`sample_and_write` holds besides the network's chunk: one frame at
    z factor ``factor`` (with probabilities for meshes or refinement), one at the native
    resolution, the native crop labels of all ``n_frames`` (kept for the motion table and the
    report) and, with ``refine``, the uint8 image of all frames."""
    crop, src = int(np.prod(crop_shape)), int(np.prod(source_shape))
    nbytes = frame_bytes(crop * factor, src * factor, probs=meshes, refine=refine)
    if factor > 1:
        nbytes += frame_bytes(crop, src, refine=refine)
    return nbytes + n_frames * crop * (2 if refine else 1)


def check_memory_budget(cine: Cine, net, opts: SegmentTrackOptions) -> None:
    """Refuse a budget too small for one frame of output now rather than after fitting: what
    is in use after loading, plus the normalised crop and its fitting tensors (float32, all
    frames), plus :func:`output_frame_bytes`. :func:`sample_and_write` checks again."""
    _, crop_shape = roi_box_at((0, 0, 0), cine.shape, cine.affine_ras, opts.roi_mm)
    held_for_fit = 2 * 4 * cine.n_frames * int(np.prod(crop_shape))
    plan_chunk(opts.memory_budget_gb, net, held_for_fit + output_frame_bytes(
        crop_shape, cine.shape, int(opts.res_factor_z), opts.meshes, cine.n_frames,
        opts.refine))


def align_slices(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                 image: np.ndarray, frames: list[int], device,
                 reporter: ProgressReporter | None = None,
                 evidence: SliceEvidence | None = None) -> np.ndarray:
    """In-plane shift of each slice (``(Z, 2)`` voxels, :func:`refine.slice_shifts`) that aligns
    the fitted model with the image ``(T, x, y, z)`` uint8 (and with the slice network's
    probabilities of it, ``evidence``), from the native-resolution class probabilities of
    ``frames`` (the localised ED and ES; invalid or repeated ones dropped)."""
    use = sorted({int(i) for i in frames if 0 <= int(i) < sd.n_frames}) or [0]
    if reporter is not None:
        reporter.update("align", 0.0, "aligning the slices with the image")
    probs = [fr.probs.copy() for fr in iter_frames(net, code, sd, 1, device, pose_m,
                                                   probs=True, frames=use)]
    shift = slice_shifts([image_on_grid(image[i], 1) for i in use], probs,
                         spacing_of(sd.crop_affine_ras)[:2],
                         slice_probs=None if evidence is None else
                         [evidence.frame(image[i]) for i in use])
    if reporter is not None:
        reporter.update("align", 1.0, f"{int(shift.any(1).sum())} of {len(shift)} slices "
                                      "shifted")
    return shift


def prior_slice_agreement(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                          image: np.ndarray, frames: list[int], device,
                          shift: np.ndarray | None,
                          evidence: SliceEvidence) -> dict[int, dict[str, float]]:
    """For each of ``frames`` (invalid or repeated ones dropped), the Dice per class between
    the fitted prior's labels (its argmax, slices shifted by ``shift``) and the slice
    network's reading of the image ``(T, x, y, z)`` uint8 (:func:`quality.class_agreement`):
    how far the population model and the image evidence agree on this heart."""
    use = sorted({int(i) for i in frames if 0 <= int(i) < sd.n_frames}) or [0]
    return {fr.index: class_agreement(fr.probs.argmax(0), evidence.frame(image[fr.index])
                                      .argmax(0))
            for fr in iter_frames(net, code, sd, 1, device, pose_m, probs=True, frames=use,
                                  slice_shift=shift)}


def refine_beta(agreement: dict[int, dict[str, float]] | None, beta: float = REFINE_BETA,
                gate: tuple[float, float] = PRIOR_GATE) -> float:
    """The prior's weight in the refinement: ``beta`` where the prior and the slice network
    agree (mean class Dice over the frames of ``agreement`` at or above ``gate[1]``, as on
    every ACDC heart), falling linearly to 0 at ``gate[0]``. A heart unlike the prior's
    training population (another centre, an unusual shape) is read from the image rather than
    pulled towards the population's shape. ``beta`` without an agreement (no slice network)."""
    if not agreement:
        return float(beta)
    a = float(np.nanmean([np.nanmean(list(v.values())) for v in agreement.values()]))
    lo, hi = gate
    return float(beta) * float(np.clip((a - lo) / (hi - lo), 0.0, 1.0)) if np.isfinite(a) \
        else float(beta)


def sample_and_write(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                     cine: Cine, out: Path, opts: SegmentTrackOptions, device,
                     reporter: ProgressReporter, timings: dict[str, float],
                     image: np.ndarray | None = None,
                     shift: np.ndarray | None = None,
                     evidence: SliceEvidence | None = None,
                     beta: float = REFINE_BETA) -> tuple[np.ndarray, list[dict]]:
    """Frame by frame: sample at the native resolution and at z factor F (each slice shifted
    in-plane by ``shift``, :func:`align_slices`), refine by the frames' image (``image``:
    :func:`refine.quantise_image` of ``sd.intensity``, or None for the network's labels) and
    by the slice network's probabilities of it (``evidence``, or None),
    clean up, write the meshes, append the frame to ``seg.nii.gz``,
    ``seg_zF.nii.gz`` and ``rec_zF.nii.gz`` and measure the volumes. Peak memory: one frame
    plus a chunk sized by ``opts.memory_budget_gb``.

    ``beta`` weighs the prior's probabilities in the refinement (:func:`refine_beta`).
    Returns the cleaned native labels ``(T, x, y, z)`` uint8 on the crop grid and the
    per-frame volumes (mL). Adds the seconds spent to ``timings`` (sample, meshes, write).
    """
    if opts.meshes:  # VTK is loaded only when meshes are asked for
        from nimosef_engine.meshes import write_frame_meshes

    f, n_t = int(opts.res_factor_z), sd.n_frames
    plan = plan_chunk(opts.memory_budget_gb, net, output_frame_bytes(
        sd.grid_shape, cine.shape, f, opts.meshes, n_t, image is not None))
    log.info(plan.describe())
    aff1, aff_f = crop_grid(sd, 1)[0], crop_grid(sd, f)[0]
    full_aff_f, full_shape_f = resample_grid_z(cine.affine_ras, cine.shape, f)
    dt_ms = frame_spacing_ms(cine.trigger_times_ms)
    lo = sd.intensity_range[0]
    refine = image is not None
    frames_f = iter_frames(net, code, sd, f, device, pose_m, reporter, "sample",
                           probs=opts.meshes or refine, chunk=plan.chunk, slice_shift=shift)
    pairs = ((fr, fr) for fr in frames_f) if f == 1 else zip(
        iter_frames(net, code, sd, 1, device, pose_m, probs=refine, chunk=plan.chunk,
                    slice_shift=shift),
        frames_f, strict=True)
    seg1_all = np.empty((n_t, *sd.grid_shape), np.uint8)
    vols: list[dict] = []
    for key in ("sample", "meshes", "write"):
        timings[key] = 0.0
    with contextlib.ExitStack() as stack:
        def writer(name: str, shape, dtype, affine) -> NiftiFrameWriter:
            return stack.enter_context(
                NiftiFrameWriter(out / name, (*shape, n_t), dtype, affine, dt_ms))

        w_seg1 = writer("seg.nii.gz", cine.shape, np.uint8, cine.affine_ras)
        w_seg_f = writer(f"seg_z{f}.nii.gz", full_shape_f, np.uint8, full_aff_f)
        w_rec_f = writer(f"rec_z{f}.nii.gz", full_shape_f, np.float32, full_aff_f)
        tick = time.perf_counter()
        for fr1, fr_f in pairs:
            img = None if image is None else image[fr_f.index]
            sp = None if evidence is None else evidence.frame(img)
            seg_f, probs_f = final_labels(fr_f, img, f, opts.clean, sp, beta)
            seg1 = seg_f if f == 1 else final_labels(fr1, img, 1, opts.clean, sp, beta)[0]
            seg1_all[fr_f.index] = seg1
            tick = _lap(timings, "sample", tick)
            if opts.meshes:
                write_frame_meshes(probs_f, aff_f, out / "meshes", fr_f.index)
                tick = _lap(timings, "meshes", tick)
            w_seg1.write_frame(embed_frame(seg1, sd, 1))
            w_seg_f.write_frame(embed_frame(seg_f, sd, f))
            w_rec_f.write_frame(embed_frame(fr_f.intensity, sd, f, fill=lo))
            vols.append(volumes_ml(seg1, aff1))
            tick = _lap(timings, "write", tick)
        reporter.update("write", 0.0, "writing volumes and tables")
    _lap(timings, "write", tick)
    return seg1_all, vols


def _lap(timings: dict[str, float], key: str, since: float) -> float:
    now = time.perf_counter()
    timings[key] += now - since
    return now


def _num(v):
    v = float(v)
    return None if not np.isfinite(v) else round(v, 4)
