"""Segment & Track's motion outputs: ``motion/to_ed_NN.nii.gz`` and ``from_ed_NN.nii.gz`` for
every frame (:mod:`.fields`), ``strain.csv`` (:mod:`.strain`) and the figures that check them
(inverse composition error, folding, return to ED at the end of the cycle)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nimosef_engine.core.atomic import atomic_path
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.motion.fields import (
    RegistrationConfig,
    composition_error_mm,
    exp_velocity,
    folding_share,
    invert_field,
    label_box,
    network_displacements,
    register_labels,
    vox_to_ras_vectors,
    write_itk_field,
)
from nimosef_engine.motion.strain import STRAIN_COLUMNS, myocardial_geometry, strain_rows
from nimosef_engine.sampling.memory import DEFAULT_CHUNK


def field_name(direction: str, frame: int) -> str:
    """``to_ed_NN.nii.gz`` / ``from_ed_NN.nii.gz`` (``NN`` the 0-based input frame)."""
    return f"{direction}_{frame:02d}.nii.gz"


def track_motion(net, code: torch.Tensor, sd: SubjectData, labels: np.ndarray, ed: int,
                 out: Path, frame_times, pose_matrix: torch.Tensor | None = None,
                 slice_shift: np.ndarray | None = None, device="cpu",
                 reporter: ProgressReporter | None = None, chunk: int = DEFAULT_CHUNK,
                 cfg: RegistrationConfig | None = None) -> tuple[dict, pd.DataFrame]:
    """Dense motion of every frame relative to frame ``ed`` and its strain.

    ``labels (T, x, y, z)``: the engine's label maps on ``sd``'s crop grid (made from each
    frame's intensities); ``frame_times (T,)`` the cine's cycle fractions (for
    ``strain.csv``). For frame ``f``: the network's motion, as a velocity from frame ``f`` to
    ED, starts a registration of the ED label maps onto frame ``f``'s
    (:func:`fields.register_labels`): ``to_ed``; ``from_ed`` is its inverse
    (:func:`fields.invert_field`, from ``exp(-w)``). Writes ``out/motion/*.nii.gz`` and
    ``out/strain.csv``; returns the figures for ``summary.json`` and the strain table.
    """
    cfg = cfg or RegistrationConfig()
    aff = sd.crop_affine_ras
    n_t = labels.shape[0]
    times = np.asarray(sd.frame_times, np.float64)
    mdir = out / "motion"
    mdir.mkdir(parents=True, exist_ok=True)
    geo = myocardial_geometry(labels[ed], aff, sd.heart)
    u_ed = next(network_displacements(net, code, sd, [times[ed]], pose_matrix, slice_shift,
                                      device, chunk))
    ed_heart = labels[ed] > 0
    rows, per_frame = [], []
    mean_disp = np.zeros(n_t)
    prev = None
    smooth = []
    t0 = time.perf_counter()
    for f, u_net in enumerate(network_displacements(net, code, sd, times, pose_matrix,
                                                    slice_shift, device, chunk)):
        if reporter is not None:
            reporter.update("motion", f / n_t, f"frame {f + 1}/{n_t}")
        if f == ed:
            to_ed = from_ed = np.zeros((*labels.shape[1:], 3), np.float32)
            its = 0
        else:
            to_ed, w = register_labels(labels[ed], labels[f], aff, u_ed - u_net, cfg)
            box = label_box([labels[ed], labels[f]], aff, cfg.margin_mm)
            from_ed, its = invert_field(
                to_ed, exp_velocity(torch.from_numpy(-w)).numpy(), box=box)
        write_itk_field(mdir / field_name("to_ed", f), to_ed, sd)
        write_itk_field(mdir / field_name("from_ed", f), from_ed, sd)
        err = composition_error_mm(from_ed, to_ed, aff, ed_heart)
        disp_mm = np.linalg.norm(vox_to_ras_vectors(from_ed[ed_heart], aff), axis=-1)
        mean_disp[f] = float(disp_mm.mean()) if disp_mm.size else 0.0
        if prev is not None:
            smooth.append(float(np.linalg.norm(vox_to_ras_vectors(
                from_ed[ed_heart] - prev, aff), axis=-1).mean()))
        prev = from_ed[ed_heart]
        per_frame.append({
            "frame": f, "inverse_error_mean_mm": round(err["mean_mm"], 4),
            "inverse_error_max_mm": round(err["max_mm"], 3), "inverse_iterations": its,
            "folding_to_ed": round(folding_share(to_ed, labels[f] > 0), 5),
            "folding_from_ed": round(folding_share(from_ed, ed_heart), 5),
            "mean_displacement_mm": round(mean_disp[f], 3)})
        rows += strain_rows(from_ed, aff, geo, f, float(frame_times[f]))
    strain = pd.DataFrame(rows, columns=STRAIN_COLUMNS)
    with atomic_path(out / "strain.csv") as p:
        strain.to_csv(p, index=False)
    summary = {
        "fields": "motion/to_ed_NN.nii.gz (frame NN -> ED) and motion/from_ed_NN.nii.gz "
                  "(ED -> frame NN): ITK displacement fields, LPS mm, on the input's grid",
        "ed_frame": int(ed),
        "method": "the network's motion refined by a diffeomorphic registration of the ED "
                  "label maps onto each frame's; from_ed the Newton inverse of to_ed",
        "inverse_error_mean_mm": round(float(np.mean([r["inverse_error_mean_mm"]
                                                      for r in per_frame])), 4),
        "inverse_error_max_mm": round(float(np.max([r["inverse_error_max_mm"]
                                                    for r in per_frame])), 3),
        "folding_share_max": round(float(np.max([max(r["folding_to_ed"], r["folding_from_ed"])
                                                 for r in per_frame])), 5),
        "mean_displacement_mm": [round(float(x), 3) for x in mean_disp],
        "frame_to_frame_change_mm": [round(x, 3) for x in smooth],
        "rv_insertion_deg": [round(x, 1) for x in geo.insertion_deg],
        "seconds": round(time.perf_counter() - t0, 2),
        "per_frame": per_frame,
    }
    return summary, strain
