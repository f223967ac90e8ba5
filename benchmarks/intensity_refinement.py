"""Ablation of the image refinement of the label maps (:mod:`refinement.refine`), on fits
already made.

    nimosef evaluate --layout acdc --root ACDC --manifest-root data/acdc_pp --split val \\
        --keep-outputs --out EVAL
    python benchmarks/intensity_refinement.py --outputs EVAL/outputs [--root ACDC]
        [--betas 0.25 0.5 1 2] [--slice-betas 0.5 1] [--gammas 0.5 1 2] [--csv per_subject.csv]
    nimosef evaluate --layout pairs --pairs PAIRS.json --keep-outputs --out EVAL
    python benchmarks/intensity_refinement.py --outputs EVAL/outputs --pairs PAIRS.json [--no-trim]

For each patient folder written by ``nimosef evaluate --keep-outputs`` (its fitted
``subject.nimosef``), the network's class probabilities at the ED and ES frames are sampled
again from the fitted code and pose, and scored against the ACDC labels as ``nimosef
evaluate`` does (Dice per class on the whole grid, |EF error| from the ED and ES volumes):
the network's labels alone ("none", what ``--no-refine`` writes), the slice network's alone
(its argmax, cleaned up), then refined by the image
with each prior weight β in ``--betas`` (with the LV cavity fill, as segment-track), and
last "aligned": the slices first shifted in-plane onto the image
(``segment_track.align_slices`` from the ED and ES frames, the network sampled again at the
shifted points) and refined with the default β, :data:`refine.REFINE_BETA` (what
segment-track writes with ``--no-slice-net``); then "aligned with the slice network": the
slices shifted with the slice network's probabilities in the evidence too
(:mod:`slice_evidence`) and refined with them, for each β in ``--slice-betas`` and weight γ
in ``--gammas``; last the default of segment-track: β gated by the agreement of the prior
and the slice network (:func:`refinement.alignment.refine_beta`), γ = 1. Clean-up as segment-track
(``--no-trim``: without :func:`refinement.cleanup.trim_lv_base`, as before it existed). The fits are
the same in every row, so the rows differ by the refinement alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import acdc_ed_es, record

from nimosef_engine.data.roi import crop_last3, normalise_intensity
from nimosef_engine.evaluation.metrics import class_agreement
from nimosef_engine.io.cine import load_cine
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.model.bundled import load_prior
from nimosef_engine.pipeline.evaluate import load_pairs_file, score_ed_es
from nimosef_engine.pipeline.subject_file import read_subject_file, subject_grid
from nimosef_engine.refinement.alignment import align_slices, refine_beta
from nimosef_engine.refinement.cleanup import clean_labels, trim_lv_base
from nimosef_engine.refinement.frames import FrameRefinement
from nimosef_engine.refinement.refine import (
    REFINE_BETA,
    REFINE_ITERATIONS,
    SLICE_GAMMA,
    image_on_grid,
    quantise_image,
    refined_labels,
)
from nimosef_engine.refinement.slice_evidence import SliceEvidence
from nimosef_engine.sampling.fields import embed_frame, iter_frames

CLASSES = ((1, "LV"), (2, "MYO"), (3, "RV"))
ALIGNED = f"aligned, beta={REFINE_BETA:g} (--no-slice-net)"
SLICE_ALONE = "the slice network alone"
DEFAULT = f"aligned with the slice network, beta={REFINE_BETA:g}, gamma={SLICE_GAMMA:g}"
GATED = ("aligned with the slice network, beta gated by the prior / slice network agreement "
         "(segment_track.refine_beta), the default")


def slice_variant(beta: float, gamma: float) -> str:
    if (beta, gamma) == (REFINE_BETA, SLICE_GAMMA):
        return DEFAULT
    return f"aligned with the slice network, beta={beta:g}, gamma={gamma:g}"


def pair_ed_es(pair: dict):
    """``(None, cine of the ED and ES frames, their labels in NIMOSEF's order)`` of a subject
    of a pairs file (:func:`evaluate.load_pairs_file`), as ``nimosef evaluate`` reads it."""
    cine = load_cine([pair["ed"], pair["es"]], frame_times=[0.0, pair["es_time"]])
    gts = [pair["lut"][load_nifti(pair[k], 3, dtype=np.int64)[0].clip(0, 255)]
           for k in ("ed_labels", "es_labels")]
    return None, cine, gts


def patient_frames(folder: Path, root: Path, net, evidence_path: str | None,
                   pairs: dict | None = None):
    """``(probs per frame, probs per frame of the aligned slices, the same aligned with the
    slice network, the slice network's probabilities per frame, uint8 image per frame, labels
    per frame, affine, subject grid)`` of one evaluated patient: ED then ES (an ACDC patient
    under ``root``, or the subject of that name in ``pairs``)."""
    subj = read_subject_file(folder / "subject.nimosef")
    sd = subject_grid(subj)
    _, cine, gts = pair_ed_es(pairs[folder.name]) if pairs else acdc_ed_es(root / folder.name)
    image = quantise_image(normalise_intensity(
        crop_last3(cine.frames, sd.crop_offset, sd.grid_shape), sd.intensity_range))

    def sample(shift=None):
        return [fr.probs.copy() for fr in iter_frames(net, subj["code"], sd, 1, "cpu",
                                                      subj["pose_matrix"], probs=True,
                                                      slice_shift=shift)]

    shift = align_slices(net, subj["code"], subj["pose_matrix"], sd, FrameRefinement(image),
                         [0, 1], "cpu")
    with_net = FrameRefinement(image, SliceEvidence.load(evidence_path, "cpu", sd))
    shift_sn = align_slices(net, subj["code"], subj["pose_matrix"], sd, with_net, [0, 1], "cpu")
    slices = [with_net.slice_probs(i) for i in range(2)]
    return (sample(), sample(shift), sample(shift_sn), slices, image, gts, cine.affine_ras,
            sd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outputs", required=True, help="EVAL/outputs of nimosef evaluate")
    ap.add_argument("--root", help="ACDC training folder (with --outputs of an ACDC run)")
    ap.add_argument("--pairs", help="the pairs file of a `nimosef evaluate --layout pairs` run "
                                    "(instead of --root)")
    ap.add_argument("--no-trim", action="store_true",
                    help="clean up without ending the heart at the LV's base "
                         "(postprocess.trim_lv_base), as before it existed")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.25, REFINE_BETA, 1.0, 2.0])
    ap.add_argument("--slice-betas", type=float, nargs="+", default=[REFINE_BETA, 1.0])
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.5, SLICE_GAMMA, 2.0])
    ap.add_argument("--prior")
    ap.add_argument("--slice-net", help="slice network checkpoint (default: the bundled one)")
    ap.add_argument("--csv", help="write the per-patient rows of every variant here")
    args = ap.parse_args()
    _, net, pid_ = load_prior(args.prior, "cpu")
    folders = sorted(p for p in Path(args.outputs).iterdir() if (p / "subject.nimosef").is_file())
    if not folders:
        raise SystemExit(f"{args.outputs}: no patient folders with a subject.nimosef")
    pairs = {p["id"]: p for p in load_pairs_file(Path(args.pairs))} if args.pairs else None

    def clean(lab):
        return clean_labels(lab) if args.no_trim else trim_lv_base(clean_labels(lab))

    rows = []
    seconds = []
    for folder in folders:
        probs, aligned, aligned_sn, slices, image, gts, aff, sd = patient_frames(
            folder, Path(args.root), net, args.slice_net, pairs)
        gated = refine_beta({i: class_agreement(p.argmax(0), sl.argmax(0))
                             for i, (p, sl) in enumerate(zip(aligned_sn, slices, strict=True))})
        variants = [("none", None, probs, None, 0.0), (SLICE_ALONE, None, slices, None, 0.0),
                    *((f"beta={b:g}", b, probs, None, 0.0) for b in args.betas),
                    (ALIGNED, REFINE_BETA, aligned, None, 0.0),
                    *((slice_variant(b, g), b, aligned_sn, slices, g)
                      for b in args.slice_betas for g in args.gammas),
                    (GATED, gated, aligned_sn, slices, SLICE_GAMMA)]
        for name, beta, prob, sp, gamma in variants:
            t = time.perf_counter()
            labels = []
            for i, p in enumerate(prob):
                lab = p.argmax(0).astype(np.uint8) if beta is None else refined_labels(
                    image_on_grid(image[i], 1), p, beta, REFINE_ITERATIONS,
                    None if sp is None else sp[i], gamma)[0]
                labels.append(embed_frame(clean(lab), sd, 1))
            if name == DEFAULT:
                seconds.append((time.perf_counter() - t) / len(prob))
            rows.append({"refinement": name, "subject": folder.name, "beta": beta,
                         **score_ed_es(labels, gts, aff)})
        print(folder.name, flush=True)
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    table = {}
    for variant, g in df.groupby("refinement", sort=False):
        table[variant] = {
            **{f"mean_dice_{c}": round(float(g[f"dice_{c}"].mean()), 4) for _, c in CLASSES},
            **{f"median_abs_{c}_EF_err": round(float(g[f"{c}_EF_abs_err"].median()), 2)
               for c in ("LV", "RV")}}
    base = df[df["refinement"] == "none"].set_index("subject")
    ref = df[df["refinement"] == DEFAULT].set_index("subject")
    better = {c: int((ref[f"dice_{c}"] > base[f"dice_{c}"]).sum()) for _, c in CLASSES}
    unaligned = df[df["refinement"] == f"beta={REFINE_BETA:g}"].set_index("subject")
    aligned_only = df[df["refinement"] == ALIGNED].set_index("subject")
    by_alignment = {c: {"better": int((aligned_only[f"dice_{c}"] > unaligned[f"dice_{c}"]).sum()),
                        "worse": int((aligned_only[f"dice_{c}"] < unaligned[f"dice_{c}"]).sum())}
                    for _, c in CLASSES} if len(unaligned) else None
    by_slice_net = {c: {"better": int((ref[f"dice_{c}"] > aligned_only[f"dice_{c}"]).sum()),
                        "worse": int((ref[f"dice_{c}"] < aligned_only[f"dice_{c}"]).sum())}
                    for _, c in CLASSES} if len(ref) else None
    record("intensity_refinement", {
        "outputs": str(args.outputs), "n_subjects": len(folders), "prior_id": pid_,
        "trim_lv_base": not args.no_trim, "pairs": args.pairs,
        "gated_beta": {r["subject"]: r["beta"] for r in rows if r["refinement"] == GATED},
        "iterations": REFINE_ITERATIONS, "table": table,
        "patients_improved_by_the_default": better,
        "patients_changed_by_the_alignment_at_default_beta": by_alignment,
        "patients_changed_by_the_slice_network": by_slice_net,
        "refine_seconds_per_frame": round(float(np.mean(seconds)), 3)})


if __name__ == "__main__":
    main()
