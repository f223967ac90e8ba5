"""The learned image likelihood of the refinement: a small 2D U-Net (:mod:`model.slice_unet`)
that gives class probabilities for each short-axis slice of a frame from its pixels alone.

The implicit prior places the heart and keeps its shape coherent through space and time; the
slice network reads the image at the resolution it was acquired. :mod:`refine` multiplies the
two (``p_net^β · p_slice^γ · p(I | c)``). The bundled network ships beside the population prior
and was trained on the same ACDC training split (``nimosef train-slice-net``; model card).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nimosef_engine.core.geometry import spacing_of
from nimosef_engine.core.progress import check_cancelled
from nimosef_engine.model.bundled import load_slice_net
from nimosef_engine.model.slice_unet import (
    SliceUNet,
    from_grid,
    standardise,
    to_grid,
)
from nimosef_engine.refinement.refine import image_on_grid

SLICES_PER_BATCH = 8  # slices per network call (bounds memory; faster per slice than 16 on a CPU)
FLIPS = ((), (-1,), (-2,), (-2, -1))  # the in-plane mirror views averaged with ``flips=True``


@dataclass
class SliceEvidence:
    """A slice network ready for one subject's crop: :meth:`frame` gives a frame's
    probabilities from its uint8 image (:func:`refinement.refine.quantise_image`)."""

    net: SliceUNet
    net_id: str
    spacing_mm: float

    @classmethod
    def load(cls, path: str | Path | None, device, sd) -> SliceEvidence:
        """For the crop of :class:`data.subject.SubjectData` ``sd``; ``path`` as in
        :func:`load_slice_net`."""
        net, net_id = load_slice_net(path, device)
        return cls(net, net_id, float(spacing_of(sd.crop_affine_ras)[0]))

    def frame(self, image_u8: np.ndarray) -> np.ndarray:
        """``(C, X, Y, Z)`` float32 probabilities of one frame ``image_u8 (X, Y, Z)``."""
        return slice_probabilities(self.net, image_on_grid(image_u8, 1), self.spacing_mm)


@torch.inference_mode()
def slice_probabilities(net: SliceUNet, image: np.ndarray, spacing_mm: float,
                        flips: bool = False) -> np.ndarray:
    """Class probabilities ``(C, X, Y, Z)`` float32 of each slice of one frame.

    ``image (X, Y, Z)``: the frame's crop normalised to [0, 1] (square in-plane, heart near the
    centre), ``spacing_mm`` its in-plane pixel size. ``flips``: the mean of the network's
    probabilities over the slice and its three in-plane mirror images (:data:`FLIPS`; the
    network was trained on mirrored slices), each mapped back; four times the work.
    Segment & Track does not use it: on ACDC it changed little, and on the real pairs from
    other centres it did not help (model card, `benchmarks/slice_net_robustness.py --flips`).
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square-in-plane (X, Y, Z) frame, got {image.shape}")
    dev = next(net.parameters()).device
    n, z = image.shape[0], image.shape[2]
    out = np.empty((net.config.n_classes, n, n, z), np.float32)
    for k0 in range(0, z, SLICES_PER_BATCH):
        check_cancelled()
        k1 = min(z, k0 + SLICES_PER_BATCH)
        x = torch.from_numpy(np.ascontiguousarray(image[:, :, k0:k1].transpose(2, 0, 1)))
        x = standardise(to_grid(x[:, None].to(dev), spacing_mm))
        probs = from_grid(_network_probabilities(net, x, flips), n, spacing_mm)
        out[..., k0:k1] = probs.permute(1, 2, 3, 0).float().cpu().numpy()
    return out


def _network_probabilities(net: SliceUNet, x: torch.Tensor, flips: bool) -> torch.Tensor:
    """Softmax of ``net`` on grid slices ``x (B, 1, G, G)``; with ``flips``, averaged over the
    mirror views of :data:`FLIPS` (a call per view: one larger batch ran slower on a CPU)."""
    probs = torch.softmax(net(x), 1)
    if flips:
        for dims in FLIPS[1:]:
            probs += torch.softmax(net(x.flip(dims)), 1).flip(dims)
        probs /= len(FLIPS)
    return probs
