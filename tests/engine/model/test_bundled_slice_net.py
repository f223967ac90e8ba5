"""The shipped slice network: provenance (trained on the prior's train split only, the demo
held out) and, on the held-out demo patient's labelled frames, the structures where the labels
say."""

from pathlib import Path

from nimosef_engine.core.geometry import spacing_of
from nimosef_engine.data.manifest import subject_npz_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.evaluation.metrics import dice_per_class
from nimosef_engine.model.bundled import BUNDLED_PRIOR, BUNDLED_SLICE_NET, load_slice_net
from nimosef_engine.model.checkpoint import load_checkpoint
from nimosef_engine.refinement.slice_evidence import slice_probabilities


def test_slice_net_ships_with_its_provenance():
    assert BUNDLED_SLICE_NET.is_file()
    assert BUNDLED_SLICE_NET.stat().st_size < 3 * 2**20
    ck = load_checkpoint(BUNDLED_SLICE_NET)
    assert ck["kind"] == "slice_unet" and ck["git_commit"] and ck["epoch"] >= 1
    prior = load_checkpoint(BUNDLED_PRIOR)
    splits = prior["dataset"]["splits"]
    assert ck["train_subjects"] == splits["train"]  # the prior's training patients ...
    assert ck["val_subjects"] == splits["val"]  # ... and the epoch chosen on its validation
    assert "sub-090" not in ck["train_subjects"]
    assert set(ck["val_dice"]) == {1, 2, 3}
    cfg = ck["train_config"]
    assert cfg["epochs"] >= ck["epoch"]
    card = Path(BUNDLED_SLICE_NET.parent / "README.md").read_text(encoding="utf-8")
    assert "acdc_slice_unet" in card
    dice = " / ".join(f"{ck['val_dice'][c]:.3f}" for c in (1, 2, 3))
    assert f"{dice} at epoch {ck['epoch']}" in card  # the card states what the file holds


def test_the_held_out_demo_slices_are_labelled_where_the_labels_say(preprocessed_acdc):
    net, net_id = load_slice_net()
    sd = SubjectData.load(subject_npz_path(preprocessed_acdc, "patient090"))
    sp = float(spacing_of(sd.crop_affine_ras)[0])
    for t in range(sd.n_frames):  # ED and ES
        probs = slice_probabilities(net, sd.intensity[t], sp)
        scores = dice_per_class(probs.argmax(0), sd.labels[t])
        assert scores[1] > 0.8 and scores[3] > 0.6, (t, scores)
        assert scores[2] > 0.5, (t, scores)
    assert len(net_id) == 12
