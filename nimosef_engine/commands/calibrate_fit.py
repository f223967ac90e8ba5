"""``nimosef calibrate-fit``: choose the number of fitting steps on validation subjects.

Dice rises, peaks and then falls as the code over-fits the intensities (NISF), so the prior's
default number of fitting steps is the one with the best mean Dice on the validation split,
fitted from intensities alone. The choice and its curve are stored in the checkpoint
(``fit_defaults``).
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from nimosef_engine.core.device import resolve_device
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import ShareReporter, cancel_on_signals, make_reporter
from nimosef_engine.data.manifest import load_split
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from nimosef_engine.training.validation import fit_and_score

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("calibrate-fit", help="choose fitting steps on validation subjects")
    p.add_argument("--root", required=True, help="preprocessed dataset root")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--max-subjects", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 150, 200, 300, 400])
    p.add_argument("--out", help="checkpoint to write (default: update --checkpoint)")
    p.add_argument("--drop-optimizer", action="store_true",
                   help="leave out the optimizer state (a prior to ship, not to resume)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    net = model_from_checkpoint(ckpt, device)
    subjects = load_split(args.root, args.split)
    if args.max_subjects:
        subjects = subjects[: args.max_subjects]
    if not subjects:
        raise NimosefInputError(args.root, f"split {args.split!r} is empty")
    grid = sorted(set(args.steps))
    reporter = make_reporter(args.progress)
    curves = []
    with cancel_on_signals(reporter):
        for i, sd in enumerate(subjects):
            share = ShareReporter(reporter, i / len(subjects), (i + 1) / len(subjects),
                                  f"{sd.subject_id}: ", stage="calibrate")
            res = fit_and_score(net, sd, ckpt["code_mean"], steps=max(grid), device=device,
                                snapshot_steps=grid, reporter=share)
            curves.append(res["curve"])
            log.info("%s: %s", sd.subject_id, {s: round(float(np.mean(list(d.values()))), 3)
                                               for s, d in res["curve"].items()})
    reporter.close()
    table = {s: {c: float(np.nanmean([cv[s][c] for cv in curves])) for c in ("LV", "MYO", "RV")}
             for s in grid}
    best = max(grid, key=lambda s: np.mean(list(table[s].values())))
    ckpt["fit_defaults"] = {"steps": int(best), "split": args.split,
                            "subjects": [s.subject_id for s in subjects],
                            "mean_dice_by_steps": {str(s): table[s] for s in grid}}
    if args.drop_optimizer:
        ckpt.pop("optimizer_state", None)
    save_checkpoint(args.out or args.checkpoint, ckpt)
    print(json.dumps({"best_steps": best, "mean_dice_by_steps": table}, indent=1))
    return 0
