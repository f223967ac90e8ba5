"""Training the slice network (nimosef train-slice-net) on real ACDC slices."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nimosef_engine.cli import main
from nimosef_engine.data.manifest import load_dataset_manifest, write_dataset_manifest
from nimosef_engine.model.bundled import load_slice_net
from nimosef_engine.model.checkpoint import load_checkpoint
from nimosef_engine.refinement.slice_evidence import slice_probabilities
from nimosef_engine.training.slice_net import SliceTrainConfig, augment, slice_stack

TINY = ["--base", "4", "--levels", "2", "--batch", "8", "--threads", "1"]


def test_augmented_images_keep_their_labels():
    """After a random rotation, scale, flip and shift, each pixel's label is still the class
    its intensity says (image = label / 3, no gamma or noise)."""
    labels = torch.zeros(4, 64, 64, dtype=torch.uint8)
    labels[:, 12:40, 20:30] = 1
    labels[:, 40:52, 10:50] = 2
    labels[:, 20:30, 40:56] = 3
    images = labels[:, None].float() / 3
    cfg = SliceTrainConfig(gamma=(1.0, 1.0), noise=0.0)
    x, y = augment(images, labels, cfg, torch.Generator().manual_seed(1))
    assert x.shape == (4, 1, 64, 64) and y.shape == (4, 64, 64) and y.dtype == torch.int64
    assert not torch.equal(y, labels.long())  # moved
    for b in range(4):
        means = [float(x[b, 0][y[b] == c].mean()) for c in range(4) if (y[b] == c).any()]
        assert means == sorted(means)  # brighter class, brighter pixels
        r = np.corrcoef(x[b, 0].flatten().numpy(), y[b].flatten().numpy())[0, 1]
        assert r > 0.95, r


def test_train_slice_net_writes_a_checkpoint_chosen_on_validation(preprocessed_acdc, tmp_path):
    root = tmp_path / "pp"
    shutil.copytree(preprocessed_acdc, root)
    manifest = load_dataset_manifest(root)
    subjects = sorted(manifest["subjects"])
    manifest["splits"] = {"train": subjects[:2], "val": subjects[2:], "test": []}
    write_dataset_manifest(root, manifest)
    out = tmp_path / "run"
    assert main(["train-slice-net", "--root", str(root), "--out", str(out), "--epochs", "2",
                 "--progress", "none", *TINY]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["val_subjects"] == manifest["splits"]["val"]
    assert history["best_epoch"] in (1, 2)
    best = history["epochs"][history["best_epoch"] - 1]
    assert best["val_mean"] == max(e["val_mean"] for e in history["epochs"])
    assert set(best["val_dice"]) == {"1", "2", "3"}
    ck = load_checkpoint(out / "slice_unet.pt")
    assert ck["kind"] == "slice_unet" and ck["epoch"] == history["best_epoch"]
    assert ck["train_subjects"] == manifest["splits"]["train"]
    net, net_id = load_slice_net(out / "slice_unet.pt")
    assert len(net_id) == 12
    probs = slice_probabilities(net, np.full((40, 40, 3), 0.5, np.float32), 4.0)
    assert np.isfinite(probs).all()
    # a second run into the same folder is refused; a dataset with no train split is too
    assert main(["train-slice-net", "--root", str(root), "--out", str(out),
                 "--progress", "none", *TINY]) == 2
    manifest["splits"] = {"train": [], "val": subjects, "test": []}
    write_dataset_manifest(root, manifest)
    assert main(["train-slice-net", "--root", str(root), "--out", str(tmp_path / "run2"),
                 "--progress", "none", *TINY]) == 2


def test_the_slice_stack_holds_every_labelled_slice_on_the_grid(preprocessed_acdc):
    from nimosef_engine.data.manifest import load_split

    subjects = load_split(preprocessed_acdc, "train")
    images, labels = slice_stack(subjects)
    n = sum(s.n_frames * s.grid_shape[2] for s in subjects)
    assert images.shape == (n, 1, 128, 128) and labels.shape == (n, 128, 128)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert set(torch.unique(labels).tolist()) == {0, 1, 2, 3}
    # the LV's area in mm^2 is kept by the resampling (1.25 mm pixels on the grid)
    from nimosef_engine.core.geometry import spacing_of

    s = subjects[0]
    lv_mm2 = (s.labels[0] == 1).sum() * float(spacing_of(s.crop_affine_ras)[0]) ** 2
    grid_mm2 = float((labels[: s.grid_shape[2]] == 1).sum()) * 1.25 ** 2
    assert grid_mm2 == pytest.approx(lv_mm2, rel=0.05)
