"""Builders for the safety tests: crafted files that run code when unpickled unsafely, and a
subject file of the demo cine (ACDC patient090) fitted with the bundled prior's mean code.

A crafted file is a ``torch.save`` of a dict whose value pickles as a call of ``exec`` that
writes a marker file: ``torch.load(..., weights_only=False)`` (what the engine used to do)
runs it; a safe reader must refuse it and the marker must not exist afterwards.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from nimosef_engine import __version__
from nimosef_engine.core.geometry import HeartFrame, apply_affine, nifti_affine_ras
from nimosef_engine.model.bundled import BUNDLED_PRIOR
from nimosef_engine.model.checkpoint import load_checkpoint, prior_id

DATA = Path(__file__).resolve().parents[1] / "data"
CINE = DATA / "acdc" / "patient090" / "patient090_4d.nii.gz"


class Payload:
    """Unpickled unsafely, writes ``marker``: ``exec("open(marker, 'w').write('ran')")``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A "checkpoint" whose weights are the payload."""
    torch.save({"model_state": Payload(marker), "model_config": {}, "code_mean": Payload(marker)},
               path)
    return path


def crafted_subject(path: Path, marker: Path) -> Path:
    """A "subject file" whose code is the payload."""
    torch.save({"format": "nimosef-subject/2", "code": Payload(marker)}, path)
    return path


def crafted_codes(path: Path, marker: Path) -> Path:
    """A "codes file" (``nimosef fit``) whose codes are the payload."""
    torch.save({"subject_ids": ["sub-001"], "codes": Payload(marker),
                "pose_matrices": [torch.eye(4)]}, path)
    return path


def demo_subject(**changes) -> dict:
    """A subject dict of the demo cine as segment-track writes it: its geometry, a centred
    crop of half its in-plane size, the bundled prior's mean code and id, no image kept;
    ``changes`` replace entries."""
    img = nib.load(str(CINE))
    shape, n_t = img.shape[:3], img.shape[3]
    aff = nifti_affine_ras(img)
    offset = [shape[0] // 4, shape[1] // 4, 0]
    crop = [shape[0] // 2, shape[1] // 2, shape[2]]
    centre = apply_affine(aff, np.array([[s / 2 for s in shape]]))[0]
    ck = load_checkpoint(BUNDLED_PRIOR)
    data = np.asarray(img.dataobj, np.float32)
    subj = {
        "code": ck["code_mean"].clone(), "pose_matrix": torch.eye(4),
        "heart_frame": HeartFrame(centre, np.eye(3), 100.0).to_dict(),
        "prior_id": prior_id(ck), "prior_path": None,
        "input_affine_ras": aff.tolist(), "input_shape": list(shape), "crop_offset": offset,
        "image_u8": None, "slice_shift": None, "slice_net_id": None, "slice_net_path": None,
        "crop_shape": crop,
        "intensity_range": [float(np.percentile(data, 2)), float(np.percentile(data, 98))],
        "model_times": [k / n_t for k in range(n_t)], "frame_times": [k / n_t for k in range(n_t)],
        "time_ms": None, "engine_version": __version__, "source": str(CINE),
    }
    subj.update(changes)
    return subj


def demo_image_u8(subj: dict) -> torch.Tensor:
    """A uint8 image of the right shape for ``subj`` (its crop, all frames)."""
    return torch.zeros((len(subj["model_times"]), *subj["crop_shape"]), dtype=torch.uint8)


def flip_code_bytes(path: Path, code: torch.Tensor, n: int = 100) -> Path:
    """Flip ``n`` bytes inside the stored ``code`` tensor of a subject file, in place."""
    raw = bytearray(path.read_bytes())
    at = bytes(raw).index(code.numpy().tobytes())
    for i in range(n):
        raw[at + 2 * i] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path
