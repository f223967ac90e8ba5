"""``subject.nimosef``: a fitted subject (code, pose, geometry, image), written by segment-track
and read by ``nimosef resample``.

The file is a ``torch.save`` dict of tensors and plain data, read only through
:func:`nimosef_engine.safe_load.load_torch_file` (never code). Format ``nimosef-subject/2``
carries ``sha256``, the :func:`~nimosef_engine.safe_load.content_digest` of everything else,
checked on load: a damaged or edited file is refused. Files of format ``nimosef-subject/1``
(older versions, no digest) are still read, through the same safe loader and checks.

The paths a file records (``prior_path``, ``slice_net_path``) are hints for messages, never
followed: the prior and the slice network are the bundled ones, found by their ids, or the
ones the user names (:func:`subject_prior`, :func:`resample.subject_slice_evidence`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from nimosef_engine.errors import NimosefInputError
from nimosef_engine.safe_load import content_digest, load_torch_file, save_torch_file

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
    from nimosef_engine.segment_track import BUNDLED_PRIOR, load_prior

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

