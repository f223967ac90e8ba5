"""Checkpoints that carry everything needed to use the model alone.

A checkpoint is a ``torch.save`` dict: ``model_state``, ``model_config``, ``codes`` (S, C)
and ``subject_ids`` (training codes), ``code_mean`` (initial code for fitting),
``norm_scale_mm``, ``label_names``, ``population_bbox_mm``, ``intensity_normalisation``,
``train_config``, ``fit_defaults`` (fitting steps chosen on validation), ``engine_version``,
``git_commit``, ``epoch``, and for resuming ``optimizer_state``.
Writes are atomic: a checkpoint is never half-written.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import torch

from nimosef_engine import LABEL_NAMES, __version__
from nimosef_engine.atomic import atomic_write_bytes
from nimosef_engine.errors import NimosefInputError
from nimosef_engine.model.network import ModelConfig, NimosefNet

INTENSITY_NORMALISATION = (
    "per-subject clip to the 2nd-98th percentile of the 4D cine, scale to [0,1]")


def git_commit() -> str | None:
    """The repository's commit (short), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """``torch.save`` ``payload`` atomically, adding version metadata."""
    payload = dict(payload)
    payload.setdefault("engine_version", __version__)
    payload.setdefault("git_commit", git_commit())
    payload.setdefault("label_names", {int(k): v for k, v in LABEL_NAMES.items()})
    payload.setdefault("intensity_normalisation", INTENSITY_NORMALISATION)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict; NimosefInputError if it is not one."""
    path = Path(path)
    if path.is_dir():
        raise NimosefInputError(path, "is a directory, expected a checkpoint file (.pt)")
    if not path.is_file():
        raise NimosefInputError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise NimosefInputError(path, f"not a readable checkpoint ({exc.__class__.__name__})") \
            from None
    if not isinstance(ckpt, dict) or "model_state" not in ckpt or "model_config" not in ckpt:
        raise NimosefInputError(path, "not a NIMOSEF checkpoint (no model_state/model_config)")
    return ckpt


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> NimosefNet:
    """Build the network of a checkpoint dict, in eval mode on ``device``."""
    net = NimosefNet(ModelConfig(**ckpt["model_config"]))
    net.load_state_dict(ckpt["model_state"])
    return net.to(device).eval()


def prior_id(ckpt: dict) -> str:
    """A short stable id of a checkpoint's weights (first 12 hex of a SHA-256)."""
    h = hashlib.sha256()
    for k in sorted(ckpt["model_state"]):
        h.update(k.encode())
        h.update(ckpt["model_state"][k].detach().cpu().numpy().tobytes())
    return h.hexdigest()[:12]
