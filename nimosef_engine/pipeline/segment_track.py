"""Segment & Track a new cine with no labels: the job the Slicer module runs.

The stages, in order: read the cine (:mod:`io.cine`) -> find the heart and its axes
(:mod:`pipeline.localise`) -> crop and normalise (:mod:`data.roi`) -> choose the in-plane
rotation and fit the subject's code and pose with the prior frozen (:mod:`fitting.pose`) ->
align each slice with the image and gate the prior's weight (:mod:`refinement.alignment`) ->
sample, refine and write every frame (:mod:`pipeline.writers`) -> volumes, cardiac indices and
the quality verdict (:mod:`pipeline.quality`) -> dense motion and strain (:mod:`motion.track`)
-> subject file, report and summary. Everything is written into a temporary folder beside
``out_dir`` and renamed at the end, so a cancel or an error leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from nimosef_engine import LABEL_NAMES, __version__
from nimosef_engine.core.atomic import atomic_path, atomic_write_text
from nimosef_engine.core.device import resolve_device
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.core.threads import subnormals
from nimosef_engine.data.roi import subject_from_cine
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.evaluation.metrics import cardiac_indices
from nimosef_engine.fitting.fit import FitConfig, FitResult
from nimosef_engine.fitting.pose import choose_rotation, fit_hypotheses, pose_hypotheses
from nimosef_engine.io.cine import Cine, load_cine
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.model.bundled import load_prior
from nimosef_engine.pipeline.checks import check_cine, check_memory_budget, check_models
from nimosef_engine.pipeline.cycle_time import cycle_model_times, frame_time_reader
from nimosef_engine.pipeline.localise import HeartPose, localise_heart
from nimosef_engine.pipeline.options import SegmentTrackOptions
from nimosef_engine.pipeline.outputs import (
    check_output_folder,
    is_segment_track_output,
    output_lock,
)
from nimosef_engine.pipeline.quality import assess_quality, rounded
from nimosef_engine.pipeline.subject_file import subject_record, write_subject_file
from nimosef_engine.pipeline.writers import (
    boundary_motion_table,
    cycle_duration_ms,
    sample_and_write,
    volumes_table,
    write_table,
)
from nimosef_engine.refinement.alignment import align_slices, prior_slice_agreement, refine_beta
from nimosef_engine.refinement.frames import FrameRefinement
from nimosef_engine.refinement.refine import quantise_image
from nimosef_engine.refinement.slice_evidence import SliceEvidence

log = logging.getLogger(__name__)

STAGES = ("load", "localise", "fit", "align", "sample", "meshes", "motion", "write")
MIN_LOCALISATION_CONFIDENCE = 0.3  # noise scores ~0.16, the least certain ACDC cine 0.53


def segment_track(inputs, out_dir, reporter: ProgressReporter | None = None,
                  options: SegmentTrackOptions | None = None, **overrides) -> dict:
    """Run Segment & Track on a cine (see module docstring) into ``out_dir``; returns the
    summary dict. ``options``, with any field overridden by keyword (``quality="fast"``),
    are checked before any work."""
    opts = replace(options or SegmentTrackOptions(), **overrides)
    reporter = reporter or ProgressReporter()
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in ([inputs] if isinstance(inputs, str | Path) else inputs)]
    with subnormals(flush=True):  # before torch starts its threads (core.threads)
        check_models(opts)  # before any work: the prior and the slice network readable
        check_output_folder(out_dir, inputs, opts.overwrite)  # never the input or others' files
        with output_lock(out_dir), atomic_path(out_dir, is_segment_track_output) as tmp:
            tmp.mkdir()
            summary = _run(inputs, tmp, opts, reporter)
    reporter.close()
    return summary


@dataclass
class Localised:
    """The localisation stage's result: the heart's pose, the chosen ED frame, the cropped
    subject in its (rotated) heart frame, the ES frame the cycle was aligned on (or None) and
    the rotation search's loss per angle."""

    pose: HeartPose
    ed_index: int
    sd: SubjectData
    es_model: int | None
    rotation_losses: dict[int, float]


def _run(inputs: list[Path], out: Path, opts: SegmentTrackOptions,
         reporter: ProgressReporter) -> dict:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    source = ", ".join(str(p) for p in inputs)
    torch.manual_seed(opts.seed)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)

    with _timed(timings, "load"):
        reporter.update("load", 0.0, "reading the cine")
        cine = load_cine(inputs, frame_times=opts.frame_times, frame_numbers=opts.frame_numbers,
                         n_frames=opts.n_frames, series=opts.series)
        check_cine(cine, opts, source)
        ckpt, net, pid = load_prior(opts.prior, device)
        check_memory_budget(cine, net, opts)
    with _timed(timings, "localise"):
        loc = localise(cine, ckpt, net, opts, source, device, reporter)
    with _timed(timings, "fit"):
        fit_cfg = fit_config(ckpt, opts)
        reader = frame_time_reader(net, ckpt, loc.ed_index, loc.es_model, cine.n_frames,
                                   opts.seed) if opts.time_model == "images" else None
        res, sd, hypotheses = fit_hypotheses(
            net, ckpt, loc.sd, pose_hypotheses(loc.rotation_losses, opts.pose_hypotheses),
            fit_cfg, device, reporter,
            retime_fn=None if reader is None else lambda c, p, st: reader(c, p, st).times)
        code, pose_m = res.code, res.pose_matrix.cpu()
        reading = None
        if reader is not None:  # the final code's reading: the times every output uses
            sd = replace(sd, frame_times=res.frame_times)  # where the fit ended
            reading = reader(code, pose_m, subject_tensors(sd, device))
            sd = replace(sd, frame_times=reading.times)
    with _timed(timings, "align"):
        refinement, agreement = prepare_refinement(net, code, pose_m, sd, opts, device,
                                                   [loc.ed_index, loc.pose.es_index], reporter)
    seg1, vols, frame_agreement = sample_and_write(net, code, pose_m, sd, cine, out, opts,
                                                   device, reporter, timings, refinement)
    with _timed(timings, "write"):
        volumes = volumes_table(vols, cine)
        write_table(volumes, out / "volumes.csv")
        if volumes["LV_mL"].max() <= 0:
            raise NimosefInputError(source, "no left ventricle was segmented: the image may "
                                            "not show a short-axis view of the heart")
        idx = cardiac_indices(volumes["LV_mL"], volumes["RV_mL"], volumes["MYO_mL"],
                              frame_times=volumes["time"].to_numpy(),
                              cycle_ms=cycle_duration_ms(cine))
        quality = judge(loc.pose.confidence, res, agreement, vols, seg1, idx, opts, source)
        write_table(boundary_motion_table(net, code, pose_m, sd, seg1, loc.ed_index, cine,
                                          refinement.shift, device), out / "motion.parquet")
    dense_motion, strain = None, None
    if opts.motion:
        with _timed(timings, "motion"):
            from nimosef_engine.motion.track import track_motion

            dense_motion, strain = track_motion(net, code, sd, seg1, int(idx["ed_index"]),
                                                out, cine.frame_times, pose_m,
                                                refinement.shift, device, reporter)
    with _timed(timings, "write"):
        write_subject_file(out / "subject.nimosef", subject_record(
            code, pose_m, sd, cine, pid, opts, refinement, source))
        from nimosef_engine.evaluation.plots import plot_report

        plot_report(cine, seg1, sd, volumes, idx, out / "report.png", strain, quality)
    summary = {
        "ed_frame": int(idx["ed_index"]), "es_frame": int(idx["es_index"]),
        "localised_ed_frame": int(loc.ed_index),
        "localised_es_frame": int(loc.pose.es_index),
        "model_times": [round(float(x), 4) for x in sd.frame_times],
        "time_model": time_model_summary(loc, reading),
        **{k: rounded(v) for k, v in idx.items() if k not in ("ed_index", "es_index")},
        "n_frames": int(sd.n_frames), "res_factor_z": int(opts.res_factor_z),
        "runtime_s": round(time.perf_counter() - t0, 2), "stage_seconds":
            {k: round(v, 2) for k, v in timings.items()},
        "device": str(device), "prior_id": pid, "input": source, "engine_version": __version__,
        "localisation": {"confidence": round(float(loc.pose.confidence), 3),
                         "notes": loc.pose.notes, "rotation_search_loss": loc.rotation_losses},
        "fit": {"steps": fit_cfg.steps, "final_loss": round(res.final_loss, 5),
                "quality": opts.quality, "pose_hypotheses": hypotheses},
        "refinement": refinement_summary(refinement, opts, frame_agreement),
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


def localise(cine: Cine, ckpt: dict, net, opts: SegmentTrackOptions, source: str, device,
             reporter: ProgressReporter) -> Localised:
    """Find the heart (or take ``opts.lv_center`` / ``rv_point``), refuse an image with no
    heart, crop and normalise around it with each frame's model time, and choose the in-plane
    rotation of its heart frame (:func:`fitting.pose.choose_rotation`)."""
    reporter.update("localise", 0.0, "finding the heart")
    pose = localise_heart(cine.frames, cine.affine_ras, lv_center_ras=opts.lv_center,
                          rv_point_ras=opts.rv_point,
                          scale_mm=float(ckpt.get("norm_scale_mm", 100.0)), source=source)
    if pose.confidence < MIN_LOCALISATION_CONFIDENCE and opts.lv_center is None:
        raise NimosefInputError(source, "no heart found in the image (localisation confidence "
                                        f"{pose.confidence:.2f}); give the LV centre "
                                        "(lv_center, x y z)")
    ed_index = pose.ed_index if opts.ed_frame is None else int(opts.ed_frame)
    if not 0 <= ed_index < cine.n_frames:
        raise NimosefInputError("ed_frame", f"must be in 0..{cine.n_frames - 1}")
    times, es_model = cycle_model_times(cine, ckpt, ed_index, pose.es_index)
    sd = subject_from_cine(cine, pose.frame, pose.roi_center_ras, times, opts.roi_mm, source)
    rotations = opts.preset.rotations if opts.rv_point is None else (0,)
    _, losses = choose_rotation(net, ckpt, sd, rotations, opts.preset.rotation_steps, device,
                                reporter, opts.seed)
    return Localised(pose, ed_index, sd, es_model, losses)


def fit_config(ckpt: dict, opts: SegmentTrackOptions) -> FitConfig:
    """The fit's settings: the prior's calibrated steps (``fit_defaults``) scaled by the
    quality preset, or ``opts.fit_steps``."""
    preset = opts.preset
    base_steps = int((ckpt.get("fit_defaults") or {}).get("steps", FitConfig.steps))
    steps = opts.fit_steps if opts.fit_steps is not None \
        else max(1, int(round(base_steps * preset.steps_scale)))
    return FitConfig(steps=steps, n_points=preset.n_points, pose=preset.pose,
                     restarts=preset.restarts, seed=opts.seed)


def prepare_refinement(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                       opts: SegmentTrackOptions, device, frames: list[int],
                       reporter: ProgressReporter,
                       ) -> tuple[FrameRefinement, dict[int, dict[str, float]] | None]:
    """How the frames will be refined: the image, the slice network's evidence, each slice's
    in-plane shift and the prior's weight gated by its agreement with the slice network on
    ``frames`` (the localised ED and ES). Returns the refinement and that agreement (None
    without a slice network). With ``opts.refine`` off: the network's labels, cleaned."""
    settings = opts.refinement
    refinement = FrameRefinement(clean=opts.clean, beta=settings.beta, gamma=settings.gamma,
                                 iterations=settings.iterations)
    if not opts.refine:
        return refinement, None
    refinement.image = quantise_image(sd.intensity)
    if opts.slice_net:
        refinement.evidence = SliceEvidence.load(opts.slice_net_path, device, sd)
    refinement.shift = align_slices(net, code, pose_m, sd, refinement, frames, device,
                                    reporter, settings.max_slice_shift_mm)
    agreement = None if refinement.evidence is None else prior_slice_agreement(
        net, code, pose_m, sd, refinement, frames, device)
    refinement.beta = refine_beta(agreement, settings.beta, settings.prior_gate)
    return refinement, agreement


def judge(confidence: float, res: FitResult, agreement, vols: list[dict], seg1: np.ndarray,
          idx: dict, opts: SegmentTrackOptions, source: str) -> dict:
    """The quality verdict (:func:`pipeline.quality.assess_quality`); a ``fail`` stops the run
    unless ``opts.force``; anything but ``ok`` is logged."""
    quality = assess_quality(confidence, res.final_loss, agreement or {}, vols, seg1, idx)
    if quality["verdict"] == "fail" and not opts.force:
        raise NimosefInputError(source, "the result fails its quality check ("
                                + "; ".join(quality["reasons"]) + "); force keeps it")
    if quality["verdict"] != "ok":
        log.warning("quality %s: %s", quality["verdict"], "; ".join(quality["reasons"]))
    return quality


def time_model_summary(loc: Localised, reading) -> dict:
    """``summary.json``'s ``time_model``: how each frame's model time was set and, when read
    from the images, each frame's place between ED (0) and ES (1) and how far apart ED and ES
    look (model time; the reading is used above ``MIN_SEPARATION`` of the ES time)."""
    if loc.es_model is None:
        return {"method": "cycle fraction from ED"}
    if reading is None:
        return {"method": "aligned on ED and ES, diastole as systole reversed"}
    method = ("read from each frame's intensities, ED and ES the landmarks" if reading.used
              else "aligned on ED and ES, diastole as systole reversed (ED and ES did not "
                   "look apart enough to read the other frames)")
    return {"method": method, "ed_es_separation": round(reading.separation, 4),
            "place": [round(float(x), 3) for x in reading.place]}


def refinement_summary(refinement: FrameRefinement, opts: SegmentTrackOptions,
                       frame_agreement: list[dict[str, float] | None] | None = None
                       ) -> dict | None:
    """``summary.json``'s ``refinement``: the prior's weight used and its settings, the slice
    shifts, the slice network and, per frame, the mean Dice of the prior's labels against the
    slice network's (how well the prior's cycle follows the images); None without
    refinement."""
    if refinement.shift is None:
        return None
    settings = opts.refinement
    return {"beta": round(refinement.beta, 4), "beta_full": settings.beta,
            "prior_gate": list(settings.prior_gate), "iterations": settings.iterations,
            "slice_shift_voxels": refinement.shift.tolist(),
            "slice_shift_max_mm": settings.max_slice_shift_mm,
            "slice_net": None if refinement.evidence is None else
            {"id": refinement.evidence.net_id, "gamma": settings.gamma},
            "prior_slice_agreement_per_frame": None if frame_agreement is None else
            [_mean_or_none(a) for a in frame_agreement]}


def _mean_or_none(agreement: dict[str, float] | None) -> float | None:
    """The mean of a frame's class Dice values, None when it has none (JSON has no NaN)."""
    values = [v for v in (agreement or {}).values() if np.isfinite(v)]
    return round(float(np.mean(values)), 4) if values else None


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``timings[key]``."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t
