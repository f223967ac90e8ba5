"""Bad inputs through the CLI: exit code 2, the file named on stderr, no derivatives left.

Each case corrupts a copy of real test data in tmp_path. In the ACDC cases the damaged
patient (patient080) is processed after a good one (patient001), so a partial output of the
run would show.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from preprocess_testdata import build_bids, copy_patients

from nimosef_engine.cli import main
from nimosef_engine.data import bids


def _rewrite(path: Path, edit, dtype=None) -> None:
    """Rewrite a NIfTI with ``edit(array)``, same header geometry."""
    img = nib.load(path)
    data = edit(np.asarray(img.dataobj).copy())
    header = img.header.copy()
    if dtype is not None:
        header.set_data_dtype(dtype)
    nib.save(nib.Nifti1Image(data, img.affine, header), path)


def _nan(a):
    a = a.astype(np.float32)
    a[10, 10, 0] = np.nan
    return a


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


P = "patient080"
ACDC_CASES = {
    "missing image": (f"{P}_frame10.nii.gz", lambda d: (d / f"{P}_frame10.nii.gz").unlink(),
                      "file not found"),
    "missing labels": (f"{P}_frame01_gt.nii.gz",
                       lambda d: (d / f"{P}_frame01_gt.nii.gz").unlink(), "file not found"),
    "shape mismatch": (f"{P}_frame10_gt.nii.gz",
                       lambda d: _rewrite(d / f"{P}_frame10_gt.nii.gz", lambda a: a[:, :, :5]),
                       "does not match"),
    "NaN": (f"{P}_frame10.nii.gz",
            lambda d: _rewrite(d / f"{P}_frame10.nii.gz", _nan, np.float32), "NaN"),
    "label 7": (f"{P}_frame01_gt.nii.gz",
                lambda d: _rewrite(d / f"{P}_frame01_gt.nii.gz",
                                   lambda a: np.where(a == 2, 7, a).astype(np.uint8)),
                "labels outside 0..3: [7]"),
    "truncated": (f"{P}_frame01.nii.gz", lambda d: _truncate(d / f"{P}_frame01.nii.gz"),
                  "not a readable NIfTI"),
    "Info.cfg": ("Info.cfg", lambda d: (d / "Info.cfg").write_text(
        "ED: 1\nES: ten\nGroup: NOR\nNbFrame: 21\n"), "ES is not a number"),
}


def _run_acdc(root: Path, out: Path) -> int:
    return main(["preprocess", "--layout", "acdc", "--root", str(root), "--out", str(out),
                 "--progress", "none"])


@pytest.mark.parametrize("case", sorted(ACDC_CASES))
def test_acdc_bad_input(case, tmp_path, capsys):
    name, corrupt, problem = ACDC_CASES[case]
    root = copy_patients(tmp_path / "acdc", "patient001", P)
    corrupt(root / P)
    assert _run_acdc(root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{P}/{name}" in err and problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_empty_dataset_and_missing_out(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run_acdc(empty, tmp_path / "out") == 2
    assert f"{empty}: no ACDC patient folders" in capsys.readouterr().err
    assert main(["preprocess", "--layout", "bids", "--root", str(empty)]) == 2
    assert "no BIDS subject folders" in capsys.readouterr().err
    assert main(["preprocess", "--layout", "acdc", "--root", str(empty)]) == 2
    assert "--out: required" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    assert not any(empty.iterdir())


def test_failed_rerun_keeps_previous_outputs(tmp_path, capsys):
    root = copy_patients(tmp_path / "acdc", "patient001", P)
    out = tmp_path / "out"
    assert _run_acdc(root, out) == 0
    manifest = out / "derivatives" / "manifests_nimosef" / "dataset_manifest.json"
    before = manifest.read_text()
    _truncate(root / P / f"{P}_frame10_gt.nii.gz")
    assert _run_acdc(root, out) == 2
    assert f"{P}_frame10_gt.nii.gz" in capsys.readouterr().err
    assert manifest.read_text() == before
    assert json.loads(before)["subjects"] == ["sub-001", "sub-080"]
    assert sorted(p.name for p in (out / "derivatives").iterdir()) == [
        "implicit", "manifests_nimosef"]


def _cine_3d(root: Path) -> None:
    _rewrite(bids.cine_path(root, "sub-080"), lambda a: a[..., 0])


def _seg_3_frames(root: Path) -> None:
    _rewrite(bids.seg_path(root, "sub-080"), lambda a: np.concatenate([a, a[..., :1]], -1))


BIDS_CASES = {
    "3D cine": (lambda r: bids.cine_path(r, "sub-080"), _cine_3d, "expected a 4D image"),
    "seg shape": (lambda r: bids.seg_path(r, "sub-080"), _seg_3_frames, "does not match"),
    "missing seg": (lambda r: bids.seg_path(r, "sub-080"),
                    lambda r: bids.seg_path(r, "sub-080").unlink(), "file not found"),
}


@pytest.mark.parametrize("case", sorted(BIDS_CASES))
def test_bids_bad_input(case, tmp_path, capsys):
    path_of, corrupt, problem = BIDS_CASES[case]
    root = build_bids(tmp_path / "bids")
    corrupt(root)
    assert main(["preprocess", "--layout", "bids", "--root", str(root),
                 "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert str(path_of(root)) in err and problem in err
    assert sorted(p.name for p in (root / "derivatives").iterdir()) == ["sa_segmentation"]
