"""The quality verdict of a Segment & Track result, from signals that need no labels.

Every result carries ``quality = {verdict: ok | check | fail, reasons: [...], signals: {...}}``
in ``summary.json``. ``fail``: the result cannot be a heart as segmented (a structure missing,
volumes or coverage impossible); segment-track then refuses it unless forced. ``check``: a
person should look before using the numbers (uncertain localisation, the prior and the slice
network disagreeing, volumes outside the usual human range, an unusually poor fit).

The verdict is a pure function of the signals (:func:`verdict`), so that it can be
recalibrated on recorded signals without fitting again (``benchmarks/quality_verdict.py``).
The thresholds below were set from physiological ranges and checked on the ACDC validation
split (false alarms) and on broken inputs made from real images (misses): see the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CLASSES = {"LV": 1, "MYO": 2, "RV": 3}


@dataclass(frozen=True)
class QualityThresholds:
    """Limits of the verdict. Volumes in mL, mass in g, EF in percent."""

    min_ed_volume_ml: float = 3.0  # fail: a structure (LV, MYO, RV) missing at ED
    min_lv_slices: int = 3  # fail: the LV on fewer slices cannot give a volume
    max_lv_edv_ml: float = 600.0  # fail: no human LV is this large
    min_mass_g: float = 20.0  # fail: no myocardium to speak of
    min_confidence: float = 0.5  # check: localisation uncertain (ACDC's least certain: 0.53)
    max_fit_loss: float = 0.6  # check: the prior explains the image poorly (ACDC val max 0.51)
    # check: the prior and the slice network far apart (ACDC validation: 0.37 at the lowest;
    # another centre's ordinary heart 0.43-0.56, which the refinement's gate handles)
    min_agreement: tuple[tuple[str, float], ...] = (("LV", 0.3), ("MYO", 0.3), ("RV", 0.3))
    lv_edv_ml: tuple[float, float] = (40.0, 450.0)  # check outside (adult hearts, ACDC DCM)
    rv_edv_ml: tuple[float, float] = (40.0, 450.0)
    ef_pct: tuple[float, float] = (1.0, 90.0)  # check outside, LV and RV (ACDC: RV EF 3.9 %)
    mass_g: tuple[float, float] = (40.0, 350.0)
    rv_lv_edv_ratio: tuple[float, float] = (0.25, 3.0)  # a dilated LV: 0.36 (ACDC DCM)
    min_lv_enclosed: float = 0.6  # check: LV pool not walled by myocardium / RV (a vessel?)


DEFAULT_THRESHOLDS = QualityThresholds()


def lv_slices(labels: np.ndarray) -> int:
    """Slices (last axis of ``labels (X, Y, Z)``) holding any LV voxel."""
    return int((labels == CLASSES["LV"]).any(axis=(0, 1)).sum())


def lv_enclosed(labels: np.ndarray) -> float:
    """Share of the LV pool's in-plane border (``labels (X, Y, Z)``) that touches myocardium
    or RV rather than background: near 1 for a ventricle, low for a bright vessel or an
    artefact labelled LV. The slices at both ends of the LV (base, apex) are left out. NaN
    without an LV on three or more slices."""
    ks = np.flatnonzero((labels == CLASSES["LV"]).any(axis=(0, 1)))
    if len(ks) < 3:
        return float("nan")
    walled = total = 0
    for k in ks[1:-1]:
        lv = labels[:, :, k] == CLASSES["LV"]
        ring = ndimage.binary_dilation(lv) & ~lv
        total += int(ring.sum())
        walled += int((ring & (labels[:, :, k] > 0)).sum())
    return walled / total if total else float("nan")


def verdict(signals: dict, thr: QualityThresholds = DEFAULT_THRESHOLDS) -> dict:
    """``{"verdict": "ok" | "check" | "fail", "reasons": [...]}`` from ``signals``: keys
    ``localisation_confidence``, ``fit_loss``, ``agreement`` (class -> Dice, or None without
    the slice network), ``ed_volumes_ml`` (class -> mL), ``lv_slices``, ``lv_enclosed``,
    ``LV_EDV_mL``, ``RV_EDV_mL``, ``LV_EF_pct``, ``RV_EF_pct``, ``MYO_mass_g`` (missing or
    None: not assessed)."""
    fail, check = [], []

    def val(key):
        v = signals.get(key)
        return None if v is None or not np.isfinite(float(v)) else float(v)

    for name, v in (signals.get("ed_volumes_ml") or {}).items():
        if v is not None and float(v) < thr.min_ed_volume_ml:
            fail.append(f"no {name} at end-diastole ({float(v):.1f} mL)")
    n = signals.get("lv_slices")
    if n is not None and n < thr.min_lv_slices:
        fail.append(f"the LV spans {n} slice(s), too few for a volume")
    edv, mass = val("LV_EDV_mL"), val("MYO_mass_g")
    if edv is not None and edv > thr.max_lv_edv_ml:
        fail.append(f"LV end-diastolic volume {edv:.0f} mL is not a human heart's")
    if mass is not None and mass < thr.min_mass_g:
        fail.append(f"myocardial mass {mass:.0f} g: no myocardium found")

    conf = val("localisation_confidence")
    if conf is not None and conf < thr.min_confidence:
        check.append(f"heart localisation uncertain (confidence {conf:.2f})")
    loss = val("fit_loss")
    if loss is not None and loss > thr.max_fit_loss:
        check.append(f"the prior fits the image poorly (loss {loss:.2f})")
    agree = signals.get("agreement") or {}
    for name, lo in thr.min_agreement:
        a = agree.get(name)
        if a is not None and np.isfinite(a) and a < lo:
            check.append(f"prior and slice network disagree on the {name} (Dice {a:.2f})")
    for key, (lo, hi), what in (("LV_EDV_mL", thr.lv_edv_ml, "LV EDV {:.0f} mL"),
                                ("RV_EDV_mL", thr.rv_edv_ml, "RV EDV {:.0f} mL"),
                                ("LV_EF_pct", thr.ef_pct, "LV EF {:.0f} %"),
                                ("RV_EF_pct", thr.ef_pct, "RV EF {:.0f} %"),
                                ("MYO_mass_g", thr.mass_g, "myocardial mass {:.0f} g")):
        v = val(key)
        if v is not None and not lo <= v <= hi and not (key == "MYO_mass_g" and v < thr.min_mass_g):
            check.append(what.format(v) + f" outside {lo:g}-{hi:g}")
    rv = val("RV_EDV_mL")
    if edv and rv is not None and rv > 0:
        lo, hi = thr.rv_lv_edv_ratio
        if not lo <= rv / edv <= hi:
            check.append(f"RV/LV end-diastolic volume ratio {rv / edv:.2f} outside {lo:g}-{hi:g}")
    enc = val("lv_enclosed")
    if enc is not None and enc < thr.min_lv_enclosed:
        check.append(f"the LV pool is not walled by myocardium ({100 * enc:.0f} % of its border)")
    return {"verdict": "fail" if fail else "check" if check else "ok", "reasons": fail + check}


def assess_quality(confidence: float, fit_loss: float,
                   agreement: dict[int, dict[str, float]], vols: list[dict],
                   seg1: np.ndarray, idx: dict) -> dict:
    """The result's quality (:mod:`pipeline.quality`): ``{verdict, reasons, signals}`` from the
    localisation confidence, the fit's final loss, the prior / slice network agreement per
    frame (the lowest per class is kept), the native labels ``seg1 (T, x, y, z)`` and the
    per-frame volumes ``vols`` at the ED frame of the cardiac indices ``idx``."""
    ed = int(idx["ed_index"])
    low = {c: float(np.nanmin([a[c] for a in agreement.values()])) if agreement else None
           for c in ("LV", "MYO", "RV")}
    signals = {"localisation_confidence": round(float(confidence), 3),
               "fit_loss": round(float(fit_loss), 5),
               "agreement": {c: None if v is None or not np.isfinite(v) else round(v, 3)
                             for c, v in low.items()} if agreement else None,
               "ed_volumes_ml": {c: round(float(vols[ed][c]), 2) for c in ("LV", "MYO", "RV")},
               "lv_slices": lv_slices(seg1[ed]), "lv_enclosed": rounded(lv_enclosed(seg1[ed])),
               **{k: rounded(idx[k]) for k in ("LV_EDV_mL", "RV_EDV_mL", "LV_EF_pct",
                                            "RV_EF_pct", "MYO_mass_g")}}
    return {**verdict(signals), "signals": signals}


def rounded(v) -> float | None:
    """``v`` rounded to 4 decimals, None when not finite (JSON has no NaN)."""
    v = float(v)
    return None if not np.isfinite(v) else round(v, 4)
