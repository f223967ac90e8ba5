"""Segment & Track's options are checked when made and name the field at fault."""

from __future__ import annotations

import pytest

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.pipeline.options import TIME_MODELS, SegmentTrackOptions


def test_the_time_model_defaults_to_reading_the_images_and_rejects_unknown_names():
    assert SegmentTrackOptions().time_model == "images"
    assert set(TIME_MODELS) == {"images", "landmarks"}
    assert SegmentTrackOptions(time_model="landmarks").time_model == "landmarks"
    with pytest.raises(NimosefInputError, match="time_model.*unknown time model 'linear'"):
        SegmentTrackOptions(time_model="linear")
