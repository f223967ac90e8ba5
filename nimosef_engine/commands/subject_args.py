"""Shared CLI plumbing: pick preprocessed subjects by split or id, load a prior."""

from __future__ import annotations

import argparse

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.data.manifest import load_split, subject_npz_path
from nimosef_engine.data.subject import SubjectData


def add_subject_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="preprocessed dataset root")
    p.add_argument("--split", help="train, val or test")
    p.add_argument("--subjects", nargs="+", help="subject ids (instead of --split)")


def selected_subjects(args: argparse.Namespace) -> list[SubjectData]:
    """Subjects named by ``--subjects`` or in ``--split``."""
    if args.subjects:
        out = []
        for sid in args.subjects:
            path = subject_npz_path(args.root, sid)
            if not path.is_file():
                raise NimosefInputError(path, f"subject {sid} is not preprocessed")
            out.append(SubjectData.load(path))
        return out
    if not args.split:
        raise NimosefInputError("--split", "give --split or --subjects")
    subjects = load_split(args.root, args.split)
    if not subjects:
        raise NimosefInputError(args.root, f"split {args.split!r} is empty")
    return subjects
