"""``nimosef evaluate --layout pairs``: any labelled ED/ES pair scored like ACDC, on a real
pair from another centre (M&Ms-2), and ES given at any cycle fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nimosef_engine.cli import main
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.io.cine import load_cine
from nimosef_engine.pipeline.evaluate import load_pairs_file

pytestmark = pytest.mark.slow  # every test here runs the engine end to end

DATA = Path(__file__).resolve().parents[2] / "data"
MNMS2 = DATA / "mnms2"
PAIR = {"id": "mnms2_001", "ed": "001_SA_ED.nii.gz", "es": "001_SA_ES.nii.gz",
        "ed_labels": "001_SA_ED_gt.nii.gz", "es_labels": "001_SA_ES_gt.nii.gz"}


def write_pairs(tmp_path: Path, subjects) -> Path:
    """A pairs file in ``tmp_path`` whose paths point into tests/data/mnms2."""
    rel = {k: str(MNMS2 / v) if k in ("ed", "es", "ed_labels", "es_labels") else v
           for k, v in PAIR.items()}
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps({"subjects": [{**rel, **s} for s in subjects]}))
    return path


def test_pairs_file_is_checked_before_any_work(tmp_path):
    good = load_pairs_file(write_pairs(tmp_path, [{"es_time": 0.2}]))
    assert good[0]["es_time"] == 0.2 and good[0]["lut"][3] == 3
    acdc = load_pairs_file(write_pairs(tmp_path, [{"label_map": {"3": "LV", "2": "MYO",
                                                                 "1": "RV"}}]))
    assert list(acdc[0]["lut"][:4]) == [0, 3, 2, 1]
    for bad, words in (([{"es_time": 1.2}], "es_time must lie in (0, 1)"),
                       ([{"label_map": {"1": "LA"}}], "label_map must map"),
                       ([{"es": "missing.nii.gz"}], "file not found"),
                       ([{}, {}], "repeated"),
                       ([], "at least one subject")):
        with pytest.raises(NimosefInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_pairs_file(write_pairs(tmp_path, bad))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(NimosefInputError, match="not a JSON pairs file"):
        load_pairs_file(tmp_path / "broken.json")
    assert main(["evaluate", "--layout", "pairs", "--out", str(tmp_path / "e"),
                 "--progress", "none"]) == 2
    assert not (tmp_path / "e").exists()


def test_es_at_any_cycle_fraction():
    """ES at a fifth or a quarter of the cycle is accepted without n_frames: the frames fall
    on distinct positions of the coarsest cycle that separates them."""
    frames = [MNMS2 / "001_SA_ED.nii.gz", MNMS2 / "001_SA_ES.nii.gz"]
    for es in (0.2, 0.25, 0.45):
        cine = load_cine(frames, frame_times=[0.0, es])
        assert list(cine.frame_times) == [0.0, es]
        assert len(set(cine.frame_indices.tolist())) == 2
    with pytest.raises(NimosefInputError, match="not in time order"):
        load_cine(frames, frame_times=[0.3, 0.3])


@pytest.mark.slow
def test_evaluate_pairs_scores_another_centre(tmp_path):
    pairs = write_pairs(tmp_path, [{"es_time": 0.2}])
    out = tmp_path / "eval"
    assert main(["evaluate", "--layout", "pairs", "--pairs", str(pairs), "--out", str(out),
                 "--quality", "fast", "--fit-steps", "60", "--device", "cpu",
                 "--progress", "none"]) == 0
    row = pd.read_csv(out / "per_subject.csv").iloc[0]
    assert row["subject"] == "mnms2_001"
    assert row["dice_LV_ED"] > 0.8 and row["dice_RV_ED"] > 0.6 and row["dice_MYO"] > 0.5
    assert row["LV_EF_gt"] == pytest.approx(64.1, abs=0.1)  # from the expert labels
    assert row["quality"] in ("ok", "check", "fail")
    assert 0 < row["q_localisation_confidence"] <= 1 and row["q_lv_slices"] >= 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_subjects"] == 1 and sum(summary["quality_counts"].values()) == 1
