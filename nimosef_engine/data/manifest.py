"""Dataset manifest: subjects, groups, seeded stratified splits, population bounding box.

Paths (``ROOT`` is the folder holding ``derivatives/``)::

    ROOT/derivatives/implicit/sub-XXX/sub-XXX.npz
    ROOT/derivatives/manifests_nimosef/dataset_manifest.json
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nimosef_engine.core.atomic import atomic_write_text
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.data.subject import SubjectData

DERIVATIVES = "derivatives"
IMPLICIT = "implicit"
MANIFESTS = "manifests_nimosef"
DATASET_MANIFEST = "dataset_manifest.json"
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def implicit_dir(root: str | Path) -> Path:
    return Path(root) / DERIVATIVES / IMPLICIT


def manifest_dir(root: str | Path) -> Path:
    return Path(root) / DERIVATIVES / MANIFESTS


def dataset_manifest_path(root: str | Path) -> Path:
    return manifest_dir(root) / DATASET_MANIFEST


def subject_npz_path(root: str | Path, subject_id: str) -> Path:
    """``ROOT/derivatives/implicit/sub-XXX/sub-XXX.npz``."""
    sid = normalise_subject_id(subject_id)
    return implicit_dir(root) / sid / f"{sid}.npz"


def normalise_subject_id(name: str) -> str:
    """``patient001``, ``sub-001`` or ``001`` -> ``sub-001``."""
    name = str(name).strip()
    for prefix in ("sub-", "patient"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if not name:
        raise NimosefInputError(None, "empty subject id")
    return f"sub-{name}"


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative split fractions summing to 1."""
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or any(not np.isfinite(v) or v < 0 for v in f) or abs(sum(f) - 1) > 1e-6:
        raise NimosefInputError("fractions", f"need three non-negative numbers summing to 1 "
                                               f"(train val test), got {list(f)}")
    return f


def _apportion(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` into counts by largest remainders (ties go to the earlier split)."""
    raw = [n * f for f in fractions]
    counts = [int(np.floor(r + 1e-9)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def make_splits(subjects: Iterable[str], groups: dict[str, str] | None = None,
                fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0,
                holdout: Iterable[str] = ()) -> dict[str, list[str]]:
    """Seeded train/val/test lists, stratified by group; ``holdout`` subjects go to test.

    Deterministic for a given seed and subject set: each group (sorted by name) is shuffled
    with its own generator seeded from ``seed`` and the group name, then cut by the
    largest-remainder counts of ``fractions`` (20 subjects at 0.7/0.15/0.15 -> 14/3/3).
    """
    fractions = check_fractions(fractions)
    subjects = sorted(set(subjects))
    groups = groups or {}
    holdout = sorted({normalise_subject_id(h) for h in holdout})
    unknown = [h for h in holdout if h not in subjects]
    if unknown:
        raise NimosefInputError("holdout", f"unknown subject(s) {unknown}; the dataset has "
                                             f"{subjects[:5]}{' ...' if len(subjects) > 5 else ''}")
    strata: dict[str, list[str]] = {}
    for sid in subjects:
        if sid not in holdout:
            strata.setdefault(str(groups.get(sid, "")), []).append(sid)
    splits = {name: [] for name in SPLITS}
    for group in sorted(strata):
        members = strata[group]
        key = [int(seed) & 0xFFFFFFFF] + [ord(c) for c in group]
        order = np.random.default_rng(key).permutation(len(members))
        shuffled = [members[i] for i in order]
        n_train, n_val, _ = _apportion(len(members), fractions)
        splits["train"] += shuffled[:n_train]
        splits["val"] += shuffled[n_train:n_train + n_val]
        splits["test"] += shuffled[n_train + n_val:]
    splits["test"] += holdout
    return {name: sorted(ids) for name, ids in splits.items()}


def population_bbox(bboxes: Iterable[dict | None]) -> dict | None:
    """Union of per-subject ``{"min": [x,y,z], "max": [x,y,z]}`` boxes (heart-frame mm)."""
    boxes = [b for b in bboxes if b]
    if not boxes:
        return None
    return {"min": np.min([b["min"] for b in boxes], axis=0).tolist(),
            "max": np.max([b["max"] for b in boxes], axis=0).tolist()}


def write_dataset_manifest(root: str | Path, manifest: dict) -> Path:
    """Write ``dataset_manifest.json`` atomically."""
    path = dataset_manifest_path(root)
    atomic_write_text(path, json.dumps(manifest, indent=1))
    return path


def load_dataset_manifest(root: str | Path) -> dict:
    """Read ``ROOT/derivatives/manifests_nimosef/dataset_manifest.json``."""
    path = dataset_manifest_path(root)
    if not path.is_file():
        raise NimosefInputError(path, "no dataset manifest: run `nimosef preprocess` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NimosefInputError(path, f"unreadable dataset manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise NimosefInputError(path, "dataset manifest is not a JSON object")
    for key in ("subjects", "splits"):
        if key not in manifest:
            raise NimosefInputError(path, f"dataset manifest lacks {key!r}")
    return manifest


def load_split(root: str | Path, split: str) -> list[SubjectData]:
    """The preprocessed subjects of one split (``train``, ``val`` or ``test``)."""
    manifest = load_dataset_manifest(root)
    if split not in manifest["splits"]:
        raise NimosefInputError(dataset_manifest_path(root),
                                f"no split {split!r} (have {sorted(manifest['splits'])})")
    return [SubjectData.load(subject_npz_path(root, sid)) for sid in manifest["splits"][split]]


def resplit(root: str | Path, seed: int | None = None,
            fractions: Sequence[float] | None = None,
            holdout: Iterable[str] | None = None) -> dict:
    """Recompute the splits of an existing manifest and rewrite it; None keeps stored values."""
    manifest = load_dataset_manifest(root)
    seed = int(manifest.get("seed", 0) if seed is None else seed)
    fractions = check_fractions(manifest.get("fractions", DEFAULT_FRACTIONS)
                                if fractions is None else fractions)
    holdout = sorted({normalise_subject_id(h) for h in
                      (manifest.get("holdout", []) if holdout is None else holdout)})
    manifest["splits"] = make_splits(manifest["subjects"], manifest.get("groups"),
                                     fractions, seed, holdout)
    manifest.update(seed=seed, fractions=list(fractions), holdout=holdout)
    write_dataset_manifest(root, manifest)
    return manifest
