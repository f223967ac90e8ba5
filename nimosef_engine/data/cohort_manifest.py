"""The subjects of a cohort run (``nimosef segment-track-batch``): a CSV manifest or a folder.

CSV: a header row, then one row per subject. Columns (any others are refused, so that a typo
is not silently ignored):

- ``subject`` (required): the subject's id, used as its folder name: letters, digits, ``.``,
  ``_`` and ``-``, starting with a letter or digit, at most 128 characters, unique (case
  ignored, for case-insensitive file systems);
- ``inputs`` (required): one path (a 4D NIfTI, a DICOM folder, a ``.nrrd`` / ``.seq.nrrd``),
  or several 3D frame paths in time order separated by ``;``; relative paths are relative to
  the CSV file's folder;
- ``frame_times`` (space-separated cycle fractions, 0-1), ``frame_numbers`` (space-separated
  1-based frame numbers, with ``n_frames``), ``n_frames`` (frames in the full cycle),
  ``ed_frame`` (0-based), ``series`` (the DICOM series): optional, as the segment-track flags
  of the same names. A row that gives any of the timing columns (``frame_times``,
  ``frame_numbers``, ``n_frames``) replaces the command line's timing for that subject;
  ``ed_frame`` and ``series`` replace the command line's when given.

Folder: every 4D NIfTI (``*.nii``, ``*.nii.gz``), every ``*.nrrd`` / ``*.seq.nrrd`` and every
subfolder holding DICOM files becomes a subject named by its stem (``patient001_4d.nii.gz``
-> ``patient001_4d``). 3D NIfTI files and hidden entries are skipped. A file whose header
cannot be read is kept as a subject: its run fails and records why.

Whether the inputs exist and can be read is not checked here: that is each subject's own run,
whose failure is recorded without stopping the others. Anything wrong with the manifest itself
raises :class:`NimosefInputError` naming the manifest (and the line) before any work.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.io.cine import DICOM_SUFFIXES, NIFTI_SUFFIXES

log = logging.getLogger(__name__)

SUBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
REQUIRED_COLUMNS = ("subject", "inputs")
OPTIONAL_COLUMNS = ("frame_times", "frame_numbers", "n_frames", "ed_frame", "series")
TIMING_COLUMNS = ("frame_times", "frame_numbers", "n_frames")
NRRD_CINE_SUFFIXES = (".seq.nrrd", ".nrrd")
DICOM_MAGIC_OFFSET = 128  # a DICOM Part 10 file holds b"DICM" after a 128-byte preamble
MAX_DICOM_PROBES = 200  # files of a subfolder looked at to decide that it holds no DICOM


@dataclass(frozen=True)
class CohortSubject:
    """One subject of a cohort: its ``subject`` id (folder name), its ``inputs`` (absolute
    paths, as :func:`io.cine.load_cine` takes them), the segment-track ``options`` its
    manifest row sets (``frame_times``, ``frame_numbers``, ``n_frames``, ``ed_frame``,
    ``series``) and ``where`` in the manifest it comes from (``line N (subject)`` of a CSV,
    the cine's name in a folder)."""

    subject: str
    inputs: tuple[Path, ...]
    options: dict = field(default_factory=dict, hash=False)
    where: str = ""


def read_cohort_manifest(path: str | Path) -> list[CohortSubject]:
    """The subjects of a CSV manifest or of a folder of cines (module docstring), in the
    manifest's order (a folder: sorted by name). Raises :class:`NimosefInputError` naming the
    manifest for a manifest that is missing, unreadable, empty or malformed."""
    path = Path(path)
    if path.is_dir():
        subjects = folder_subjects(path)
    elif path.is_file():
        subjects = csv_subjects(path)
    else:
        raise NimosefInputError(path, "manifest not found: expected a CSV file or a folder "
                                      "of cines")
    seen: dict[str, str] = {}
    for s in subjects:
        key = s.subject.lower()
        if key in seen:
            raise NimosefInputError(path, f"{s.where}: subject {s.subject!r} repeats "
                                          f"{seen[key]} (subject ids name folders: they must "
                                          "be unique, case ignored)")
        seen[key] = s.where
    return subjects


def check_subject_id(subject: str, manifest: Path, where: str) -> str:
    """``subject`` if it is a safe folder name (:data:`SUBJECT_ID`), else
    :class:`NimosefInputError` naming the manifest and ``where``."""
    if not SUBJECT_ID.fullmatch(subject):
        raise NimosefInputError(manifest, f"{where}: subject {subject!r} is not a safe folder "
                                          "name (letters, digits, '.', '_', '-', starting with "
                                          "a letter or digit, at most 128 characters)")
    return subject


def csv_subjects(path: Path) -> list[CohortSubject]:
    """The subjects of a CSV manifest (module docstring)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark
    except UnicodeDecodeError:
        raise NimosefInputError(path, "not a CSV text file (not UTF-8)") from None
    except OSError as exc:
        raise NimosefInputError(path, f"cannot read the manifest ({exc.strerror or exc})") \
            from None
    if "\0" in text:
        raise NimosefInputError(path, "not a CSV text file (binary content)")
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    try:
        header = [str(c).strip() for c in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise NimosefInputError(path, f"line 1: not a valid CSV header ({exc})") from None
    if not header:
        raise NimosefInputError(path, "empty manifest: expected a header row "
                                      f"({', '.join(REQUIRED_COLUMNS)}, ...) and one row per "
                                      "subject")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise NimosefInputError(path, f"line 1: no {' or '.join(missing)} column (columns: "
                                      f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})")
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown or len(set(header)) != len(header):
        what = f"unknown column {unknown[0]!r}" if unknown else "a column repeats"
        raise NimosefInputError(path, f"line 1: {what} (columns: "
                                      f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})")
    reader.fieldnames = header
    subjects = []
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:
                raise NimosefInputError(path, f"{where}: more cells than columns")
            cells = {k: (v or "").strip() for k, v in row.items()}
            if not any(cells.values()):
                continue  # a blank line
            subjects.append(_row_subject(path, where, cells))
    except csv.Error as exc:
        raise NimosefInputError(path, f"line {reader.line_num}: not valid CSV ({exc})") \
            from None
    if not subjects:
        raise NimosefInputError(path, "no subjects: the manifest has a header but no rows")
    return subjects


def _row_subject(path: Path, where: str, cells: dict[str, str]) -> CohortSubject:
    subject = check_subject_id(cells["subject"], path, where)
    where = f"{where} ({subject})"
    inputs = [p.strip() for p in cells["inputs"].split(";") if p.strip()]
    if not inputs:
        raise NimosefInputError(path, f"{where}: no inputs (a path, or 3D frame paths "
                                      "separated by ';')")
    options: dict = {}
    if any(cells.get(c) for c in TIMING_COLUMNS):  # the row's timing replaces the CLI's
        options.update(frame_times=None, frame_numbers=None, n_frames=None)
    if cells.get("frame_times"):
        options["frame_times"] = _numbers(path, where, "frame_times", cells["frame_times"],
                                          float)
    if cells.get("frame_numbers"):
        options["frame_numbers"] = _numbers(path, where, "frame_numbers",
                                            cells["frame_numbers"], int)
    for name in ("n_frames", "ed_frame"):
        if cells.get(name):
            options[name] = _numbers(path, where, name, cells[name], int, single=True)
    if cells.get("series"):
        options["series"] = cells["series"]
    base = path.absolute().parent
    return CohortSubject(subject, tuple(_absolute(base, p) for p in inputs), options, where)


def _numbers(path: Path, where: str, column: str, text: str, kind: type, single=False):
    """The space-separated numbers of a cell (one when ``single``)."""
    words = text.split()
    try:
        values = tuple(kind(w) for w in words)
    except ValueError:
        what = "an integer" if single else f"space-separated {kind.__name__}s"
        raise NimosefInputError(path, f"{where}: {column} {text!r} is not {what}") from None
    if single:
        if len(values) != 1:
            raise NimosefInputError(path, f"{where}: {column} {text!r} is not one integer")
        return values[0]
    return values


def _absolute(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def cine_stem(path: Path) -> str | None:
    """The subject name of a cine file of a folder manifest (its name without ``.nii.gz``,
    ``.nii``, ``.seq.nrrd`` or ``.nrrd``), or None if it is not one."""
    name = path.name
    for suffix in (".nii.gz", ".nii", *NRRD_CINE_SUFFIXES):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def holds_dicom(folder: Path) -> bool:
    """Whether ``folder`` holds DICOM files (by extension, or the ``DICM`` marker of a
    DICOM Part 10 file), looking at its files only, not its subfolders."""
    for i, p in enumerate(sorted(folder.iterdir())):
        if i >= MAX_DICOM_PROBES:
            break
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.name.lower().endswith(DICOM_SUFFIXES):
            return True
        try:
            with open(p, "rb") as fh:
                fh.seek(DICOM_MAGIC_OFFSET)
                if fh.read(4) == b"DICM":
                    return True
        except OSError:
            continue
    return False


def _is_4d_nifti(path: Path) -> bool:
    """True for a NIfTI with more than one frame, or one whose header cannot be read (its
    run then records why); False for a 3D (or single-frame) image."""
    try:
        dim = nib.load(str(path)).header["dim"]
    except Exception:  # any unreadable header: its run says what is wrong
        return True
    return int(dim[0]) >= 4 and int(dim[4]) > 1


def folder_subjects(folder: Path) -> list[CohortSubject]:
    """The subjects of a folder of cines (module docstring), sorted by name."""
    subjects = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if not holds_dicom(p):
                log.info("skipped %s: no DICOM files in it", p)
                continue
            name = p.name
        else:
            name = cine_stem(p)
            if name is None:
                continue
            if p.name.lower().endswith(NIFTI_SUFFIXES) and not _is_4d_nifti(p):
                log.info("skipped %s: a 3D image, not a cine", p)
                continue
        if not SUBJECT_ID.fullmatch(name):
            raise NimosefInputError(p, f"its name gives the subject id {name!r}, not a safe "
                                       "folder name (letters, digits, '.', '_', '-'): rename "
                                       "it, or list it in a CSV manifest with another id")
        subjects.append(CohortSubject(name, (p.absolute(),), {}, p.name))
    if not subjects:
        raise NimosefInputError(folder, "no cines found: expected 4D NIfTI files (.nii, "
                                        ".nii.gz), .nrrd / .seq.nrrd files or subfolders of "
                                        "DICOM files")
    return subjects
