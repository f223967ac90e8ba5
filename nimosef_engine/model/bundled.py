"""The models that ship inside the package (the ACDC prior and the slice network, model card:
``nimosef_engine/priors/README.md``): where they are and how any prior or slice network is
loaded for use."""

from __future__ import annotations

from pathlib import Path

import torch

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint, prior_id
from nimosef_engine.model.slice_unet import SliceUNet, SliceUNetConfig

PRIORS_DIR = Path(__file__).resolve().parents[1] / "priors"
BUNDLED_PRIOR = PRIORS_DIR / "acdc_prior.pt"
BUNDLED_SLICE_NET = PRIORS_DIR / "acdc_slice_unet.pt"


def load_prior(prior: str | Path | None, device) -> tuple[dict, torch.nn.Module, str]:
    """A prior checkpoint (the bundled one without ``prior``), its network on ``device`` and
    its id (:func:`model.checkpoint.prior_id`)."""
    path = Path(prior) if prior else BUNDLED_PRIOR
    if not prior and not path.is_file():
        raise NimosefInputError(path, "the bundled prior is missing from this installation")
    ckpt = load_checkpoint(path, need=("code_mean",))
    return ckpt, model_from_checkpoint(ckpt, device), prior_id(ckpt)


def load_slice_net(path: str | Path | None = None,
                   device: str | torch.device = "cpu") -> tuple[SliceUNet, str]:
    """The slice network of a checkpoint (the bundled one without ``path``), in eval mode,
    and its id (:func:`model.checkpoint.prior_id` of its weights)."""
    path = BUNDLED_SLICE_NET if path is None else Path(path)
    if path == BUNDLED_SLICE_NET and not path.is_file():
        raise NimosefInputError(path, "the bundled slice network is missing from this "
                                      "installation")
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "slice_unet":
        raise NimosefInputError(path, "not a slice-network checkpoint (kind != 'slice_unet')")
    net = SliceUNet(SliceUNetConfig(**ckpt["model_config"]))
    net.load_state_dict({k: v.float() for k, v in ckpt["model_state"].items()})
    return net.to(device).eval(), prior_id(ckpt)
