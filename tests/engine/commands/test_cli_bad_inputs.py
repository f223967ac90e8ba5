"""One table of malformed inputs through the real ``nimosef`` CLI (issues 6 and 18).

Every row damages a copy of real test data (ACDC, Sunnybrook DICOM, the bundled prior, a
subject file of the demo cine) in ``tmp_path`` and runs one sub-command in-process through
:func:`nimosef_engine.cli.main`. Each must exit with 2 and a single
``nimosef CMD: error: NAMED: PROBLEM`` line on stderr (no traceback), leave ``tmp_path``
exactly as it was (no output, no temporary or lock file, no folder made), and stop before any
expensive stage (localisation, fitting, sampling, training, scoring), which is patched to
raise here: every option is checked before any work starts.

The cine generators are those of ``io/test_cine_bad_inputs.py`` (already checked at the IO
level); this table checks that they surface cleanly through each command.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

IO_TESTS = Path(__file__).resolve().parents[1] / "io"  # its bad cines are rows here too
if str(IO_TESTS) not in sys.path:
    sys.path.insert(0, str(IO_TESTS))

import test_cine_bad_inputs as cine_cases  # noqa: E402
import torch  # noqa: E402
from io_testdata import ACDC, SB_DICOMS  # noqa: E402
from preprocess_testdata import copy_patients  # noqa: E402
from safety_testdata import demo_image_u8, demo_subject, flip_code_bytes  # noqa: E402

from nimosef_engine.cli import main  # noqa: E402
from nimosef_engine.commands import calibrate_fit as calibrate_cmd  # noqa: E402
from nimosef_engine.commands import evaluate as evaluate_cmd  # noqa: E402
from nimosef_engine.commands import fit as fit_cmd  # noqa: E402
from nimosef_engine.commands import generate as generate_cmd  # noqa: E402
from nimosef_engine.commands import metrics as metrics_cmd  # noqa: E402
from nimosef_engine.commands import train as train_cmd  # noqa: E402
from nimosef_engine.commands import train_slice_net as slice_cmd  # noqa: E402
from nimosef_engine.data import preprocess as preprocess_mod  # noqa: E402
from nimosef_engine.data.acdc import remap_acdc_labels  # noqa: E402
from nimosef_engine.fitting import pose as fitting_pose  # noqa: E402
from nimosef_engine.model.bundled import BUNDLED_PRIOR  # noqa: E402
from nimosef_engine.model.checkpoint import load_checkpoint  # noqa: E402
from nimosef_engine.pipeline import resample, segment_track  # noqa: E402
from nimosef_engine.pipeline.subject_file import write_subject_file  # noqa: E402
from nimosef_engine.sampling import fields as sampling_fields  # noqa: E402

PRIOR = BUNDLED_PRIOR
FAST = ["--quality", "fast", "--device", "cpu", "--progress", "none"]
# expensive stages a bad input must never reach: (module, attribute)
EXPENSIVE = [(segment_track, "localise_heart"), (fitting_pose, "fit_subject"),
             (fit_cmd, "fit_subject"), (generate_cmd, "generate_subject"),
             (sampling_fields, "sample_fields"), (resample, "iter_refined_frames"),
             (train_cmd, "train"),
             (slice_cmd, "train_slice_net"), (calibrate_cmd, "fit_and_score"),
             (evaluate_cmd, "evaluate_acdc"), (metrics_cmd, "subject_metrics"),
             (preprocess_mod, "write_subject")]

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
        # the library names the option (frame_times), the command line its flag
        return (["segment-track", *map(str, inputs), "--out", str(tmp / "out"), *extra, *FAST],
                flags.get(str(named), str(named)), problem)

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


# ------------------------------------------------------------- segment-track: issue 18 cases

def _st_argv(tmp: Path, *extra: str, inputs=None, out=None) -> list[str]:
    return ["segment-track", *map(str, inputs or [cine_cases.CINE_4D]), "--out",
            str(out or tmp / "out"), *extra, *FAST]


def segment_track_header_declares_a_huge_shape(tmp):
    p = tmp / "huge.nii.gz"
    img = nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4))
    img.header.set_data_shape((30000, 30000, 100, 30))
    with gzip.open(p, "wb") as fh:  # the header and 512 bytes of data: a damaged file
        fh.write(img.header.binaryblock + bytes(4) + bytes(512))
    return _st_argv(tmp, inputs=[p]), str(p), "more than the"


def segment_track_out_is_the_current_folder(tmp):
    return _st_argv(tmp, "--overwrite", out="."), ".", "is the current folder"


def segment_track_fit_steps_negative(tmp):
    return _st_argv(tmp, "--fit-steps", "-5"), "--fit-steps", "must be at least 1, got -5"


def segment_track_fit_steps_zero(tmp):
    return _st_argv(tmp, "--fit-steps", "0"), "--fit-steps", "must be at least 1, got 0"


def segment_track_roi_zero(tmp):
    return _st_argv(tmp, "--roi-mm", "0"), "--roi-mm", "must be between"


def segment_track_roi_negative(tmp):
    return _st_argv(tmp, "--roi-mm", "-160"), "--roi-mm", "must be between"


def segment_track_memory_budget_zero(tmp):
    return (_st_argv(tmp, "--memory-budget-gb", "0"), "--memory-budget-gb",
            "must be a positive number")


def segment_track_voxels_of_006_mm(tmp):
    data = cine_cases.ed_frame()[0]
    frames = [cine_cases.write_nii(tmp / f"f{k}.nii", data, zooms=(0.06, 0.06, 10.0))
              for k in (1, 2)]
    return (_st_argv(tmp, inputs=frames), ", ".join(map(str, frames)),
            "in-plane voxel size [0.06, 0.06] mm is not a cardiac cine MRI's")


def segment_track_frame_times_out_of_order(tmp):
    times = [k / 12 for k in range(12)]
    times[3], times[4] = times[4], times[3]
    return (_st_argv(tmp, "--frame-times", *map(str, times)), "--frame-times",
            "are not in time order")


def segment_track_ed_frame_past_the_last(tmp):
    return _st_argv(tmp, "--ed-frame", "12"), "--ed-frame", "must be in 0..11"


def _prior_with(tmp: Path, name: str, edit) -> Path:
    ck = load_checkpoint(PRIOR)
    edit(ck)
    torch.save(ck, tmp / name)
    return tmp / name


def segment_track_prior_with_empty_weights(tmp):
    p = _prior_with(tmp, "empty.pt", lambda ck: ck.update(model_state={}))
    return _st_argv(tmp, "--prior", str(p)), str(p), "model_state holds no weights"


def segment_track_prior_weights_of_another_model(tmp):
    p = _prior_with(tmp, "wide.pt", lambda ck: ck["model_config"].update(width=64))
    return _st_argv(tmp, "--prior", str(p)), str(p), "weights do not fit its model_config"


def segment_track_prior_without_mean_code(tmp):
    p = _prior_with(tmp, "no_mean.pt", lambda ck: ck.pop("code_mean"))
    return _st_argv(tmp, "--prior", str(p)), str(p), "checkpoint has no code_mean"


def segment_track_slice_net_is_the_prior(tmp):
    return (_st_argv(tmp, "--slice-net", str(PRIOR)), str(PRIOR),
            "not a slice-network checkpoint")


def segment_track_slice_net_truncated(tmp):
    p = tmp / "slice.pt"
    p.write_bytes(PRIOR.read_bytes()[:5000])
    return _st_argv(tmp, "--slice-net", str(p)), str(p), "not a readable checkpoint"


def segment_track_overwrite_a_folder_holding_the_input(tmp):
    d = tmp / "study"
    d.mkdir()
    cine = d / "cine.nii.gz"
    cine.write_bytes(cine_cases.CINE_4D.read_bytes())
    return _st_argv(tmp, "--overwrite", inputs=[cine], out=d), str(d), "holds the input"


def segment_track_overwrite_a_folder_with_other_files(tmp):
    d = tmp / "results"
    (d / "meshes").mkdir(parents=True)
    (d / "summary.json").write_text("{}")
    (d / "notes.txt").write_text("the user's notes")
    return (_st_argv(tmp, "--overwrite", out=d), str(d),
            "holds files segment-track did not write (notes.txt)")


def segment_track_lock_of_a_running_process(tmp):
    (tmp / "out.lock").write_text(json.dumps({"pid": os.getpid(),
                                              "host": socket.gethostname()}))
    return _st_argv(tmp), str(tmp / "out"), "another segment-track run is writing here"


# ---------------------------------------------------------------------- resample: issue 18

def _resample(subject: Path, tmp: Path, *extra: str) -> list[str]:
    return ["resample", str(subject), "--res-factor-z", "2", "--out", str(tmp / "out"),
            "--device", "cpu", "--progress", "none", *extra]


def _subject(tmp: Path, drop: str | None = None, **changes) -> Path:
    subj = demo_subject(**changes)
    if drop:
        subj.pop(drop)
    write_subject_file(tmp / "subject.nimosef", subj)
    return tmp / "subject.nimosef"


def resample_subject_without_crop_shape(tmp):
    p = _subject(tmp, drop="crop_shape")
    return _resample(p, tmp), str(p), "not a valid subject file: crop_shape"


def resample_subject_without_code(tmp):
    p = _subject(tmp, drop="code")
    return _resample(p, tmp), str(p), "not a valid subject file: no code"


def resample_subject_code_of_wrong_shape(tmp):
    p = _subject(tmp, code=torch.zeros(2, 64))
    return _resample(p, tmp), str(p), "code has shape (2, 64)"


def resample_subject_code_of_wrong_size(tmp):
    p = _subject(tmp, code=torch.zeros(5))
    return _resample(p, tmp), str(p), "its code has 5 values, the prior's"


def resample_subject_pose_of_wrong_shape(tmp):
    p = _subject(tmp, pose_matrix=torch.eye(3))
    return _resample(p, tmp), str(p), "pose_matrix has shape (3, 3), expected (4, 4)"


def resample_subject_crop_outside_the_input(tmp):
    p = _subject(tmp, crop_offset=[200, 0, 0])
    return _resample(p, tmp), str(p), "does not lie inside the input"


def resample_subject_image_of_wrong_shape(tmp):
    p = _subject(tmp, image_u8=torch.zeros((2, 3, 4, 5), dtype=torch.uint8))
    return _resample(p, tmp), str(p), "image_u8 has shape (2, 3, 4, 5)"


def resample_subject_with_flipped_bytes(tmp):
    p = _subject(tmp)
    flip_code_bytes(p, demo_subject()["code"])
    return _resample(p, tmp), str(p), "damaged or edited"


def resample_subject_of_another_prior(tmp):
    p = _subject(tmp, prior_id="0123456789ab")
    return (_resample(p, tmp), str(p),
            "was fitted with prior 0123456789ab, not the bundled one")


def resample_subject_of_another_slice_net(tmp):
    subj = demo_subject(slice_net_id="0123456789ab")
    subj["image_u8"] = demo_image_u8(subj)
    write_subject_file(tmp / "subject.nimosef", subj)
    p = tmp / "subject.nimosef"
    return (_resample(p, tmp), str(p),
            "was refined with slice network 0123456789ab, not the bundled")


def resample_first_frame_past_the_last(tmp):
    p = _subject(tmp)
    return _resample(p, tmp, "--first-frame", "12"), "--first-frame", "must be in 0..11"


def resample_prior_with_empty_weights(tmp):
    p = _subject(tmp)
    prior = _prior_with(tmp, "empty.pt", lambda ck: ck.update(model_state={}))
    return _resample(p, tmp, "--prior", str(prior)), str(prior), "holds no weights"


# ------------------------------------------------------- fit / generate / train: issue 18

def fit_steps_zero(tmp):
    return (["fit", "--root", str(tmp), "--subjects", "sub-001", "--checkpoint", str(PRIOR),
             "--steps", "0", "--out", str(tmp / "codes.pt"), "--device", "cpu"], "--steps",
            "must be at least 1, got 0")


def fit_checkpoint_without_mean_code(tmp):
    p = _prior_with(tmp, "no_mean.pt", lambda ck: ck.pop("code_mean"))
    return (["fit", "--root", str(tmp), "--subjects", "sub-001", "--checkpoint", str(p),
             "--out", str(tmp / "codes.pt"), "--device", "cpu"], str(p),
            "checkpoint has no code_mean")


def generate_codes_of_the_wrong_size(tmp):
    p = tmp / "codes.pt"
    torch.save({"subject_ids": ["sub-001"], "codes": torch.zeros(1, 5),
                "pose_matrices": torch.eye(4)[None]}, p)
    return (_generate(tmp, "--codes", str(p), "--out", str(tmp / "out")), str(p),
            "does not fit the checkpoint")


def calibrate_fit_truncated_checkpoint(tmp):
    p = _truncated_prior(tmp)
    return (["calibrate-fit", "--root", str(tmp), "--checkpoint", str(p), "--device", "cpu",
             "--progress", "none"], str(p), "not a readable checkpoint")


def train_epochs_zero(tmp):
    return (["train", "--root", str(tmp), "--out", str(tmp / "run"), "--epochs", "0",
             "--device", "cpu", "--progress", "none"], "--epochs", "must be a positive number")


def train_config_unknown_model_option(tmp):
    cfg = tmp / "train.yaml"
    cfg.write_text("model:\n  widht: 64\n")
    return (["train", "--config", str(cfg), "--root", str(tmp), "--out", str(tmp / "run")],
            "--config", "unexpected keyword argument 'widht'")


def train_slice_net_epochs_zero(tmp):
    return (["train-slice-net", "--root", str(tmp), "--out", str(tmp / "run"), "--epochs",
             "0", "--progress", "none"], "--epochs", "must be a positive number")


def evaluate_fit_steps_zero(tmp):
    return (["evaluate", "--layout", "acdc", "--root", str(ACDC), "--subjects", "patient090",
             "--out", str(tmp / "eval"), "--fit-steps", "0", *FAST], "--fit-steps",
            "must be at least 1")


def evaluate_prior_truncated(tmp):
    p = _truncated_prior(tmp)
    return (["evaluate", "--layout", "acdc", "--root", str(ACDC), "--subjects", "patient090",
             "--out", str(tmp / "eval"), "--prior", str(p), *FAST], str(p),
            "not a readable checkpoint")


def evaluate_slice_net_is_the_prior(tmp):
    return (["evaluate", "--layout", "acdc", "--root", str(ACDC), "--subjects", "patient090",
             "--out", str(tmp / "eval"), "--slice-net", str(PRIOR), *FAST], str(PRIOR),
            "not a slice-network checkpoint")


def preprocess_roi_zero(tmp):
    return ([*_preprocess(ACDC, tmp / "out"), "--roi-mm", "0"], "--roi-mm",
            "must be a positive number of mm")


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
    # issue 18
    segment_track_header_declares_a_huge_shape, segment_track_out_is_the_current_folder,
    segment_track_fit_steps_negative, segment_track_fit_steps_zero, segment_track_roi_zero,
    segment_track_roi_negative, segment_track_memory_budget_zero,
    segment_track_voxels_of_006_mm, segment_track_frame_times_out_of_order,
    segment_track_ed_frame_past_the_last, segment_track_prior_with_empty_weights,
    segment_track_prior_weights_of_another_model, segment_track_prior_without_mean_code,
    segment_track_slice_net_is_the_prior, segment_track_slice_net_truncated,
    segment_track_overwrite_a_folder_holding_the_input,
    segment_track_overwrite_a_folder_with_other_files, segment_track_lock_of_a_running_process,
    resample_subject_without_crop_shape, resample_subject_without_code,
    resample_subject_code_of_wrong_shape, resample_subject_code_of_wrong_size,
    resample_subject_pose_of_wrong_shape, resample_subject_crop_outside_the_input,
    resample_subject_image_of_wrong_shape,
    resample_subject_with_flipped_bytes, resample_subject_of_another_prior,
    resample_subject_of_another_slice_net, resample_first_frame_past_the_last,
    resample_prior_with_empty_weights,
    fit_steps_zero, fit_checkpoint_without_mean_code, generate_codes_of_the_wrong_size,
    calibrate_fit_truncated_checkpoint, train_epochs_zero, train_config_unknown_model_option,
    train_slice_net_epochs_zero, evaluate_fit_steps_zero, evaluate_prior_truncated,
    evaluate_slice_net_is_the_prior,
    preprocess_roi_zero,
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
    assert code == 2, err
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


def test_table_covers_the_issues():
    """At least 40 rows over every command that reads user input (issues 6 and 18)."""
    assert len(ROWS) >= 40
    assert len({r.__name__ for r in ROWS}) == len(ROWS)
    assert {r.__name__.split("_")[0] for r in ROWS} == {
        "segment", "preprocess", "metrics", "resample", "fit", "generate", "train", "split",
        "calibrate", "evaluate"}


def test_the_demo_subject_file_of_the_resample_rows_reaches_sampling(tmp_path, monkeypatch):
    """The control of the resample rows: unchanged, their subject file passes every check and
    resample goes on to sample it (so each row is refused for its own defect)."""
    def reached(*_a, **_k):
        raise Reached("iter_refined_frames")

    monkeypatch.setattr(resample, "iter_refined_frames", reached)
    with pytest.raises(Reached):
        main(_resample(_subject(tmp_path), tmp_path))


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
