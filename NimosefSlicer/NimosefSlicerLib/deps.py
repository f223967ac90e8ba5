"""The engine's Python requirements: which are unmet (missing or too old), how to install them,
and a clear message when that cannot work (no network).

``Resources/requirements.txt`` lists every package the engine needs with its minimum version,
torch included. In Slicer, torch comes through the PyTorch extension when it is installed
(it picks the CUDA build for the driver), else from PyPI with pip; the others with pip. The
module asks the user once for all of them (``NimosefSlicer.py``).
"""

from __future__ import annotations

import importlib.metadata
import re
import socket
from dataclasses import dataclass
from pathlib import Path

TORCH = "torch"
PYPI_HOST = ("pypi.org", 443)
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9A-Za-z.+!-]*))?\s*$")


@dataclass(frozen=True)
class Requirement:
    """``name>=minimum`` (``minimum`` None: any version)."""

    name: str
    minimum: str | None = None

    @property
    def text(self) -> str:
        return f"{self.name}>={self.minimum}" if self.minimum else self.name


def read_requirements(path: str | Path) -> list[Requirement]:
    """Requirements of a ``requirements.txt`` holding only ``name`` or ``name>=version`` lines
    (comments and blank lines ignored). Raises ValueError naming the file and line otherwise."""
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#")[0].strip()
        if not text:
            continue
        match = _REQ.match(text)
        if not match:
            raise ValueError(f"{path}:{n}: '{text}' is not 'name' or 'name>=version'")
        out.append(Requirement(match.group(1), match.group(2)))
    return out


def version_tuple(version: str) -> tuple[int, ...]:
    """Release numbers of a version string: ``"2.13.0+cpu"`` -> ``(2, 13, 0)``."""
    release = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not release:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(p) for p in release.group(1).split("."))


def satisfies(installed: str, minimum: str | None) -> bool:
    """``installed >= minimum`` by release numbers (pre-releases of the minimum count as it)."""
    if minimum is None:
        return True
    a, b = version_tuple(installed), version_tuple(minimum)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def installed_version(name: str) -> str | None:
    """The installed distribution's version, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Unmet:
    """A requirement and what is installed (None: nothing)."""

    requirement: Requirement
    installed: str | None

    def describe(self) -> str:
        have = "not installed" if self.installed is None else f"{self.installed} installed"
        return f"{self.requirement.text} ({have})"


def unmet(requirements: list[Requirement]) -> list[Unmet]:
    """The requirements that are missing or older than their minimum."""
    out = []
    for req in requirements:
        version = installed_version(req.name)
        if version is None or not satisfies(version, req.minimum):
            out.append(Unmet(req, version))
    return out


def split_torch(items: list[Unmet]) -> tuple[Unmet | None, list[Unmet]]:
    """(the torch entry or None, the others)."""
    torch = next((u for u in items if u.requirement.name.lower() == TORCH), None)
    return torch, [u for u in items if u is not torch]


def pip_args(items: list[Unmet]) -> list[str]:
    """``pip install`` arguments that bring every item to its minimum (upgrading old ones)."""
    args = [u.requirement.text for u in items]
    if any(u.installed is not None for u in items):
        args = ["--upgrade", *args]
    return args


def confirmation_text(items: list[Unmet], torch_from_extension: bool) -> str:
    """The one question the user is asked before anything is installed."""
    torch, others = split_torch(items)
    lines = ["NIMOSEF needs these Python packages, which are missing or too old:", ""]
    lines += [f"  - {u.describe()}" for u in ([torch] if torch else []) + others]
    lines.append("")
    if torch is not None:
        lines.append("PyTorch will be installed through the PyTorch extension (the build for "
                     "your GPU driver, or the CPU build)." if torch_from_extension else
                     "PyTorch will be installed from PyPI with pip.")
    lines.append("This needs an internet connection and can download a few hundred MB. "
                 "Install now?")
    return "\n".join(lines)


def index_reachable(host: tuple[str, int] = PYPI_HOST, timeout_s: float = 3.0) -> bool:
    """True when a TCP connection to the package index opens within ``timeout_s``."""
    try:
        with socket.create_connection(host, timeout=timeout_s):
            return True
    except OSError:
        return False


def install_failure_message(items: list[Unmet], error: str, online: bool) -> str:
    """One message for a failed installation: offline, or the installer's error."""
    wanted = " ".join(u.requirement.text for u in items)
    if not online:
        return ("Cannot install the Python packages NIMOSEF needs: the Python Package Index "
                f"({PYPI_HOST[0]}) cannot be reached. Connect to the internet and press "
                "Segment & Track again, or install them from wheel files in Slicer's Python "
                f"console: pip_install('--no-index --find-links=FOLDER {wanted}').")
    last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
    return (f"Installing {wanted} failed: {last}. See the log panel and Slicer's log for "
            "pip's output.")
