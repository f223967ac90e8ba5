"""``nimosef evaluate``: Segment & Track patients without their labels, then score against them."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from nimosef_engine.core.atomic import check_output_path
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import cancel_on_signals, make_reporter
from nimosef_engine.pipeline.checks import check_models
from nimosef_engine.pipeline.evaluate import evaluate_acdc, evaluate_pairs, evaluate_sunnybrook
from nimosef_engine.pipeline.options import QUALITY_PRESETS, TIME_MODELS, SegmentTrackOptions

DEFAULTS = SegmentTrackOptions()


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score segment-track against held-out labels")
    p.add_argument("--layout", choices=["acdc", "sunnybrook", "pairs"], required=True)
    p.add_argument("--root",
                   help="ACDC training folder, or the Sunnybrook folder (dicoms/, contourfiles/)")
    p.add_argument("--pairs", help="with --layout pairs: a JSON file of labelled ED/ES pairs "
                                   '({"subjects": [{"id", "ed", "es", "ed_labels", "es_labels", '
                                   '"es_time"?, "label_map"?}]}, paths relative to the file)')
    p.add_argument("--subjects", nargs="+", help="ACDC patients (e.g. patient001)")
    p.add_argument("--manifest-root", help="preprocessed dataset whose --split to evaluate")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, help="folder for per_subject.csv, summary.json")
    p.add_argument("--prior")
    p.add_argument("--slice-net", help="another slice network checkpoint (see segment-track)")
    p.add_argument("--quality", default=DEFAULTS.quality, choices=list(QUALITY_PRESETS))
    p.add_argument("--fit-steps", type=int)
    p.add_argument("--pose-hypotheses", type=int, default=DEFAULTS.pose_hypotheses,
                   help="starting poses fitted in full per patient (see segment-track)")
    p.add_argument("--time-model", default=DEFAULTS.time_model, choices=list(TIME_MODELS),
                   help="a whole cine's time model (see segment-track; pairs are the same "
                        "either way)")
    p.add_argument("--device", default=DEFAULTS.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-refine", action="store_true",
                   help="labels from the network alone (see segment-track)")
    p.add_argument("--no-slice-net", action="store_true",
                   help="refine without the slice network (see segment-track)")
    p.add_argument("--keep-outputs", action="store_true")
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    p.set_defaults(func=run)


def acdc_subjects(args: argparse.Namespace) -> list[str]:
    if args.subjects:
        return list(args.subjects)
    if args.manifest_root:
        from nimosef_engine.data.manifest import load_dataset_manifest

        m = load_dataset_manifest(args.manifest_root)
        return ["patient" + s.removeprefix("sub-") for s in m["splits"][args.split]]
    found = sorted(p.name for p in Path(args.root).glob("patient*") if p.is_dir())
    if not found:
        raise NimosefInputError(args.root, "no patientXXX folders")
    return found


def run(args: argparse.Namespace) -> int:
    options = {"prior": args.prior, "quality": args.quality, "fit_steps": args.fit_steps,
               "pose_hypotheses": args.pose_hypotheses, "refine": not args.no_refine,
               "slice_net": not args.no_slice_net, "slice_net_path": args.slice_net,
               "time_model": args.time_model,
               "device": args.device, "meshes": False, "res_factor_z": 1, "force": True}
    if args.layout == "pairs" and not args.pairs:
        raise NimosefInputError("--pairs", "--layout pairs needs --pairs FILE.json")
    if args.layout != "pairs" and not args.root:
        raise NimosefInputError("--root", f"--layout {args.layout} needs --root")
    check_output_path(args.out)
    check_models(SegmentTrackOptions(**options))  # before any patient is read
    reporter = make_reporter(args.progress)
    root = Path(args.root or ".")
    with cancel_on_signals(reporter):
        if args.layout == "pairs":
            summary = evaluate_pairs(Path(args.pairs), Path(args.out), reporter,
                                     args.keep_outputs, **options)
        elif args.layout == "acdc":
            summary = evaluate_acdc(root, acdc_subjects(args), Path(args.out), reporter,
                                    args.keep_outputs, **options)
        else:
            contours = next(iter(sorted((root / "contourfiles").glob("*/i-contours"))), None)
            dicoms = next(iter(sorted((root / "dicoms").iterdir())), None) \
                if (root / "dicoms").is_dir() else None
            if contours is None or dicoms is None:
                raise NimosefInputError(root, "expected dicoms/<series>/ and "
                                              "contourfiles/<id>/i-contours/")
            with tempfile.TemporaryDirectory() as work:
                res = evaluate_sunnybrook(dicoms, contours, Path(work), **options)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            res["per_contour"].to_csv(out / "sunnybrook_per_contour.csv", index=False)
            summary = {k: v for k, v in res.items() if k != "per_contour"}
            (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0
