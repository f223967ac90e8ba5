"""The subject's pose in the prior's heart frame: the in-plane rotation search around the
localised LV -> RV axis and the fit from one or more starting poses, the lowest loss kept."""

from __future__ import annotations

from dataclasses import replace

from nimosef_engine.core.geometry import HeartFrame, rotation_about_z
from nimosef_engine.core.progress import ProgressReporter, ShareReporter
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.fitting.fit import FitConfig, fit_subject, rotation_search_losses
from nimosef_engine.losses.objective import subject_tensors

ROTATION_POINTS = 2000  # points per step of the rotation search's short fits
POSE_WARMUP_STEPS = 60  # the third starting pose: pose alone for this many steps first
MAX_POSE_HYPOTHESES = 3


def rotated_frame(frame: HeartFrame, degrees: float) -> HeartFrame:
    """``frame`` turned by ``degrees`` about its long axis (z)."""
    return HeartFrame(frame.origin_ras, frame.rotation @ rotation_about_z(degrees),
                      frame.scale_mm)


def choose_rotation(net, ckpt: dict, sd: SubjectData, rotations: tuple[int, ...],
                    rotation_steps: int, device, reporter: ProgressReporter | None = None,
                    seed: int = 0) -> tuple[HeartFrame, dict[int, float]]:
    """Try the in-plane ``rotations`` (degrees) of ``sd``'s localised heart frame with
    ``rotation_steps`` short-fit steps each; keep the one whose short fit explains the
    intensities best (lowest loss). The image-only LV -> RV direction is off by more than 45
    degrees in a few percent of cines; the prior's intensity model tells. All rotations are
    fitted together (:func:`fitting.fit.rotation_search_losses`). Returns the chosen frame and
    the loss of each rotation (empty with a single rotation)."""
    if len(rotations) <= 1:
        return sd.heart, {}
    found = rotation_search_losses(net, subject_tensors(sd, device), rotations,
                                   rotation_steps, ROTATION_POINTS,
                                   ckpt["code_mean"].to(device), seed=seed, reporter=reporter)
    losses = {int(a): round(v, 5) for a, v in zip(rotations, found, strict=True)}
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
                   cfg: FitConfig, device, reporter: ProgressReporter, retime_fn=None):
    """Fit ``sd`` from each starting pose of ``hyps`` (rotations of ``sd.heart``); keep the
    fit that explains the intensities best (lowest final loss). Returns the fit, ``sd`` in
    its heart frame, and one row per hypothesis. ``retime_fn``: see
    :func:`fitting.fit.fit_subject`."""
    best = None
    rows = []
    for i, (angle, warm) in enumerate(hyps):
        cand = replace(sd, heart=rotated_frame(sd.heart, angle))
        share = ShareReporter(reporter, i / len(hyps), (i + 1) / len(hyps),
                              f"pose {i + 1}/{len(hyps)}, " if len(hyps) > 1 else "")
        res = fit_subject(net, subject_tensors(cand, device), replace(cfg, pose_warmup=warm),
                          ckpt["code_mean"].to(device), reporter=share, retime_fn=retime_fn)
        rows.append({"rotation_deg": int(angle), "pose_warmup_steps": int(warm),
                     "final_loss": round(res.final_loss, 5)})
        if best is None or res.final_loss < best[0].final_loss:
            best = (res, cand, i)
    for i, row in enumerate(rows):
        row["chosen"] = i == best[2]
    return best[0], best[1], rows
