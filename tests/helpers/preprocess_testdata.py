"""Test data helpers for preprocessing: the real ACDC test patients and a BIDS layout.

ACDC data (tests/data/acdc, Bernard et al., IEEE TMI 2018): patient001 (DCM, ED 1, ES 12,
NbFrame 30), patient080 (NOR, ED 1, ES 10, NbFrame 21), patient090 (RV, ED 4, ES 11,
NbFrame 12, with the full 4D cine).

BIDS layout: each subject's cine is its ED and ES frames stacked as a 2-frame 4D cine (ED at
frame 0, as the layout requires) with the matching 4D segmentation in NIMOSEF labels, so every
frame is labelled, as in the reference data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from nimosef_engine.data import bids
from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.io.nifti import load_nifti, save_nifti

ACDC_ROOT = Path(__file__).resolve().parents[1] / "data" / "acdc"
BIDS_SOURCES = {"sub-001": ("patient001", 1, 12, "DCM"), "sub-080": ("patient080", 1, 10, "NOR")}


def acdc_file(patient: str, frame: int, gt: bool = False) -> Path:
    """Path of an ACDC test frame (1-based ``frame``)."""
    return ACDC_ROOT / patient / f"{patient}_frame{frame:02d}{'_gt' if gt else ''}.nii.gz"


def copy_patients(dest: Path, *patients: str) -> Path:
    """Copy ACDC test patients into ``dest`` (writable) and return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in patients:
        shutil.copytree(ACDC_ROOT / p, dest / p)
        for f in (dest / p).iterdir():
            f.chmod(0o644)
    return dest


def build_bids(root: Path, subjects=tuple(BIDS_SOURCES)) -> Path:
    """Write the BIDS layout described in the module docstring under ``root``."""
    lines = ["participant_id\tgroup"]
    for sid in subjects:
        patient, ed, es, group = BIDS_SOURCES[sid]
        imgs, segs = [], []
        for frame in (ed, es):
            img, affine = load_nifti(acdc_file(patient, frame))
            gt, _ = load_nifti(acdc_file(patient, frame, gt=True))
            imgs.append(img)
            segs.append(remap_acdc_labels(gt))
        save_nifti(bids.cine_path(root, sid), np.stack(imgs, -1), affine)
        save_nifti(bids.seg_path(root, sid), np.stack(segs, -1).astype(np.uint8), affine)
        lines.append(f"{sid}\t{group}")
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return root
