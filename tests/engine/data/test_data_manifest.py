"""Seeded stratified splits, holdout, ``nimosef split`` and the manifest helpers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nimosef_engine.cli import main
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.data.manifest import (
    dataset_manifest_path,
    load_dataset_manifest,
    load_split,
    make_splits,
    normalise_subject_id,
    subject_npz_path,
)

GROUPS = {f"sub-{g}{n:02d}": g for g in ("DCM", "HCM", "MINF", "NOR", "RV") for n in range(20)}


def test_stratified_splits_are_seeded():
    splits = make_splits(GROUPS, GROUPS, seed=7)
    for group in set(GROUPS.values()):
        counts = [sum(GROUPS[s] == group for s in splits[k]) for k in ("train", "val", "test")]
        assert counts == [14, 3, 3]
    everyone = splits["train"] + splits["val"] + splits["test"]
    assert sorted(everyone) == sorted(GROUPS) and len(set(everyone)) == 100
    assert make_splits(GROUPS, GROUPS, seed=7) == splits
    assert make_splits(list(reversed(list(GROUPS))), GROUPS, seed=7) == splits
    assert make_splits(GROUPS, GROUPS, seed=8)["test"] != splits["test"]


def test_unstratified_fractions_and_holdout():
    ids = [f"sub-{n:03d}" for n in range(10)]
    splits = make_splits(ids, None, (0.6, 0.2, 0.2), seed=0, holdout=["patient003", "sub-007"])
    assert "sub-003" in splits["test"] and "sub-007" in splits["test"]
    # 8 left -> 4.8/1.6/1.6 -> largest remainders 5/2/1, plus the 2 held out
    assert [len(splits[k]) for k in ("train", "val", "test")] == [5, 2, 3]
    with pytest.raises(NimosefInputError, match="holdout"):
        make_splits(ids, holdout=["sub-123"])
    with pytest.raises(NimosefInputError, match="fractions"):
        make_splits(ids, fractions=(0.7, 0.2, 0.2))


def test_subject_ids():
    assert [normalise_subject_id(s) for s in ("patient090", "sub-090", "090")] == ["sub-090"] * 3


def test_load_split(acdc_out):
    train = load_split(acdc_out, "train")
    assert [s.subject_id for s in train] == ["sub-001", "sub-080"]
    assert [s.intensity.shape for s in train] == [(2, 102, 102, 10), (2, 91, 91, 6)]
    assert [s.subject_id for s in load_split(acdc_out, "test")] == ["sub-090"]
    assert subject_npz_path(acdc_out, "patient090") == (
        acdc_out / "derivatives" / "implicit" / "sub-090" / "sub-090.npz")
    with pytest.raises(NimosefInputError, match="no split 'holdout'"):
        load_split(acdc_out, "holdout")


def test_split_command_rewrites_only_splits(acdc_out, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(acdc_out, root)
    before = load_dataset_manifest(root)
    npz = subject_npz_path(root, "sub-001")
    npz_bytes = npz.read_bytes()

    assert main(["split", "--root", str(root), "--seed", "3", "--fractions", "0", "0", "1"]) == 0
    after = load_dataset_manifest(root)
    assert after["splits"] == {"train": [], "val": [], "test": ["sub-001", "sub-080", "sub-090"]}
    assert after["seed"] == 3 and after["fractions"] == [0.0, 0.0, 1.0]
    for key in ("subjects", "groups", "population_bbox_mm", "norm_scale_mm", "holdout"):
        assert after[key] == before[key]
    # the stored holdout is kept: the demo subject never reaches train
    assert main(["split", "--root", str(root), "--fractions", "1", "0", "0"]) == 0
    assert load_dataset_manifest(root)["splits"]["train"] == ["sub-001", "sub-080"]
    assert main(["split", "--root", str(root), "--fractions", "1", "0", "0", "--holdout"]) == 0
    cleared = load_dataset_manifest(root)
    assert cleared["splits"]["train"] == ["sub-001", "sub-080", "sub-090"]
    assert cleared["holdout"] == [] and cleared["seed"] == 3
    assert npz.read_bytes() == npz_bytes
    assert sorted(p.name for p in dataset_manifest_path(root).parent.iterdir()) == [
        "dataset_manifest.json", "sub-001.json", "sub-080.json", "sub-090.json"]

    assert main(["split", "--root", str(root), "--holdout", "sub-404"]) == 2
    assert "--holdout" in capsys.readouterr().err
    assert json.loads(dataset_manifest_path(root).read_text()) == cleared
    assert main(["split", "--root", str(tmp_path / "nowhere")]) == 2
    assert "dataset_manifest.json" in capsys.readouterr().err


def test_population_bbox_covers_every_foreground_voxel(acdc_out):
    bbox = load_dataset_manifest(acdc_out)["population_bbox_mm"]
    lo, hi = np.array(bbox["min"]), np.array(bbox["max"])
    for subject in load_split(acdc_out, "train") + load_split(acdc_out, "test"):
        mm = subject.coords_norm() * subject.heart.scale_mm
        fg = np.any(subject.labels > 0, axis=0).reshape(-1)
        assert np.all(mm[fg] >= lo - 1e-3) and np.all(mm[fg] <= hi + 1e-3)
