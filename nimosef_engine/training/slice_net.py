"""Training the slice network of the refinement (:mod:`refinement.slice_evidence`) on a preprocessed
dataset: every labelled slice of the training split, augmented on the fly (rotation, scale,
flip, shift, gamma, noise, and with ``scanner`` > 0 what differs between scanners:
:mod:`scanner_augment`), cross-entropy + soft Dice; after each epoch the validation split is
scored (3D Dice per class on the crop grid) and the best epoch is kept. Seeded (the order,
augmentation and initial weights follow ``seed``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nimosef_engine.core.atomic import atomic_write_text
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import spacing_of
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.manifest import load_split
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.evaluation.metrics import dice_per_class
from nimosef_engine.model.checkpoint import save_checkpoint
from nimosef_engine.model.slice_unet import SliceUNet, SliceUNetConfig, standardise, to_grid
from nimosef_engine.refinement.slice_evidence import slice_probabilities

log = logging.getLogger(__name__)


@dataclass
class SliceTrainConfig:
    """Options of ``nimosef train-slice-net``."""

    root: str = ""
    out: str = "runs/slice_net"
    epochs: int = 40
    batch: int = 16
    lr: float = 2e-3
    lr_floor: float = 1e-4
    max_minutes: float = 0.0  # stop after this wall time (0: no limit); the best epoch is kept
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: torch's default)
    base: int = 16
    levels: int = 4
    rotate: bool = True
    scale: tuple[float, float] = (0.8, 1.25)
    shift: float = 0.15  # fraction of the half field
    gamma: tuple[float, float] = (0.6, 1.6)
    noise: float = 0.05
    scanner: float = 0.0  # strength of the scanner augmentation (:mod:`scanner_augment`; 0 off)
    init_from: str = ""  # start from this slice-network checkpoint's weights ("": random)


def slice_stack(subjects: list[SubjectData]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every labelled slice of ``subjects`` on the network's grid: images ``(N, 1, G, G)``
    float32 in [0, 1] and labels ``(N, G, G)`` uint8."""
    images, labels = [], []
    for s in subjects:
        if s.labels is None:
            raise NimosefInputError(s.subject_id, "training subject has no labels")
        sp = float(spacing_of(s.crop_affine_ras)[0])
        for t in range(s.n_frames):
            x = torch.from_numpy(np.ascontiguousarray(s.intensity[t].transpose(2, 0, 1)))
            y = torch.from_numpy(np.ascontiguousarray(s.labels[t].transpose(2, 0, 1)))
            images.append(to_grid(x[:, None].float(), sp))
            labels.append(to_grid(y[:, None].float(), sp, mode="nearest")[:, 0].to(torch.uint8))
    return torch.cat(images), torch.cat(labels)


def augment(images: torch.Tensor, labels: torch.Tensor, cfg: SliceTrainConfig,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random in-plane affine (rotation, scale, flip, shift) of each slice, then gamma and
    noise on its intensities; returns standardised images and int64 labels."""
    b = images.shape[0]

    def uniform(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = uniform(0.0, 2 * math.pi) if cfg.rotate else torch.zeros(b)
    scale = torch.exp(uniform(math.log(cfg.scale[0]), math.log(cfg.scale[1])))
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * torch.cos(angle) * flip
    theta[:, 0, 1] = -scale * torch.sin(angle)
    theta[:, 1, 0] = scale * torch.sin(angle) * flip
    theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, :, 2] = uniform(-cfg.shift, cfg.shift, 2 * b).view(b, 2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                      align_corners=False)[:, 0].long()
    gamma = torch.exp(uniform(math.log(cfg.gamma[0]), math.log(cfg.gamma[1])))
    x = x.clamp(0.0, 1.0) ** gamma.view(b, 1, 1, 1)
    if cfg.scanner > 0:
        from nimosef_engine.training.scanner_augment import random_scanner

        x = random_scanner(x, gen, cfg.scanner)
    x = x + uniform(0.0, cfg.noise).view(b, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    return standardise(x), y


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus one minus the soft Dice of the foreground classes."""
    ce = F.cross_entropy(logits, labels)
    probs = torch.softmax(logits, 1)[:, 1:]
    onehot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (probs * onehot).sum((0, 2, 3))
    den = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return ce + 1.0 - ((2 * inter + 1.0) / (den + 1.0)).mean()


def validation_dice(net: SliceUNet, subjects: list[SubjectData]) -> dict[str, float]:
    """Mean 3D Dice per class over every frame of ``subjects`` (argmax of the network alone)."""
    net.eval()
    scores = []
    for s in subjects:
        sp = float(spacing_of(s.crop_affine_ras)[0])
        for t in range(s.n_frames):
            pred = slice_probabilities(net, s.intensity[t], sp).argmax(0)
            scores.append(dice_per_class(pred, s.labels[t]))
    return {k: float(np.nanmean([d[k] for d in scores])) for k in scores[0]}


def train_slice_net(cfg: SliceTrainConfig, reporter: ProgressReporter | None = None) -> dict:
    """Train, write ``OUT/slice_unet.pt`` (the best epoch on the val split, the last without
    one) and ``OUT/history.json``; returns the history."""
    reporter = reporter or ProgressReporter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_subjects = load_split(cfg.root, "train")
    if not train_subjects:
        raise NimosefInputError(cfg.root, "the train split is empty")
    val_subjects = load_split(cfg.root, "val")
    if not val_subjects:
        log.warning("%s has no val split: the last epoch is kept", cfg.root)
    images, labels = slice_stack(train_subjects)
    if cfg.init_from:
        from nimosef_engine.model.bundled import load_slice_net

        net = load_slice_net(cfg.init_from)[0].train()
    else:
        net = SliceUNet(SliceUNetConfig(base=cfg.base, levels=cfg.levels))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps_per_epoch = max(1, images.shape[0] // cfg.batch)
    total = cfg.epochs * steps_per_epoch
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    history: dict = {"config": asdict(cfg), "n_slices": int(images.shape[0]),
                     "train_subjects": [s.subject_id for s in train_subjects],
                     "val_subjects": [s.subject_id for s in val_subjects], "epochs": []}
    best, start, step = -1.0, time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(images.shape[0], generator=gen)
        losses = []
        for i in range(steps_per_epoch):
            reporter.check_cancel()
            cosine = 1 + math.cos(math.pi * step / total)
            lr = cfg.lr_floor + 0.5 * (cfg.lr - cfg.lr_floor) * cosine
            for group in opt.param_groups:
                group["lr"] = lr
            idx = order[i * cfg.batch:(i + 1) * cfg.batch]
            x, y = augment(images[idx], labels[idx], cfg, gen)
            loss = segmentation_loss(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            reporter.update("train", step / total, f"epoch {epoch + 1} loss {losses[-1]:.3f}")
        dice = validation_dice(net, val_subjects) if val_subjects else None
        mean = float(np.mean(list(dice.values()))) if dice else float(epoch)  # no val: last
        minutes = (time.perf_counter() - start) / 60
        history["epochs"].append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                                  "val_dice": dice, "val_mean": mean, "minutes": minutes})
        log.info("epoch %d loss %.4f val %s (%.1f min)", epoch + 1, np.mean(losses), dice, minutes)
        if mean > best:
            best = mean
            save_checkpoint(out / "slice_unet.pt", {
                "kind": "slice_unet", "model_config": net.config_dict(),
                "model_state": {k: v.detach().clone() for k, v in net.state_dict().items()},
                "epoch": epoch + 1, "val_dice": dice, "train_config": asdict(cfg),
                "train_subjects": history["train_subjects"],
                "val_subjects": history["val_subjects"]})
            history["best_epoch"] = epoch + 1
        atomic_write_text(out / "history.json", json.dumps(history, indent=1))
        if cfg.max_minutes and minutes >= cfg.max_minutes:
            log.info("time limit reached after epoch %d", epoch + 1)
            break
    return history
