"""Shared paths and small builders for the cine I/O tests (real ACDC and Sunnybrook data)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
ACDC = DATA / "acdc"
P090 = ACDC / "patient090"
CINE_4D = P090 / "patient090_4d.nii.gz"
SUNNYBROOK = DATA / "sunnybrook"
SB_DICOMS = SUNNYBROOK / "dicoms" / "SCD0000101"
SB_CONTOURS = SUNNYBROOK / "contourfiles" / "SC-HF-I-1"


def read_info_cfg(folder: Path) -> dict[str, str]:
    """ACDC Info.cfg as a dict of strings."""
    lines = (folder / "Info.cfg").read_text().splitlines()
    return dict((k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines if ":" in ln))

