"""Each frame's place in the prior's cardiac cycle, read from its own intensities.

The prior is a function of model time; a prior trained on ED and ES frames knows the cycle
from ED (time 0) to ES (``es_model_time``). A cine's frames between and after them are placed
on that path by what they look like, not by their trigger time: the fitted subject's intensity
field is rendered at a grid of model times, each frame is compared with every rendering at the
same points, and the time whose rendering explains the frame best is its place. Systole must
advance and diastole return (isotonic regression over the frames in cycle order), ED and ES
stay the landmarks, so relaxation follows the images (isovolumic relaxation, rapid filling,
diastasis) instead of replaying systole backwards at constant speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import isotonic_regression

from nimosef_engine.core.progress import check_cancelled
from nimosef_engine.losses.intensity import intensity_loss
from nimosef_engine.losses.objective import SubjectTensors
from nimosef_engine.sampling.fields import pose_fn

GRID_SIZE = 41  # model times tried, from 0 to GRID_SPAN x the ES model time
GRID_SPAN = 1.25
N_POINTS = 8000  # voxels compared per frame (the same ones for every time)
INFORMATIVE_SHARE = 0.2  # voxels drawn from this share that changes most over the cine
MIN_SEPARATION = 0.05  # of the ES model time: ED and ES must look this far apart


@dataclass
class FrameTimes:
    """``times (T,)`` model time per frame; ``place (T,)`` each frame's place between ED (0)
    and ES (1) before the monotone fit; ``best (T,)`` the model time that explains each frame
    best on its own; ``separation`` how far apart (model time) ED and ES look, the reliability
    of the reading; ``used``: False when it was too small and the landmark times were kept."""

    times: np.ndarray
    place: np.ndarray
    best: np.ndarray
    separation: float
    used: bool


def intensity_time_costs(net, code: torch.Tensor, pose_m: torch.Tensor | None,
                         st: SubjectTensors, grid: np.ndarray, n_points: int = N_POINTS,
                         seed: int = 0) -> np.ndarray:
    """``(T, G)``: the intensity loss of each frame of ``st`` against the fitted field rendered
    at each model time of ``grid (G,)``, at ``n_points`` random voxels shared by all, drawn
    from the ``INFORMATIVE_SHARE`` of voxels whose intensity varies most over the frames (the
    moving heart: a voxel that never changes cannot tell the frames apart)."""
    gen = torch.Generator().manual_seed(seed)
    spread = st.intensity.std(0).cpu()
    n_keep = max(1, int(round(INFORMATIVE_SHARE * spread.numel())))
    pool = torch.topk(spread, n_keep).indices
    idx = pool[torch.randperm(n_keep, generator=gen)[:n_points]].to(st.coords.device)
    coords = st.coords[idx]
    fn = pose_fn(pose_m)
    if fn is not None:
        coords = fn(coords)
    code = code.detach().to(coords.device)
    preds = torch.empty((len(grid), coords.shape[0]), device=coords.device)  # (G, N)
    with torch.no_grad():
        for g, t in enumerate(grid):
            check_cancelled()
            preds[g] = net(coords, torch.full((coords.shape[0], 1), float(t),
                                              device=coords.device), code,
                           with_motion=False).intensity
        return np.stack([intensity_loss(preds, st.intensity[f, idx]).cpu().numpy()
                         for f in range(st.intensity.shape[0])]).astype(np.float64)


def best_times(costs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``(T,)`` each row's minimum of ``costs (T, G)`` over ``grid``, refined between grid
    points by the parabola through the minimum and its neighbours (a minimum at either end
    of the grid stays there)."""
    best = costs.argmin(1)
    k = np.clip(best, 1, len(grid) - 2)
    rows = np.arange(len(costs))
    c0, c1, c2 = costs[rows, k - 1], costs[rows, k], costs[rows, k + 1]
    denom = c0 - 2 * c1 + c2
    inner = (best == k) & (denom > 0)
    shift = np.where(inner, 0.5 * (c0 - c2) / np.where(inner, denom, 1.0), 0.0)
    step = grid[1] - grid[0]
    return np.clip(grid[best] + np.clip(shift, -1, 1) * step, grid[0], grid[-1])


def monotone_cycle(place: np.ndarray, ed: int, es: int) -> np.ndarray:
    """``place (T,)`` (0 = ED, 1 = ES) made physiological: in cycle order from ED, systole
    non-decreasing up to ES and diastole non-increasing after it (least squares, the ED and
    ES frames held at 0 and 1), clipped to [0, 1]."""
    n = len(place)
    order = [(ed + j) % n for j in range(n)]
    p_es = order.index(es)
    y = np.clip(np.asarray(place, np.float64)[order], 0.0, 1.0)
    y[0], y[p_es] = 0.0, 1.0
    hold = np.ones(n)
    hold[[0, p_es]] = 1e6
    out = np.empty(n)
    out[:p_es + 1] = isotonic_regression(y[:p_es + 1], weights=hold[:p_es + 1]).x
    if p_es + 1 < n:
        out[p_es:] = isotonic_regression(y[p_es:], weights=hold[p_es:], increasing=False).x
    out[0], out[p_es] = 0.0, 1.0
    result = np.empty(n)
    result[order] = out
    return np.clip(result, 0.0, 1.0)


def fit_frame_times(net, code: torch.Tensor, pose_m: torch.Tensor | None,
                    st: SubjectTensors, ed: int, es: int, es_model_time: float,
                    n_points: int = N_POINTS, seed: int = 0) -> FrameTimes:
    """Model time of every frame of ``st`` from its own intensities (module docstring), ED
    (``ed``) at 0 and ES (``es``) at ``es_model_time``, for the fitted ``code (C,)`` and
    ``pose_m`` (4x4 or None). When ED and ES do not look at least ``MIN_SEPARATION`` x
    ``es_model_time`` apart, the reading is not trusted: ``st``'s own times are returned with
    ``used`` False."""
    grid = np.linspace(0.0, GRID_SPAN * es_model_time, GRID_SIZE)
    costs = intensity_time_costs(net, code, pose_m, st, grid, n_points, seed)
    best = best_times(costs, grid)
    separation = float(best[es] - best[ed])
    current = st.frame_times.detach().cpu().numpy().astype(np.float64)
    if ed == es or separation < MIN_SEPARATION * es_model_time:
        return FrameTimes(current.astype(np.float32), current / es_model_time, best,
                          separation, False)
    place = (best - best[ed]) / separation
    times = monotone_cycle(place, ed, es) * es_model_time
    return FrameTimes(times.astype(np.float32), place, best, separation, True)
