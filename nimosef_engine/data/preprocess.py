"""Turn one raw subject (any layout) into a :class:`SubjectData` crop with its side files.

A layout module (:mod:`.acdc`, :mod:`.bids`) reads a subject into a :class:`RawSubject`:
the labelled cine on the scanner grid. :func:`build_subject` normalises the intensities,
derives the heart frame and the ROI crop, and :func:`write_subject` writes the ``.npz``,
the ``.parquet`` table and the transform JSON. :func:`preprocess_dataset` runs a whole
dataset and writes the manifests (layout in ``docs/DESIGN.md``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nimosef_engine.core.atomic import atomic_path, atomic_write_text
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import (
    HeartFrame,
    crop_affine,
    grid_ijk,
    heart_frame_from_labels,
    spacing_of,
    voxel_to_ras,
)
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data import acdc, bids
from nimosef_engine.data import manifest as mf
from nimosef_engine.data.raw import RawSubject
from nimosef_engine.data.roi import ROI_MM, crop_last3, normalise_intensity, roi_box
from nimosef_engine.data.subject import SubjectData

log = logging.getLogger(__name__)



def build_subject(raw: RawSubject, roi_mm: float = ROI_MM,
                  norm_scale_mm: float = 100.0) -> SubjectData:
    """Heart frame, ROI crop and normalised intensities of one subject."""
    label_path = raw.label_path or raw.subject_id
    ed = int(np.argmin(raw.frame_times))
    if raw.heart is not None:
        heart = HeartFrame(raw.heart.origin_ras, raw.heart.rotation, norm_scale_mm)
    else:
        if raw.labels is None:
            raise NimosefInputError(raw.subject_id, "no segmentation and no heart-frame "
                                                    "transform: cannot place the heart frame")
        try:
            heart = heart_frame_from_labels(raw.labels[ed], raw.affine_ras, norm_scale_mm)
        except ValueError as exc:
            raise NimosefInputError(label_path, f"end-diastole frame: {exc}") from None
    if raw.roi is not None:
        offset, shape = raw.roi
    else:
        if raw.labels is None:
            raise NimosefInputError(raw.subject_id, "no segmentation and no ROI: cannot crop")
        foreground = np.any(raw.labels > 0, axis=0)
        if not foreground.any():
            raise NimosefInputError(label_path, "segmentation is empty in every frame")
        offset, shape = roi_box(foreground, raw.affine_ras, roi_mm)
    intensity = normalise_intensity(crop_last3(raw.intensity, offset, shape),
                                    raw.intensity_range)
    labels = None if raw.labels is None else np.ascontiguousarray(
        crop_last3(raw.labels, offset, shape))
    return SubjectData(
        subject_id=raw.subject_id,
        intensity=np.ascontiguousarray(intensity),
        frame_times=np.asarray(raw.frame_times, np.float32),
        crop_affine_ras=crop_affine(raw.affine_ras, offset),
        heart=heart,
        labels=labels,
        frame_indices=np.asarray(raw.frame_indices, np.int32),
        n_frames_cycle=int(raw.n_frames_cycle),
        source_shape=tuple(int(s) for s in raw.intensity.shape[1:]),
        crop_offset=tuple(int(o) for o in offset),
        source_affine_ras=np.asarray(raw.affine_ras, np.float64),
        intensity_range=tuple(float(v) for v in raw.intensity_range),
    )


def heart_mm_of_crop(subject: SubjectData) -> np.ndarray:
    """``(X*Y*Z, 3)`` heart-frame mm of the crop voxels (C order)."""
    ras = voxel_to_ras(subject.crop_affine_ras, grid_ijk(subject.grid_shape))
    return subject.heart.ras_to_heart_mm(ras)


def foreground_bbox_mm(subject: SubjectData, heart_mm: np.ndarray) -> dict | None:
    """Heart-frame mm bounding box of the voxels labelled in any frame (None without labels)."""
    if subject.labels is None:
        return None
    fg = np.any(subject.labels > 0, axis=0).reshape(-1)
    if not fg.any():
        return None
    pts = heart_mm[fg]
    return {"min": pts.min(0).tolist(), "max": pts.max(0).tolist()}


def subject_table(subject: SubjectData, heart_mm: np.ndarray) -> pa.Table:
    """One row per crop voxel: i, j, k (source voxel), x, y, z (heart mm), int_t*, seg_t*."""
    ijk = grid_ijk(subject.grid_shape) + np.asarray(subject.crop_offset)
    cols = {"i": ijk[:, 0].astype(np.int32), "j": ijk[:, 1].astype(np.int32),
            "k": ijk[:, 2].astype(np.int32)}
    for n, axis in enumerate("xyz"):
        cols[axis] = heart_mm[:, n].astype(np.float32)
    for t in range(subject.n_frames):
        cols[f"int_t{t}"] = subject.intensity[t].reshape(-1)
    if subject.labels is not None:
        for t in range(subject.n_frames):
            cols[f"seg_t{t}"] = subject.labels[t].reshape(-1)
    return pa.table(cols)


def transform_record(subject: SubjectData, heart_source: str, roi_source: str) -> dict:
    """Contents of ``sub-XXX_transform.json``: heart frame and crop/source affines."""
    heart = subject.heart
    return {
        "subject_id": subject.subject_id,
        "heart_frame": heart.to_dict(),
        "heart_source": heart_source,
        "roi_source": roi_source,
        "heart_to_ras": heart.heart_to_ras_matrix().tolist(),
        "crop_affine_ras": np.asarray(subject.crop_affine_ras).tolist(),
        "crop_voxel_to_norm": heart.voxel_to_norm_matrix(subject.crop_affine_ras).tolist(),
        "source_affine_ras": np.asarray(subject.source_affine_ras).tolist(),
        "crop_offset": list(subject.crop_offset),
        "crop_shape": list(subject.grid_shape),
        "source_shape": list(subject.source_shape),
        "spacing_mm": spacing_of(subject.crop_affine_ras).tolist(),
        "conventions": "affines map voxel (i, j, k) to RAS mm; ras = origin_ras + "
                       "rotation @ heart_mm; coords_norm = heart_mm / scale_mm",
    }


def write_subject(subject: SubjectData, raw: RawSubject, implicit_dir: Path,
                  manifest_dir: Path, dataset: str) -> dict:
    """Write npz, parquet, transform JSON and the subject manifest; returns the manifest."""
    sid = subject.subject_id
    sub_dir = implicit_dir / sid
    sub_dir.mkdir(parents=True, exist_ok=True)
    subject.save(sub_dir / f"{sid}.npz")
    heart_mm = heart_mm_of_crop(subject)
    with atomic_path(sub_dir / f"{sid}.parquet") as tmp:
        pq.write_table(subject_table(subject, heart_mm), tmp)
    record = transform_record(subject, "tfm" if raw.heart is not None else "labels",
                              "sa_roi" if raw.roi is not None else "roi_mm")
    atomic_write_text(sub_dir / f"{sid}_transform.json", json.dumps(record, indent=1))
    manifest = {
        "subject_id": sid,
        "dataset": dataset,
        "group": raw.group,
        "sources": raw.sources,
        "info": raw.info,
        "n_frames": subject.n_frames,
        "frame_indices": [int(v) for v in subject.frame_indices],
        "frame_times": [float(v) for v in raw.frame_times],
        "n_frames_cycle": subject.n_frames_cycle,
        "has_labels": subject.labels is not None,
        "intensity_range": list(subject.intensity_range),
        "crop_shape": list(subject.grid_shape),
        "spacing_mm": spacing_of(subject.crop_affine_ras).tolist(),
        "foreground_bbox_mm": foreground_bbox_mm(subject, heart_mm),
        "files": {"npz": f"implicit/{sid}/{sid}.npz",
                  "parquet": f"implicit/{sid}/{sid}.parquet",
                  "transform": f"implicit/{sid}/{sid}_transform.json"},
    }
    atomic_write_text(manifest_dir / f"{sid}.json", json.dumps(manifest, indent=1))
    return manifest


def _open_layout(layout: str, root: Path):
    """``(subject ids, loader(sid) -> RawSubject)`` of a dataset layout."""
    if layout == "acdc":
        folders = acdc.find_subjects(root)
        return list(folders), lambda sid: acdc.load_subject(folders[sid])
    if layout == "bids":
        found = bids.find_subjects(root)
        groups = bids.read_groups(root)
        return list(found), lambda sid: bids.load_subject(root, sid, groups)
    raise NimosefInputError("layout", f"unknown layout {layout!r} (acdc, bids)")


def _remove_if_empty(created: list[Path]) -> None:
    """Remove folders this run created (deepest first) when nothing else is in them."""
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            pass


def preprocess_dataset(layout: str, root: str | Path, out: str | Path | None = None,
                       seed: int = 0, fractions=(0.7, 0.15, 0.15), roi_mm: float = ROI_MM,
                       norm_scale_mm: float = 100.0, subjects=None, holdout=(),
                       reporter=None) -> dict:
    """Preprocess a dataset into ``OUT/derivatives/{implicit,manifests_nimosef}``.

    ``out`` defaults to ``root`` (BIDS); the ACDC source folder is read-only, so ``out`` is
    required there. All outputs are staged and renamed into place at the end: a bad subject
    raises :class:`NimosefInputError` and leaves no output of this run. Returns the dataset
    manifest.
    """
    reporter = reporter or ProgressReporter()
    root = Path(root)
    if out is None:
        if layout == "acdc":
            raise NimosefInputError("out", "required for the ACDC layout (the source "
                                             "folder is treated as read-only)")
        out = root
    out = Path(out)
    for name, value in (("roi_mm", roi_mm), ("norm_scale_mm", norm_scale_mm)):
        if not (np.isfinite(value) and value > 0):
            raise NimosefInputError(name, f"must be a positive number of mm, got {value}")
    fractions = mf.check_fractions(fractions)
    available, loader = _open_layout(layout, root)
    selected = available
    if subjects:
        selected = sorted({mf.normalise_subject_id(s) for s in subjects})
        missing = [s for s in selected if s not in available]
        if missing:
            raise NimosefInputError("subjects", f"not in {root}: {missing}")
    mf.make_splits(selected, None, fractions, seed, holdout)  # validates --holdout early

    derivatives = out / mf.DERIVATIVES
    created = [p for p in (out, derivatives) if not p.exists()]
    try:
        derivatives.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NimosefInputError(out, f"cannot create the output folder ({exc.strerror})") from None
    try:
        with atomic_path(mf.implicit_dir(out)) as tmp_impl, \
                atomic_path(mf.manifest_dir(out)) as tmp_man:
            tmp_impl.mkdir()
            tmp_man.mkdir()
            groups, bboxes = {}, []
            for n, sid in enumerate(selected):
                reporter.update("preprocess", n / len(selected), sid)
                raw = loader(sid)
                subject = build_subject(raw, roi_mm, norm_scale_mm)
                record = write_subject(subject, raw, tmp_impl, tmp_man, layout)
                if raw.group is not None:
                    groups[sid] = raw.group
                bboxes.append(record["foreground_bbox_mm"])
                log.debug("%s: crop %s, frames %s", sid, subject.grid_shape,
                          record["frame_indices"])
            holdout = sorted({mf.normalise_subject_id(h) for h in holdout})
            manifest = {
                "dataset": layout,
                "root": str(out.resolve()),
                "source_root": str(root.resolve()),
                "subjects": list(selected),
                "groups": groups,
                "seed": int(seed),
                "fractions": list(fractions),
                "holdout": holdout,
                "splits": mf.make_splits(selected, groups, fractions, seed, holdout),
                "population_bbox_mm": mf.population_bbox(bboxes),
                "norm_scale_mm": float(norm_scale_mm),
                "roi_mm": float(roi_mm),
                "subject_manifests": {sid: f"{sid}.json" for sid in selected},
            }
            atomic_write_text(tmp_man / mf.DATASET_MANIFEST, json.dumps(manifest, indent=1))
        reporter.update("preprocess", 1.0, f"{len(selected)} subjects")
    except BaseException:
        _remove_if_empty(created)
        raise
    finally:
        reporter.close()
    return manifest
