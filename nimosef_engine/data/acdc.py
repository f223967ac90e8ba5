"""ACDC layout: ``patientXXX/`` with ``Info.cfg``, ED/ES frames and their ``_gt`` labels.

``patientXXX/patientXXX_frameNN.nii.gz`` (NN 1-based) and ``..._frameNN_gt.nii.gz`` for the
ED and ES frames named in ``Info.cfg``; optionally ``patientXXX_4d.nii.gz``, the whole cine,
used for the intensity percentiles. ACDC labels (1 RV, 2 MYO, 3 LV) become NIMOSEF labels
(1 LV, 2 MYO, 3 RV). Subject ids: ``patient001`` -> ``sub-001``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.data.manifest import normalise_subject_id
from nimosef_engine.data.raw import RawSubject, check_labels
from nimosef_engine.data.roi import intensity_percentiles
from nimosef_engine.io.nifti import load_nifti

ACDC_TO_NIMOSEF = np.array([0, 3, 2, 1], dtype=np.uint8)  # index: ACDC label
PATIENT_RE = re.compile(r"^patient(\d+)$")
AFFINE_TOL_MM = 1e-3


@dataclass(frozen=True)
class AcdcInfo:
    """``Info.cfg``: ED/ES 1-based frame numbers, frames in the cine, group, height, weight."""

    ed: int
    es: int
    nb_frame: int
    group: str
    height_cm: float | None = None
    weight_kg: float | None = None


def parse_info_cfg(path: str | Path) -> AcdcInfo:
    """Parse ``Info.cfg`` strictly (``Key: value`` lines; ED, ES, NbFrame, Group required)."""
    path = Path(path)
    if not path.is_file():
        raise NimosefInputError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NimosefInputError(path, f"unreadable ({exc.__class__.__name__})") from None
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise NimosefInputError(path, f"line {n} is not 'Key: value': {line.strip()!r}")
        values[key.strip()] = value.strip()

    def number(key: str, required: bool = True) -> float | None:
        if key not in values:
            if required:
                raise NimosefInputError(path, f"missing {key}")
            return None
        try:
            v = float(values[key])
        except ValueError:
            raise NimosefInputError(path, f"{key} is not a number: {values[key]!r}") from None
        if not np.isfinite(v):
            raise NimosefInputError(path, f"{key} is not finite: {values[key]!r}")
        return v

    def integer(key: str) -> int:
        v = number(key)
        if v != int(v):
            raise NimosefInputError(path, f"{key} is not an integer: {values[key]!r}")
        return int(v)

    ed, es, nb = integer("ED"), integer("ES"), integer("NbFrame")
    if nb < 1:
        raise NimosefInputError(path, f"NbFrame must be >= 1, got {nb}")
    for key, v in (("ED", ed), ("ES", es)):
        if not 1 <= v <= nb:
            raise NimosefInputError(path, f"{key} = {v} is outside 1..NbFrame ({nb})")
    group = values.get("Group", "")
    if not group:
        raise NimosefInputError(path, "missing Group")
    return AcdcInfo(ed, es, nb, group, number("Height", False), number("Weight", False))


def remap_acdc_labels(labels: np.ndarray) -> np.ndarray:
    """ACDC (1 RV, 2 MYO, 3 LV) -> NIMOSEF (1 LV, 2 MYO, 3 RV); input already in 0..3."""
    return ACDC_TO_NIMOSEF[np.asarray(labels, dtype=np.uint8)]


def find_subjects(root: str | Path) -> dict[str, Path]:
    """``{"sub-001": root/patient001, ...}`` sorted; raises when there is none."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NimosefInputError(root, "is a file, expected the dataset folder")
    if not root.is_dir():
        raise NimosefInputError(root, "dataset folder not found")
    found = {normalise_subject_id(p.name): p for p in sorted(root.iterdir())
             if p.is_dir() and PATIENT_RE.match(p.name)}
    if not found:
        raise NimosefInputError(root, "no ACDC patient folders (patientXXX/) found")
    return found


def _check_grid(path: Path, shape, affine, ref_shape, ref_affine, ref_path: Path) -> None:
    if tuple(shape) != tuple(ref_shape):
        raise NimosefInputError(path, f"shape {tuple(shape)} does not match {ref_path.name} "
                                      f"{tuple(ref_shape)}")
    if not np.allclose(affine, ref_affine, atol=AFFINE_TOL_MM):
        raise NimosefInputError(path, f"geometry (affine) does not match {ref_path.name}")


def load_subject(folder: str | Path) -> RawSubject:
    """Read an ACDC patient folder: labelled frames ordered ED first, NIMOSEF labels."""
    folder = Path(folder)
    name = folder.name
    info = parse_info_cfg(folder / "Info.cfg")
    frames = sorted({info.ed, info.es}, key=lambda f: (f - info.ed) % info.nb_frame)
    images, labels, paths = [], [], []
    affine = ref_path = None
    for frame in frames:
        img_path = folder / f"{name}_frame{frame:02d}.nii.gz"
        gt_path = folder / f"{name}_frame{frame:02d}_gt.nii.gz"
        img, img_affine = load_nifti(img_path, ndim=3)
        gt, gt_affine = load_nifti(gt_path, ndim=3)
        if affine is None:
            affine, ref_path = img_affine, img_path
        _check_grid(img_path, img.shape, img_affine, images[0].shape if images else img.shape,
                    affine, ref_path)
        _check_grid(gt_path, gt.shape, gt_affine, img.shape, img_affine, img_path)
        images.append(img)
        labels.append(remap_acdc_labels(check_labels(gt, gt_path)))
        paths += [img_path, gt_path]
    intensity = np.stack(images)
    cine_path = folder / f"{name}_4d.nii.gz"
    if cine_path.exists():
        cine, cine_affine = load_nifti(cine_path, ndim=4)
        _check_grid(cine_path, cine.shape[:3], cine_affine, intensity.shape[1:], affine, ref_path)
        if cine.shape[3] != info.nb_frame:
            raise NimosefInputError(cine_path, f"{cine.shape[3]} frames but Info.cfg says "
                                               f"NbFrame {info.nb_frame}")
        intensity_range = intensity_percentiles(cine, cine_path)
        paths.append(cine_path)
    else:
        intensity_range = intensity_percentiles(intensity, paths[0])
    frame_idx = np.array(frames) - 1
    return RawSubject(
        subject_id=normalise_subject_id(name),
        intensity=intensity,
        affine_ras=affine,
        frame_indices=frame_idx,
        frame_times=((np.array(frames) - info.ed) % info.nb_frame) / info.nb_frame,
        n_frames_cycle=info.nb_frame,
        intensity_range=intensity_range,
        labels=np.stack(labels),
        label_path=folder / f"{name}_frame{info.ed:02d}_gt.nii.gz",
        group=info.group,
        sources={"folder": str(folder.resolve()), "files": [p.name for p in paths]},
        info={"ED": info.ed, "ES": info.es, "NbFrame": info.nb_frame, "Group": info.group,
              "Height_cm": info.height_cm, "Weight_kg": info.weight_kg,
              "ed_frame_index": int(info.ed - 1), "es_frame_index": int(info.es - 1)},
    )
