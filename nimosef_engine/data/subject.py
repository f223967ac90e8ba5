"""One preprocessed subject: the contract between preprocessing, training, fitting, sampling."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import HeartFrame, apply_affine, grid_ijk


@dataclass
class SubjectData:
    """A subject's ROI crop, on the scanner grid, with its heart frame.

    Shapes: ``intensity`` (T, X, Y, Z) float32 in [0, 1]; ``labels`` (T, X, Y, Z) uint8 with
    NIMOSEF labels (0 bg, 1 LV, 2 MYO, 3 RV) or None; ``frame_times`` (T,) cycle time in
    [0, 1) with end-diastole at 0; ``frame_indices`` (T,) 0-based frame numbers of the cine.
    ``crop_affine_ras`` maps crop voxel indices to RAS mm.
    """

    subject_id: str
    intensity: np.ndarray
    frame_times: np.ndarray
    crop_affine_ras: np.ndarray
    heart: HeartFrame
    labels: np.ndarray | None = None
    frame_indices: np.ndarray | None = None
    n_frames_cycle: int = 0
    source_shape: tuple[int, int, int] = (0, 0, 0)
    crop_offset: tuple[int, int, int] = (0, 0, 0)
    source_affine_ras: np.ndarray | None = None
    intensity_range: tuple[float, float] = (0.0, 1.0)
    extra: dict = field(default_factory=dict)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.intensity.shape[1:])

    @property
    def n_frames(self) -> int:
        return int(self.intensity.shape[0])

    def coords_norm(self) -> np.ndarray:
        """``(X*Y*Z, 3)`` float32 normalised heart coordinates of the crop voxels (C order)."""
        ras = apply_affine(self.crop_affine_ras, grid_ijk(self.grid_shape))
        return self.heart.ras_to_norm(ras).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` (atomically)."""
        from nimosef_engine.core.atomic import atomic_path

        arrays = dict(
            subject_id=np.array(self.subject_id),
            intensity=self.intensity.astype(np.float32),
            frame_times=np.asarray(self.frame_times, np.float32),
            crop_affine_ras=np.asarray(self.crop_affine_ras, np.float64),
            heart_origin_ras=self.heart.origin_ras,
            heart_rotation=self.heart.rotation,
            heart_scale_mm=np.array(self.heart.scale_mm),
            frame_indices=np.asarray(
                self.frame_indices if self.frame_indices is not None
                else np.arange(self.n_frames), np.int32),
            n_frames_cycle=np.array(int(self.n_frames_cycle or self.n_frames)),
            source_shape=np.asarray(self.source_shape, np.int32),
            crop_offset=np.asarray(self.crop_offset, np.int32),
            intensity_range=np.asarray(self.intensity_range, np.float64),
        )
        if self.source_affine_ras is not None:
            arrays["source_affine_ras"] = np.asarray(self.source_affine_ras, np.float64)
        if self.labels is not None:
            arrays["labels"] = self.labels.astype(np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> SubjectData:
        """Read a subject ``.npz``; NimosefInputError for a missing, damaged or foreign file."""
        path = Path(path)
        if path.is_dir():
            raise NimosefInputError(path, "is a directory, expected a preprocessed subject .npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls._from_npz(z)
        except KeyError as exc:
            raise NimosefInputError(path, f"not a preprocessed subject (no array {exc})") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise NimosefInputError(path, f"not a readable preprocessed subject "
                                          f"({exc.__class__.__name__}: {exc})") from None

    @classmethod
    def _from_npz(cls, z) -> SubjectData:
        return cls(
            subject_id=str(z["subject_id"]),
            intensity=z["intensity"],
            frame_times=z["frame_times"],
            crop_affine_ras=z["crop_affine_ras"],
            heart=HeartFrame(z["heart_origin_ras"], z["heart_rotation"],
                             float(z["heart_scale_mm"])),
            labels=z["labels"] if "labels" in z.files else None,
            frame_indices=z["frame_indices"],
            n_frames_cycle=int(z["n_frames_cycle"]),
            source_shape=tuple(int(v) for v in z["source_shape"]),
            crop_offset=tuple(int(v) for v in z["crop_offset"]),
            source_affine_ras=z["source_affine_ras"] if "source_affine_ras" in z.files
            else None,
            intensity_range=tuple(float(v) for v in z["intensity_range"]),
        )
