"""The shipped ACDC prior: provenance, held-out demo subject, and a real fit that finds the LV."""

from pathlib import Path

import numpy as np

from nimosef_engine.data.manifest import subject_npz_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.evaluation import dice_scores, predict_subject_labels
from nimosef_engine.fit import FitConfig, fit_subject
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.segment_track import BUNDLED_PRIOR


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
    assert ck["train_config"]["epochs"] >= 100 and ck["git_commit"]
    fd = ck["fit_defaults"]
    assert fd["split"] == "val" and fd["steps"] > 0
    assert set(fd["subjects"]) <= set(splits["val"])
    assert ck["codes"].shape == (len(ck["subject_ids"]), ck["model_config"]["code_dim"])
    assert Path(BUNDLED_PRIOR.parent / "README.md").is_file()


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
