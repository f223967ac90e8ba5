"""``nimosef train``: train the population prior (flags or a YAML config)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from nimosef_engine.core.atomic import atomic_write_text, check_output_path
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import cancel_on_signals, make_reporter
from nimosef_engine.training.augment import augmentation_table
from nimosef_engine.training.prior import (
    TrainConfig,
    load_training_subjects,
    read_init_checkpoint,
    read_resume_checkpoint,
    train,
)

FLAGS = {  # CLI flag -> (config key, type)
    "epochs": int, "n_points": int, "lr_net": float, "lr_code": float, "seed": int,
    "checkpoint_every": int, "val_every": int, "val_fit_steps": int, "max_subjects": int,
    "split": str, "threads": int, "init_from": str,
}
MODEL_FLAGS = {"width": int, "depth": int, "code_dim": int}
AUGMENT_FLAGS = {"copies": int}  # --augment-copies


def load_config(path: str | Path | None) -> dict:
    """A YAML training config as a dict (empty without a path)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise NimosefInputError(path, "config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise NimosefInputError(path, f"invalid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise NimosefInputError(path, "config must be a mapping of options")
    return data


def register(sub) -> None:
    p = sub.add_parser("train", help="train the population prior (auto-decoder)",
                       description="Train network + shape codes on a preprocessed dataset. "
                                   "Run under torchrun for DistributedDataParallel.")
    p.add_argument("--root", help="preprocessed dataset root (holds derivatives/)")
    p.add_argument("--out", help="run folder (checkpoint.pt, losses.json, tensorboard/)")
    p.add_argument("--config", help="YAML config; flags override it")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    for name, typ in {**FLAGS, **MODEL_FLAGS}.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, dest=name)
    p.add_argument("--augment-copies", type=int, dest="copies",
                   help="augmented copies per training subject, each with its own code")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    d = load_config(args.config)
    for key in ("root", "out", "device"):
        if getattr(args, key, None) is not None:
            d[key] = getattr(args, key)
    for key in FLAGS:
        if getattr(args, key, None) is not None:
            d[key] = getattr(args, key)
    model = dict(d.get("model", {}))
    for key in MODEL_FLAGS:
        if getattr(args, key, None) is not None:
            model[key] = getattr(args, key)
    d["model"] = model
    augment = dict(d.get("augment", {}))
    for key in AUGMENT_FLAGS:
        if getattr(args, key, None) is not None:
            augment[key] = getattr(args, key)
    d["augment"] = augment
    if args.no_amp:
        d["amp"] = False
    cfg = TrainConfig.from_dict(d)
    if not cfg.root:
        raise NimosefInputError("--root", "a preprocessed dataset root is required")
    for key in ("epochs", "n_points", "checkpoint_every", "lr_net", "lr_code"):
        value = getattr(cfg, key)
        if not isinstance(value, int | float) or not value > 0:
            raise NimosefInputError(f"--{key.replace('_', '-')}",
                                    f"must be a positive number, got {value!r}")
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = check_output_path(cfg.out)
    if out.exists() and (out / "checkpoint.pt").exists() and not args.resume:
        raise NimosefInputError(out, "already holds a checkpoint: use --resume or another --out")
    subjects, manifest = load_training_subjects(cfg)  # a bad dataset fails before OUT exists
    n_codes = len(augmentation_table(len(subjects), cfg.augment, cfg.seed))
    if args.resume and (out / "checkpoint.pt").exists():  # so does one that cannot resume
        read_resume_checkpoint(out / "checkpoint.pt", cfg, n_codes)
    elif cfg.init_from:  # ... or does not fit the config
        read_init_checkpoint(cfg, n_codes)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    reporter = make_reporter(args.progress)
    with cancel_on_signals(reporter):
        path = train(cfg, resume=args.resume, reporter=reporter, subjects=subjects,
                     manifest=manifest)
    print(path)
    return 0
