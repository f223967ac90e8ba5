"""Segment & Track's options: one frozen, validated object built once (by the command, the
Slicer module or a script) and passed down the pipeline.

The fitting presets (``quality``) and the refinement's settings are named, typed values here
rather than constants scattered over the stages; the command-line defaults are read from
these dataclasses. A value out of range raises :class:`NimosefInputError` naming the option
(``res_factor_z``); the command line shows it as its flag (``--res-factor-z``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.data.roi import ROI_MM
from nimosef_engine.fitting.pose import MAX_POSE_HYPOTHESES
from nimosef_engine.refinement.alignment import PRIOR_GATE
from nimosef_engine.refinement.refine import (
    MAX_SLICE_SHIFT_MM,
    REFINE_BETA,
    REFINE_ITERATIONS,
    SLICE_GAMMA,
)
from nimosef_engine.sampling.memory import DEFAULT_MEMORY_BUDGET_GB

MIN_ROI_MM = 100.0  # the region around the heart must hold the heart (an adult's is ~100 mm)
MAX_ROI_MM = 400.0
MAX_RES_FACTOR_Z = 8


@dataclass(frozen=True)
class FitPreset:
    """How hard the fit works (``quality``): the prior's calibrated fitting steps times
    ``steps_scale``, ``restarts`` from the mean code, the pose refined with the code or not,
    ``n_points`` sampled per step, and the in-plane ``rotations`` (degrees) tried around the
    localised LV -> RV axis with ``rotation_steps`` short-fit steps each."""

    name: str
    steps_scale: float
    restarts: int
    pose: bool
    n_points: int
    rotations: tuple[int, ...]
    rotation_steps: int


FAST = FitPreset("fast", 0.5, 1, False, 3000, (0,), 0)
STANDARD = FitPreset("standard", 1.0, 1, True, 4000, tuple(range(0, 360, 45)), 25)
THOROUGH = FitPreset("thorough", 2.0, 3, True, 6000, tuple(range(0, 360, 30)), 40)
QUALITY_PRESETS: dict[str, FitPreset] = {p.name: p for p in (FAST, STANDARD, THOROUGH)}


@dataclass(frozen=True)
class RefineSettings:
    """The refinement of the labels by the image (:mod:`refinement.refine`): the prior's full
    weight ``beta``, gated by its agreement with the slice network between ``prior_gate``
    (mean class Dice; :func:`refinement.alignment.refine_beta`), the slice network's weight
    ``gamma``, EM ``iterations`` of the intensity model and the largest in-plane slice shift
    ``max_slice_shift_mm``."""

    beta: float = REFINE_BETA
    prior_gate: tuple[float, float] = PRIOR_GATE
    gamma: float = SLICE_GAMMA
    iterations: int = REFINE_ITERATIONS
    max_slice_shift_mm: float = MAX_SLICE_SHIFT_MM

    def __post_init__(self) -> None:
        for name in ("beta", "gamma", "max_slice_shift_mm"):
            value = getattr(self, name)
            if not _finite(value) or float(value) < 0:
                raise NimosefInputError(f"refinement.{name}",
                                        f"must be a non-negative number, got {value}")
        lo_hi = tuple(self.prior_gate)
        if len(lo_hi) != 2 or not all(_finite(v) for v in lo_hi) \
                or not 0.0 <= lo_hi[0] < lo_hi[1] <= 1.0:
            raise NimosefInputError("refinement.prior_gate",
                                    f"must be two numbers 0 <= low < high <= 1, got {lo_hi}")
        _int_in("refinement.iterations", self.iterations, 1, None)


TIME_MODELS = ("images", "landmarks")


@dataclass(frozen=True)
class SegmentTrackOptions:
    """Everything a Segment & Track run can be told. Inputs' timing (``frame_times``,
    ``frame_numbers`` with ``n_frames``, ``series``) is how the cine is read; ``lv_center`` and
    ``rv_point`` (scanner RAS mm) override the localisation; ``refine`` and ``slice_net``
    switch the refinement by the image and by the slice network; ``motion`` the dense motion
    fields and strain (``motion/``, ``strain.csv``); ``force`` keeps a result
    whose quality verdict is ``fail``; ``threads`` the CPU threads torch uses (None: torch's
    default, one per core); ``time_model`` how a cine's frames are placed in the prior's
    cycle: ``images`` (each frame by its own intensities, ED and ES the landmarks) or
    ``landmarks`` (linear between ED and ES, diastole as systole reversed)."""

    prior: str | None = None
    res_factor_z: int = 2
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    quality: str = STANDARD.name
    fit_steps: int | None = None
    roi_mm: float = ROI_MM
    clean: bool = True
    refine: bool = True
    slice_net: bool = True
    slice_net_path: str | None = None
    meshes: bool = True
    motion: bool = True
    overwrite: bool = False
    frame_times: tuple[float, ...] | None = None
    frame_numbers: tuple[int, ...] | None = None
    n_frames: int | None = None
    series: str | None = None
    lv_center: tuple[float, float, float] | None = None
    rv_point: tuple[float, float, float] | None = None
    ed_frame: int | None = None
    pose_hypotheses: int = 1
    time_model: str = "images"
    force: bool = False
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB
    refinement: RefineSettings = field(default_factory=RefineSettings)

    def __post_init__(self) -> None:
        if self.quality not in QUALITY_PRESETS:
            raise NimosefInputError("quality", f"unknown quality {self.quality!r} "
                                               f"({', '.join(QUALITY_PRESETS)})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise NimosefInputError("device", f"unknown device {self.device!r} "
                                              "(auto, cpu, cuda)")
        if self.time_model not in TIME_MODELS:
            raise NimosefInputError("time_model", f"unknown time model {self.time_model!r} "
                                                  f"({', '.join(TIME_MODELS)})")
        _int_in("res_factor_z", self.res_factor_z, 1, MAX_RES_FACTOR_Z)
        if self.threads is not None:
            _int_in("threads", self.threads, 1, 1024)
        _int_in("pose_hypotheses", self.pose_hypotheses, 1, MAX_POSE_HYPOTHESES)
        if self.fit_steps is not None:
            _int_in("fit_steps", self.fit_steps, 1, None)
        if not _finite(self.roi_mm) or not MIN_ROI_MM <= float(self.roi_mm) <= MAX_ROI_MM:
            raise NimosefInputError("roi_mm", f"must be between {MIN_ROI_MM:g} and "
                                              f"{MAX_ROI_MM:g} mm (the region around the "
                                              f"heart), got {self.roi_mm}")
        if not _finite(self.memory_budget_gb) or not float(self.memory_budget_gb) > 0:
            raise NimosefInputError("memory_budget_gb", f"must be a positive number of GB, "
                                                        f"got {self.memory_budget_gb}")
        if self.n_frames is not None:
            _int_in("n_frames", self.n_frames, 2, None)
        if self.ed_frame is not None:
            _int_in("ed_frame", self.ed_frame, 0, None)
        for name in ("lv_center", "rv_point"):
            point = getattr(self, name)
            if point is not None and (len(point) != 3 or not all(_finite(v) for v in point)):
                raise NimosefInputError(name, f"must be 3 finite numbers (RAS mm), got {point}")
        for name in ("frame_times", "frame_numbers", "lv_center", "rv_point"):
            value = getattr(self, name)
            if value is not None:  # lists from callers: kept as tuples (hashable, frozen)
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.refinement, dict):
            object.__setattr__(self, "refinement", RefineSettings(**self.refinement))

    @property
    def preset(self) -> FitPreset:
        """The fitting preset named by ``quality``."""
        return QUALITY_PRESETS[self.quality]

    def to_dict(self) -> dict:
        """Plain data for ``config.json``."""
        return asdict(self)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _int_in(name: str, value, lo: int, hi: int | None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) \
        and value >= lo and (hi is None or value <= hi)
    if not ok:
        span = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise NimosefInputError(name, f"must be {span}, got {value}")
