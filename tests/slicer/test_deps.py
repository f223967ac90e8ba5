"""The module's dependency check: every requirement against its minimum version, one question,
torch's route, and a clear message when the package index cannot be reached."""

from __future__ import annotations

import importlib.metadata
import socket
import threading
from pathlib import Path

import pytest
from NimosefSlicerLib import deps

REQUIREMENTS = Path(__file__).resolve().parents[2] / "NimosefSlicer/Resources/requirements.txt"


def test_read_requirements(tmp_path):
    reqs = deps.read_requirements(REQUIREMENTS)
    assert deps.Requirement("torch", "2.2") in reqs
    assert all(r.minimum for r in reqs), "every requirement states its minimum version"
    bad = tmp_path / "requirements.txt"
    bad.write_text("# ok\nnumpy>=1.24\nscipy==1.10\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"requirements.txt:3: 'scipy==1.10'"):
        deps.read_requirements(bad)


@pytest.mark.parametrize("installed, minimum, ok", [
    ("2.13.0+cpu", "2.2", True), ("2.2.0", "2.2", True), ("2.1.2", "2.2", False),
    ("1.26.4", "1.24", True), ("1.9", "1.24", False), ("6.0.1", "6.0", True),
    ("4.66.1", "4.60", True), ("12.0.0", "12", True), ("11.0.0", "12", False),
    ("3.7.0rc1", "3.7", True), ("5.0", None, True)])
def test_version_comparison(installed, minimum, ok):
    assert deps.satisfies(installed, minimum) is ok


def test_unmet_reads_what_is_installed(tmp_path):
    """Real installed distributions of this environment: met at their own version, unmet one
    major version above, and a name that is not installed."""
    numpy_version = importlib.metadata.version("numpy")
    major = int(numpy_version.split(".")[0])
    req = tmp_path / "requirements.txt"
    req.write_text(f"numpy>={numpy_version}\nnibabel>={major + 100}.0\n"
                   "nimosef-no-such-package>=1.0\n", encoding="utf-8")
    found = deps.unmet(deps.read_requirements(req))
    assert [u.requirement.name for u in found] == ["nibabel", "nimosef-no-such-package"]
    assert found[0].installed == importlib.metadata.version("nibabel")
    assert found[1].installed is None
    assert "not installed" in found[1].describe() and "installed" in found[0].describe()
    assert deps.pip_args(found) == ["--upgrade", f"nibabel>={major + 100}.0",
                                    "nimosef-no-such-package>=1.0"]
    assert deps.pip_args(found[1:]) == ["nimosef-no-such-package>=1.0"]
    # this environment satisfies the module's own requirements
    assert deps.unmet(deps.read_requirements(REQUIREMENTS)) == []


def test_one_question_names_everything_and_the_torch_route():
    items = [deps.Unmet(deps.Requirement("torch", "2.2"), "2.0.1"),
             deps.Unmet(deps.Requirement("nibabel", "5.0"), None)]
    torch, others = deps.split_torch(items)
    assert torch is items[0] and others == [items[1]]
    via_extension = deps.confirmation_text(items, torch_from_extension=True)
    via_pypi = deps.confirmation_text(items, torch_from_extension=False)
    for text in (via_extension, via_pypi):
        assert "torch>=2.2 (2.0.1 installed)" in text and "nibabel>=5.0 (not installed)" in text
        assert text.count("Install now?") == 1 and "internet" in text
    assert "PyTorch extension" in via_extension and "PyPI" in via_pypi


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def test_index_reachability_and_the_offline_message():
    assert deps.index_reachable(("127.0.0.1", _closed_port()), timeout_s=2) is False
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
    accepted.start()
    try:
        assert deps.index_reachable(server.getsockname(), timeout_s=2) is True
    finally:
        accepted.join(5)
        server.close()
    items = [deps.Unmet(deps.Requirement("nibabel", "5.0"), None)]
    offline = deps.install_failure_message(items, "CalledProcessError: ...", online=False)
    assert "pypi.org" in offline and "cannot be reached" in offline and "\n" not in offline
    assert "--no-index --find-links" in offline and "nibabel>=5.0" in offline
    online = deps.install_failure_message(items, "line 1\nERROR: No matching distribution",
                                          online=True)
    assert "ERROR: No matching distribution" in online and "\n" not in online
