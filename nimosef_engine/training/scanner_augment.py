"""What differs between scanners and centres, as transforms of a normalised slice.

Cines from another vendor, field strength or centre differ from the training data in their
intensity response (darker or brighter blood, fat), bias field (coil sensitivity), noise,
in-plane resolution (0.7-2.1 mm, blur) and ringing. These transforms model them, using
MONAI's implementations (``monai.transforms``), on slices ``(B, 1, H, W)`` float32 in about
[0, 1] (the preprocessed crop's normalisation):

- :func:`random_scanner` draws a random combination for training (:mod:`train_slice_net`);
- :data:`SHIFTS` are fixed, named shifts for measuring robustness
  (``benchmarks/slice_net_robustness.py``).

MONAI is needed for training and for the benchmark only (``pip install nimosef-engine[train]``);
Segment & Track does not import this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


def _monai():
    try:
        from monai import transforms
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("scanner augmentation needs MONAI: pip install 'monai>=1.3'") from e
    return transforms


def gamma(x: torch.Tensor, g: float) -> torch.Tensor:
    """Intensity response ``x ** g`` on [0, 1] (g > 1: darker mid-tones, as a darker blood pool
    relative to fat)."""
    return x.clamp(0.0, 1.0) ** g


def bias_field(x: torch.Tensor, coeff: float, seed: int) -> torch.Tensor:
    """A smooth multiplicative field (MONAI ``RandBiasField``, degree 3, coefficients drawn in
    ``[-coeff, coeff]``; 0.4 spans about 0.4-2.5 times over the crop), scaled to mean 1, the
    same field for every slice of ``x``."""
    t = _monai().RandBiasField(degree=3, coeff_range=(-coeff, coeff), prob=1.0)
    t.set_random_state(seed)
    field = t(torch.ones_like(x[0]))  # (1, H, W)
    return x * field.to(x.dtype)[None] / field.mean()


def lower_resolution(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Acquired at ``factor`` times coarser pixels, shown on the same grid: area-downsampled
    then bilinearly upsampled."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(4, round(h / factor)), max(4, round(w / factor))),
                          mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def per_slice(transform, x: torch.Tensor, seed: int) -> torch.Tensor:
    """A MONAI array transform applied to each slice ``(1, H, W)`` of ``x (B, 1, H, W)``."""
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed)
    return torch.stack([torch.as_tensor(transform(s), dtype=x.dtype) for s in x])


def rician_noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Magnitude-image noise (MONAI ``RandRicianNoise``) of standard deviation ``std``."""
    return per_slice(_monai().RandRicianNoise(prob=1.0, std=std, relative=False,
                                              sample_std=False), x, seed)


def gibbs(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Truncation ringing (MONAI ``GibbsNoise``, ``alpha`` in [0, 1])."""
    return per_slice(_monai().GibbsNoise(alpha=alpha), x, 0)


def histogram_shift(x: torch.Tensor, points: int, seed: int) -> torch.Tensor:
    """A random monotone remapping of the intensity histogram (MONAI ``RandHistogramShift``
    with ``points`` control points): another vendor's contrast curve."""
    return per_slice(_monai().RandHistogramShift(num_control_points=points, prob=1.0), x, seed)


SHIFTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x,
    "gamma_0.6": lambda x: gamma(x, 0.6),
    "gamma_1.8": lambda x: gamma(x, 1.8),
    "bias_0.4": lambda x: bias_field(x, 0.4, seed=3),
    "noise_0.06": lambda x: rician_noise(x, 0.06, seed=1),
    "res_x2": lambda x: lower_resolution(x, 2.0),
    "gibbs_0.6": lambda x: gibbs(x, 0.6),
    "histogram_6": lambda x: histogram_shift(x, 6, seed=1),
}


def random_scanner(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """A random scanner for each slice of ``x (B, 1, H, W)`` (clamped to [0, 1]): each of
    histogram shift, gamma, bias field, lower resolution, Gibbs ringing and Rician noise is
    applied with probability 0.3-0.5, its strength drawn up to ``strength`` times its range."""
    tr = _monai()
    out = []
    for s in x.clamp(0.0, 1.0):
        def draw(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand(1, generator=gen))

        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
        s = s[None]
        if draw(0, 1) < 0.4:
            s = histogram_shift(s, int(draw(4, 10)), seed)
        if draw(0, 1) < 0.5:
            s = gamma(s, math.exp(draw(-0.7, 0.7) * strength))
        if draw(0, 1) < 0.4:
            s = bias_field(s, draw(0.1, 0.4) * strength, seed)
        if draw(0, 1) < 0.3:
            s = lower_resolution(s, 1.0 + draw(0.0, 1.5) * strength)
        if draw(0, 1) < 0.2:
            s = gibbs(s, draw(0.3, 0.7) * strength)
        if draw(0, 1) < 0.3:
            s = per_slice(tr.RandRicianNoise(prob=1.0, std=0.08 * strength, relative=False,
                                             sample_std=True), s, seed)
        out.append(s[0].clamp(0.0, 1.0))
    return torch.stack(out)


def as_numpy_frame(fn: Callable[[torch.Tensor], torch.Tensor], frame: np.ndarray) -> np.ndarray:
    """A slice transform applied to one frame ``(X, Y, Z)`` in [0, 1] (slices on the last
    axis); returns float32 ``(X, Y, Z)``."""
    x = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1), np.float32))[:, None]
    return fn(x)[:, 0].numpy().transpose(1, 2, 0).clip(0.0, 1.0).astype(np.float32)
