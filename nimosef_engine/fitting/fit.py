"""Fit a subject's shape code (and optionally a pose) with the network frozen.

The test-time half of the auto-decoder: the same objective as training
(:func:`nimosef_engine.losses.objective.nimosef_loss`) without the segmentation term, the
network's parameters frozen, only the code (and the pose) optimised. Dice peaks and then
falls as the code over-fits the intensities, so the number of steps is chosen on validation
data at training time and stored in the checkpoint (``fit_defaults``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from nimosef_engine.core.geometry import rotation_about_z
from nimosef_engine.core.progress import check_cancelled
from nimosef_engine.fitting.adam import Adam
from nimosef_engine.fitting.cuda_graph import GraphedFitStep, cuda_graphs_enabled
from nimosef_engine.losses.objective import (
    LossWeights,
    SubjectTensors,
    intensity_objective,
    nimosef_loss,
    step_points,
)


@dataclass
class FitConfig:
    steps: int = 300
    n_points: int = 4000
    lr_code: float = 5e-3
    lr_pose: float = 2e-3
    pose: bool = False
    pose_warmup: int = 0  # with ``pose``: steps of pose alone (code held) before the fit
    motion: bool = False
    restarts: int = 1
    seed: int = 0
    snapshot_steps: list[int] = field(default_factory=list)
    cuda_graphs: bool = True  # on a GPU, replay the steps as a CUDA graph (:mod:`cuda_graph`)

    def to_dict(self) -> dict:
        return asdict(self)


def _rotation_from_axis_angle(v: torch.Tensor) -> torch.Tensor:
    theta = torch.sqrt(v.square().sum() + 1e-12)
    k = v / theta
    kx = torch.zeros(3, 3, dtype=v.dtype, device=v.device)
    kx[0, 1], kx[0, 2], kx[1, 2] = -k[2], k[1], -k[0]
    kx = kx - kx.T
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return eye + torch.sin(theta) * kx + (1 - torch.cos(theta)) * kx @ kx


class Pose(nn.Module):
    """Similarity map from a subject's normalised coordinates to the prior's:
    ``x' = exp(log_scale) * R(rotvec) @ x + translation`` (identity at start)."""

    def __init__(self):
        super().__init__()
        self.rotvec = nn.Parameter(torch.zeros(3))
        self.translation = nn.Parameter(torch.zeros(3))
        self.log_scale = nn.Parameter(torch.zeros(()))

    def matrix(self) -> torch.Tensor:
        """4x4 map (normalised subject -> normalised prior)."""
        m = torch.eye(4, dtype=self.rotvec.dtype, device=self.rotvec.device)
        m[:3, :3] = torch.exp(self.log_scale) * _rotation_from_axis_angle(self.rotvec)
        m[:3, 3] = self.translation
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.exp(self.log_scale) * _rotation_from_axis_angle(self.rotvec)
        return x @ r.T + self.translation


@dataclass
class FitResult:
    code: torch.Tensor
    pose_matrix: torch.Tensor
    losses: list[float]
    snapshots: dict[int, tuple[torch.Tensor, torch.Tensor]]
    final_loss: float
    frame_times: np.ndarray | None = None  # (T,) the model times the fit ended at


def fit_subject(net, st: SubjectTensors, cfg: FitConfig, init_code: torch.Tensor,
                weights: LossWeights | None = None, reporter=None,
                pred_boundary_fn=None, retime_fn=None) -> FitResult:
    """Fit a code for one subject, the network frozen. Best of ``cfg.restarts`` restarts
    (lowest mean loss over the last 10 % of steps). ``init_code (C,)``: the starting code
    (the prior's mean training code); restarts after the first add N(0, 0.1 * std) noise.
    ``cfg.pose_warmup`` steps of pose alone come first (the code held at ``init_code``).
    On a CUDA device, a fit without motion terms replays its steps as a CUDA graph
    (:mod:`nimosef_engine.fitting.cuda_graph`). ``retime_fn(code, pose_matrix, st)``: called
    once halfway through each restart, returns new model times ``(T,)`` for the frames (read
    from the images with the code so far, :mod:`nimosef_engine.motion.frame_times`); the
    second half is fitted at those times; ED stays the frame of earliest starting time even
    when other frames are read at time 0. ``st.frame_times`` is restored before each restart
    and holds the returned fit's times at the end (``FitResult.frame_times``)."""
    weights = weights or LossWeights()
    if not cfg.motion:
        weights = LossWeights(**{**weights.to_dict(), "displacement": 0.0, "no_motion": 0.0,
                                 "folding": 0.0, "smoothness": 0.0})
    for p in net.parameters():
        p.requires_grad_(False)
    best: FitResult | None = None
    dev = st.coords.device
    start_times = st.frame_times.clone()
    ed = int(torch.argmin(start_times).item())
    for r in range(max(1, cfg.restarts)):
        st.frame_times.copy_(start_times)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + r)
        code = init_code.detach().clone().to(dev)
        if r > 0:
            code = code + torch.randn(code.shape, generator=gen).to(dev) * 0.1 * (
                code.std() + 1e-3)
        code.requires_grad_(True)
        pose = Pose().to(dev)
        groups = [{"params": [code], "lr": cfg.lr_code}]
        if cfg.pose:
            groups.append({"params": list(pose.parameters()), "lr": cfg.lr_pose})
        graphed = cuda_graphs_enabled(st, cfg.motion, cfg.cuda_graphs)
        opt = Adam(groups, capturable=graphed)
        graph_step = GraphedFitStep(net, st, code, pose if cfg.pose else None, opt, weights,
                                    cfg.n_points) if graphed else None
        warm = cfg.pose_warmup if cfg.pose else 0
        history = torch.zeros(warm + cfg.steps, device=dev)  # read once at the end
        snaps: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        pred_boundary = None
        for step in range(warm + cfg.steps):
            if retime_fn is not None and step == warm + cfg.steps // 2:
                times = torch.as_tensor(retime_fn(code.detach(), pose.matrix().detach(), st),
                                        dtype=st.frame_times.dtype)
                if times.shape != st.frame_times.shape:
                    raise ValueError(f"retime_fn gave times of shape {tuple(times.shape)} for "
                                     f"{st.frame_times.numel()} frames")
                st.frame_times.copy_(times)
            check_cancelled()
            if reporter is not None:
                reporter.check_cancel()  # every step: a step takes up to a second
                if step % 10 == 0:
                    frac = (r + step / (warm + cfg.steps)) / max(1, cfg.restarts)
                    reporter.update("fit", frac, f"step {step}/{warm + cfg.steps}")
            if graph_step is not None:
                history[step] = graph_step.step(gen, hold_code=step < warm)
            else:
                if cfg.motion and pred_boundary_fn is not None and step >= cfg.steps // 2 \
                        and (pred_boundary is None or step % 50 == 0):
                    pred_boundary = pred_boundary_fn(code.detach(), pose)
                opt.zero_grad()
                loss, _ = nimosef_loss(
                    net, code, st, n_points=cfg.n_points, weights=weights,
                    epoch=10**6 if cfg.motion else 0, generator=gen, use_labels=False,
                    pred_boundary=pred_boundary, coords_fn=pose if cfg.pose else None, ed=ed)
                loss.backward()
                if step < warm:  # the mean shape is moved into place before it is reshaped
                    code.grad = None
                opt.step()
                history[step] = loss.detach()
            if step + 1 in cfg.snapshot_steps:
                snaps[step + 1] = (code.detach().clone(), pose.matrix().detach().clone())
        losses = history.tolist()
        tail = losses[-max(1, len(losses) // 10):]
        final = float(sum(tail) / len(tail)) if tail else math.inf
        res = FitResult(code.detach(), pose.matrix().detach(), losses, snaps, final,
                        st.frame_times.detach().cpu().numpy().copy())
        if best is None or res.final_loss < best.final_loss:
            best = res
    st.frame_times.copy_(torch.as_tensor(best.frame_times, dtype=st.frame_times.dtype))
    return best


def rotation_search_losses(net, st: SubjectTensors, angles_deg, steps: int, n_points: int,
                           init_code: torch.Tensor, seed: int = 0,
                           weights: LossWeights | None = None, reporter=None,
                           max_batch_points: int | None = None) -> list[float]:
    """Short code fits (intensity and code prior, no pose) of ``st`` from in-plane rotations
    of its heart frame by ``angles_deg``: one code per rotation, and a step's points seen
    through every rotation of a group in one batched network pass. Returns each rotation's
    loss (mean of the last 10 % of steps), as :func:`fit_subject` would give for that rotated
    frame alone with ``FitConfig(steps, n_points, seed=seed)``: the same points and frames,
    the same updates.
    Rotations are taken ``max_batch_points // n_points`` at a time. By default all at once on
    a GPU (kernel launches, not arithmetic, bound these small steps there) and one at a time on
    a CPU (arithmetic bounds them: a batch is no faster and its activations take memory,
    ``benchmarks/rotation_search.py``).
    """
    angles = list(angles_deg)
    if steps <= 0:
        return [math.inf] * len(angles)
    if max_batch_points is None:
        on_gpu = st.coords.device.type == "cuda"
        max_batch_points = n_points * (len(angles) if on_gpu else 1)
    weights = weights or LossWeights()
    for p in net.parameters():
        p.requires_grad_(False)
    group = max(1, int(max_batch_points) // max(1, int(n_points)))
    out: list[float] = []
    for g0 in range(0, len(angles), group):
        out += _rotation_group(net, st, angles[g0:g0 + group], steps, n_points, init_code,
                               seed, weights, reporter, (g0, len(angles)))
    return out


def _rotation_group(net, st, angles, steps, n_points, init_code, seed, weights, reporter,
                    where: tuple[int, int]) -> list[float]:
    dev = st.coords.device
    rz = torch.from_numpy(np.stack([rotation_about_z(a) for a in angles]).astype(np.float32))
    rz = rz.to(dev)
    codes = init_code.detach().to(dev).expand(len(angles), -1).clone().requires_grad_(True)
    opt = Adam([{"params": [codes], "lr": FitConfig.lr_code}])
    gen = torch.Generator().manual_seed(seed * 7919)  # as fit_subject's first restart
    history = torch.empty(steps, len(angles), device=dev)  # no host sync per step
    for step in range(steps):
        check_cancelled()
        if reporter is not None:
            reporter.check_cancel()
        if reporter is not None and step % 10 == 0:
            reporter.update("localise", (where[0] + len(angles) * step / steps) / where[1],
                            f"rotations, step {step}/{steps}")
        ed, frame, idx = step_points(st, n_points, gen, use_labels=False)
        coords = torch.matmul(st.coords[idx], rz)  # (K, N, 3): the frame turned, per code
        total = intensity_objective(net, st, coords, codes,
                                    [ed] if frame == ed else [ed, frame], idx, weights)
        opt.zero_grad()
        total.sum().backward()  # the codes are independent: each gets its own gradient
        opt.step()
        history[step] = total.detach()
    tail = history[-max(1, steps // 10):]
    return [float(v) for v in tail.mean(0).cpu()]
