"""Shared helpers for the benchmark scripts: machine description, result lines, test data."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import torch

torch.set_flush_denormal(True)  # as every nimosef command runs (core.threads.subnormals)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEST_ACDC = ROOT / "tests" / "data" / "acdc"


def machine() -> dict:
    dev = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    # a copy of the tree whose .git is not its own (the lent GPU machine's) names its commit in
    # the environment
    commit = os.environ.get("NIMOSEF_GIT_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=ROOT).stdout.strip()
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




def split_subjects(subjects: list[str] | None, manifest_root: str | None,
                   split: str) -> list[str]:
    """ACDC patient names: ``subjects`` if given, else those of ``split`` in the manifest of
    the preprocessed dataset at ``manifest_root``."""
    if subjects:
        return list(subjects)
    from nimosef_engine.data.manifest import load_dataset_manifest

    if not manifest_root:
        raise SystemExit("give --subjects or --manifest-root")
    manifest = load_dataset_manifest(manifest_root)
    return ["patient" + s.removeprefix("sub-") for s in manifest["splits"][split]]


def add_split_arguments(ap) -> None:
    """``--root`` (the ACDC training folder), ``--subjects`` or ``--manifest-root`` +
    ``--split`` (:func:`split_subjects`) and ``--prior`` for a script that fits ACDC
    patients."""
    ap.add_argument("--root", required=True,
                    help="the ACDC training folder (patientXXX/; download from the ACDC challenge)")
    ap.add_argument("--subjects", nargs="+")
    ap.add_argument("--manifest-root", help="preprocessed dataset whose --split to use")
    ap.add_argument("--split", default="val")
    ap.add_argument("--prior")


def subjects_and_prior(args) -> tuple[list[str], dict, torch.nn.Module]:
    """The patients of :func:`add_split_arguments`' options, and the prior (checkpoint and
    network, on the CPU), with torch's global seed set to 0 first."""
    from nimosef_engine.model.bundled import load_prior

    subjects = split_subjects(args.subjects, args.manifest_root, args.split)
    torch.manual_seed(0)
    ckpt, net, _ = load_prior(args.prior, "cpu")
    return subjects, ckpt, net


def acdc_ed_es(folder: Path):
    """``(Info.cfg, cine of the ED and ES frames, their labels remapped to NIMOSEF's)`` of an
    ACDC patient folder, as ``nimosef evaluate`` reads it."""
    import numpy as np

    from nimosef_engine.data.acdc import parse_info_cfg, remap_acdc_labels
    from nimosef_engine.io.cine import load_cine
    from nimosef_engine.io.nifti import load_nifti

    info = parse_info_cfg(folder / "Info.cfg")
    numbers = (info.ed, info.es)
    cine = load_cine([folder / f"{folder.name}_frame{n:02d}.nii.gz" for n in numbers],
                     frame_numbers=list(numbers), n_frames=info.nb_frame)
    gts = [remap_acdc_labels(load_nifti(folder / f"{folder.name}_frame{n:02d}_gt.nii.gz", 3,
                                        dtype=np.uint8)[0]) for n in numbers]
    return info, cine, gts
