"""Auto-decoder training of the population prior (network + one code per training subject).

Deterministic by construction: epoch ``e`` visits subjects in the order of a permutation
seeded by ``(seed, e)`` and samples points from a generator seeded by ``(seed, e, step)``,
so a run resumed from an epoch checkpoint ends with the same weights as one never stopped.
Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel and each
process takes every WORLD_SIZE-th subject of the epoch's permutation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nimosef_engine.core.atomic import atomic_write_text
from nimosef_engine.core.device import resolve_device
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.losses.objective import (
    LossWeights,
    SubjectTensors,
    nimosef_loss,
    subject_tensors,
)
from nimosef_engine.model.checkpoint import load_checkpoint, save_checkpoint
from nimosef_engine.model.network import ModelConfig, NimosefNet
from nimosef_engine.training.augment import Augmentation, AugmentConfig, augmentation_table

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training configuration (YAML keys match the field names; ``model`` and ``loss`` nest)."""

    root: str = ""
    out: str = "runs/prior"
    split: str = "train"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 100
    n_points: int = 4000
    lr_net: float = 5e-4
    lr_code: float = 1e-3
    lr_decay: float = 0.95
    lr_decay_every: int = 5
    lr_floor_net: float = 1e-4
    lr_floor_code: float = 2e-4
    weight_decay: float = 1e-6
    grad_clip: float = 1.0
    amp: bool = True
    checkpoint_every: int = 5
    val_every: int = 0
    val_fit_steps: int = 100
    val_max_subjects: int = 4
    seed: int = 0
    device: str = "auto"
    max_subjects: int = 0
    threads: int = 0
    init_from: str = ""  # start from this checkpoint's network, codes and epoch (new optimizer)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        try:
            model = ModelConfig(**d.pop("model", {}))
            loss = LossWeights(**d.pop("loss", {}))
            augment = AugmentConfig(**d.pop("augment", {}))
        except TypeError as exc:  # an unknown or misplaced key in model / loss / augment
            raise NimosefInputError("config", str(exc).split("__init__() ")[-1]) from None
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise NimosefInputError("config", f"unknown training option(s): {sorted(unknown)}")
        return cls(model=model, loss=loss, augment=augment, **d)


class AutoDecoder(nn.Module):
    """Network + code table; ``forward`` is one code's loss (one call per step, as DDP wants).

    Code ``k`` belongs to ``table[k]``: a training subject, or an augmented copy of one.
    """

    def __init__(self, cfg: ModelConfig, table: list[Augmentation], seed: int = 0):
        super().__init__()
        self.net = NimosefNet(cfg)
        self.table = table
        self.codes = nn.Embedding(len(table), cfg.code_dim)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.codes.weight.copy_(torch.randn(len(table), cfg.code_dim, generator=g)
                                    * (0.01 / math.sqrt(cfg.code_dim)))

    def forward(self, st: SubjectTensors, index: int, n_points: int, weights: LossWeights,
                epoch: int, generator: torch.Generator):
        code = self.codes.weight[index]
        aug = self.table[index]
        return nimosef_loss(self.net, code, st, n_points=n_points, weights=weights,
                            epoch=epoch, generator=generator, use_labels=True,
                            coords_fn=aug.coords_fn(), intensity_fn=aug.intensity_fn())


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _lr(base: float, floor: float, cfg: TrainConfig, epoch: int) -> float:
    return max(floor, base * cfg.lr_decay ** (epoch // max(cfg.lr_decay_every, 1)))


def load_training_subjects(cfg: TrainConfig) -> tuple[list[SubjectData], dict]:
    """The subjects of ``cfg.split`` from the dataset manifest under ``cfg.root``."""
    from nimosef_engine.data.manifest import load_dataset_manifest, load_split

    manifest = load_dataset_manifest(cfg.root)
    subjects = load_split(cfg.root, cfg.split)
    if cfg.max_subjects:
        subjects = subjects[: cfg.max_subjects]
    if not subjects:
        raise NimosefInputError(cfg.root, f"no subjects in split {cfg.split!r}")
    missing = [s.subject_id for s in subjects if s.labels is None]
    if missing:
        raise NimosefInputError(cfg.root, f"training subjects without labels: {missing[:5]}")
    return subjects, manifest


def train(cfg: TrainConfig, resume: bool = False, reporter: ProgressReporter | None = None,
          subjects: list[SubjectData] | None = None, manifest: dict | None = None) -> Path:
    """Train; returns the path of the final checkpoint (``OUT/checkpoint.pt``)."""
    reporter = reporter or ProgressReporter()
    rank, world = _dist_info()
    device = resolve_device(cfg.device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if subjects is None:
        subjects, manifest = load_training_subjects(cfg)
    manifest = manifest or {}
    tensors = [subject_tensors(s, device, seed=cfg.seed) for s in subjects]
    table = augmentation_table(len(subjects), cfg.augment, cfg.seed)
    model = AutoDecoder(cfg.model, table, cfg.seed).to(device)
    opt = torch.optim.AdamW([
        {"params": model.net.parameters(), "lr": cfg.lr_net, "weight_decay": cfg.weight_decay},
        {"params": model.codes.parameters(), "lr": cfg.lr_code, "weight_decay": 0.0},
    ])
    ckpt_path = out / "checkpoint.pt"
    history: list[dict] = []
    start_epoch = 0
    ck = None
    if resume and ckpt_path.exists():
        ck = read_resume_checkpoint(ckpt_path, cfg, model.codes.weight.shape[0], device)
        try:
            opt.load_state_dict(ck["optimizer_state"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise NimosefInputError(ckpt_path, f"its optimizer state does not fit this model "
                                               f"({str(exc).splitlines()[0][:100]})") from None
        log.info("resumed from %s at epoch %d", ckpt_path, ck["epoch"])
    elif cfg.init_from:  # a shipped prior keeps no optimizer state: a new one goes on
        ck = read_init_checkpoint(cfg, model.codes.weight.shape[0], device)
        log.info("starting from %s at epoch %d (new optimizer)", cfg.init_from, ck["epoch"])
    if ck is not None:
        model.net.load_state_dict(ck["model_state"])
        model.codes.weight.data.copy_(ck["codes"].to(device))
        start_epoch, history = int(ck["epoch"]), list(ck.get("history", []))
    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)  # motion heads idle before the warm-up starts
    use_amp = cfg.amp and device.type == "cuda"
    writer = _tensorboard(out / "tensorboard") if rank == 0 else None
    n = len(table)
    steps_per_epoch = math.ceil(n / world)
    t_start = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        for g, base, floor in zip(opt.param_groups, (cfg.lr_net, cfg.lr_code),
                                  (cfg.lr_floor_net, cfg.lr_floor_code), strict=True):
            g["lr"] = _lr(base, floor, cfg, epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        order = [int(perm[(i * world + rank) % n]) for i in range(steps_per_epoch)]
        sums: dict[str, float] = {}
        model.train()
        for step, idx in enumerate(order):
            reporter.update("train", (epoch - start_epoch + step / steps_per_epoch)
                            / max(cfg.epochs - start_epoch, 1),
                            f"epoch {epoch + 1}/{cfg.epochs}")
            gen = torch.Generator().manual_seed(((cfg.seed * 100003 + epoch) * 7919 + step)
                                                * world + rank)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, parts = ddp_model(tensors[table[idx].subject], idx, cfg.n_points, cfg.loss,
                                        epoch, gen)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.net.parameters(), cfg.grad_clip)
            opt.step()
            parts["total"] = float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
        means = {k: v / steps_per_epoch for k, v in sums.items()}
        means["epoch"] = epoch + 1
        means["elapsed_s"] = round(time.time() - t_start, 2)
        if cfg.val_every and (epoch + 1) % cfg.val_every == 0 and rank == 0:
            means.update(validate(model, cfg, manifest, device))
        history.append(means)
        if writer is not None:
            for k, v in means.items():
                if k != "epoch":
                    writer.add_scalar(k, v, epoch + 1)
        last = epoch + 1 == cfg.epochs
        if rank == 0 and ((epoch + 1) % max(cfg.checkpoint_every, 1) == 0 or last):
            _save(ckpt_path, model, opt, cfg, epoch + 1, history, subjects, manifest)
            atomic_write_text(out / "losses.json", json.dumps(history, indent=1))
    if writer is not None:
        writer.close()
    if world > 1:
        dist.barrier()
    reporter.close()
    return ckpt_path


def read_resume_checkpoint(path: Path, cfg: TrainConfig, n_codes: int, device="cpu") -> dict:
    """The run's own ``checkpoint.pt`` to resume, checked against the config: same model and
    ``n_codes`` codes, with its optimizer state and epoch."""
    ck = load_checkpoint(path, map_location=device, need=("optimizer_state", "codes", "epoch"))
    if ck["model_config"] != cfg.model.to_dict():
        raise NimosefInputError(path, f"resume: model {ck['model_config']} differs from the "
                                      f"config's {cfg.model.to_dict()}")
    if ck["codes"].shape[0] != n_codes:
        raise NimosefInputError(path, f"resume: {ck['codes'].shape[0]} codes, the config's "
                                      f"subjects and augmented copies make {n_codes}")
    return ck


def read_init_checkpoint(cfg: TrainConfig, n_codes: int, device="cpu") -> dict:
    """``cfg.init_from``, checked against the config: same model, ``n_codes`` codes (subjects
    and augmented copies) and fewer epochs than ``cfg.epochs``."""
    path = Path(cfg.init_from)
    if not path.is_file():
        raise NimosefInputError(path, "init_from: checkpoint not found")
    ck = load_checkpoint(path, map_location=device, need=("codes", "epoch"))
    if ck.get("model_config") != cfg.model.to_dict():
        raise NimosefInputError(path, f"init_from: model {ck.get('model_config')} differs from "
                                      f"the config's {cfg.model.to_dict()}")
    if ck["codes"].shape[0] != n_codes:
        raise NimosefInputError(path, f"init_from: {ck['codes'].shape[0]} codes, the config's "
                                      f"subjects and augmented copies make {n_codes}")
    if int(ck["epoch"]) >= cfg.epochs:
        raise NimosefInputError(path, f"init_from: already trained {ck['epoch']} epochs, the "
                                      f"config asks for {cfg.epochs}")
    return ck


def _save(path: Path, model: AutoDecoder, opt, cfg: TrainConfig, epoch: int,
          history: list[dict], subjects: list[SubjectData], manifest: dict) -> None:
    codes = model.codes.weight.detach().cpu()
    save_checkpoint(path, {
        "model_state": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "model_config": cfg.model.to_dict(),
        "codes": codes,
        "code_mean": codes.mean(0),
        "code_subjects": [a.subject for a in model.table],
        # which cycle times the prior has seen: ED and ES only, or whole cines
        "time_coverage": "ed_es" if all(s.n_frames <= 2 for s in subjects) else "full",
        "es_time_mean": float(np.mean([max(s.frame_times) for s in subjects])),
        "subject_ids": [s.subject_id for s in subjects],
        "norm_scale_mm": float(subjects[0].heart.scale_mm),
        "population_bbox_mm": manifest.get("population_bbox_mm"),
        "dataset": {"root": str(cfg.root), "name": manifest.get("dataset"),
                    "splits": manifest.get("splits")},
        "train_config": cfg.to_dict(),
        "optimizer_state": opt.state_dict(),
        "epoch": epoch,
        "world_size": _dist_info()[1],
        "history": history,
    })


def validate(model: AutoDecoder, cfg: TrainConfig, manifest: dict, device) -> dict:
    """Fit the codes of a few validation subjects and report their mean Dice per class."""
    from nimosef_engine.data.manifest import load_split
    from nimosef_engine.training.validation import fit_and_score

    try:
        val = load_split(cfg.root, "val")[: cfg.val_max_subjects]
    except NimosefInputError:
        return {}
    if not val:
        return {}
    model.eval()
    code_mean = model.codes.weight.detach().mean(0)
    scores = [fit_and_score(model.net, s, code_mean, steps=cfg.val_fit_steps, device=device)
              for s in val]
    for p in model.net.parameters():
        p.requires_grad_(True)
    out = {}
    for c in ("LV", "MYO", "RV"):
        vals = [d[c] for d in scores if not np.isnan(d[c])]
        out[f"val_dice_{c}"] = float(np.mean(vals)) if vals else float("nan")
    return out


def _tensorboard(logdir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: no TensorBoard logs (losses.json is written)")
        return None
    return SummaryWriter(str(logdir))
