"""BIDS-like layout of the NIMOSEF reference (``docs/METHOD.md``)::

    ROOT/sub-X/anat/sub-X_img-short_axis_tp-2.nii.gz                      4D cine (x, y, z, t)
    ROOT/derivatives/sa_segmentation/sub-X/sub-X_sa_seg_all_corrected.nii.gz  4D NIMOSEF labels
    ROOT/derivatives/sa_coordinates/sub-X/sa_axis_transform.tfm           world -> heart (opt.)
    ROOT/derivatives/sa_roi/sub-X/sub-X_sa.nii.gz                         ROI crop grid (opt.)
    ROOT/participants.tsv                                                 participant_id, group

Frame 0 is end-diastole; ``frame_times = k / T``. ``sa_axis_affine.tfm`` (voxel -> world) is
not read: the NIfTI header, with its true spacing, is the one voxel -> world mapping.

The ``.tfm`` convention: ITK works in LPS world coordinates, so the transform ``T`` read by
SimpleITK maps an LPS point to heart-frame mm, ``heart = A @ lps + b``. With
``lps = F @ ras``, ``F = diag(-1, -1, 1)``: ``heart = (A F) @ ras + b``, hence the heart
frame's ``rotation = (A F)^T`` (axes as columns, RAS) and ``origin_ras = -rotation @ b``.
The heart frame itself has no LPS/RAS flavour: its axes are LV -> RV, (z x x), apex -> base.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import HeartFrame, ras_to_voxel
from nimosef_engine.data.manifest import normalise_subject_id
from nimosef_engine.data.raw import RawSubject, check_labels
from nimosef_engine.data.roi import intensity_percentiles
from nimosef_engine.io.nifti import load_nifti

LPS_FLIP = np.diag([-1.0, -1.0, 1.0])
AFFINE_TOL_MM = 1e-3


def cine_path(root: Path, sid: str) -> Path:
    return root / sid / "anat" / f"{sid}_img-short_axis_tp-2.nii.gz"


def seg_path(root: Path, sid: str) -> Path:
    return root / "derivatives" / "sa_segmentation" / sid / f"{sid}_sa_seg_all_corrected.nii.gz"


def tfm_path(root: Path, sid: str) -> Path:
    return root / "derivatives" / "sa_coordinates" / sid / "sa_axis_transform.tfm"


def roi_path(root: Path, sid: str) -> Path:
    return root / "derivatives" / "sa_roi" / sid / f"{sid}_sa.nii.gz"


def find_subjects(root: str | Path) -> dict[str, Path]:
    """``{"sub-X": root}`` for every ``ROOT/sub-X/`` folder, sorted; raises when none."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NimosefInputError(root, "is a file, expected the dataset folder")
    if not root.is_dir():
        raise NimosefInputError(root, "dataset folder not found")
    found = {p.name: root for p in sorted(root.iterdir())
             if p.is_dir() and p.name.startswith("sub-") and len(p.name) > 4}
    if not found:
        raise NimosefInputError(root, "no BIDS subject folders (sub-XXX/) found")
    return found


def read_groups(root: str | Path) -> dict[str, str]:
    """``participants.tsv`` ``group`` column by subject id ({} when absent)."""
    path = Path(root) / "participants.tsv"
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NimosefInputError(path, f"unreadable ({exc})") from None
    if rows and ("participant_id" not in rows[0] or "group" not in rows[0]):
        return {}
    return {normalise_subject_id(r["participant_id"]): r["group"] for r in rows
            if r.get("participant_id") and r.get("group")}


def read_heart_transform(path: str | Path, scale_mm: float = 100.0) -> HeartFrame:
    """Heart frame from an ITK world(LPS) -> heart-frame rigid ``.tfm`` (see module doc)."""
    import SimpleITK as sitk

    path = Path(path)
    try:
        tx = sitk.ReadTransform(str(path))
        b = np.array(tx.TransformPoint((0.0, 0.0, 0.0)))
        a = np.stack([np.array(tx.TransformPoint(tuple(map(float, e)))) - b
                      for e in np.eye(3)], axis=1)
        probe = np.array([13.0, -7.0, 29.0])
        linear = np.allclose(np.array(tx.TransformPoint(tuple(probe))), a @ probe + b, atol=1e-4)
    except (RuntimeError, TypeError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else ""
        raise NimosefInputError(path, f"not a readable 3D ITK transform ({msg})") from None
    if not linear:
        raise NimosefInputError(path, "transform is not affine")
    m = a @ LPS_FLIP
    if not np.allclose(m.T @ m, np.eye(3), atol=1e-3) or np.linalg.det(m) < 0:
        raise NimosefInputError(path, "transform is not a rotation plus translation "
                                      "(scaling, shear or reflection)")
    rotation = m.T
    return HeartFrame(-rotation @ b, rotation, scale_mm)


def roi_grid(path: Path, affine_ras: np.ndarray, source_shape) -> tuple[tuple, tuple]:
    """(offset, shape) of an ROI crop on the source grid, from the ROI file's affine."""
    roi, roi_affine = load_nifti(path, ndim=(3, 4))
    if not np.allclose(roi_affine[:3, :3], affine_ras[:3, :3], atol=AFFINE_TOL_MM):
        raise NimosefInputError(path, "ROI axes or spacing differ from the cine's")
    offset_f = ras_to_voxel(affine_ras, roi_affine[None, :3, 3])[0]
    offset = np.round(offset_f).astype(int)
    if np.abs(offset_f - offset).max() > 1e-2:
        raise NimosefInputError(path, f"ROI origin is not on the cine's voxel grid "
                                      f"(offset {np.round(offset_f, 3).tolist()} voxels)")
    shape = np.array(roi.shape[:3])
    if np.any(offset < 0) or np.any(offset + shape > np.array(source_shape)):
        raise NimosefInputError(path, f"ROI (offset {offset.tolist()}, shape {shape.tolist()}) "
                                      f"lies outside the cine of shape {list(source_shape)}")
    return tuple(int(v) for v in offset), tuple(int(v) for v in shape)


def load_subject(root: str | Path, subject_id: str,
                 groups: dict[str, str] | None = None) -> RawSubject:
    """Read one BIDS subject: the whole cine with its 4D segmentation, ED = frame 0."""
    root = Path(root)
    sid = normalise_subject_id(subject_id)
    img_p, seg_p = cine_path(root, sid), seg_path(root, sid)
    cine, affine = load_nifti(img_p, ndim=4)
    seg, seg_affine = load_nifti(seg_p, ndim=4)
    if seg.shape != cine.shape:
        raise NimosefInputError(seg_p, f"shape {seg.shape} does not match the cine "
                                       f"{img_p.name} {cine.shape}")
    if not np.allclose(seg_affine, affine, atol=AFFINE_TOL_MM):
        raise NimosefInputError(seg_p, f"geometry (affine) does not match {img_p.name}")
    labels = np.moveaxis(check_labels(seg, seg_p), -1, 0)
    n_t = cine.shape[3]
    sources = {"cine": str(img_p.resolve()), "segmentation": str(seg_p.resolve())}
    heart = roi = None
    if tfm_path(root, sid).exists():
        heart = read_heart_transform(tfm_path(root, sid))
        sources["heart_transform"] = str(tfm_path(root, sid).resolve())
    if roi_path(root, sid).exists():
        roi = roi_grid(roi_path(root, sid), affine, cine.shape[:3])
        sources["roi"] = str(roi_path(root, sid).resolve())
    return RawSubject(
        subject_id=sid,
        intensity=np.ascontiguousarray(np.moveaxis(cine, -1, 0)),
        affine_ras=affine,
        frame_indices=np.arange(n_t),
        frame_times=np.arange(n_t) / n_t,
        n_frames_cycle=n_t,
        intensity_range=intensity_percentiles(cine, img_p),
        labels=np.ascontiguousarray(labels),
        label_path=seg_p,
        heart=heart,
        roi=roi,
        group=(groups or {}).get(sid),
        sources=sources,
    )
