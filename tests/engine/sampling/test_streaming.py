"""Frame-by-frame output under a memory budget: the streaming NIfTI writer against
``save_nifti``, budget-sized chunks giving the same volumes, and the too-small budget error."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from nimosef_engine.cli import main
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.io.nifti import load_nifti, save_nifti
from nimosef_engine.io.nifti_stream import NiftiFrameWriter
from nimosef_engine.model.bundled import BUNDLED_PRIOR
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.pipeline import segment_track
from nimosef_engine.pipeline.resample import resample_subject
from nimosef_engine.pipeline.subject_file import read_subject_file, subject_grid
from nimosef_engine.sampling import memory

DATA = Path(__file__).resolve().parents[2] / "data"
P090 = DATA / "acdc" / "patient090"
CINE = P090 / "patient090_4d.nii.gz"
FRAMES = [P090 / "patient090_frame04.nii.gz", P090 / "patient090_frame11.nii.gz"]
CLI = ["--device", "cpu", "--progress", "none"]


def _stream(path: Path, data: np.ndarray, affine: np.ndarray, dt_ms) -> Path:
    with NiftiFrameWriter(path, data.shape, data.dtype, affine, dt_ms) as w:
        for t in range(data.shape[3]):
            w.write_frame(data[..., t])
    return path


def _labels_4d() -> np.ndarray:
    """The expert ED and ES label maps of patient090 as one (X, Y, Z, 2) uint8 array."""
    gts = [nib.load(p.with_name(p.name.replace(".nii", "_gt.nii"))) for p in FRAMES]
    return np.stack([np.asarray(g.dataobj).astype(np.uint8) for g in gts], axis=-1)


@pytest.mark.parametrize("kind, name", [("cine", "x.nii.gz"), ("labels", "x.nii.gz"),
                                        ("cine", "x.nii")])
def test_stream_writer_equals_save_nifti(tmp_path, kind, name):
    cine, aff = load_nifti(CINE, ndim=4)
    data, dt_ms = (cine, 33.0) if kind == "cine" else (_labels_4d(), None)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = save_nifti(tmp_path / "a" / name, data, aff, dt_ms)
    b = _stream(tmp_path / "b" / name, data, aff, dt_ms)
    ia, ib = nib.load(a), nib.load(b)
    assert ia.header.binaryblock == ib.header.binaryblock
    assert ib.get_data_dtype() == data.dtype and ib.shape == data.shape
    raw = (lambda p: gzip.open(p).read()) if name.endswith(".gz") else Path.read_bytes
    assert raw(a) == raw(b)  # header, padding and every voxel byte
    back, back_aff = load_nifti(b, ndim=4, dtype=data.dtype)
    assert np.array_equal(back, data)
    np.testing.assert_allclose(back_aff, aff, atol=1e-6)
    sa, sb = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    assert sb.GetSize() == data.shape
    np.testing.assert_allclose(sb.GetOrigin(), sa.GetOrigin())
    np.testing.assert_allclose(sb.GetDirection(), sa.GetDirection())
    np.testing.assert_allclose(sb.GetSpacing(), sa.GetSpacing())
    # ITK's LPS origin is the RAS affine's voxel (0,0,0) with x and y negated
    np.testing.assert_allclose(sb.GetOrigin()[:3], aff[:3, 3] * [-1, -1, 1], atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(sb), np.transpose(data, (3, 2, 1, 0)))


def test_incomplete_or_failed_stream_leaves_nothing(tmp_path):
    data, aff = load_nifti(CINE, ndim=4)
    path = tmp_path / "seg.nii.gz"
    with pytest.raises(ValueError, match="5 of 12 frames"), \
            NiftiFrameWriter(path, data.shape, np.float32, aff) as w:
        for t in range(5):
            w.write_frame(data[..., t])
    with pytest.raises(ValueError, match="frame shape"), \
            NiftiFrameWriter(path, data.shape, np.float32, aff) as w:
        w.write_frame(data[:, :, :3, 0])
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """A quick segment-track of patient090's ED/ES pair: its subject.nimosef."""
    out = tmp_path_factory.mktemp("stream") / "pair"
    assert main(["segment-track", *map(str, FRAMES), "--frame-numbers", "4", "11",
                 "--n-frames", "12", "--out", str(out), "--res-factor-z", "1", "--no-meshes",
                 "--quality", "fast", "--fit-steps", "10", *CLI]) == 0
    return out / "subject.nimosef"


def test_tiny_budget_many_chunks_same_volumes(fitted, tmp_path, monkeypatch, caplog):
    sd = subject_grid(read_subject_file(fitted))
    crop, src = int(np.prod(sd.grid_shape)), int(np.prod(sd.source_shape))
    net = model_from_checkpoint(load_checkpoint(BUNDLED_PRIOR), "cpu")
    nbytes = memory.frame_bytes(crop * 3, src * 3, refine=True)  # the subject keeps its image
    # with nothing else in use, a budget for exactly 700 points per network call
    budget_gb = (nbytes + 700 * memory.network_point_bytes(net) + 1) / memory.BYTES_PER_GB
    default = resample_subject(fitted, tmp_path / "default", 3, device="cpu")
    monkeypatch.setattr(memory, "current_rss_bytes", lambda: 0)
    with caplog.at_level(logging.INFO, logger="nimosef_engine.pipeline.resample"):
        tiny = resample_subject(fitted, tmp_path / "tiny", 3, device="cpu",
                                memory_budget_gb=budget_gb)
    assert "chunks of 700 points" in caplog.text
    assert crop * 3 > 60 * 700  # so each frame took more than 60 network calls
    seg_a, aff_a = load_nifti(default["seg"], ndim=4, dtype=np.uint8)
    seg_b, aff_b = load_nifti(tiny["seg"], ndim=4, dtype=np.uint8)
    assert seg_a.shape == (*sd.source_shape[:2], sd.source_shape[2] * 3, 2)
    assert np.array_equal(seg_a, seg_b) and (seg_a == 1).sum() > 1000
    np.testing.assert_array_equal(aff_a, aff_b)
    rec_a, _ = load_nifti(default["rec"], ndim=4)
    rec_b, _ = load_nifti(tiny["rec"], ndim=4)
    # float32 sums over other chunk sizes may round differently in the last bit
    np.testing.assert_allclose(rec_a, rec_b, rtol=0, atol=1e-6 * float(np.ptp(rec_a)))



class _Events(ProgressReporter):
    """A reporter that keeps every (stage, fraction, message) it is given."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[str, float, str]] = []

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        self.events.append((stage, fraction, message))


def test_first_frame_preview_comes_first_and_changes_nothing(fitted, tmp_path):
    """The slider's current-frame-first resample: frame K is written alone before the cine is
    streamed, equals frame K of the cine, and the cine is the same as without a preview."""
    plain = resample_subject(fitted, tmp_path / "plain", 2, device="cpu")
    rep = _Events()
    first = resample_subject(fitted, tmp_path / "first", 2, device="cpu", reporter=rep,
                             first_frame=1)
    assert first["preview"] == tmp_path / "first" / "preview_z2.nii.gz"
    stages = [e[0] for e in rep.events]
    assert stages.count("preview") == 1
    # announced before the other frame was sampled: one resample event after it, none before
    k = stages.index("preview")
    assert "preview" not in stages[:k] and stages[k + 1:] == ["resample"]
    assert str(first["preview"]) in rep.events[k][2]
    rec, aff = load_nifti(first["rec"], ndim=4)
    preview, preview_aff = load_nifti(first["preview"], ndim=3)
    assert np.array_equal(preview, rec[..., 1])
    np.testing.assert_array_equal(preview_aff, aff)
    for key, dtype in (("seg", np.uint8), ("rec", np.float32)):
        a, _ = load_nifti(plain[key], ndim=4, dtype=dtype)
        b, _ = load_nifti(first[key], ndim=4, dtype=dtype)
        assert np.array_equal(a, b), key
    assert not np.array_equal(rec[..., 0], rec[..., 1])  # two different frames were compared
    with pytest.raises(NimosefInputError, match="first_frame: must be in 0..1"):
        resample_subject(fitted, tmp_path / "bad", 2, device="cpu", first_frame=2)
    assert not (tmp_path / "bad").exists()

def test_plan_chunk_arithmetic():
    net = model_from_checkpoint(load_checkpoint(BUNDLED_PRIOR), "cpu")
    per_point = memory.network_point_bytes(net)
    gb = memory.BYTES_PER_GB
    plan = memory.plan_chunk(1.0, net, 100 * 2 ** 20, base_bytes=500 * 2 ** 20)
    assert plan.chunk == memory.DEFAULT_CHUNK  # ample room: capped
    plan = memory.plan_chunk(0.5, net, 100 * 2 ** 20, base_bytes=400 * 2 ** 20)
    assert plan.chunk == (gb // 2 - 500 * 2 ** 20) // per_point
    assert plan.peak_bytes <= gb // 2
    need = 600 * 2 ** 20 + memory.MIN_CHUNK * per_point  # 0.587 GB
    with pytest.raises(NimosefInputError, match=r"0.5 GB is too small .* at least 0.59 GB"):
        memory.plan_chunk(0.5, net, 200 * 2 ** 20, base_bytes=400 * 2 ** 20)
    assert memory.plan_chunk(0.59, net, 200 * 2 ** 20, base_bytes=400 * 2 ** 20).chunk == \
        (int(0.59 * gb) - 600 * 2 ** 20) // per_point >= memory.MIN_CHUNK
    assert need > 0.5 * gb


def test_too_small_budget_is_refused_before_any_work(fitted, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("localisation reached with a budget too small to write a frame")

    monkeypatch.setattr(segment_track, "localise_heart", never)
    out = tmp_path / "st"
    assert main(["segment-track", str(CINE), "--out", str(out), "--memory-budget-gb", "0.05",
                 "--quality", "fast", *CLI]) == 2
    err = capsys.readouterr().err
    assert "--memory-budget-gb: 0.05 GB is too small for one frame of output" in err
    minimum = float(err.split("at least ")[1].split(" GB")[0])
    assert minimum > 0.05
    assert not out.exists() and not list(tmp_path.iterdir())
    assert main(["resample", str(fitted), "--res-factor-z", "4", "--out", str(tmp_path / "r"),
                 "--memory-budget-gb", "0.05", *CLI]) == 2
    assert "--memory-budget-gb: 0.05 GB is too small" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
