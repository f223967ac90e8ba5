"""``nimosef generate``: write reconstructions, segmentations and motion of fitted subjects."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nimosef_engine.atomic import atomic_path, check_output_path
from nimosef_engine.device import resolve_device
from nimosef_engine.errors import NimosefInputError
from nimosef_engine.generate import generate_subject
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.progress import cancel_on_signals, make_reporter
from nimosef_engine.subjects_cli import add_subject_args, selected_subjects


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
        if p.is_dir():
            raise NimosefInputError(p, "is a directory, expected a codes file (.pt) written by "
                                       "`nimosef fit`")
        if not p.is_file():
            raise NimosefInputError(p, "codes file not found")
        try:
            c = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:  # torch raises many types for a damaged or foreign file
            raise NimosefInputError(p, f"not a readable codes file ({exc.__class__.__name__})") \
                from None
        keys = ("subject_ids", "codes", "pose_matrices")
        if not isinstance(c, dict) or any(k not in c for k in keys) \
                or not len(c["subject_ids"]) == len(c["codes"]) == len(c["pose_matrices"]):
            raise NimosefInputError(p, "not a codes file written by `nimosef fit` (needs "
                                       "subject_ids, codes and pose_matrices of equal length)")
        for i, sid in enumerate(c["subject_ids"]):
            table[sid] = (c["codes"][i], c["pose_matrices"][i])
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
        tmp.mkdir()
        if out.is_dir():  # keep what an earlier run wrote there
            for f in out.iterdir():
                if f.is_file():
                    (tmp / f.name).write_bytes(f.read_bytes())
        for i, sd in enumerate(subjects):
            reporter.update("generate", i / len(subjects), sd.subject_id)
            code, pose = table[sd.subject_id]
            generate_subject(net, code, sd, tmp, args.res_factor_z, device, pose)
    reporter.close()
    print(out)
    return 0
