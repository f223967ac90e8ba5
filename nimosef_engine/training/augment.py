"""Training-time augmentation for the auto-decoder: augmented copies as extra subjects.

An auto-decoder has one code per training shape, so a transform drawn afresh at every step
would ask one code to explain many poses. Instead each training subject gets ``copies``
augmented copies, drawn once from a seeded generator, and every copy gets its own code: the
code space then spans the poses (rotation about the long axis, tilt, scale, shift) and the
contrasts (intensity gamma) that a new scanner or an imperfect localisation bring.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from nimosef_engine.sampling.fields import pose_fn


@dataclass
class AugmentConfig:
    """Ranges of the augmented copies (uniform draws; 0 turns a transform off)."""

    copies: int = 0
    rotate_deg: float = 20.0
    tilt_deg: float = 5.0
    scale: float = 0.1
    translate: float = 0.05
    gamma: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Augmentation:
    """One copy: ``x' = matrix[:3, :3] @ x + matrix[:3, 3]`` (normalised heart frame) and
    intensity ``i' = i ** gamma``. Copy 0 of every subject is the identity."""

    subject: int
    matrix: np.ndarray
    gamma: float

    def coords_fn(self):
        """The coordinate map as a torch function, or None for the identity."""
        if np.allclose(self.matrix, np.eye(4)):
            return None
        return pose_fn(torch.from_numpy(self.matrix))

    def intensity_fn(self):
        """The intensity map as a torch function, or None for the identity."""
        if self.gamma == 1.0:
            return None
        g = float(self.gamma)
        return lambda i: i.clamp_min(0.0) ** g


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    th = math.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(th) * k + (1 - math.cos(th)) * k @ k


def random_augmentation(cfg: AugmentConfig, rng: np.random.Generator,
                        subject: int) -> Augmentation:
    """One random copy of ``subject`` drawn from ``cfg``'s ranges."""
    rot = _rotation([0, 0, 1], rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    tilt_axis = np.array([math.cos(phi := rng.uniform(0, 2 * math.pi)), math.sin(phi), 0.0])
    rot = _rotation(tilt_axis, rng.uniform(-cfg.tilt_deg, cfg.tilt_deg)) @ rot
    scale = math.exp(rng.uniform(math.log(1 - cfg.scale), math.log(1 + cfg.scale))) \
        if cfg.scale > 0 else 1.0
    m = np.eye(4)
    m[:3, :3] = scale * rot
    m[:3, 3] = rng.uniform(-cfg.translate, cfg.translate, 3)
    gamma = math.exp(rng.uniform(-cfg.gamma, cfg.gamma)) if cfg.gamma > 0 else 1.0
    return Augmentation(subject, m, gamma)


def augmentation_table(n_subjects: int, cfg: AugmentConfig, seed: int) -> list[Augmentation]:
    """Code index -> augmentation: the ``n_subjects`` originals first (identity), then
    ``cfg.copies`` copies of each subject. Same ``seed`` gives the same table."""
    table = [Augmentation(i, np.eye(4), 1.0) for i in range(n_subjects)]
    rng = np.random.default_rng(seed + 7727)
    for _ in range(max(0, cfg.copies)):
        table += [random_augmentation(cfg, rng, i) for i in range(n_subjects)]
    return table
