"""The one NIMOSEF objective, shared by training (network + codes) and fitting (code only).

A step looks at one subject: points sampled at end-diastole (t = 0) and at one other frame;
intensity (+ segmentation when labels are used) at both times, the code prior, and the motion
terms on boundary points (ED boundary moved by ``u`` onto the boundary at ``t``, no motion at
ED, no folding), the motion terms ramped up by ``min(1, epoch / warmup_epochs)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from nimosef_engine.data.subject import SubjectData
from nimosef_engine.losses.boundary import boundary_mask, knn_edges
from nimosef_engine.losses.intensity import intensity_loss
from nimosef_engine.losses.motion import displacement_loss, folding_loss, no_motion_at_ed_loss
from nimosef_engine.losses.priors import code_prior
from nimosef_engine.losses.segmentation import segmentation_loss
from nimosef_engine.losses.smoothness import smoothness_loss


@dataclass
class LossWeights:
    """Weights of the paper's motion model (METHOD.md)."""

    intensity: float = 2.0
    seg: float = 1.0
    code: float = 0.01
    displacement: float = 0.5
    no_motion: float = 1.0
    folding: float = 1.0
    smoothness: float = 0.0
    warmup_epochs: int = 50

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SubjectTensors:
    """A subject's arrays as torch tensors, flattened over the crop grid (C order).

    ``coords (V,3)`` normalised; ``intensity (T,V)``; ``labels (T,V)`` long or None;
    ``frame_times (T,)``; ``boundary[f]`` index tensor of boundary voxels at frame ``f``
    (labels of frame ``f``); ``focus`` indices of voxels near the heart (for oversampling).
    """

    subject_id: str
    coords: torch.Tensor
    intensity: torch.Tensor
    frame_times: torch.Tensor
    labels: torch.Tensor | None
    boundary: list[torch.Tensor | None]
    focus: torch.Tensor | None
    grid_shape: tuple[int, int, int]


def subject_tensors(sd: SubjectData, device: torch.device | str = "cpu",
                    coords_norm: np.ndarray | None = None,
                    max_boundary: int = 2000, seed: int = 0) -> SubjectTensors:
    """Prepare a :class:`SubjectData` for sampling. ``coords_norm`` overrides its coordinates."""
    coords = torch.from_numpy(coords_norm if coords_norm is not None else sd.coords_norm())
    inten = torch.from_numpy(sd.intensity.reshape(sd.n_frames, -1).astype(np.float32))
    labels = boundary = focus = None
    boundary = [None] * sd.n_frames
    if sd.labels is not None:
        lab3 = torch.from_numpy(sd.labels.astype(np.int64))
        labels = lab3.reshape(sd.n_frames, -1)
        rng = np.random.default_rng(seed)
        for f in range(sd.n_frames):
            idx = torch.nonzero(boundary_mask(lab3[f]).reshape(-1)).squeeze(1)
            if idx.numel() > max_boundary:
                idx = idx[torch.from_numpy(rng.choice(idx.numel(), max_boundary, replace=False))]
            boundary[f] = idx.to(device)
        fg = (lab3 > 0).any(0)
        fg = torch.nn.functional.max_pool3d(fg[None, None].float(), 7, 1, 3)[0, 0] > 0
        focus = torch.nonzero(fg.reshape(-1)).squeeze(1).to(device)
    return SubjectTensors(sd.subject_id, coords.to(device), inten.to(device),
                          torch.as_tensor(sd.frame_times, dtype=torch.float32, device=device),
                          None if labels is None else labels.to(device), boundary, focus,
                          sd.grid_shape)


def sample_points(st: SubjectTensors, n_points: int, generator: torch.Generator,
                  focus_fraction: float = 0.5) -> torch.Tensor:
    """Indices of ``n_points`` voxels: ``focus_fraction`` near the heart, the rest uniform."""
    n_vox = st.coords.shape[0]
    dev = st.coords.device
    if st.focus is None or focus_fraction <= 0 or st.focus.numel() == 0:
        return torch.randint(n_vox, (n_points,), generator=generator).to(dev)
    n_focus = int(n_points * focus_fraction)
    a = torch.randint(n_vox, (n_points - n_focus,), generator=generator).to(dev)
    b = st.focus[torch.randint(st.focus.numel(), (n_focus,), generator=generator).to(dev)]
    return torch.cat([a, b])


def _subsample(idx: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    if idx.numel() <= n:
        return idx
    return idx[torch.randperm(idx.numel(), generator=generator)[:n].to(idx.device)]


def step_points(st: SubjectTensors, n_points: int, generator: torch.Generator,
                use_labels: bool, frame: int | None = None,
                ed: int | None = None) -> tuple[int, int, torch.Tensor]:
    """What one step looks at: the ED frame, one other frame (random when ``frame`` is None)
    and ``n_points`` voxel indices (half near the heart when labels are used). ``ed``: the ED
    frame when the caller knows it (finding it waits for the device)."""
    n_frames = st.intensity.shape[0]
    if ed is None:
        ed = int(torch.argmin(st.frame_times).item())
    if frame is None:
        others = [f for f in range(n_frames) if f != ed] or [ed]
        frame = others[int(torch.randint(len(others), (1,), generator=generator))]
    idx = sample_points(st, n_points, generator, 0.5 if use_labels else 0.0)
    return ed, frame, idx


def intensity_objective(net, st: SubjectTensors, coords: torch.Tensor, code: torch.Tensor,
                        frames, idx: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """A fit's loss at one step's points, summed in :func:`nimosef_loss`'s order: the weighted
    intensity loss at each of ``frames`` (ED first; ints or index tensors), then the weighted
    code prior. ``coords (N, 3)`` with ``code (C,)`` give a scalar; ``K`` sets of points
    ``coords (K, N, 3)`` with ``code (K, C)`` one loss per code ``(K,)``."""
    total = None
    for f in frames:
        t = st.frame_times[f].expand(*coords.shape[:-1], 1)
        pred = net(coords, t, code, with_motion=False).intensity
        term = weights.intensity * intensity_loss(pred, st.intensity[f, idx])
        total = term if total is None else total + term
    return total + weights.code * code_prior(code, per_code=True)


def nimosef_loss(net, code: torch.Tensor, st: SubjectTensors, *, n_points: int,
                 weights: LossWeights, epoch: int, generator: torch.Generator,
                 use_labels: bool = True, frame: int | None = None,
                 pred_boundary: list[torch.Tensor | None] | None = None,
                 coords_fn=None, intensity_fn=None, max_boundary_points: int = 1000,
                 ed: int | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one subject at ED and one other frame.

    ``code (C,)``. ``frame``: the non-ED frame (random when None). ``pred_boundary``: boundary
    voxel indices per frame to use instead of the labels' (test-time motion fitting).
    ``coords_fn``: optional differentiable map applied to coordinates (pose refinement, or an
    augmented copy's transform). ``intensity_fn``: optional map of the observed intensities
    (an augmented copy's contrast).
    ``max_boundary_points``: ED boundary points moved per step (a random subset).
    ``ed``: the ED frame (default: the frame of earliest model time; give it when several
    frames share time 0).
    Returns the total and a dict of the (unweighted) parts.
    """
    ed, frame, idx = step_points(st, n_points, generator, use_labels, frame, ed)
    coords = st.coords[idx]
    if coords_fn is not None:
        coords = coords_fn(coords)
    parts: dict[str, torch.Tensor] = {}
    total = code.new_zeros(())
    motion_w = min(1.0, epoch / max(weights.warmup_epochs, 1)) if weights.warmup_epochs else 1.0
    need_motion = motion_w > 0 and (weights.no_motion > 0 or weights.displacement > 0)
    frames = [ed] if frame == ed else [ed, frame]
    for f in frames:
        t = st.frame_times[f].expand(coords.shape[0], 1)
        out = net(coords, t, code, with_motion=(f == ed and need_motion))
        target = st.intensity[f, idx]
        li = intensity_loss(out.intensity, intensity_fn(target) if intensity_fn else target)
        parts["intensity"] = parts.get("intensity", 0) + li
        total = total + weights.intensity * li
        if use_labels and st.labels is not None and weights.seg > 0:
            ls = segmentation_loss(out.seg_logits, st.labels[f, idx])
            parts["seg"] = parts.get("seg", 0) + ls
            total = total + weights.seg * ls
        if f == ed and need_motion and weights.no_motion > 0:
            lz = no_motion_at_ed_loss(out.displacement)
            parts["no_motion"] = lz
            total = total + motion_w * weights.no_motion * lz
    lc = code_prior(code)
    parts["code"] = lc
    total = total + weights.code * lc

    bnd = pred_boundary if pred_boundary is not None else st.boundary
    if need_motion and frame != ed and bnd[ed] is not None and bnd[frame] is not None \
            and bnd[ed].numel() > 5 and bnd[frame].numel() > 0:
        b0 = st.coords[_subsample(bnd[ed], max_boundary_points, generator)]
        bt = st.coords[bnd[frame]]
        if coords_fn is not None:
            b0, bt = coords_fn(b0), coords_fn(bt)
        t = st.frame_times[frame].expand(b0.shape[0], 1)
        out_b = net(b0, t, code)
        u = out_b.displacement
        ld = displacement_loss(b0, u, bt)
        parts["displacement"] = ld
        total = total + motion_w * weights.displacement * ld
        if weights.folding > 0 or weights.smoothness > 0:
            edges = knn_edges(b0.detach(), k=5)
            if weights.folding > 0:
                lf = folding_loss(b0, u, edges)
                parts["folding"] = lf
                total = total + motion_w * weights.folding * lf
            if weights.smoothness > 0:
                lab = st.labels[ed, bnd[ed]] if st.labels is not None else None
                vals = torch.cat([out_b.intensity[:, None], out_b.seg_logits.softmax(-1)], 1)
                lsm = smoothness_loss(vals, edges, lab)
                parts["smoothness"] = lsm
                total = total + weights.smoothness * lsm
    return total, {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                   for k, v in parts.items()}
