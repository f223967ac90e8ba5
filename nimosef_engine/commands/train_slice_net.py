"""``nimosef train-slice-net``: train the slice network of the refinement
(:mod:`nimosef_engine.training.slice_net`) on a preprocessed dataset's train split, choosing the
epoch on its val split."""

from __future__ import annotations

import argparse
import dataclasses

from nimosef_engine.core.atomic import check_output_path
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import cancel_on_signals, make_reporter
from nimosef_engine.data.manifest import load_dataset_manifest
from nimosef_engine.training.slice_net import SliceTrainConfig, train_slice_net

FLAGS = {"epochs": int, "batch": int, "lr": float, "max_minutes": float, "seed": int,
         "lr_floor": float, "threads": int, "base": int, "levels": int, "scanner": float,
         "init_from": str}


def register(sub) -> None:
    p = sub.add_parser("train-slice-net", help="train the slice network of the refinement",
                       description="Train the 2D U-Net whose slice probabilities refine the "
                                   "label maps (model card: nimosef_engine/priors/README.md).")
    p.add_argument("--root", required=True, help="preprocessed dataset root (holds derivatives/)")
    p.add_argument("--out", required=True, help="run folder (slice_unet.pt, history.json)")
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    for name, typ in FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, dest=name)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("epochs", "batch", "lr", "max_minutes", "base", "levels"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise NimosefInputError("--" + name.replace("_", "-"),
                                    f"must be a positive number, got {value}")
    out = check_output_path(args.out)
    if (out / "slice_unet.pt").exists():
        raise NimosefInputError(out, "already holds slice_unet.pt: choose another --out")
    load_dataset_manifest(args.root)  # a bad dataset fails before OUT exists
    cfg = SliceTrainConfig(root=args.root, out=str(out))
    cfg = dataclasses.replace(cfg, **{k: getattr(args, k) for k in FLAGS
                                      if getattr(args, k) is not None})
    reporter = make_reporter(args.progress)
    with cancel_on_signals(reporter):
        history = train_slice_net(cfg, reporter)
    print(out / "slice_unet.pt", "best epoch", history.get("best_epoch"))
    return 0
