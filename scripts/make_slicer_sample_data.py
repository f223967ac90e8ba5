"""Make the data the Slicer extension ships, from ACDC patient090 (tests/data/acdc/patient090).

    VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow OMP_NUM_THREADS=1 \
        python scripts/make_slicer_sample_data.py [--skip-engine] [--engine-out DIR]

1. ``NimosefSlicer/Resources/SampleData/patient090_cine.seq.nrrd``: the whole 12-frame demo cine
   as a Slicer volume sequence (read by the engine's NIfTI reader, written by Slicer's own
   sequence writer: voxels and geometry unchanged), registered with Slicer's Sample Data
   module. Its SHA-256 goes into ``NimosefSlicerLib/sampledata.py``.
2. ``NimosefSlicer/Resources/TestResult/``: a small real Segment & Track result for the
   module's light self-test: the cine cropped in-plane around the heart and cut to a few
   frames (``cine.seq.nrrd``), and the engine's output on it (``segment-track --quality fast``
   with the bundled prior), keeping only the files the scene import reads
   (``summary.json``, ``volumes.csv``, ``seg.nii.gz``, ``rec_z2.nii.gz``, ``strain.csv``,
   ``motion/from_ed_NN.nii.gz``) plus ``config.json``; ``PROVENANCE.md`` records how.
   ``--engine-out DIR`` keeps a copy of the engine's whole output folder in ``DIR``.

ACDC data: research, non-commercial use; cite O. Bernard et al., IEEE TMI 37(11), 2018
(DATA_LICENSES.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "NimosefSlicer"))
PATIENT = REPO / "tests" / "data" / "acdc" / "patient090"
RESOURCES = REPO / "NimosefSlicer" / "Resources"
FRAME_NUMBERS = (4, 8, 11)  # 1-based, of 12: ED (Info.cfg ED: 4), one between, ES (ES: 11)
CROP_PX = 72  # in-plane crop around the heart, pixels (1.79 mm: ~129 mm)
RES_FACTOR_Z = 2
KEPT = ("summary.json", "volumes.csv", "seg.nii.gz", f"rec_z{RES_FACTOR_Z}.nii.gz",
        "strain.csv", "config.json")
KEPT_GLOBS = ("motion/from_ed_*.nii.gz",)  # the motion the scene shows (to_ed is not read)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_cine(ctx) -> Path:
    from NimosefSlicerLib.cine import load_cine_file, save_sequence_file

    cine = load_cine_file(ctx, PATIENT / "patient090_4d.nii.gz")
    out = RESOURCES / "SampleData" / "patient090_cine.seq.nrrd"
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_sequence_file(cine.sequence, out)


def cropped_cine(work: Path) -> tuple[Path, tuple[int, int]]:
    """The cine cut to FRAME_NUMBERS and a CROP_PX square centred on the expert labels of
    the ED frame (the labels only choose the crop; the engine never sees them)."""
    from nimosef_engine.core.geometry import crop_affine
    from nimosef_engine.io.nifti import load_nifti, save_nifti

    data, affine = load_nifti(PATIENT / "patient090_4d.nii.gz", ndim=4)
    labels, _ = load_nifti(PATIENT / "patient090_frame04_gt.nii.gz", ndim=3, dtype=np.uint8)
    ci, cj = (int(round(c)) for c in np.argwhere(labels > 0).mean(axis=0)[:2])
    i0 = int(np.clip(ci - CROP_PX // 2, 0, data.shape[0] - CROP_PX))
    j0 = int(np.clip(cj - CROP_PX // 2, 0, data.shape[1] - CROP_PX))
    frames = [n - 1 for n in FRAME_NUMBERS]
    crop = data[i0:i0 + CROP_PX, j0:j0 + CROP_PX, :, frames]
    path = work / "patient090_crop.nii.gz"
    save_nifti(path, crop.astype(np.int16), crop_affine(affine, (i0, j0, 0)))
    return path, (i0, j0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-engine", action="store_true",
                    help="only rewrite the sample cine")
    ap.add_argument("--engine-out", type=Path,
                    help="also keep the engine's whole output folder here (must not exist)")
    args = ap.parse_args()
    from NimosefSlicerLib.cine import load_cine_file, save_sequence_file
    from NimosefSlicerLib.context import create_headless_context

    ctx = create_headless_context(with_io=False)
    sample = sample_cine(ctx)
    print(f"{sample.relative_to(REPO)}: {sample.stat().st_size} bytes, "
          f"SHA256:{sha256(sample)}")
    if args.skip_engine:
        return
    out = RESOURCES / "TestResult"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        crop, (i0, j0) = cropped_cine(work)
        command = [sys.executable, "-m", "nimosef_engine", "segment-track", str(crop),
                   "--out", str(work / "out"), "--quality", "fast", "--device", "cpu",
                   "--res-factor-z", str(RES_FACTOR_Z), "--seed", "0", "--no-meshes",
                   "--frame-numbers", *map(str, FRAME_NUMBERS), "--n-frames", "12",
                   "--progress", "none"]
        subprocess.run(command, check=True, cwd=REPO)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        if args.engine_out is not None:
            shutil.copytree(work / "out", args.engine_out)
        kept = [work / "out" / name for name in KEPT]
        for pattern in KEPT_GLOBS:
            kept += sorted((work / "out").glob(pattern))
        for path in kept:
            target = out / path.relative_to(work / "out")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        cine = load_cine_file(ctx, crop)
        save_sequence_file(cine.sequence, out / "cine.seq.nrrd")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                            capture_output=True).stdout.strip()
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "PROVENANCE.md")
    lines = [
        "# Provenance of this folder",
        "",
        "A small real Segment & Track result for the module's light self-test (no torch, no",
        "network): `python scripts/make_slicer_sample_data.py` at commit "
        f"`{commit}` made it.",
        "",
        f"- `cine.seq.nrrd`: ACDC patient090's cine (`tests/data/acdc/patient090/"
        f"patient090_4d.nii.gz`), frames {list(FRAME_NUMBERS)} of 12 (ED 4, ES 11), cropped "
        f"in-plane to {CROP_PX} x {CROP_PX} pixels from voxel ({i0}, {j0}), all slices; "
        "geometry kept.",
        "- the other files: the engine's output on that cine, `nimosef segment-track "
        f"--quality fast --device cpu --res-factor-z {RES_FACTOR_Z} --seed 0 --no-meshes "
        f"--frame-numbers {' '.join(map(str, FRAME_NUMBERS))} --n-frames 12` with the bundled "
        "prior; only the files the scene import reads are kept.",
        "",
        "ACDC: research, non-commercial use only; cite O. Bernard et al., IEEE TMI 37(11),",
        "2514-2525, 2018 (doi: 10.1109/TMI.2018.2837502). See DATA_LICENSES.md.",
        "",
        "| file | bytes | SHA-256 |",
        "|---|---|---|",
        *[f"| `{p.relative_to(out).as_posix()}` | {p.stat().st_size} | `{sha256(p)}` |"
          for p in files],
        "",
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines), encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out.relative_to(REPO)}: {total} bytes; LV EF {summary['LV_EF_pct']:.1f} %")


if __name__ == "__main__":
    main()
