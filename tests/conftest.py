"""Session fixtures shared by the engine tests: real ACDC test data, preprocessed once, and a
tiny prior trained on it for the fit / generate / resample tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the tests' shared real-data helpers (io_testdata, preprocess_testdata, safety_testdata)
HELPERS = Path(__file__).resolve().parent / "helpers"
if str(HELPERS) not in sys.path:
    sys.path.insert(0, str(HELPERS))

DATA = Path(__file__).resolve().parent / "data"
ACDC = DATA / "acdc"
TINY_MODEL = ["--width", "32", "--depth", "3", "--code-dim", "16"]


@pytest.fixture(scope="session")
def preprocessed_acdc(tmp_path_factory) -> Path:
    """tests/data/acdc preprocessed (3 patients; all in the train split, seeded)."""
    from nimosef_engine.cli import main

    out = tmp_path_factory.mktemp("acdc_pp")
    assert main(["preprocess", "--layout", "acdc", "--root", str(ACDC), "--out", str(out),
                 "--fractions", "1", "0", "0", "--progress", "none"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_prior(preprocessed_acdc, tmp_path_factory) -> Path:
    """A small network trained a few epochs on the three test patients (checkpoint path)."""
    from nimosef_engine.cli import main

    out = tmp_path_factory.mktemp("tiny_prior")
    assert main(["train", "--root", str(preprocessed_acdc), "--out", str(out), "--epochs", "4",
                 "--n-points", "1500", "--device", "cpu", "--progress", "none", *TINY_MODEL,
                 "--checkpoint-every", "2"]) == 0
    return out / "checkpoint.pt"


# Fixtures that run Segment & Track, a cohort or a training before their tests: every test
# that uses one is in the full set only (``-m "not slow"`` is the fast set, under 2 minutes).
HEAVY_FIXTURES = {"engine_run", "imported", "tiny_prior", "st_090", "tracked", "fitted",
                  "cohort"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
