"""Shared helpers for the benchmark scripts: machine description, result lines, test data."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEST_ACDC = ROOT / "tests" / "data" / "acdc"


def machine() -> dict:
    dev = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    return {"device": dev, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "git_commit": commit,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def record(name: str, figures: dict) -> dict:
    """Print the figures and append them as one JSON line to benchmarks/results/NAME.jsonl."""
    line = {"benchmark": name, **machine(), **figures}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{name}.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(json.dumps(line, indent=1))
    return line


def preprocessed_test_data() -> Path:
    """tests/data/acdc preprocessed into a temporary folder (all subjects in train)."""
    from nimosef_engine.data.preprocess import preprocess_dataset

    out = Path(tempfile.mkdtemp(prefix="nimosef_bench_"))
    preprocess_dataset("acdc", TEST_ACDC, out, fractions=(1.0, 0.0, 0.0))
    return out
