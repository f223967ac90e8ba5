"""The memory plan of sampling: how many points per network call keep the process within a
memory budget, and a refusal when even one frame of output does not fit."""

from __future__ import annotations

import ctypes
import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from nimosef_engine.core.errors import NimosefInputError

DEFAULT_CHUNK = 16384  # points per network call; larger chunks are no faster on a CPU
MIN_CHUNK = 256
BYTES_PER_GB = 1024 ** 3
DEFAULT_MEMORY_BUDGET_GB = 4.0
# Memory held per point of one sampled frame, besides the network's chunk (bytes):
# coordinates (3 float32), labels, intensity and its float64 scaling temporaries, clean-up
# (int32 component map and boolean masks) ...
SAMPLED_POINT_BYTES = 12 + 1 + 4 + 16 + 12
# ... and with class probabilities: 4 float32 and the mesh pipeline's copies of one class.
PROBS_POINT_BYTES = 16 + 16
# ... and refined by the image (:mod:`refine`): log-prior, scores and posterior (4 float32
# each), the slice network's probabilities and their logarithm (:mod:`refinement.slice_evidence`, 4
# float32 each), the image and the temporaries of one class.
REFINE_POINT_BYTES = 5 * 16 + 4 + 12
# Per voxel of one written whole-grid frame: labels, intensity, the x-fastest copy for disk.
WRITTEN_VOXEL_BYTES = 1 + 4 + 4


def release_free_heap() -> None:
    """Hand memory freed by earlier stages back to the system (glibc ``malloc_trim``), so
    the resident size measured next is what is really in use. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def current_rss_bytes() -> int:
    """Resident memory of this process now (Linux), else its peak so far (macOS), else 0."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def network_point_bytes(net) -> int:
    """Working memory of the network per point of a chunk (bytes; measured ~4.5 kB at width
    128: the input row, the Gabor layers' frequency/scale halves and their temporaries). It
    counts an input row of ``4 + code_dim`` floats, an upper bound since one shared code no
    longer goes into the row (:meth:`NimosefNet.features`)."""
    cfg = net.cfg
    return 4 * (4 + cfg.code_dim) + 40 * cfg.width


def frame_bytes(sampled_points: int, written_voxels: int, probs: bool = False,
                refine: bool = False) -> int:
    """Memory held for one frame of output besides the network's chunk: ``sampled_points``
    crop-grid points (with class probabilities if ``probs``, refined by the image if
    ``refine``) and ``written_voxels`` voxels of whole-grid frames streamed to disk."""
    per_point = SAMPLED_POINT_BYTES + (PROBS_POINT_BYTES if probs or refine else 0) \
        + (REFINE_POINT_BYTES if refine else 0)
    return int(sampled_points) * per_point + int(written_voxels) * WRITTEN_VOXEL_BYTES


@dataclass(frozen=True)
class MemoryPlan:
    """How one frame is sampled within a budget (bytes): ``chunk`` points per network call."""

    budget_bytes: int
    base_bytes: int
    frame_bytes: int
    point_bytes: int
    chunk: int

    @property
    def peak_bytes(self) -> int:
        """Expected peak resident memory while sampling and writing."""
        return self.base_bytes + self.frame_bytes + self.chunk * self.point_bytes

    def describe(self) -> str:
        return (f"sampling in chunks of {self.chunk} points (expected peak "
                f"{self.peak_bytes / BYTES_PER_GB:.2f} GB of {self.budget_bytes / BYTES_PER_GB:.2f}"
                f" GB)")


def plan_chunk(budget_gb: float, net, frame_nbytes: int, base_bytes: int | None = None,
               max_chunk: int = DEFAULT_CHUNK) -> MemoryPlan:
    """Largest chunk (at most ``max_chunk``) that keeps the process within ``budget_gb``.

    ``frame_nbytes``: :func:`frame_bytes` of the caller's per-frame arrays; ``base_bytes``:
    memory already in use (default: this process's resident memory now, after
    :func:`release_free_heap`). Raises
    :class:`NimosefInputError` naming ``memory_budget_gb`` with the minimum that would do
    when even a chunk of ``MIN_CHUNK`` points does not fit.
    """
    if not budget_gb > 0 or not math.isfinite(budget_gb):
        raise NimosefInputError("memory_budget_gb", f"must be a positive number of GB, "
                                                      f"got {budget_gb}")
    budget = int(budget_gb * BYTES_PER_GB)
    if base_bytes is None:
        release_free_heap()
        base_bytes = current_rss_bytes()
    base = int(base_bytes)
    per_point = network_point_bytes(net)
    need = base + frame_nbytes + MIN_CHUNK * per_point
    if need > budget:
        minimum = math.ceil(need / BYTES_PER_GB * 100) / 100
        raise NimosefInputError(
            "memory_budget_gb",
            f"{budget_gb:g} GB is too small for one frame of output: at least {minimum:.2f} GB "
            f"is needed ({base / BYTES_PER_GB:.2f} GB already in use, "
            f"{frame_nbytes / BYTES_PER_GB:.2f} GB for one frame's arrays)")
    chunk = int(min(max_chunk, (budget - base - frame_nbytes) // per_point))
    return MemoryPlan(budget, base, int(frame_nbytes), per_point, chunk)


def output_frame_bytes(crop_shape, source_shape, factor: int, meshes: bool,
                       n_frames: int, refine: bool = False) -> int:
    """Memory (bytes) :func:`sample_and_write` holds besides the network's chunk: one frame at
    z factor ``factor`` (with probabilities for meshes or refinement), one at the native
    resolution, the native crop labels of all ``n_frames`` (kept for the motion table and the
    report) and, with ``refine``, the uint8 image of all frames."""
    crop, src = int(np.prod(crop_shape)), int(np.prod(source_shape))
    nbytes = frame_bytes(crop * factor, src * factor, probs=meshes, refine=refine)
    if factor > 1:
        nbytes += frame_bytes(crop, src, refine=refine)
    return nbytes + n_frames * crop * (2 if refine else 1)
