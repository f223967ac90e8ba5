"""One table of malformed inputs through the real ``nimosef`` CLI (issue 6).

Every row damages a copy of real test data (ACDC, Sunnybrook DICOM, the bundled prior) in
``tmp_path`` and runs one sub-command in-process through :func:`nimosef_engine.cli.main`. Each
must exit non-zero with a single ``nimosef CMD: error: NAMED: PROBLEM`` line on stderr (no
traceback), leave ``tmp_path`` exactly as it was (no output, no temporary or lock file), and
stop before any expensive stage (localisation, fitting, sampling, training, scoring), which
is patched to raise here.

The cine generators are those of ``io/test_cine_bad_inputs.py`` (already checked at the IO
level); this table checks that they surface cleanly through each command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
for _folder in (HERE / "io", HERE / "data"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import test_cine_bad_inputs as cine_cases  # noqa: E402
from io_testdata import ACDC, SB_DICOMS  # noqa: E402
from preprocess_testdata import copy_patients  # noqa: E402

from nimosef_engine import sample, segment_track  # noqa: E402
from nimosef_engine.cli import main  # noqa: E402
from nimosef_engine.commands import fit as fit_cmd  # noqa: E402
from nimosef_engine.commands import generate as generate_cmd  # noqa: E402
from nimosef_engine.commands import metrics as metrics_cmd  # noqa: E402
from nimosef_engine.commands import train as train_cmd  # noqa: E402
from nimosef_engine.data import preprocess as preprocess_mod  # noqa: E402
from nimosef_engine.data.acdc import remap_acdc_labels  # noqa: E402

PRIOR = segment_track.BUNDLED_PRIOR
FAST = ["--quality", "fast", "--device", "cpu", "--progress", "none"]
# expensive stages a bad input must never reach: (module, attribute)
EXPENSIVE = [(segment_track, "localise_heart"), (segment_track, "fit_subject"),
             (fit_cmd, "fit_subject"), (generate_cmd, "generate_subject"),
             (sample, "sample_fields"), (train_cmd, "train"),
             (metrics_cmd, "subject_metrics"), (preprocess_mod, "write_subject")]

# A row builds its input in a fresh folder and returns (argv, named, problem): the stderr line
# must read "nimosef CMD: error: NAMED...: ...PROBLEM...".
Row = Callable[[Path], tuple[list[str], str, str]]


class Reached(Exception):
    """Raised by a patched expensive stage: the bad input was not caught early enough."""


# ----------------------------------------------------------------------------- segment-track

def _st(case) -> Row:
    """A segment-track row from an IO-level generator of ``test_cine_bad_inputs``."""
    flags = {"frame_times": "--frame-times", "frame_numbers": "--frame-numbers"}

    def row(tmp: Path):
        inputs, kwargs, named, problem = case(tmp)
        extra = [a for k, v in kwargs.items() for a in (flags[k], *map(str, v))]
        return (["segment-track", *map(str, inputs), "--out", str(tmp / "out"), *extra, *FAST],
                str(named), problem)

    row.__name__ = f"segment_track_{case.__name__}"
    return row


def segment_track_pixdim_zero(tmp):
    p = tmp / "flat.nii"
    data = cine_cases.ed_frame()[0]
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0]))
    img.header.set_zooms((1.78571, 1.78571, 0.0))
    nib.save(img, str(p))
    return (["segment-track", str(p), str(cine_cases.ES), "--out", str(tmp / "out"), *FAST],
            str(p), "invalid voxel size: pixdim [1.7857, 1.7857, 0.0]")


def segment_track_dicom_mixed_series(tmp):
    d = tmp / "dicom"
    d.mkdir()
    for path in SB_DICOMS.glob("*.dcm"):
        (d / path.name).symlink_to(path)
    for n in (101, 102, 121, 122):  # a second cine series: 2 slices x 2 phases
        img = sitk.ReadImage(str(SB_DICOMS / f"{n}.dcm"))
        img.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.78")
        img.SetMetaData("0008|103e", "copy")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(d / f"copy_{n}.dcm"))
        writer.Execute(img)
    return (["segment-track", str(d), "--out", str(tmp / "out"), *FAST], str(d),
            "2 cine series in folder")  # the message lists them and names --series


def segment_track_out_under_a_file(tmp):
    (tmp / "report.txt").write_text("a file, not a folder")
    return (["segment-track", str(cine_cases.CINE_4D), "--out", str(tmp / "report.txt" / "out"),
             *FAST], str(tmp / "report.txt" / "out"), "is a file")


def segment_track_out_read_only(tmp):
    # root bypasses file permissions (a 0o555 folder stays writable), so this row only runs
    # as an ordinary user; the "parent is a file" rows cover an unwritable output as root.
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable")
    ro = tmp / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    return (["segment-track", str(cine_cases.CINE_4D), "--out", str(ro / "out"), *FAST],
            str(ro / "out"), "permission denied")


def segment_track_res_factor_zero(tmp):
    return (["segment-track", str(cine_cases.CINE_4D), "--out", str(tmp / "out"),
             "--res-factor-z", "0", *FAST], "--res-factor-z", "must be between 1 and 8")


# -------------------------------------------------------------------------------- preprocess

P080 = "patient080"


def _acdc(tmp: Path, *patients: str) -> Path:
    return copy_patients(tmp / "acdc", *patients)


def _preprocess(root: Path, out: Path) -> list[str]:
    return ["preprocess", "--layout", "acdc", "--root", str(root), "--out", str(out),
            "--progress", "none"]


def preprocess_info_cfg_not_a_number(tmp):
    root = _acdc(tmp, P080)
    cfg = root / P080 / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("ED: 1", "ED: abc"))
    return _preprocess(root, tmp / "out"), str(cfg), "ED is not a number: 'abc'"


def preprocess_label_7(tmp):
    root = _acdc(tmp, P080)
    gt = root / P080 / f"{P080}_frame10_gt.nii.gz"
    img = nib.load(str(gt))
    data = np.asarray(img.dataobj).copy()
    data[data == 2] = 7
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(gt))
    return _preprocess(root, tmp / "out"), str(gt), "labels outside 0..3: [7]"


def preprocess_cine_frames_differ_from_info_cfg(tmp):
    root = _acdc(tmp, "patient090")
    cfg = root / "patient090" / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("NbFrame: 12", "NbFrame: 13"))
    return (_preprocess(root, tmp / "out"), str(root / "patient090" / "patient090_4d.nii.gz"),
            "12 frames but Info.cfg says NbFrame 13")


def preprocess_out_under_a_file(tmp):
    (tmp / "notes.txt").write_text("a file")
    return (_preprocess(ACDC, tmp / "notes.txt" / "out"), str(tmp / "notes.txt" / "out"),
            "cannot create the output folder")


def preprocess_root_is_a_file(tmp):
    f = tmp / "patients.zip"
    f.write_bytes(b"PK\x03\x04" + bytes(100))
    return _preprocess(f, tmp / "out"), str(f), "is a file, expected the dataset folder"


# ----------------------------------------------------------------------------------- metrics

def _pred_dir(tmp: Path, pred_edit=None) -> Path:
    """``generated/sub-001_{seg,seg_gt}.nii.gz`` + frames.json from patient001's labels."""
    d = tmp / "generated"
    d.mkdir()
    frames = [ACDC / "patient001" / f"patient001_frame{f:02d}_gt.nii.gz" for f in (1, 12)]
    ref = nib.load(str(frames[0]))
    gt = np.stack([remap_acdc_labels(np.asarray(nib.load(str(f)).dataobj)) for f in frames], -1)
    pred = gt if pred_edit is None else pred_edit(gt.copy())
    for name, data in (("sub-001_seg_gt", gt), ("sub-001_seg", pred)):
        nib.save(nib.Nifti1Image(data, ref.affine, ref.header), str(d / f"{name}.nii.gz"))
    (d / "sub-001_frames.json").write_text(json.dumps(
        {"frame_times": [0.0, 11 / 30], "frame_indices": [0, 11], "n_frames_cycle": 30,
         "ed_index": 0, "es_index": 1}))
    return d


def _label_7(a):
    a[a == 3] = 7
    return a


def metrics_label_7(tmp):
    d = _pred_dir(tmp, _label_7)
    return (["metrics", "--pred-dir", str(d)], str(d / "sub-001_seg.nii.gz"),
            "unexpected label values [7]")


def metrics_frames_json_not_a_number(tmp):
    d = _pred_dir(tmp)
    p = d / "sub-001_frames.json"
    p.write_text(p.read_text().replace('"ed_index": 0', '"ed_index": "abc"'))
    return ["metrics", "--pred-dir", str(d)], str(p), "malformed value"


def metrics_out_under_a_file(tmp):
    d = _pred_dir(tmp)
    (tmp / "scores.csv").write_text("subject\n")
    out = tmp / "scores.csv" / "metrics"
    return ["metrics", "--pred-dir", str(d), "--out", str(out)], str(out), "is a file"


def metrics_out_is_a_file(tmp):
    d = _pred_dir(tmp)
    (tmp / "scores.csv").write_text("subject\n")
    return (["metrics", "--pred-dir", str(d), "--out", str(tmp / "scores.csv")],
            str(tmp / "scores.csv"), "exists and is not a folder")


def metrics_pred_dir_is_a_file(tmp):
    d = _pred_dir(tmp)
    f = d / "sub-001_seg.nii.gz"
    return ["metrics", "--pred-dir", str(f)], str(f), "is a file, expected the folder"


# -------------------------------------------------------------------------- resample / fit

def _truncated_prior(tmp: Path) -> Path:
    p = tmp / "prior.pt"
    p.write_bytes(PRIOR.read_bytes()[:20_000])
    return p


def resample_truncated_subject_file(tmp):
    p = tmp / "subject.nimosef"
    p.write_bytes(PRIOR.read_bytes()[:20_000])
    return (["resample", str(p), "--res-factor-z", "2", "--out", str(tmp / "out"),
             "--device", "cpu", "--progress", "none"], str(p), "not a readable subject file")


def resample_checkpoint_given_as_subject(tmp):
    return (["resample", str(PRIOR), "--res-factor-z", "2", "--out", str(tmp / "out"),
             "--device", "cpu", "--progress", "none"], str(PRIOR),
            "not a NIMOSEF subject file")


def resample_res_factor_nine(tmp):
    return (["resample", str(PRIOR), "--res-factor-z", "9", "--out", str(tmp / "out"),
             "--device", "cpu", "--progress", "none"], "--res-factor-z",
            "must be between 1 and 8")


def _fake_root(tmp: Path, npz: bytes) -> Path:
    """A preprocessed-dataset root holding only ``sub-001.npz`` with the bytes ``npz``."""
    root = tmp / "dataset"
    sub = root / "derivatives" / "implicit" / "sub-001"
    sub.mkdir(parents=True)
    (sub / "sub-001.npz").write_bytes(npz)
    return root


def fit_truncated_checkpoint(tmp):
    p = _truncated_prior(tmp)
    return (["fit", "--root", str(tmp), "--subjects", "sub-001", "--checkpoint", str(p),
             "--out", str(tmp / "codes.pt"), "--device", "cpu", "--progress", "none"],
            str(p), "not a readable checkpoint")


def fit_truncated_subject(tmp):
    root = _fake_root(tmp, b"PK\x03\x04" + bytes(64))
    npz = root / "derivatives" / "implicit" / "sub-001" / "sub-001.npz"
    return (["fit", "--root", str(root), "--subjects", "sub-001", "--checkpoint", str(PRIOR),
             "--out", str(tmp / "codes.pt"), "--device", "cpu", "--progress", "none"],
            str(npz), "not a readable preprocessed subject")


def fit_out_under_a_file(tmp):
    (tmp / "codes").write_text("a file")
    out = tmp / "codes" / "codes.pt"
    return (["fit", "--root", str(ACDC), "--split", "test", "--checkpoint", str(PRIOR),
             "--out", str(out), "--device", "cpu", "--progress", "none"], str(out), "is a file")


# ---------------------------------------------------------------------------------- generate

def _generate(tmp: Path, *extra: str) -> list[str]:
    return ["generate", "--root", str(tmp), "--subjects", "sub-001", "--checkpoint", str(PRIOR),
            "--device", "cpu", "--progress", "none", *extra]


def generate_codes_not_a_codes_file(tmp):
    p = tmp / "codes.pt"
    p.write_text("subject,code\nsub-001,0.1\n")
    return (_generate(tmp, "--codes", str(p), "--out", str(tmp / "out")), str(p),
            "not a readable codes file")


def generate_codes_is_a_directory(tmp):
    d = tmp / "codes"
    d.mkdir()
    return (_generate(tmp, "--codes", str(d), "--out", str(tmp / "out")), str(d),
            "is a directory")


def generate_out_under_a_file(tmp):
    (tmp / "volumes").write_text("a file")
    out = tmp / "volumes" / "out"
    return _generate(tmp, "--out", str(out)), str(out), "is a file"


def generate_res_factor_zero(tmp):
    return (_generate(tmp, "--out", str(tmp / "out"), "--res-factor-z", "0"), "--res-factor-z",
            "must be between 1 and 8")


# ------------------------------------------------------------------------------ train / split

def train_out_under_a_file(tmp):
    (tmp / "runs").write_text("a file")
    out = tmp / "runs" / "prior"
    return (["train", "--root", str(tmp), "--out", str(out), "--device", "cpu",
             "--progress", "none"], str(out), "is a file")


def train_root_without_manifest(tmp):
    root = tmp / "raw"
    root.mkdir()
    return (["train", "--root", str(root), "--out", str(tmp / "run"), "--device", "cpu",
             "--progress", "none"], str(root / "derivatives"), "no dataset manifest")


def train_config_not_a_mapping(tmp):
    cfg = tmp / "train.yaml"
    cfg.write_text("- epochs: 3\n- lr_net: 1e-4\n")
    return (["train", "--config", str(cfg), "--root", str(tmp), "--out", str(tmp / "run")],
            str(cfg), "config must be a mapping")


def split_without_manifest(tmp):
    return ["split", "--root", str(tmp)], str(tmp / "derivatives"), "no dataset manifest"


CINE_ROWS = [cine_cases.truncated_gzip, cine_cases.not_gzip_magic, cine_cases.nrrd_wrong_magic,
             cine_cases.image_2d, cine_cases.single_frame, cine_cases.different_shapes,
             cine_cases.different_geometry, cine_cases.nan_values, cine_cases.inf_values_nrrd,
             cine_cases.constant_frame, cine_cases.zero_size_dimension,
             cine_cases.absurd_spacing, cine_cases.directory_among_files,
             cine_cases.dicom_without_trigger_times, cine_cases.frame_times_out_of_range]
ROWS: list[Row] = [
    *map(_st, CINE_ROWS), segment_track_pixdim_zero, segment_track_dicom_mixed_series,
    segment_track_out_under_a_file, segment_track_out_read_only, segment_track_res_factor_zero,
    preprocess_info_cfg_not_a_number, preprocess_label_7,
    preprocess_cine_frames_differ_from_info_cfg, preprocess_out_under_a_file,
    preprocess_root_is_a_file,
    metrics_label_7, metrics_frames_json_not_a_number, metrics_out_under_a_file,
    metrics_out_is_a_file, metrics_pred_dir_is_a_file,
    resample_truncated_subject_file, resample_checkpoint_given_as_subject,
    resample_res_factor_nine,
    fit_truncated_checkpoint, fit_truncated_subject, fit_out_under_a_file,
    generate_codes_not_a_codes_file, generate_codes_is_a_directory, generate_out_under_a_file,
    generate_res_factor_zero,
    train_out_under_a_file, train_root_without_manifest, train_config_not_a_mapping,
    split_without_manifest,
]


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root``: files -> (size, mtime_ns), folders and links -> None."""
    out: dict[str, tuple[int, int] | None] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns) \
            if p.is_file() and not p.is_symlink() else None
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r.__name__ for r in ROWS])
def test_bad_input_exits_non_zero_with_a_clear_message_and_no_output(row, tmp_path, capsys,
                                                                     monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    argv, named, problem = row(work)
    for module, name in EXPENSIVE:
        def reached(*_a, _name=f"{module.__name__}.{name}", **_k):
            raise Reached(_name)
        monkeypatch.setattr(module, name, reached)
    monkeypatch.chdir(work)
    capsys.readouterr()
    before = snapshot(work)

    code = main(argv)

    err = capsys.readouterr().err
    assert code != 0, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    prefix = f"nimosef {argv[0]}: error: {named}"
    assert lines[0].startswith(prefix), f"expected {prefix!r}, got {lines[0]!r}"
    assert problem in lines[0], f"expected {problem!r} in {lines[0]!r}"
    assert snapshot(work) == before


def test_console_entry_point_exits_2_without_traceback(tmp_path):
    """The installed-module path (``python -m nimosef_engine``) behaves like ``main``."""
    argv, named, problem = _st(cine_cases.truncated_gzip)(tmp_path)
    res = subprocess.run([sys.executable, "-m", "nimosef_engine", *argv], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert f"nimosef segment-track: error: {named}" in res.stderr and problem in res.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated.nii.gz"]


def test_table_covers_the_issue():
    """At least 20 rows over at least 4 commands (issue 6 asks for 15 kinds of input)."""
    assert len(ROWS) >= 20
    assert {r.__name__.split("_")[0] for r in ROWS} == {
        "segment", "preprocess", "metrics", "resample", "fit", "generate", "train", "split"}


def test_operating_system_error_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    """A disk-full (or other OS) error while writing is reported by file, not a traceback."""
    from nimosef_engine.commands import split as split_cmd

    target = tmp_path / "derivatives" / "manifests_nimosef" / "dataset_manifest.json"

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(split_cmd, "resplit", disk_full)
    assert main(["split", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"nimosef split: error: {target}: No space left on device\n"
