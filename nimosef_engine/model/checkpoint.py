"""Checkpoints that carry everything needed to use the model alone.

A checkpoint is a ``torch.save`` dict: ``model_state``, ``model_config``, ``codes`` (S, C)
and ``subject_ids`` (training codes), ``code_mean`` (initial code for fitting),
``norm_scale_mm``, ``label_names``, ``population_bbox_mm``, ``intensity_normalisation``,
``train_config``, ``fit_defaults`` (fitting steps chosen on validation), ``engine_version``,
``git_commit``, ``epoch``, and for resuming ``optimizer_state``.
Writes are atomic: a checkpoint is never half-written. Reads go through
:func:`nimosef_engine.core.safe_load.load_torch_file` (tensors and plain data only, never code), and
a checkpoint whose weights do not fit its own ``model_config`` is refused when it is read.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import torch

from nimosef_engine import LABEL_NAMES, __version__
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.safe_load import load_torch_file, save_torch_file
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
    save_torch_file(path, payload)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    need: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint dict safely (tensors and plain data only); NimosefInputError naming
    ``path`` if it is not a NIMOSEF checkpoint, its weights do not fit its model, or it lacks
    one of the keys ``need`` (e.g. ``code_mean`` to fit, ``optimizer_state`` to resume)."""
    path = Path(path)
    ckpt = load_torch_file(path, "checkpoint", map_location)
    if not isinstance(ckpt, dict) or "model_state" not in ckpt or "model_config" not in ckpt:
        raise NimosefInputError(path, "not a NIMOSEF checkpoint (no model_state/model_config)")
    check_weights(path, ckpt)
    missing = [k for k in need if ckpt.get(k) is None]
    if missing:
        raise NimosefInputError(path, f"checkpoint has no {', '.join(missing)}")
    return ckpt


def check_weights(path: str | Path, ckpt: dict) -> None:
    """Refuse a checkpoint whose weights (``model_state``) and codes do not fit the network its
    ``model_config`` describes: empty, missing or extra tensors, wrong shapes."""
    from nimosef_engine.model.slice_unet import SliceUNet, SliceUNetConfig

    state, config = ckpt["model_state"], ckpt["model_config"]
    if not isinstance(config, dict):
        raise NimosefInputError(path, "model_config is not a mapping")
    if not isinstance(state, dict) or not state \
            or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NimosefInputError(path, "model_state holds no weights (an empty or foreign "
                                      "checkpoint)")
    kind = ckpt.get("kind")
    try:
        net = SliceUNet(SliceUNetConfig(**config)) if kind == "slice_unet" \
            else NimosefNet(ModelConfig(**config))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise NimosefInputError(path, f"model_config {config} is not a valid network "
                                      f"({str(exc).splitlines()[0][:120]})") from None
    want = net.state_dict()
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    wrong = sorted(k for k in set(want) & set(state) if want[k].shape != state[k].shape)
    if missing or extra or wrong:
        parts = [f"{name} {keys[:3]}" for name, keys in
                 (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if keys]
        raise NimosefInputError(path, f"weights do not fit its model_config: {'; '.join(parts)}")
    if kind != "slice_unet":
        dim = int(config.get("code_dim", ModelConfig.code_dim))
        for key, ndim in (("codes", 2), ("code_mean", 1)):
            value = ckpt.get(key)
            if value is not None and (not isinstance(value, torch.Tensor)
                                      or value.ndim != ndim or value.shape[-1] != dim):
                raise NimosefInputError(path, f"{key} does not fit the code size {dim}")


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
