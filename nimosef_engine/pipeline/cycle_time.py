"""The model time of each frame of a cine: where in the prior's cardiac cycle it is sampled.

The prior is a function of time in [0, 1) (0 = end-diastole). A cine gives cycle fractions
(trigger times or ``--frame-times``); a prior trained on ED and ES frames only knows systole,
so its cycle is aligned on the ED and ES landmarks (:func:`align_to_systole`) to start the
fit; a cine's other frames are then placed on that path by their own intensities
(:func:`frame_time_reader`, :mod:`nimosef_engine.motion.frame_times`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nimosef_engine.io.cine import Cine
from nimosef_engine.losses.objective import SubjectTensors
from nimosef_engine.motion.frame_times import FrameTimes, fit_frame_times


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


FrameTimeReader = Callable[[torch.Tensor, torch.Tensor, SubjectTensors], FrameTimes]


def frame_time_reader(net, ckpt: dict, ed_index: int, es_model: int | None, n_frames: int,
                      seed: int = 0) -> FrameTimeReader | None:
    """``read(code, pose_matrix, st) -> FrameTimes``: every frame's model time from its own
    intensities, ED and the aligned ES the landmarks; None when there is nothing to read (an
    ED/ES pair, or a cycle not aligned on ES)."""
    es_time = ckpt.get("es_time_mean")
    if es_model is None or n_frames <= 2 or not es_time:
        return None

    def read(code: torch.Tensor, pose_matrix: torch.Tensor, st: SubjectTensors) -> FrameTimes:
        return fit_frame_times(net, code, pose_matrix, st, ed_index, es_model, float(es_time),
                               seed=seed)

    return read


def frame_spacing_ms(trigger_ms) -> float | None:
    """Median time between frames (ms), or None without trigger times."""
    if trigger_ms is None or len(trigger_ms) < 2:
        return None
    return float(np.median(np.diff(trigger_ms)))
