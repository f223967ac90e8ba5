"""The shipped ACDC prior: provenance, held-out demo subject, and a real fit that finds the LV."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from nimosef_engine.data.manifest import subject_npz_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.fitting.fit import FitConfig, fit_subject
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.model.bundled import BUNDLED_PRIOR
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.training.prior import TrainConfig
from nimosef_engine.training.validation import dice_scores, predict_subject_labels

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "acdc_prior.yaml"


def test_prior_ships_with_its_provenance():
    assert BUNDLED_PRIOR.is_file()
    assert BUNDLED_PRIOR.stat().st_size < 5 * 2**20
    ck = load_checkpoint(BUNDLED_PRIOR)
    assert "optimizer_state" not in ck
    assert ck["dataset"]["name"] == "acdc"
    splits = ck["dataset"]["splits"]
    assert "sub-090" in splits["test"]  # the demo cine is never trained on
    assert "sub-090" not in ck["subject_ids"]
    assert sorted(ck["subject_ids"]) == sorted(splits["train"])
    assert ck["epoch"] >= 30 and ck["git_commit"]
    fd = ck["fit_defaults"]
    assert fd["split"] == "val" and fd["steps"] > 0
    assert set(fd["subjects"]) <= set(splits["val"])
    # one code per training subject and per augmented copy of it, originals first
    copies = ck["train_config"]["augment"]["copies"]
    n = len(ck["subject_ids"])
    assert ck["codes"].shape == (n * (1 + copies), ck["model_config"]["code_dim"])
    assert ck["code_subjects"] == list(range(n)) * (1 + copies)
    assert Path(BUNDLED_PRIOR.parent / "README.md").is_file()


def test_prior_was_trained_with_the_shipped_config():
    """configs/acdc_prior.yaml reproduces the checkpoint: every option matches what the
    checkpoint recorded, except the epoch count, which is the epoch the checkpoint reached."""
    cfg = TrainConfig.from_dict(yaml.safe_load(CONFIG.read_text())).to_dict()
    ck = load_checkpoint(BUNDLED_PRIOR)
    recorded = dict(ck["train_config"])
    assert cfg["epochs"] == ck["epoch"]
    for key in ("root", "out", "epochs", "device", "threads"):
        cfg.pop(key), recorded.pop(key)
    for key in set(cfg) - set(recorded):  # options added since it was trained: their defaults
        assert cfg.pop(key) == TrainConfig.__dataclass_fields__[key].default, key
    assert cfg == recorded


@pytest.mark.slow
def test_fitting_the_held_out_demo_subject_finds_its_lv(preprocessed_acdc):
    ck = load_checkpoint(BUNDLED_PRIOR)
    net = model_from_checkpoint(ck)
    sd = SubjectData.load(subject_npz_path(preprocessed_acdc, "patient090"))
    res = fit_subject(net, subject_tensors(sd), FitConfig(steps=40, n_points=3000),
                      ck["code_mean"])
    pred = predict_subject_labels(net, sd, res.code)
    scores = dice_scores(pred, sd.labels)
    lv_fraction = (sd.labels == 1).mean()
    assert scores["LV"] > 0.6 and scores["LV"] > 10 * lv_fraction, scores
    assert np.isfinite(list(scores.values())).all()
