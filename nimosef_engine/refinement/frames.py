"""The one loop that samples a fitted subject frame by frame and refines each frame's labels
by its image: used by segment-track (:mod:`pipeline.writers`) and resample
(:mod:`pipeline.resample`) alike, so the two write the same labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from nimosef_engine.data.subject import SubjectData
from nimosef_engine.refinement.refine import (
    REFINE_BETA,
    REFINE_ITERATIONS,
    SLICE_GAMMA,
    final_labels,
)
from nimosef_engine.refinement.slice_evidence import SliceEvidence
from nimosef_engine.sampling.fields import SampledFrame, iter_frames
from nimosef_engine.sampling.memory import DEFAULT_CHUNK

SLICE_PROBS_KEPT = 2  # frames whose slice-network probabilities are kept for reuse


@dataclass
class FrameRefinement:
    """What refines a subject's frames: its image ``(T, x, y, z)`` uint8 on the crop grid
    (:func:`refinement.refine.quantise_image`; None: the network's labels), the slice
    network's ``evidence`` of it (or None), the slices' in-plane ``shift`` ``(Z, 2)`` voxels
    (or None), the prior's weight ``beta``, the slice network's ``gamma``, EM
    ``iterations`` and whether the labels are cleaned up (``clean``)."""

    image: np.ndarray | None = None
    evidence: SliceEvidence | None = None
    shift: np.ndarray | None = None
    beta: float = REFINE_BETA
    gamma: float = SLICE_GAMMA
    iterations: int = REFINE_ITERATIONS
    clean: bool = True
    _kept: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def slice_probs(self, index: int) -> np.ndarray | None:
        """The slice network's ``(C, x, y, z)`` probabilities of frame ``index`` (None without
        a network or an image); the last :data:`SLICE_PROBS_KEPT` frames' are reused, so a
        frame sampled at two resolutions runs the network once."""
        if self.evidence is None or self.image is None:
            return None
        if index not in self._kept:
            if len(self._kept) >= SLICE_PROBS_KEPT:
                self._kept.pop(next(iter(self._kept)))
            self._kept[index] = self.evidence.frame(self.image[index])
        return self._kept[index]

    def labels(self, frame: SampledFrame, factor: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels of one sampled frame at z factor ``factor`` and their class probabilities
        (:func:`refinement.refine.final_labels`)."""
        image = None if self.image is None else self.image[frame.index]
        return final_labels(frame, image, factor, self.clean,
                            None if image is None else self.slice_probs(frame.index),
                            self.beta, self.gamma, self.iterations)


def iter_refined_frames(net, code: torch.Tensor, sd: SubjectData, factor: int, device,
                        pose_matrix: torch.Tensor | None, refinement: FrameRefinement,
                        reporter=None, stage: str = "sample", probs: bool = False,
                        chunk: int = DEFAULT_CHUNK, frames: list[int] | None = None,
                        ) -> Iterator[tuple[SampledFrame, np.ndarray, np.ndarray | None]]:
    """Sample ``sd``'s frames (``frames``, default all, in that order) at z factor ``factor``
    with each slice shifted by ``refinement.shift`` (:func:`sampling.fields.iter_frames`) and
    refine them: yields ``(frame, labels (x, y, z*factor) uint8, probabilities or None)``.
    ``probs``: keep the class probabilities even without refinement (for meshes)."""
    for fr in iter_frames(net, code, sd, factor, device, pose_matrix, reporter, stage,
                          probs=probs or refinement.image is not None, chunk=chunk,
                          frames=frames, slice_shift=refinement.shift):
        labels, p = refinement.labels(fr, factor)
        yield fr, labels, p
