"""The demo cine shipped in the extension, as a Slicer Sample Data source.

``Resources/SampleData/patient090_cine.seq.nrrd`` is ACDC patient090's 12-frame short-axis
cine (research, non-commercial use; cite O. Bernard et al., IEEE TMI 37(11), 2018), written
by Slicer's own sequence writer (``scripts/make_slicer_sample_data.py``). The module
registers it at startup, so the tutorial works offline from an installed extension: *Sample
Data > Cardiac > NIMOSEF demo cine*.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "Resources"
SAMPLE_FILE = RESOURCES_DIR / "SampleData" / "patient090_cine.seq.nrrd"
SAMPLE_SHA256 = "4d0611316a8cdb5160ea10c59182997dcfa77c4cb4b100ec4bc1adafc514dc2b"
SAMPLE_NAME = "NIMOSEF demo cine (ACDC patient090)"
SAMPLE_NODE_NAME = "patient090_cine"
SAMPLE_CATEGORY = "Cardiac"
THUMBNAIL = RESOURCES_DIR / "Icons" / "NimosefSlicer.png"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (Slicer's Sample Data checksums are ``SHA256:<hex>``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_source() -> dict:
    """Keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource``:
    the shipped file by a ``file://`` URI (Sample Data copies it into its cache, checks the
    checksum and loads it with Slicer's sequence reader: a sequence, its browser and proxy)."""
    return {
        "category": SAMPLE_CATEGORY,
        "sampleName": SAMPLE_NAME,
        "uris": SAMPLE_FILE.as_uri(),
        "fileNames": SAMPLE_FILE.name,
        "nodeNames": SAMPLE_NODE_NAME,
        "thumbnailFileName": str(THUMBNAIL),
        "loadFileType": "SequenceFile",
        "checksums": f"SHA256:{SAMPLE_SHA256}",
    }
