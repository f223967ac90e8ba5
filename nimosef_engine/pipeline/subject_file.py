"""``subject.nimosef``: a fitted subject (code, pose, geometry, image), written by segment-track
and read by ``nimosef resample``. This module owns the format: what is kept
(:func:`subject_record`), writing, reading and checking, and turning a file back into the
crop grid, image, slice shifts and models its labels were made with.

The file is a ``torch.save`` dict of tensors and plain data, read only through
:func:`nimosef_engine.core.safe_load.load_torch_file` (never code). Format ``nimosef-subject/2``
carries ``sha256``, the :func:`~nimosef_engine.core.safe_load.content_digest` of everything else,
checked on load: a damaged or edited file is refused. Files of format ``nimosef-subject/1``
(older versions, no digest) are still read, through the same safe loader and checks.

The paths a file records (``prior_path``, ``slice_net_path``) are hints for messages, never
followed: the prior and the slice network are the bundled ones, found by their ids, or the
ones the user names (:func:`subject_prior`, :func:`pipeline.resample.subject_slice_evidence`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from nimosef_engine import __version__
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import HeartFrame, crop_affine
from nimosef_engine.core.safe_load import content_digest, load_torch_file, save_torch_file
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.io.cine import Cine
from nimosef_engine.model.bundled import BUNDLED_PRIOR, load_prior
from nimosef_engine.pipeline.options import SegmentTrackOptions
from nimosef_engine.refinement.frames import FrameRefinement
from nimosef_engine.refinement.slice_evidence import SliceEvidence

log = logging.getLogger(__name__)

FORMAT = "nimosef-subject/2"
LEGACY_FORMATS = ("nimosef-subject/1",)
DIGEST_KEY = "sha256"


def write_subject_file(path: str | Path, subject: dict) -> None:
    """Write ``subject`` (a dict of tensors and plain data) atomically as format
    :data:`FORMAT`, with the digest of its content."""
    payload = {k: v for k, v in subject.items() if k != DIGEST_KEY}
    payload["format"] = FORMAT
    payload[DIGEST_KEY] = content_digest(payload)
    save_torch_file(path, payload)


def read_subject_file(path: str | Path) -> dict:
    """Read and check a subject file: safe load, format, digest, keys, types and shapes.
    Raises :class:`NimosefInputError` naming ``path`` with the first problem found."""
    path = Path(path)
    subj = load_torch_file(path, "subject file")
    fmt = subj.get("format") if isinstance(subj, dict) else None
    if fmt != FORMAT and fmt not in LEGACY_FORMATS:
        raise NimosefInputError(path, f"not a NIMOSEF subject file (format {FORMAT})")
    if fmt == FORMAT:
        stored = subj.get(DIGEST_KEY)
        content = {k: v for k, v in subj.items() if k != DIGEST_KEY}
        if not isinstance(stored, str) or content_digest(content) != stored:
            raise NimosefInputError(path, "damaged or edited: its content does not match the "
                                          "SHA-256 it carries; run segment-track again")
    else:
        log.warning("%s: format %s (an older version) carries no checksum: read without an "
                    "integrity check", path, fmt)
    check_subject(path, subj)
    return subj


def check_subject(path: Path, subj: dict) -> None:
    """Refuse a subject dict with missing keys or values of the wrong type or shape."""
    def fail(problem: str):
        raise NimosefInputError(path, f"not a valid subject file: {problem}")

    def tensor(key: str, shape: tuple | None = None, dtype=None, optional: bool = False):
        value = subj.get(key)
        if value is None:
            if optional:
                return None
            fail(f"no {key}")
        if not isinstance(value, torch.Tensor):
            fail(f"{key} is not a tensor")
        if shape is not None and tuple(value.shape) != tuple(shape):
            fail(f"{key} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        if dtype is not None and value.dtype != dtype:
            fail(f"{key} is {value.dtype}, expected {dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            fail(f"{key} holds NaN or infinite values")
        return value

    def numbers(key: str, n: int | None = None, ints: bool = False, optional: bool = False):
        value = subj.get(key)
        if value is None and optional:
            return None
        kinds = (int,) if ints else (int, float)
        if not isinstance(value, list | tuple) or (n is not None and len(value) != n) \
                or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
            fail(f"{key} must be a list of {n or 'some'} {'integers' if ints else 'numbers'}")
        return value

    code = tensor("code")
    if code.ndim != 1 or code.numel() == 0:
        fail(f"code has shape {tuple(code.shape)}, expected (code size,)")
    tensor("pose_matrix", (4, 4))
    if not isinstance(subj.get("prior_id"), str):
        fail("no prior_id")
    heart = subj.get("heart_frame")
    if not isinstance(heart, dict) or len(heart.get("origin_ras") or []) != 3 \
            or len(heart.get("rotation") or []) != 3:
        fail("heart_frame must hold origin_ras (3) and rotation (3 x 3)")
    affine = subj.get("input_affine_ras")
    if not isinstance(affine, list) or len(affine) != 4 \
            or not all(isinstance(r, list) and len(r) == 4 for r in affine):
        fail("input_affine_ras must be 4 x 4")
    shape = numbers("input_shape", 3, ints=True)
    offset = numbers("crop_offset", 3, ints=True)
    crop = numbers("crop_shape", 3, ints=True)
    if min(shape) < 1 or min(crop) < 1:
        fail(f"input_shape {shape} and crop_shape {crop} must be positive")
    if any(o < 0 or o + c > s for o, c, s in zip(offset, crop, shape, strict=True)):
        fail(f"its crop (offset {offset}, shape {crop}) does not lie inside the input {shape}")
    lo_hi = numbers("intensity_range", 2)
    if not lo_hi[1] > lo_hi[0]:
        fail(f"intensity_range {lo_hi} is empty")
    times = numbers("model_times")
    if not times:
        fail("model_times is empty")
    n_t = len(times)
    numbers("frame_times", n_t)
    numbers("time_ms", n_t, optional=True)
    tensor("image_u8", (n_t, *crop), torch.uint8, optional=True)
    tensor("slice_shift", (crop[2], 2), optional=True)
    if subj.get("slice_net_id") is not None and not isinstance(subj["slice_net_id"], str):
        fail("slice_net_id is not a string")
    beta = subj.get("refine_beta")
    if beta is not None and (isinstance(beta, bool) or not isinstance(beta, int | float)
                             or not 0.0 <= float(beta) <= 10.0):
        fail(f"refine_beta {beta!r} is not a weight in [0, 10]")


def subject_prior(subj: dict, path: str | Path, prior: str | Path | None, device):
    """``(checkpoint, network, id)`` of the prior ``subj`` was fitted with: ``prior`` when the
    user gives one, else the bundled prior when its id is the file's; refused otherwise (the
    path the file records is named, never followed)."""
    want = subj["prior_id"]
    ckpt, net, pid = load_prior(prior, device)
    if pid == want:
        return ckpt, net, pid
    if prior:
        raise NimosefInputError(path, f"was fitted with prior {want}, not {pid}: pass the "
                                      "right --prior")
    hint = f" (it was {subj['prior_path']})" if subj.get("prior_path") else ""
    raise NimosefInputError(path, f"was fitted with prior {want}, not the bundled one "
                                  f"({BUNDLED_PRIOR.name}, {pid}): pass that prior with "
                                  f"--prior{hint}")


def subject_grid(subj: dict) -> SubjectData:
    """The crop geometry of a fitted subject (no image data: intensities are zeros)."""
    aff = np.asarray(subj["input_affine_ras"], np.float64)
    shape = tuple(int(v) for v in subj["crop_shape"])
    n_t = len(subj["model_times"])
    return SubjectData(
        subject_id="subject", intensity=np.zeros((n_t, *shape), np.float32),
        frame_times=np.asarray(subj["model_times"], np.float32),
        crop_affine_ras=crop_affine(aff, subj["crop_offset"]),
        heart=HeartFrame.from_dict(subj["heart_frame"]),
        frame_indices=np.arange(n_t, dtype=np.int32), n_frames_cycle=n_t,
        source_shape=tuple(int(v) for v in subj["input_shape"]),
        crop_offset=tuple(int(v) for v in subj["crop_offset"]), source_affine_ras=aff,
        intensity_range=tuple(float(v) for v in subj["intensity_range"]))


def subject_image(subj: dict, sd: SubjectData, path) -> np.ndarray | None:
    """The normalised uint8 image ``(T, x, y, z)`` a subject file keeps for refinement, or
    None (logged) if it keeps none; raises if its shape does not match the crop."""
    image = subj.get("image_u8")
    if image is None:
        log.info("%s keeps no image: labels from the network alone", path)
        return None
    image = np.asarray(image, np.uint8)
    if image.shape != (sd.n_frames, *sd.grid_shape):
        raise NimosefInputError(path, f"its image {image.shape} does not match its crop "
                                      f"({sd.n_frames}, {', '.join(map(str, sd.grid_shape))})")
    return image


def subject_slice_shift(subj: dict, sd: SubjectData, path) -> np.ndarray | None:
    """The in-plane slice shifts ``(Z, 2)`` a subject file keeps (:func:`refine.slice_shifts`),
    or None if it keeps none; raises if they do not match the crop's slices."""
    shift = subj.get("slice_shift")
    if shift is None:
        return None
    shift = np.asarray(shift, np.float64)
    if shift.shape != (sd.grid_shape[2], 2):
        raise NimosefInputError(path, f"its slice shifts {shift.shape} do not match its "
                                      f"{sd.grid_shape[2]} slices")
    return shift


def subject_slice_evidence(subj: dict, sd: SubjectData, path, device,
                           slice_net: str | Path | None = None) -> SliceEvidence | None:
    """The slice network a subject file's labels were refined with (:mod:`slice_evidence`),
    or None if they were not: ``slice_net`` when the user gives one, else the bundled one;
    raises if its id is not the file's. The path the file records is named, never followed."""
    want = subj.get("slice_net_id")
    if want is None:
        return None
    evidence = SliceEvidence.load(slice_net, device, sd)
    if evidence.net_id != want:
        if slice_net:
            raise NimosefInputError(path, f"was refined with slice network {want}, not "
                                          f"{evidence.net_id}: pass the right --slice-net")
        hint = f" (it was {subj['slice_net_path']})" if subj.get("slice_net_path") else ""
        raise NimosefInputError(path, f"was refined with slice network {want}, not the "
                                      f"bundled {evidence.net_id}: pass that network with "
                                      f"--slice-net{hint}, or use --no-refine")
    return evidence


def subject_record(code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData, cine: Cine,
                   prior_id: str, opts: SegmentTrackOptions, refinement: FrameRefinement,
                   source: str) -> dict:
    """What segment-track keeps of a fitted subject (:func:`write_subject_file` writes it):
    the code ``(D,)`` and pose ``(4, 4)``, the heart frame, the input's and the crop's
    geometry, the uint8 image and slice shifts the labels were refined with, the prior's and
    slice network's ids, the prior's weight used, and each frame's model and cycle time."""
    image, shift, evidence = refinement.image, refinement.shift, refinement.evidence
    tms = cine.trigger_times_ms
    return {
        "code": code.cpu(), "pose_matrix": pose_m,
        "heart_frame": sd.heart.to_dict(), "prior_id": prior_id,
        "prior_path": str(Path(opts.prior).resolve()) if opts.prior else None,
        "input_affine_ras": np.asarray(cine.affine_ras).tolist(),
        "input_shape": list(cine.shape), "crop_offset": list(sd.crop_offset),
        "image_u8": None if image is None else torch.from_numpy(image),
        "slice_shift": None if shift is None else torch.from_numpy(shift),
        "slice_net_id": None if evidence is None else evidence.net_id,
        "refine_beta": refinement.beta,
        "slice_net_path": str(Path(opts.slice_net_path).resolve())
        if evidence is not None and opts.slice_net_path else None,
        "crop_shape": list(sd.grid_shape), "intensity_range": list(sd.intensity_range),
        "model_times": [float(x) for x in sd.frame_times],
        "frame_times": [float(x) for x in cine.frame_times],
        "time_ms": None if tms is None else [float(x) for x in tms],
        "engine_version": __version__, "source": source,
    }
