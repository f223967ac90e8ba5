"""Training: the loss goes down, resume is exact, DDP runs across 2 CPU processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nimosef_engine.cli import main
from nimosef_engine.core.safe_load import load_torch_file
from nimosef_engine.model.network import ModelConfig
from nimosef_engine.training.augment import AugmentConfig, augmentation_table
from nimosef_engine.training.prior import AutoDecoder

TINY = ["--width", "32", "--depth", "3", "--code-dim", "16", "--n-points", "1000",
        "--device", "cpu", "--progress", "none"]


def _train(root, out, epochs, *extra):
    return main(["train", "--root", str(root), "--out", str(out), "--epochs", str(epochs),
                 *TINY, *extra])


def test_short_training_lowers_the_loss(preprocessed_acdc, tmp_path):
    assert _train(preprocessed_acdc, tmp_path / "run", 8, "--lr-net", "2e-3",
                  "--checkpoint-every", "4") == 0
    hist = json.loads((tmp_path / "run" / "losses.json").read_text())
    assert [h["epoch"] for h in hist] == list(range(1, 9))
    assert hist[-1]["seg"] < 0.9 * hist[0]["seg"]
    assert hist[-1]["intensity"] < hist[0]["intensity"]
    ck = load_torch_file(tmp_path / "run" / "checkpoint.pt", "checkpoint")
    assert ck["epoch"] == 8 and ck["codes"].shape == (3, 16)
    assert ck["subject_ids"] == ["sub-001", "sub-080", "sub-090"]
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_resume_gives_the_same_state_as_an_uninterrupted_run(preprocessed_acdc, tmp_path):
    # with augmented copies: their table is drawn again on resume and must be the same
    aug = ("--augment-copies", "1")
    assert _train(preprocessed_acdc, tmp_path / "full", 4, "--checkpoint-every", "1", *aug) == 0
    assert _train(preprocessed_acdc, tmp_path / "part", 2, "--checkpoint-every", "1", *aug) == 0
    # a second run without --resume refuses to overwrite the checkpoint
    assert _train(preprocessed_acdc, tmp_path / "part", 4, *aug) == 2
    assert _train(preprocessed_acdc, tmp_path / "part", 4, "--resume",
                  "--checkpoint-every", "1", *aug) == 0
    a = load_torch_file(tmp_path / "full" / "checkpoint.pt", "checkpoint")
    b = load_torch_file(tmp_path / "part" / "checkpoint.pt", "checkpoint")
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert torch.equal(a["codes"], b["codes"])
    assert [h["total"] for h in a["history"]] == [h["total"] for h in b["history"]]
    # one code per subject and per augmented copy, originals first
    assert a["codes"].shape[0] == 6 and a["code_subjects"] == [0, 1, 2, 0, 1, 2]
    assert a["train_config"]["augment"]["copies"] == 1


def test_init_from_continues_a_checkpoint_without_its_optimizer(preprocessed_acdc, tmp_path):
    """--init-from: a checkpoint's network, codes and epoch, a new optimizer (a shipped prior
    has none); a different model or a finished schedule is refused before training."""
    assert _train(preprocessed_acdc, tmp_path / "first", 2) == 0
    first = load_torch_file(tmp_path / "first" / "checkpoint.pt", "checkpoint")
    stripped = {k: v for k, v in first.items() if k != "optimizer_state"}
    torch.save(stripped, tmp_path / "shipped.pt")
    assert _train(preprocessed_acdc, tmp_path / "more", 3, "--init-from",
                  str(tmp_path / "shipped.pt")) == 0
    more = load_torch_file(tmp_path / "more" / "checkpoint.pt", "checkpoint")
    assert more["epoch"] == 3 and [h["epoch"] for h in more["history"]] == [1, 2, 3]
    assert more["history"][:2] == first["history"]
    assert more["train_config"]["init_from"] == str(tmp_path / "shipped.pt")
    # one epoch moved the weights away from the starting point, but not far
    w0, w1 = first["model_state"]["out.weight"], more["model_state"]["out.weight"]
    assert 0 < (w1 - w0).norm() < 0.5 * w0.norm()
    assert _train(preprocessed_acdc, tmp_path / "wide", 3, "--init-from",
                  str(tmp_path / "shipped.pt"), "--width", "48") == 2
    assert _train(preprocessed_acdc, tmp_path / "done", 2, "--init-from",
                  str(tmp_path / "shipped.pt")) == 2
    assert _train(preprocessed_acdc, tmp_path / "gone", 3, "--init-from",
                  str(tmp_path / "missing.pt")) == 2
    assert not any((tmp_path / name).exists() for name in ("wide", "done", "gone"))


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(preprocessed_acdc, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", "-m", "nimosef_engine", "train",
           "--root", str(preprocessed_acdc), "--out", str(tmp_path / "ddp"), "--epochs", "2",
           *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = load_torch_file(Path(tmp_path / "ddp" / "checkpoint.pt"), "checkpoint")
    assert ck["world_size"] == 2
    assert ck["epoch"] == 2
    # the ranks visited different subjects and averaged gradients: every code moved
    table = augmentation_table(3, AugmentConfig(), 0)
    init = AutoDecoder(ModelConfig(**ck["model_config"]), table, seed=0).codes.weight.detach()
    moved = (ck["codes"] - init).abs().amax(dim=1)
    assert bool((moved > 1e-6).all()), moved
    assert len(ck["history"]) == 2 and ck["history"][-1]["total"] > 0


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_uninterrupted(preprocessed_acdc, tmp_path):
    import signal
    import time

    # a long run, killed hard once it has written its second epoch checkpoint; the epoch
    # count only bounds the loop, so it does not change what the first epochs compute
    cmd = [sys.executable, "-m", "nimosef_engine", "train", "--root", str(preprocessed_acdc),
           "--out", str(tmp_path / "killed"), *TINY, "--epochs", "1000",
           "--checkpoint-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists() and load_torch_file(ckpt, "checkpoint")["epoch"] >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.2)  # somewhere inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_torch_file(ckpt, "checkpoint")["epoch"]
    assert 2 <= killed_at < 1000
    final = killed_at + 2
    assert _train(preprocessed_acdc, tmp_path / "killed", final, "--resume",
                  "--checkpoint-every", "1") == 0
    assert _train(preprocessed_acdc, tmp_path / "ref", final, "--checkpoint-every", "1") == 0
    a = load_torch_file(tmp_path / "ref" / "checkpoint.pt", "checkpoint")
    b = load_torch_file(ckpt, "checkpoint")
    assert a["epoch"] == b["epoch"] == final
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert torch.equal(a["codes"], b["codes"])


def test_periodic_validation_fits_val_subjects_and_reports_dice(preprocessed_acdc, tmp_path):
    import shutil

    root = tmp_path / "pp"
    shutil.copytree(preprocessed_acdc, root)
    manifest = root / "derivatives" / "manifests_nimosef" / "dataset_manifest.json"
    m = json.loads(manifest.read_text())  # one subject per group: put sub-090 in val by hand
    m["splits"] = {"train": ["sub-001", "sub-080"], "val": ["sub-090"], "test": []}
    manifest.write_text(json.dumps(m))
    assert _train(root, tmp_path / "run", 2, "--val-every", "2", "--val-fit-steps", "5") == 0
    hist = json.loads((tmp_path / "run" / "losses.json").read_text())
    assert "val_dice_LV" not in hist[0]
    for c in ("LV", "MYO", "RV"):
        assert 0.0 <= hist[1][f"val_dice_{c}"] <= 1.0


def test_every_config_in_the_repo_parses():
    """configs/*.yaml and configs/ablation/*.yaml are valid training configs."""
    import yaml

    from nimosef_engine.training.prior import TrainConfig

    root = Path(__file__).resolve().parents[3] / "configs"
    paths = sorted(root.glob("*.yaml")) + sorted(root.glob("ablation/*.yaml"))
    assert len(paths) >= 7
    for p in paths:
        cfg = TrainConfig.from_dict(yaml.safe_load(p.read_text()))
        assert cfg.epochs > 0 and cfg.model.depth > 0, p
