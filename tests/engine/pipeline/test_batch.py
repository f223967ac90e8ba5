"""``nimosef segment-track-batch``: a cohort of real ACDC cines on a local Dask cluster, its
table, resume, failures and --retry-failed, a worker killed mid-run, Ctrl-C, the folder
manifest, and bad manifests.

The subjects run cheaply (quality fast, 5 fitting steps, z x1, no meshes, no dense motion, no
refinement): what is checked is the batch around segment-track, not its accuracy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nimosef_engine.cli import main
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import CallbackReporter
from nimosef_engine.data.cohort_manifest import read_cohort_manifest
from nimosef_engine.pipeline.batch import (
    COHORT_COLUMNS,
    ClusterSettings,
    LocalLayout,
    cohort_table,
    local_layout,
    segment_track_batch,
)
from nimosef_engine.pipeline.evaluate import peak_global_strain

needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="dask[distributed] (the batch extra) is not installed")

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
ACDC = DATA / "acdc"
SUNNY = DATA / "sunnybrook" / "dicoms" / "SCD0000101"
CHEAP = dict(quality="fast", fit_steps=5, res_factor_z=1, meshes=False, motion=False,
             refine=False, device="cpu")
CHEAP_ARGS = ["--quality", "fast", "--fit-steps", "5", "--res-factor-z", "1", "--no-meshes",
              "--no-motion", "--no-refine", "--device", "cpu"]
OUTPUTS = ("seg.nii.gz", "seg_z1.nii.gz", "rec_z1.nii.gz", "volumes.csv", "summary.json",
           "config.json", "report.png", "subject.nimosef", "motion.parquet")


def acdc_pair(pid: str) -> str:
    """The ``inputs`` cell of an ACDC patient's ED and ES frames (absolute paths)."""
    info = dict(line.split(":", 1) for line in (ACDC / pid / "Info.cfg").read_text()
                .splitlines() if ":" in line)
    ed, es = (int(info[k]) for k in ("ED", "ES"))
    frames = [str(ACDC / pid / f"{pid}_frame{n:02d}.nii.gz") for n in (ed, es)]
    return f"{';'.join(frames)},{ed} {es},{int(info['NbFrame'])}"


def stack_4d(pid: str, numbers: tuple[int, int], path: Path) -> Path:
    """A 4D NIfTI of two real ACDC frames (their cycle then spaced evenly: 0 and 0.5)."""
    imgs = [nib.load(str(ACDC / pid / f"{pid}_frame{n:02d}.nii.gz")) for n in numbers]
    data = np.stack([np.asarray(i.dataobj, np.float32) for i in imgs], axis=-1)
    out = nib.Nifti1Image(data, imgs[0].affine)
    out.header.set_zooms((*imgs[0].header.get_zooms()[:3], 1.0))
    nib.save(out, str(path))
    return path


def write_manifest(folder: Path) -> Path:
    """Two real ED/ES pairs, a subject whose file is missing and one whose NIfTI is cut."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = (ACDC / "patient080" / "patient080_frame01.nii.gz").read_bytes()
    (folder / "corrupt.nii.gz").write_bytes(raw[: len(raw) // 3])
    path = folder / "cohort.csv"
    path.write_text("subject,inputs,frame_numbers,n_frames\n"
                    f"p001,{acdc_pair('patient001')}\n"
                    f"p080,{acdc_pair('patient080')}\n"
                    "late,late_4d.nii.gz,,\n"
                    "corrupt,corrupt.nii.gz,,\n")
    return path


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary folders and lock files a stopped subject could leave."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")
                  or p.name.endswith(".lock"))


@pytest.fixture(autouse=True)
def _environment_kept():
    """Dask's local clusters write thread counts into this process's environment: the tests
    after these must not inherit them (a later subprocess would run on one thread)."""
    environ = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(environ)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    """The cohort run once on a local cluster of 2 workers x 1 thread."""
    tmp = tmp_path_factory.mktemp("batch")
    manifest = write_manifest(tmp / "manifest")
    out = tmp / "run"
    t0 = time.perf_counter()
    environ = dict(os.environ)
    rc, stdout, stderr = run_cli(["segment-track-batch", str(manifest), "--out", str(out),
                                  "--workers", "2", "--threads-per-worker", "1",
                                  "--progress", "none", *CHEAP_ARGS])
    return {"manifest": manifest, "out": out, "rc": rc, "stdout": stdout, "stderr": stderr,
            "environ_kept": dict(os.environ) == environ,
            "seconds": time.perf_counter() - t0}


def copy_run(cohort: dict, dest: Path) -> Path:
    shutil.copytree(cohort["out"], dest)
    return dest


@pytest.mark.slow
@needs_dask
def test_cohort_outputs_and_table_agree_with_each_subject(cohort):
    out, rc = cohort["out"], cohort["rc"]
    assert rc == 3, cohort["stderr"]  # two subjects failed, the others finished
    assert cohort["environ_kept"]  # Dask's thread counts do not stay in the caller's environment
    last = cohort["stderr"].strip().splitlines()[-1]
    assert last.startswith("nimosef segment-track-batch: 2 of 4 subjects done, 2 failed "
                           "(late, corrupt; late: "), last
    summary = json.loads(cohort["stdout"])
    assert summary["done"] == 2 and summary["failed"] == 2 and summary["ran"] == 4
    assert summary["cluster"] == "local cluster: 2 worker processes x 1 thread"
    subjects = out / "subjects"
    assert sorted(p.name for p in subjects.iterdir()) == ["p001", "p080"]
    for name in ("p001", "p080"):
        for f in OUTPUTS:
            assert (subjects / name / f).is_file(), (name, f)
    assert leftovers(subjects) == []
    table = pd.read_parquet(out / "cohort.parquet")
    assert list(table.columns) == COHORT_COLUMNS
    assert list(table["subject"]) == ["p001", "p080", "late", "corrupt"]  # manifest order
    assert list(table["status"]) == ["done", "done", "failed", "failed"]
    csv = pd.read_csv(out / "cohort.csv")
    pd.testing.assert_frame_equal(csv, table, check_dtype=False)
    for _, row in table.iloc[:2].iterrows():
        s = json.loads((subjects / row["subject"] / "summary.json").read_text())
        for key in ("ed_frame", "es_frame", "LV_EDV_mL", "LV_ESV_mL", "LV_EF_pct", "RV_EDV_mL",
                    "RV_ESV_mL", "RV_EF_pct", "MYO_mass_g", "runtime_s"):
            assert row[key] == pytest.approx(s[key]), (row["subject"], key)
        assert row["quality"] == s["quality"]["verdict"]
        assert np.isnan(row["peak_global_circumferential_strain_pct"])  # no motion: no strain
        assert pd.isna(row["error"])
    failures = json.loads((out / "failures.json").read_text())["subjects"]
    assert set(failures) == {"late", "corrupt"}
    assert failures["late"]["error"].endswith("late_4d.nii.gz: file not found")
    assert "corrupt.nii.gz: not a readable NIfTI file" in failures["corrupt"]["error"]
    assert all(f["attempts"] == 1 and "\n" not in f["error"] for f in failures.values())
    assert list(table["error"].iloc[2:]) == [failures["late"]["error"],
                                             failures["corrupt"]["error"]]
    batch = json.loads((out / "batch.json").read_text())
    assert batch["subjects"] == ["p001", "p080", "late", "corrupt"]
    assert batch["options"]["fit_steps"] == 5


@pytest.mark.slow
@needs_dask
def test_resume_skips_done_and_failed_subjects(cohort, tmp_path):
    out = copy_run(cohort, tmp_path / "run")
    stamps = {p: p.stat().st_mtime_ns for p in (out / "subjects").rglob("*")}
    messages = []
    summary = segment_track_batch(cohort["manifest"], out,
                                  CallbackReporter(lambda s, f, m: messages.append(m)),
                                  cluster=ClusterSettings(workers=1), **CHEAP)
    assert summary["ran"] == 0 and summary["skipped"] == 4 and summary["cluster"] is None
    assert summary["done"] == 2 and summary["failed"] == 2
    assert "1/4 finished | p001: skipped, done before" in messages
    assert "4/4 finished | corrupt: skipped, failed before, not retried" in messages
    assert {p: p.stat().st_mtime_ns for p in (out / "subjects").rglob("*")} == stamps
    pd.testing.assert_frame_equal(pd.read_parquet(out / "cohort.parquet"),
                                  pd.read_parquet(cohort["out"] / "cohort.parquet"))
    rc, _, err = run_cli(["segment-track-batch", str(cohort["manifest"]), "--out", str(out),
                          "--progress", "none", *CHEAP_ARGS])
    assert rc == 3 and err.count("\n") == 1 and "2 failed" in err


@pytest.mark.slow
@needs_dask
def test_retry_failed_runs_the_failed_subjects_again(cohort, tmp_path):
    out = copy_run(cohort, tmp_path / "run")
    done_stamp = (out / "subjects" / "p001" / "summary.json").stat().st_mtime_ns
    # the missing cine arrives; the corrupt one stays corrupt
    stack_4d("patient090", (4, 11), cohort["manifest"].parent / "late_4d.nii.gz")
    try:
        rc, _, err = run_cli(["segment-track-batch", str(cohort["manifest"]), "--out",
                              str(out), "--retry-failed", "--workers", "1",
                              "--threads-per-worker", "2", "--progress", "none", *CHEAP_ARGS])
    finally:
        (cohort["manifest"].parent / "late_4d.nii.gz").unlink()
    assert rc == 3, err
    assert "3 of 4 subjects done, 1 failed (corrupt; corrupt: " in err.splitlines()[-1]
    failures = json.loads((out / "failures.json").read_text())["subjects"]
    assert list(failures) == ["corrupt"] and failures["corrupt"]["attempts"] == 2
    assert (out / "subjects" / "late" / "summary.json").is_file()
    assert (out / "subjects" / "p001" / "summary.json").stat().st_mtime_ns == done_stamp
    table = pd.read_csv(out / "cohort.csv")
    assert list(table["status"]) == ["done", "done", "done", "failed"]
    late = json.loads((out / "subjects" / "late" / "summary.json").read_text())
    assert table.loc[2, "LV_EF_pct"] == pytest.approx(late["LV_EF_pct"])


@pytest.mark.slow
@needs_dask
def test_a_killed_worker_reruns_its_subject_elsewhere(tmp_path):
    """A cluster given by address (the code path of any existing cluster): the worker
    running the subject is killed (SIGKILL) during the fit; the scheduler reruns the subject
    on another worker, which takes over its stale lock and partial folder; the cohort
    completes. The manifest is a folder of cines."""
    from distributed import Client, LocalCluster

    cines = tmp_path / "cines"
    cines.mkdir()
    stack_4d("patient090", (4, 11), cines / "p090_4d.nii.gz")
    out = tmp_path / "run"
    killed: list[int] = []
    fits = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", silence_logs=40) as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)

        def on_progress(stage, fraction, message):
            if "p090_4d: fit" not in message:
                return
            fits.append(message)
            if killed:
                return
            busy = [w for w, keys in client.processing().items() if keys]
            assert len(busy) == 1, client.processing()
            killed.append(pids[busy[0]])
            os.kill(pids[busy[0]], signal.SIGKILL)

        summary = segment_track_batch(cines, out, CallbackReporter(on_progress),
                                      cluster=ClusterSettings(address=cluster.scheduler_address),
                                      **CHEAP)
    assert killed and summary["done"] == 1 and summary["failed"] == 0, summary
    assert len([m for m in fits if "fit step 0/5" in m]) == 2  # fitted again from the start
    subjects = out / "subjects"
    assert (subjects / "p090_4d" / "summary.json").is_file()
    assert leftovers(subjects) == []  # the dead run's lock and partial folder are gone
    assert not (out / "failures.json").exists()
    assert list(pd.read_csv(out / "cohort.csv")["status"]) == ["done"]


@pytest.mark.slow
@needs_dask
def test_ctrl_c_keeps_the_done_subjects_and_leaves_nothing_half_written(cohort, tmp_path):
    """SIGINT to the whole process group (as Ctrl-C in a terminal): the running subject
    stops and leaves nothing, the subjects done before stay and the table lists them."""
    out = copy_run(cohort, tmp_path / "run")
    manifest = tmp_path / "more.csv"
    lines = cohort["manifest"].read_text().splitlines()[:3]  # p001, p080 (done)
    manifest.write_text("\n".join([*lines, f"p090,{acdc_pair('patient090')}"]) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimosef_engine", "segment-track-batch", str(manifest),
         "--out", str(out), "--workers", "1", "--progress", "json", *CHEAP_ARGS,
         "--fit-steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in proc.stdout:
        if "p090: fit" in json.loads(line)["message"]:
            break
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert rc == 130 and time.monotonic() - t0 < 30, err
    assert err.strip().splitlines()[-1] == (
        f"nimosef segment-track-batch: cancelled; 2 of 3 subjects are done and kept, the "
        f"cohort table lists them ({out / 'cohort.csv'})")
    assert sorted(p.name for p in (out / "subjects").iterdir()) == ["p001", "p080"]
    table = pd.read_csv(out / "cohort.csv")  # the earlier manifest's failures stay listed
    assert list(table["subject"]) == ["p001", "p080", "corrupt", "late"]
    assert list(table["status"]) == ["done", "done", "failed", "failed"]


def test_folder_manifest_lists_each_cine(tmp_path):
    import SimpleITK as sitk

    (tmp_path / "b_4d.nii.gz").symlink_to(ACDC / "patient090" / "patient090_4d.nii.gz")
    (tmp_path / "frame.nii.gz").symlink_to(ACDC / "patient001" / "patient001_frame01.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(ACDC / "patient090" / "patient090_4d.nii.gz")),
                    str(tmp_path / "c.seq.nrrd"))
    shutil.copytree(SUNNY, tmp_path / "a_dicom")
    (tmp_path / "no_dicom").mkdir()
    (tmp_path / "no_dicom" / "notes.txt").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.nii.gz").write_bytes(b"")
    subjects = read_cohort_manifest(tmp_path)
    assert [(s.subject, [p.name for p in s.inputs]) for s in subjects] == [
        ("a_dicom", ["a_dicom"]), ("b_4d", ["b_4d.nii.gz"]), ("c", ["c.seq.nrrd"])]
    assert all(p.is_absolute() and not s.options for s in subjects for p in s.inputs)
    (tmp_path / "b_4d.nii").symlink_to(ACDC / "patient090" / "patient090_4d.nii.gz")
    with pytest.raises(NimosefInputError, match="subject 'b_4d' repeats"):
        read_cohort_manifest(tmp_path)
    (tmp_path / "b_4d.nii").unlink()
    (tmp_path / "my scan.nii.gz").symlink_to(ACDC / "patient090" / "patient090_4d.nii.gz")
    with pytest.raises(NimosefInputError, match="my scan.nii.gz: its name gives the subject"):
        read_cohort_manifest(tmp_path)


def test_csv_manifest_rows(tmp_path):
    (tmp_path / "m.csv").write_text(
        "\ufeffsubject,inputs,frame_times,ed_frame,series\n"
        "a,x/ed.nii.gz ; x/es.nii.gz,0 0.35,0,\n"
        "\n"
        "b,/abs/dicom,,,2\n", encoding="utf-8")
    a, b = read_cohort_manifest(tmp_path / "m.csv")
    assert a.subject == "a" and a.inputs == (tmp_path / "x" / "ed.nii.gz",
                                             tmp_path / "x" / "es.nii.gz")
    assert a.options == {"frame_times": (0.0, 0.35), "frame_numbers": None, "n_frames": None,
                         "ed_frame": 0}
    assert b.inputs == (Path("/abs/dicom"),) and b.options == {"series": "2"}
    assert a.where == "line 2 (a)" and b.where == "line 4 (b)"


BAD_MANIFESTS = {
    "missing.csv": (None, "manifest not found"),
    "empty.csv": ("", "empty manifest"),
    "header_only.csv": ("subject,inputs\n", "no subjects"),
    "no_inputs.csv": ("subject,files\na,x.nii.gz\n", "line 1: no inputs column"),
    "typo.csv": ("subject,inputs,frame_number\na,x.nii.gz,1\n", "unknown column 'frame_number'"),
    "unsafe.csv": ("subject,inputs\n../up,x.nii.gz\n", "line 2: subject '../up' is not a safe"),
    "twice.csv": ("subject,inputs\nA,x.nii.gz\na,y.nii.gz\n", "line 3 (a): subject 'a' repeats"),
    "times.csv": ("subject,inputs,frame_times\na,x.nii.gz,0 half\n",
                  "line 2 (a): frame_times '0 half' is not space-separated floats"),
    "n_frames.csv": ("subject,inputs,n_frames\na,x.nii.gz,1\n",
                     "line 2 (a): n_frames: must be at least 2, got 1"),
    "no_path.csv": ("subject,inputs\na, ; \n", "line 2 (a): no inputs"),
    "cells.csv": ("subject,inputs\na,x.nii.gz,extra\n", "line 2: more cells than columns"),
    "binary.csv": (b"\x89PNG\r\n\x1a\n\x00\x00", "not a CSV text file"),
    "empty_folder": ("folder", "no cines found"),
}


@pytest.mark.parametrize("name", list(BAD_MANIFESTS))
def test_bad_manifest_is_refused_in_one_line_and_nothing_is_written(name, tmp_path):
    content, needle = BAD_MANIFESTS[name]
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    before = sorted(tmp_path.rglob("*"))
    rc, stdout, err = run_cli(["segment-track-batch", str(path), "--out",
                               str(tmp_path / "out"), "--progress", "none", *CHEAP_ARGS])
    assert rc == 2 and stdout == "", err
    assert err.count("\n") == 1 and err.startswith(
        f"nimosef segment-track-batch: error: {path}: "), err
    assert needle in err, err
    assert sorted(tmp_path.rglob("*")) == before


def test_bad_options_and_output_are_refused_before_any_work(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"subject,inputs\np090,{ACDC / 'patient090' / 'patient090_4d.nii.gz'}\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for extra, needle in ((["--workers", "0"], "--workers: must be an integer of at least 1"),
                          (["--retries", "-1"], "--retries: must be an integer of at least 0"),
                          (["--address", "tcp://127.0.0.1:1", "--workers", "2"],
                           "--workers: applies to the local cluster only"),
                          (["--res-factor-z", "9"], "--res-factor-z: must be between 1 and 8")):
        rc, _, err = run_cli(["segment-track-batch", str(manifest), "--out",
                              str(tmp_path / "out"), *extra])
        assert rc == 2 and err.count("\n") == 1 and needle in err, (extra, err)
    rc, _, err = run_cli(["segment-track-batch", str(manifest), "--out", str(other)])
    assert rc == 2 and "is not a segment-track-batch folder (no batch.json)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "other"]
    assert [p.name for p in other.iterdir()] == ["keep.txt"]


def test_local_layout_from_cores_memory_and_gpus():
    # CPUs: a worker per core, at most one per memory budget, the cores shared as threads
    assert local_layout(cores=2, memory_gb=23, gpus=0) == LocalLayout(2, 1)
    assert local_layout(cores=16, memory_gb=16, gpus=0, memory_budget_gb=4) == LocalLayout(4, 4)
    assert local_layout(threads_per_worker=2, cores=16, memory_gb=256, gpus=0) == \
        LocalLayout(8, 2)
    assert local_layout(workers=3, cores=8, memory_gb=8, gpus=0) == LocalLayout(3, 2)
    # GPUs: one worker each, seeing its GPU alone; --device cpu ignores them
    gpu = local_layout(cores=16, memory_gb=64, gpus=4)
    assert gpu == LocalLayout(4, 4, 4)
    assert [gpu.worker_env(i)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["0", "1", "2", "3"]
    assert gpu.worker_env(1)["OMP_NUM_THREADS"] == "4"
    assert "CUDA_VISIBLE_DEVICES" not in LocalLayout(2, 1).worker_env(0)
    assert local_layout(device="cpu", cores=4, memory_gb=64) == LocalLayout(4, 1)
    with pytest.raises(NimosefInputError, match="CUDA was requested"):
        local_layout(device="cuda", gpus=0, cores=2, memory_gb=8)


def test_cohort_table_reads_strain_peaks(tmp_path):
    """A done subject with strain.csv gets its three peak global strains (the helper of
    ``nimosef evaluate``), a failed one its error; the table follows the given order."""
    folder = tmp_path / "subjects" / "s1"
    folder.mkdir(parents=True)
    folder.joinpath("summary.json").write_text(json.dumps({
        "ed_frame": 0, "es_frame": 3, "LV_EDV_mL": 150.0, "LV_EF_pct": 55.0, "runtime_s": 9.5,
        "quality": {"verdict": "check", "reasons": ["a", "b"], "signals": {}}}))
    strain = pd.DataFrame({"frame": [0, 1, 2, 0, 1, 2], "time": [0, .3, .6] * 2,
                           "segment": ["global"] * 3 + ["1"] * 3,
                           "radial_pct": [0, 30.0, 12.0, 0, 50, 1],
                           "circumferential_pct": [0, -18.0, -9.0, 0, -30, 2],
                           "longitudinal_pct": [0, -4.0, -11.0, 0, 9, 1]})
    strain.to_csv(folder / "strain.csv", index=False)
    (tmp_path / "failures.json").write_text(json.dumps(
        {"subjects": {"s0": {"error": "x.nii.gz: file not found", "attempts": 1}}}))
    table = cohort_table(tmp_path, ["s0", "s1"])
    assert list(table["subject"]) == ["s0", "s1"]
    s1 = table.iloc[1]
    assert s1["peak_global_circumferential_strain_pct"] == -18.0
    assert s1["peak_global_radial_strain_pct"] == 30.0
    assert s1["peak_global_longitudinal_strain_pct"] == -11.0
    assert s1["peak_global_circumferential_strain_pct"] == \
        peak_global_strain(folder / "strain.csv")
    assert (s1["quality"], s1["quality_reasons"], s1["runtime_s"]) == ("check", "a | b", 9.5)
    assert table.iloc[0]["status"] == "failed"
    assert table.iloc[0]["error"] == "x.nii.gz: file not found"


def test_the_engine_imports_dask_only_for_a_cohort_run():
    code = ("import sys; from nimosef_engine.cli import build_parser; build_parser(); "
            "import nimosef_engine.pipeline.batch, nimosef_engine.commands.segment_track_batch; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert res.stdout.strip() == "[]", res.stdout
