"""``nimosef fit``: fit shape codes of preprocessed subjects, the network frozen."""

from __future__ import annotations

import argparse
import json

import torch

from nimosef_engine.commands.subject_args import add_subject_args, selected_subjects
from nimosef_engine.core.atomic import atomic_write_text, check_output_path
from nimosef_engine.core.device import resolve_device
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import ShareReporter, cancel_on_signals, make_reporter
from nimosef_engine.core.safe_load import save_torch_file
from nimosef_engine.fitting.fit import FitConfig, fit_subject
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint, prior_id


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit subject codes with the network frozen")
    add_subject_args(p)
    p.add_argument("--checkpoint", required=True, help="trained prior (checkpoint.pt)")
    p.add_argument("--out", required=True, help="codes file to write (.pt)")
    p.add_argument("--steps", type=int, help="fitting steps (default: the checkpoint's choice)")
    p.add_argument("--n-points", type=int, default=4000)
    p.add_argument("--pose", action="store_true", help="also refine a similarity pose")
    p.add_argument("--motion", action="store_true", help="keep the displacement terms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    p.set_defaults(func=run)


def fit_steps_default(ckpt: dict) -> int:
    return int((ckpt.get("fit_defaults") or {}).get("steps", FitConfig.steps))


def run(args: argparse.Namespace) -> int:
    for name, value in (("--steps", args.steps), ("--n-points", args.n_points)):
        if value is not None and value < 1:
            raise NimosefInputError(name, f"must be at least 1, got {value}")
    out = check_output_path(args.out, folder=False)
    check_output_path(out.with_suffix(".losses.json"), folder=False)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, need=("code_mean",))
    net = model_from_checkpoint(ckpt, device)
    subjects = selected_subjects(args)
    cfg = FitConfig(steps=args.steps or fit_steps_default(ckpt), n_points=args.n_points,
                    pose=args.pose, motion=args.motion, seed=args.seed)
    reporter = make_reporter(args.progress)
    codes, poses, losses = [], [], {}
    with cancel_on_signals(reporter):
        for i, sd in enumerate(subjects):
            reporter.update("subjects", i / len(subjects), sd.subject_id)
            res = fit_subject(net, subject_tensors(sd, device), cfg,
                              ckpt["code_mean"].to(device),
                              reporter=ShareReporter(reporter, i / len(subjects),
                                                     (i + 1) / len(subjects),
                                                     f"{sd.subject_id}: ", stage="subjects"))
            codes.append(res.code.cpu())
            poses.append(res.pose_matrix.cpu())
            losses[sd.subject_id] = res.losses
    reporter.close()
    save_torch_file(out, {"subject_ids": [s.subject_id for s in subjects],
                          "codes": torch.stack(codes), "pose_matrices": torch.stack(poses),
                          "fit_config": cfg.to_dict(), "prior_id": prior_id(ckpt)})
    atomic_write_text(out.with_suffix(".losses.json"), json.dumps(losses))
    print(out)
    return 0
