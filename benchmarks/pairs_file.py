"""Write a pairs file for ``nimosef evaluate --layout pairs`` from a folder of labelled ED/ES
pairs named as in the M&Ms-2 challenge (``NNN_SA_ED.nii.gz``, ``NNN_SA_ES.nii.gz`` and their
``_gt`` label maps, labels 1 LV, 2 MYO, 3 RV).

    python benchmarks/pairs_file.py --root MNMS2_FOLDER --out pairs.json
    nimosef evaluate --layout pairs --pairs pairs.json --out eval/mnms2
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from nimosef_engine.pipeline.evaluate import DEFAULT_PAIR_ES_TIME


def pairs(root: Path, out: Path, es_time: float) -> list[dict]:
    """One subject per ``*_SA_ED.nii.gz`` of ``root`` that has its ES frame and both labels;
    paths relative to ``out``'s folder."""
    found = []
    for ed in sorted(root.glob("*_SA_ED.nii.gz")):
        stem = ed.name.removesuffix("_SA_ED.nii.gz")
        files = {"ed": ed, "es": root / f"{stem}_SA_ES.nii.gz",
                 "ed_labels": root / f"{stem}_SA_ED_gt.nii.gz",
                 "es_labels": root / f"{stem}_SA_ES_gt.nii.gz"}
        if all(f.is_file() for f in files.values()):
            found.append({"id": f"{root.name}_{stem}", "es_time": es_time,
                          **{k: os.path.relpath(f.resolve(), out.resolve().parent)
                             for k, f in files.items()}})
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="folder of NNN_SA_ED/ES files")
    ap.add_argument("--out", type=Path, required=True, help="pairs JSON to write")
    ap.add_argument("--es-time", type=float, default=DEFAULT_PAIR_ES_TIME,
                    help="ES as a fraction of the cycle (the files do not say)")
    args = ap.parse_args()
    subjects = pairs(args.root, args.out, args.es_time)
    if not subjects:
        raise SystemExit(f"{args.root}: no NNN_SA_ED.nii.gz with its ES frame and labels")
    args.out.write_text(json.dumps({"subjects": subjects}, indent=1))
    print(f"{args.out}: {len(subjects)} pairs")


if __name__ == "__main__":
    main()
