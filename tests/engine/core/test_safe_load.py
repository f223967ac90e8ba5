"""No file the tool reads can run code (issue 18): every door a checkpoint, subject file or
codes file comes in by is offered a crafted file whose unpickling writes a marker; the tool
must refuse it with one line and exit 2, and the marker must not exist. Subject files carry a
SHA-256 of their content, checked on load; the shipped priors load with ``weights_only``."""

from __future__ import annotations

import logging

import pytest
import torch
from safety_testdata import (
    CINE,
    crafted_checkpoint,
    crafted_codes,
    crafted_subject,
    demo_image_u8,
    demo_subject,
    flip_code_bytes,
)

from nimosef_engine.cli import main
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.safe_load import content_digest, load_torch_file, save_torch_file
from nimosef_engine.model.bundled import BUNDLED_PRIOR, BUNDLED_SLICE_NET
from nimosef_engine.model.checkpoint import load_checkpoint, prior_id
from nimosef_engine.pipeline.subject_file import FORMAT, read_subject_file, write_subject_file

FAST = ["--quality", "fast", "--device", "cpu", "--progress", "none"]
REFUSED = "could run code"


def _st(option):
    def argv(w, evil, root):
        return ["segment-track", str(CINE), "--out", str(w / "out"), option, str(evil), *FAST]
    return argv


def _train_init(w, evil, root):
    return ["train", "--root", str(root), "--out", str(w / "run"), "--init-from", str(evil),
            "--device", "cpu", "--progress", "none"]


def _train_resume(w, evil, root):
    (w / "run").mkdir()
    evil.rename(w / "run" / "checkpoint.pt")
    return ["train", "--root", str(root), "--out", str(w / "run"), "--resume", "--device",
            "cpu", "--progress", "none"]


def _checkpoint_of(command, extra):
    def argv(w, evil, root):
        return [command, "--root", str(root), "--checkpoint", str(evil), *extra(w),
                "--device", "cpu", "--progress", "none"]
    return argv


# door -> (builder of the crafted file, argv(work, crafted file, dataset root), the file named)
DOORS = {
    "segment-track --prior": (crafted_checkpoint, _st("--prior"), "evil"),
    "segment-track --slice-net": (crafted_checkpoint, _st("--slice-net"), "evil"),
    "fit --checkpoint": (crafted_checkpoint, _checkpoint_of(
        "fit", lambda w: ["--split", "train", "--out", str(w / "codes.pt")]), "evil"),
    "generate --checkpoint": (crafted_checkpoint, _checkpoint_of(
        "generate", lambda w: ["--split", "train", "--out", str(w / "gen")]), "evil"),
    "calibrate-fit --checkpoint": (crafted_checkpoint, _checkpoint_of(
        "calibrate-fit", lambda w: ["--split", "train"]), "evil"),
    "train --init-from": (crafted_checkpoint, _train_init, "evil"),
    "train --resume": (crafted_checkpoint, _train_resume, "run/checkpoint.pt"),
    "generate --codes": (crafted_codes, lambda w, evil, root: [
        "generate", "--root", str(root), "--split", "train", "--checkpoint", str(BUNDLED_PRIOR),
        "--codes", str(evil), "--out", str(w / "gen"), "--device", "cpu", "--progress",
        "none"], "evil"),
    "resample SUBJECT": (crafted_subject, lambda w, evil, root: [
        "resample", str(evil), "--res-factor-z", "2", "--out", str(w / "out"), "--device",
        "cpu", "--progress", "none"], "evil"),
    "evaluate --prior": (crafted_checkpoint, lambda w, evil, root: [
        "evaluate", "--layout", "acdc", "--root", str(CINE.parents[2]), "--subjects",
        "patient090", "--out", str(w / "eval"), "--prior", str(evil), *FAST], "evil"),
}


@pytest.mark.parametrize("door", DOORS)
def test_a_crafted_file_does_not_run_at_any_door(door, tmp_path, capsys, monkeypatch,
                                                 preprocessed_acdc):
    build, argv_of, named = DOORS[door]
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "payload_ran"
    evil = build(work / "evil", marker)
    argv = argv_of(work, evil, preprocessed_acdc)
    monkeypatch.chdir(work)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{work / named}: not a readable" in err and REFUSED in err, err
    assert not marker.exists()


def test_the_crafted_files_do_run_when_unpickled_unsafely(tmp_path):
    """The control: what the engine used to do (``weights_only=False``) runs each payload."""
    for build in (crafted_checkpoint, crafted_subject, crafted_codes):
        marker = tmp_path / f"ran_{build.__name__}"
        torch.load(build(tmp_path / build.__name__, marker), weights_only=False)
        assert marker.read_text() == "ran"


@pytest.mark.parametrize("recorded", ["prior_path", "slice_net_path"])
def test_paths_a_subject_file_records_are_never_followed(recorded, tmp_path, capsys):
    """A subject fitted with another prior (or slice network) names a crafted file in its
    ``prior_path`` (``slice_net_path``): resample refuses to guess, naming that path as a
    hint, and never opens it."""
    marker = tmp_path / "payload_ran"
    evil = crafted_checkpoint(tmp_path / "their_prior.pt", marker)
    if recorded == "prior_path":
        subj = demo_subject(prior_id="0123456789ab", prior_path=str(evil))
        want = "was fitted with prior 0123456789ab, not the bundled one"
    else:
        subj = demo_subject(slice_net_id="0123456789ab", slice_net_path=str(evil))
        subj["image_u8"] = demo_image_u8(subj)
        want = "was refined with slice network 0123456789ab, not the bundled"
    path = tmp_path / "subject.nimosef"
    write_subject_file(path, subj)
    assert main(["resample", str(path), "--res-factor-z", "2", "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert want in err and f"(it was {evil})" in err, err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_subject_file_carries_a_content_hash_and_a_damaged_one_is_refused(tmp_path):
    """100 flipped bytes inside the code tensor (torch itself does not notice) are refused."""
    subj = demo_subject()
    path = tmp_path / "subject.nimosef"
    write_subject_file(path, subj)
    back = read_subject_file(path)
    assert back["format"] == FORMAT
    assert back["sha256"] == content_digest({k: v for k, v in back.items() if k != "sha256"})
    torch.testing.assert_close(back["code"], subj["code"])
    (tmp_path / "damaged.nimosef").write_bytes(path.read_bytes())
    flip_code_bytes(tmp_path / "damaged.nimosef", subj["code"])
    # torch reads the damaged file without complaint: only the hash tells
    assert not torch.equal(torch.load(tmp_path / "damaged.nimosef", weights_only=True)["code"],
                           subj["code"])
    with pytest.raises(NimosefInputError, match="damaged or edited"):
        read_subject_file(tmp_path / "damaged.nimosef")


def test_old_subject_files_stay_readable_through_the_safe_path(tmp_path, caplog):
    """Format nimosef-subject/1 (no hash; numpy scalars as older versions might hold) reads
    through the safe loader, with a warning that it is unchecked."""
    import numpy as np

    old = demo_subject(format="nimosef-subject/1")
    old["intensity_range"] = [np.float64(v) for v in old["intensity_range"]]
    torch.save(old, tmp_path / "old.nimosef")
    with caplog.at_level(logging.WARNING):
        subj = read_subject_file(tmp_path / "old.nimosef")
    assert subj["intensity_range"] == [float(v) for v in old["intensity_range"]]
    assert type(subj["intensity_range"][0]) is float
    assert "no checksum" in caplog.text


def test_shipped_priors_are_plain_tensors_and_data():
    """The bundled files load with torch's own ``weights_only=True`` (no allow-list), and
    through the engine's loader with the same content."""
    for path in (BUNDLED_PRIOR, BUNDLED_SLICE_NET):
        raw = torch.load(path, weights_only=True)
        ours = load_checkpoint(path)
        assert prior_id(raw) == prior_id(ours)
        assert content_digest(raw) == content_digest(ours)


def test_writer_refuses_what_the_reader_would_refuse(tmp_path):
    """A value that is not plain data fails when the file is written, not when it is read."""
    class Custom:
        pass

    with pytest.raises(TypeError, match="Custom"):
        save_torch_file(tmp_path / "x.pt", {"a": Custom()})
    assert not list(tmp_path.iterdir())
    save_torch_file(tmp_path / "ok.pt", {"a": torch.ones(2), "b": [1, 2.5, "s", None]})
    assert load_torch_file(tmp_path / "ok.pt", "file")["b"] == [1, 2.5, "s", None]
