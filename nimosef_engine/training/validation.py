"""Fit-and-score helpers: how well a prior segments subjects from their intensities alone."""

from __future__ import annotations

import numpy as np
import torch

from nimosef_engine.data.subject import SubjectData
from nimosef_engine.evaluation.metrics import dice_per_class
from nimosef_engine.fitting.fit import FitConfig, fit_subject
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.sampling.fields import sample_fields

CLASS_NAMES = {1: "LV", 2: "MYO", 3: "RV"}


def predict_subject_labels(net, sd: SubjectData, code: torch.Tensor, pose_matrix=None,
                           device="cpu") -> np.ndarray:
    """Predicted labels ``(T, X, Y, Z)`` on the subject's crop grid at its frame times."""
    return sample_fields(net, code, sd, 1, device, pose_matrix)[0]


def dice_scores(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean Dice per class over frames (NaN-aware): ``pred``, ``labels`` (T, X, Y, Z)."""
    per = [dice_per_class(pred[f], labels[f]) for f in range(labels.shape[0])]
    return {name: float(np.nanmean([d[c] for d in per])) for c, name in CLASS_NAMES.items()}


def fit_and_score(net, sd: SubjectData, init_code: torch.Tensor, steps: int = 100,
                  device="cpu", n_points: int = 4000, seed: int = 0,
                  snapshot_steps: list[int] | None = None, reporter=None) -> dict:
    """Fit ``sd``'s code on intensities only, then score Dice against its labels.

    With ``snapshot_steps`` also returns ``curve``: {step: Dice dict} for choosing the
    number of fitting steps. ``reporter`` follows (and can cancel) the fit.
    """
    if sd.labels is None:
        raise ValueError(f"{sd.subject_id} has no labels to score against")
    st = subject_tensors(sd, device)
    cfg = FitConfig(steps=steps, n_points=n_points, seed=seed,
                    snapshot_steps=list(snapshot_steps or []))
    res = fit_subject(net, st, cfg, init_code.to(device), reporter=reporter)
    scores = dice_scores(predict_subject_labels(net, sd, res.code, None, device), sd.labels)
    if snapshot_steps:
        scores["curve"] = {
            s: dice_scores(predict_subject_labels(net, sd, c, None, device), sd.labels)
            for s, (c, _m) in res.snapshots.items()}
    return scores
