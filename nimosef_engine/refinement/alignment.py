"""The fitted prior held against the image before refinement: each slice's in-plane shift
(breath-hold offsets), the agreement of the prior's labels with the slice network's, and the
prior's weight in the refinement gated by that agreement."""

from __future__ import annotations

import numpy as np
import torch

from nimosef_engine.core.geometry import spacing_of
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.evaluation.metrics import class_agreement
from nimosef_engine.refinement.frames import FrameRefinement
from nimosef_engine.refinement.refine import (
    MAX_SLICE_SHIFT_MM,
    REFINE_BETA,
    image_on_grid,
    slice_shifts,
)
from nimosef_engine.sampling.fields import iter_frames

PRIOR_GATE = (0.5, 0.7)  # prior / slice-network agreement over which the prior's weight rises


def align_slices(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                 refinement: FrameRefinement, frames: list[int], device,
                 reporter: ProgressReporter | None = None,
                 max_shift_mm: float = MAX_SLICE_SHIFT_MM) -> np.ndarray:
    """In-plane shift of each slice (``(Z, 2)`` voxels, :func:`refine.slice_shifts`, at most
    ``max_shift_mm``) that aligns the fitted model with ``refinement``'s image (and with the
    slice network's probabilities of it), from the native-resolution class probabilities of
    ``frames`` (the localised ED and ES; invalid or repeated ones dropped)."""
    use = _valid(frames, sd)
    if reporter is not None:
        reporter.update("align", 0.0, "aligning the slices with the image")
    probs = [fr.probs.copy() for fr in iter_frames(net, code, sd, 1, device, pose_m,
                                                   probs=True, frames=use)]
    slice_probs = [refinement.slice_probs(i) for i in use]
    shift = slice_shifts([image_on_grid(refinement.image[i], 1) for i in use], probs,
                         spacing_of(sd.crop_affine_ras)[:2], max_shift_mm, refinement.beta,
                         None if refinement.evidence is None else slice_probs,
                         refinement.gamma)
    if reporter is not None:
        reporter.update("align", 1.0, f"{int(shift.any(1).sum())} of {len(shift)} slices "
                                      "shifted")
    return shift


def prior_slice_agreement(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                          refinement: FrameRefinement, frames: list[int],
                          device) -> dict[int, dict[str, float]]:
    """For each of ``frames`` (invalid or repeated ones dropped), the Dice per class between
    the fitted prior's labels (its argmax, slices shifted by ``refinement.shift``) and the
    slice network's reading of ``refinement``'s image
    (:func:`evaluation.metrics.class_agreement`): how far the population model and the image
    evidence agree on this heart."""
    return {fr.index: class_agreement(fr.probs.argmax(0),
                                      refinement.slice_probs(fr.index).argmax(0))
            for fr in iter_frames(net, code, sd, 1, device, pose_m, probs=True,
                                  frames=_valid(frames, sd), slice_shift=refinement.shift)}


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


def _valid(frames: list[int], sd: SubjectData) -> list[int]:
    return sorted({int(i) for i in frames if 0 <= int(i) < sd.n_frames}) or [0]
