"""A small 2D U-Net that labels one short-axis slice: the learned image likelihood of the
refinement (:mod:`nimosef_engine.refinement.slice_evidence`).

Its input is one slice of the heart-centred crop resampled onto a fixed grid
(:data:`GRID_PX` pixels over :data:`FIELD_MM` mm, whatever the scanner's spacing), each slice
standardised by its own mean and standard deviation (coil sensitivity differs slice to slice);
its output is the logits of the four classes (background, LV, MYO, RV).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

GRID_PX = 128  # pixels per side of the network's grid
FIELD_MM = 160.0  # its field of view (mm): the ROI of preprocessing and segment-track


@dataclass
class SliceUNetConfig:
    """Width of the first level (doubled at each of ``levels - 1`` poolings) and classes."""

    base: int = 16
    levels: int = 4
    n_classes: int = 4


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class SliceUNet(nn.Module):
    """``(B, 1, H, W)`` standardised slices -> ``(B, C, H, W)`` logits (H, W divisible by
    ``2 ** (levels - 1)``)."""

    def __init__(self, config: SliceUNetConfig | None = None):
        super().__init__()
        self.config = config or SliceUNetConfig()
        widths = [self.config.base * 2 ** i for i in range(self.config.levels)]
        self.down = nn.ModuleList(
            _block(cin, cout) for cin, cout in zip([1, *widths[:-1]], widths, strict=True))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(len(widths) - 1)))
        self.merge = nn.ModuleList(
            _block(2 * widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], self.config.n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], 1))
        return self.head(x)

    def config_dict(self) -> dict:
        return asdict(self.config)


def standardise(slices: torch.Tensor) -> torch.Tensor:
    """Each slice ``(B, 1, H, W)`` to zero mean and unit standard deviation."""
    mean = slices.mean((2, 3), keepdim=True)
    sd = slices.std((2, 3), keepdim=True).clamp_min(1e-3)
    return (slices - mean) / sd


def crop_to_grid_theta(n_px: int, spacing_mm: float, batch: int = 1) -> torch.Tensor:
    """``affine_grid`` matrices ``(batch, 2, 3)`` that sample a centred ``n_px``-square crop of
    ``spacing_mm`` pixels onto the network's grid (:data:`FIELD_MM` over :data:`GRID_PX`)."""
    s = FIELD_MM / (n_px * spacing_mm)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = s
    return theta


def to_grid(slices: torch.Tensor, spacing_mm: float, mode: str = "bilinear") -> torch.Tensor:
    """Crop slices ``(B, C, n, n)`` -> the network's grid ``(B, C, GRID_PX, GRID_PX)``."""
    theta = crop_to_grid_theta(slices.shape[-1], spacing_mm, slices.shape[0])
    grid = F.affine_grid(theta, [slices.shape[0], 1, GRID_PX, GRID_PX], align_corners=False)
    return F.grid_sample(slices, grid.to(slices.dtype), mode=mode, padding_mode="border",
                         align_corners=False)


def from_grid(maps: torch.Tensor, n_px: int, spacing_mm: float) -> torch.Tensor:
    """The network's grid ``(B, C, GRID_PX, GRID_PX)`` -> the crop ``(B, C, n_px, n_px)``
    (bilinear; outside the network's field the edge values hold)."""
    theta = crop_to_grid_theta(n_px, spacing_mm, maps.shape[0])
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / theta[:, 0, 0]
    grid = F.affine_grid(theta, [maps.shape[0], 1, n_px, n_px], align_corners=False)
    return F.grid_sample(maps, grid.to(maps.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)
