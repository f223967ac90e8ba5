"""Fixtures for the preprocessing tests (data helpers in preprocess_testdata.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from preprocess_testdata import ACDC_ROOT, build_bids

from nimosef_engine.cli import main


@pytest.fixture(scope="session")
def acdc_out(tmp_path_factory) -> Path:
    """The three ACDC test patients preprocessed through the CLI, patient090 held out."""
    out = tmp_path_factory.mktemp("acdc_out")
    rc = main(["preprocess", "--layout", "acdc", "--root", str(ACDC_ROOT), "--out", str(out),
               "--holdout", "patient090", "--progress", "none"])
    assert rc == 0
    return out


@pytest.fixture
def bids_root(tmp_path) -> Path:
    return build_bids(tmp_path / "bids")
