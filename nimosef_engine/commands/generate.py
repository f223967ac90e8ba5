"""``nimosef generate``: write reconstructions, segmentations and motion of fitted subjects."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nimosef_engine.commands.subject_args import add_subject_args, selected_subjects
from nimosef_engine.core.atomic import atomic_path, check_output_path
from nimosef_engine.core.device import resolve_device
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import cancel_on_signals, make_reporter
from nimosef_engine.core.safe_load import load_torch_file
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.sampling.tables import generate_subject


def register(sub) -> None:
    p = sub.add_parser("generate", help="sample fitted subjects at any z resolution")
    add_subject_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--codes", help="codes from `nimosef fit` (default: the training codes)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--res-factor-z", type=int, default=1, help="slices per original slice")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    p.set_defaults(func=run)


def code_table(ckpt: dict, codes_path: str | None) -> dict[str, tuple[torch.Tensor, object]]:
    """subject id -> (code, pose matrix or None) from a codes file and/or the checkpoint."""
    table = {sid: (ckpt["codes"][i], None) for i, sid in enumerate(ckpt.get("subject_ids", []))}
    if codes_path:
        p = Path(codes_path)
        c = load_torch_file(p, "codes file written by `nimosef fit`")
        keys = ("subject_ids", "codes", "pose_matrices")
        if not isinstance(c, dict) or any(k not in c for k in keys) \
                or not len(c["subject_ids"]) == len(c["codes"]) == len(c["pose_matrices"]):
            raise NimosefInputError(p, "not a codes file written by `nimosef fit` (needs "
                                       "subject_ids, codes and pose_matrices of equal length)")
        dim = int(ckpt["model_config"].get("code_dim", 0))
        for i, sid in enumerate(c["subject_ids"]):
            code, pose = c["codes"][i], c["pose_matrices"][i]
            if not isinstance(code, torch.Tensor) or tuple(code.shape) != (dim,) \
                    or not isinstance(pose, torch.Tensor) or tuple(pose.shape) != (4, 4):
                raise NimosefInputError(p, f"the code or pose of {sid!r} does not fit the "
                                           f"checkpoint (code size {dim}, 4x4 pose)")
            table[sid] = (code, pose)
    return table


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.res_factor_z <= 8:
        raise NimosefInputError("--res-factor-z", "must be between 1 and 8")
    out = check_output_path(args.out)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    net = model_from_checkpoint(ckpt, device)
    table = code_table(ckpt, args.codes)
    subjects = selected_subjects(args)
    missing = [s.subject_id for s in subjects if s.subject_id not in table]
    if missing:
        raise NimosefInputError(args.codes or args.checkpoint,
                                f"no fitted code for {missing[:5]}: run `nimosef fit` first")
    reporter = make_reporter(args.progress)
    with cancel_on_signals(reporter), atomic_path(out) as tmp:
        tmp.mkdir()  # what an earlier run wrote in OUT is kept (atomic_path)
        for i, sd in enumerate(subjects):
            reporter.update("generate", i / len(subjects), sd.subject_id)
            code, pose = table[sd.subject_id]
            generate_subject(net, code, sd, tmp, args.res_factor_z, device, pose)
    reporter.close()
    print(out)
    return 0
