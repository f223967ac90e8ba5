"""The quality verdict: its signals on real expert labels and its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.evaluation.metrics import class_agreement, volumes_ml
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.pipeline.quality import lv_enclosed, lv_slices, verdict

ACDC = Path(__file__).resolve().parents[2] / "data" / "acdc"


def expert(pid: str, frame: int) -> tuple[np.ndarray, np.ndarray]:
    lab, aff = load_nifti(ACDC / pid / f"{pid}_frame{frame:02d}_gt.nii.gz", ndim=3,
                          dtype=np.uint8)
    return remap_acdc_labels(lab), aff


def signals_of(labels: np.ndarray, aff: np.ndarray, **extra) -> dict:
    vols = volumes_ml(labels, aff)
    return {"localisation_confidence": 0.9, "fit_loss": 0.35,
            "agreement": {"LV": 0.9, "MYO": 0.8, "RV": 0.85},
            "ed_volumes_ml": {c: vols[c] for c in ("LV", "MYO", "RV")},
            "lv_slices": lv_slices(labels), "lv_enclosed": lv_enclosed(labels),
            "LV_EDV_mL": vols["LV"], "RV_EDV_mL": vols["RV"], "LV_EF_pct": 55.0,
            "RV_EF_pct": 50.0, "MYO_mass_g": 1.05 * vols["MYO"], **extra}


@pytest.mark.parametrize("pid,frame", [("patient001", 1), ("patient080", 1), ("patient090", 4)])
def test_expert_labels_pass(pid, frame):
    labels, aff = expert(pid, frame)
    assert lv_slices(labels) >= 5
    assert lv_enclosed(labels) > 0.9  # the LV pool is walled by myocardium (and RV)
    assert verdict(signals_of(labels, aff)) == {"verdict": "ok", "reasons": []}


def test_missing_rv_fails_and_names_it():
    labels, aff = expert("patient080", 1)
    labels[labels == 3] = 0
    v = verdict(signals_of(labels, aff))
    assert v["verdict"] == "fail"
    assert any("no RV at end-diastole" in r for r in v["reasons"])


def test_one_slice_fails():
    labels, aff = expert("patient080", 1)
    k = int(np.median(np.flatnonzero((labels == 1).any(axis=(0, 1)))))
    one = np.zeros_like(labels)
    one[:, :, k] = labels[:, :, k]
    assert lv_slices(one) == 1 and np.isnan(lv_enclosed(one))
    v = verdict(signals_of(one, aff))
    assert v["verdict"] == "fail" and any("1 slice" in r for r in v["reasons"])


def test_bright_vessel_labelled_lv_is_flagged():
    """A round bright structure with no myocardium around it (a vessel or flow artefact
    taken for the LV) is not walled: check."""
    labels, aff = expert("patient080", 1)
    fake = np.zeros_like(labels)
    xx, yy = np.mgrid[: labels.shape[0], : labels.shape[1]]
    disk = (xx - 40) ** 2 + (yy - 40) ** 2 < 100
    fake[disk, 2:8] = 1
    fake[(labels == 2)] = 2  # myocardium elsewhere
    fake[(labels == 3)] = 3
    assert lv_enclosed(fake) < 0.2
    v = verdict(signals_of(fake, aff))
    assert v["verdict"] == "check"
    assert any("not walled" in r for r in v["reasons"])


def test_check_signals():
    labels, aff = expert("patient001", 1)
    base = signals_of(labels, aff)
    assert verdict({**base, "localisation_confidence": 0.48})["verdict"] == "check"
    assert verdict({**base, "fit_loss": 0.9})["verdict"] == "check"
    assert verdict({**base, "agreement": {"LV": 0.9, "MYO": 0.8, "RV": 0.2}})["verdict"] \
        == "check"
    assert verdict({**base, "LV_EF_pct": 0.5})["verdict"] == "check"  # no contraction
    assert verdict({**base, "RV_EF_pct": 3.9})["verdict"] == "ok"  # ACDC has such RVs
    # without the slice network there is no agreement to assess
    assert verdict({**base, "agreement": None})["verdict"] == "ok"
    # the non-cardiac blob of the safety review: 668 mL, 2.2 g
    blob = verdict({**base, "LV_EDV_mL": 668.0, "MYO_mass_g": 2.2, "LV_EF_pct": 3.9})
    assert blob["verdict"] == "fail" and len(blob["reasons"]) >= 3


def test_class_agreement():
    labels, _ = expert("patient080", 1)
    a = class_agreement(labels, labels)
    assert a == {"LV": 1.0, "MYO": 1.0, "RV": 1.0}
    shifted = np.roll(labels, 6, axis=0)
    b = class_agreement(labels, shifted)
    assert all(0.0 < b[c] < 1.0 for c in b) and b["MYO"] < b["LV"]
    assert np.isnan(class_agreement(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)))["RV"])


def test_prior_weight_falls_where_prior_and_slice_network_disagree():
    """segment_track.refine_beta: the full weight where the two agree as on ACDC hearts, none
    where they disagree as on the other centre's heart (M&Ms-2: mean class Dice 0.55), linear
    between; without the slice network, the full weight."""
    from nimosef_engine.refinement.alignment import PRIOR_GATE, refine_beta
    from nimosef_engine.refinement.refine import REFINE_BETA

    lo, hi = PRIOR_GATE
    agree = {0: {"LV": 0.93, "MYO": 0.72, "RV": 0.79}, 9: {"LV": 0.94, "MYO": 0.73, "RV": 0.68}}
    assert refine_beta(agree) == REFINE_BETA
    assert refine_beta(None) == REFINE_BETA and refine_beta({}) == REFINE_BETA
    low = {0: {"LV": 0.5, "MYO": 0.3, "RV": 0.4}}
    assert refine_beta(low) == 0.0
    mid = {0: {"LV": (lo + hi) / 2, "MYO": (lo + hi) / 2, "RV": (lo + hi) / 2}}
    assert refine_beta(mid) == pytest.approx(REFINE_BETA / 2)
    # a class absent from both (NaN) does not count against the agreement
    assert refine_beta({0: {"LV": 0.9, "MYO": 0.8, "RV": float("nan")}}) == REFINE_BETA
