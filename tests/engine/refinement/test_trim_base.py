"""Ending the heart at the LV's base as the experts do (postprocess.trim_lv_base), on real
expert labels of two centres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.refinement.cleanup import MIN_MYO_COVER, myocardial_cover, trim_lv_base

DATA = Path(__file__).resolve().parents[2] / "data"


def acdc(pid: str, frame: int) -> np.ndarray:
    lab = load_nifti(DATA / "acdc" / pid / f"{pid}_frame{frame:02d}_gt.nii.gz", ndim=3,
                     dtype=np.uint8)[0]
    return remap_acdc_labels(lab)


def mnms2(phase: str) -> np.ndarray:
    return load_nifti(DATA / "mnms2" / f"001_SA_{phase}_gt.nii.gz", ndim=3, dtype=np.uint8)[0]


EXPERT = [lambda: acdc("patient001", 1), lambda: acdc("patient001", 12),
          lambda: acdc("patient080", 1), lambda: acdc("patient080", 10),
          lambda: acdc("patient090", 4), lambda: acdc("patient090", 11),
          lambda: mnms2("ED"), lambda: mnms2("ES")]


@pytest.mark.parametrize("load", EXPERT)
def test_expert_labels_are_left_alone(load):
    labels = load()
    cover = myocardial_cover(labels)
    assert np.nanmin(cover) >= MIN_MYO_COVER  # every labelled LV slice is walled
    np.testing.assert_array_equal(trim_lv_base(labels), labels)


def test_atrium_above_the_base_is_removed():
    """The M&Ms-2 end-systolic frame: the experts stop at slice 4 while the stack goes on
    into the atria. A bright pool labelled LV on the slices above (no myocardial ring), with
    some RV beside it, is removed; the ventricle itself is untouched."""
    es = mnms2("ES")
    ks = np.flatnonzero((es == 1).any((0, 1)))
    base = int(ks.min())
    assert base >= 2  # the stack reaches above the base
    wrong = es.copy()
    pool = es[:, :, base] == 1
    for k in range(base - 2, base):
        wrong[:, :, k][pool] = 1  # the atrium's pool taken for the LV, no myocardium
        wrong[:, :, k][np.roll(pool, 25, axis=0) & ~pool] = 3  # and RV beside it
    assert myocardial_cover(wrong)[base - 1] == 0.0
    np.testing.assert_array_equal(trim_lv_base(wrong), es)


def test_partly_walled_basal_slice_is_removed_and_apex_kept():
    """A basal slice with myocardium on less than half of its border goes; the apex end is
    never trimmed, whatever its cover."""
    ed = acdc("patient080", 1)
    ks = np.flatnonzero((ed == 1).any((0, 1)))
    area = (ed == 1).sum((0, 1))[ks]
    base, apex = (ks[0], ks[-1]) if area[0] > area[-1] else (ks[-1], ks[0])
    half = ed.copy()
    sl = half[:, :, base]
    xs = np.flatnonzero((sl == 2).any(1))
    cut = xs[len(xs) // 3]
    sl[cut:, :][sl[cut:, :] == 2] = 0  # open two thirds of the ring
    assert myocardial_cover(half)[base] < MIN_MYO_COVER
    out = trim_lv_base(half)
    assert not out[:, :, base].any()
    np.testing.assert_array_equal(np.delete(out, base, 2), np.delete(half, base, 2))
    bare_apex = ed.copy()
    bare_apex[:, :, apex][bare_apex[:, :, apex] == 2] = 0
    np.testing.assert_array_equal(trim_lv_base(bare_apex), bare_apex)
