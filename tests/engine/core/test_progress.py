"""Progress reporting: a run's share of a stage maps onto its slice and cancels with it."""

import pytest

from nimosef_engine.core.errors import NimosefCancelled
from nimosef_engine.core.progress import CallbackReporter, ProgressReporter, ShareReporter
from nimosef_engine.data.manifest import subject_npz_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.training.validation import fit_and_score


def test_share_reporter_maps_onto_its_slice_and_cancels_with_the_parent():
    seen = []
    parent = CallbackReporter(lambda *event: seen.append(event))
    second = ShareReporter(parent, 1 / 3, 2 / 3, "pose 2/3, ")
    second.update("fit", 0.0, "step 0")
    second.update("fit", 0.5, "step 5")
    second.update("fit", 1.5, "past the end")  # clamped to the slice's end
    assert [(s, round(f, 4), m) for s, f, m in seen] == [
        ("fit", 0.3333, "pose 2/3, step 0"), ("fit", 0.5, "pose 2/3, step 5"),
        ("fit", 0.6667, "pose 2/3, past the end")]
    parent.cancel()
    assert second.cancelled
    with pytest.raises(NimosefCancelled):
        second.update("fit", 0.9)
    seen.clear()
    ShareReporter(CallbackReporter(lambda *e: seen.append(e)), 0.0, 0.5, stage="calibrate"
                  ).update("fit", 0.5, "step 5")
    assert seen == [("calibrate", 0.25, "step 5")]


def test_a_cancelled_calibration_stops_inside_the_fit(preprocessed_acdc, tiny_prior):
    """calibrate-fit's fits follow its reporter, so SIGINT stops one mid-fit."""
    ck = load_checkpoint(tiny_prior)
    sd = SubjectData.load(subject_npz_path(preprocessed_acdc, "sub-090"))
    reporter = ProgressReporter()
    reporter.cancel()
    with pytest.raises(NimosefCancelled):
        fit_and_score(model_from_checkpoint(ck), sd, ck["code_mean"], steps=10_000,
                      reporter=reporter)
