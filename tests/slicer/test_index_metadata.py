"""The extension's description files against the checks of the Slicer Extensions Index.

A re-implementation, offline, of what the Index's ``scripts/check_description_files.py`` and
its JSON schema (``slicer-extension-catalog-entry-schema-v1.0.2``) check: schema fields and
types, category, scm URL syntax, repository name, top-level CMakeLists project name, icon and
screenshot URLs, LICENSE file; plus what can be checked here in place of its downloads (the
URLs name files of this repository, which exist and are PNGs) and the repository size limit.
It is not the Index's script: that one clones the repository and downloads the images.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import urllib.parse as urlparse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JSON = REPO / "NimosefSlicer.json"
S4EXT = REPO / "NimosefSlicer.s4ext"
CMAKE = REPO / "CMakeLists.txt"
SCHEMA_URL = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
              "slicer-extension-catalog-entry-schema-v1.0.2.json#")
# the catalog entry schema v1.0.2: required keys, and every allowed key with its JSON type
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}
SCHEMA_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str,
                "scm_type": str, "build_dependencies": list, "dicom_support_rule": str,
                "build_subdirectory": str, "enabled": bool, "tier": int}
# categories the Index accepts that a cardiac extension could use (from its check script)
ACCEPTED_CATEGORIES = {"Cardiac", "Segmentation", "Quantification", "Sequences", "Analysis"}
LICENSE_NAMES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING",
                 "COPYING.txt")
MAX_REPO_BYTES = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def entry() -> dict:
    return json.loads(JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cmake() -> str:
    return CMAKE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def s4ext() -> dict:
    out = {}
    for line in S4EXT.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


def test_json_entry_follows_the_catalog_schema(entry):
    assert SCHEMA_REQUIRED <= set(entry), f"missing {SCHEMA_REQUIRED - set(entry)}"
    unknown = set(entry) - set(SCHEMA_TYPES)
    assert not unknown, f"not allowed by the schema (additionalProperties false): {unknown}"
    for key, value in entry.items():
        assert isinstance(value, SCHEMA_TYPES[key]) and not (
            SCHEMA_TYPES[key] is int and isinstance(value, bool)), f"{key}: {value!r}"
    assert entry["$schema"] == SCHEMA_URL
    assert entry.get("scm_type", "git") in ("git", "local")
    assert 1 <= entry.get("tier", 1) <= 5
    assert all(isinstance(d, str) and d for d in entry.get("build_dependencies", []))


def test_category_and_scm_url(entry):
    assert entry["category"] in ACCEPTED_CATEGORIES
    url = entry["scm_url"]
    assert "://" in url and urlparse.urlsplit(url).scheme in ("git", "https")
    repo_name = Path(urlparse.urlsplit(url).path).name.removesuffix(".git")
    assert "slicer" in repo_name.lower(), "the Index wants 'Slicer' in the repository name"


def _cmake_set(cmake: str, name: str) -> str:
    match = re.search(rf'set\s*\({name}\s*"([^"]+)"[ ]*\)', cmake, re.IGNORECASE)
    assert match, f"no set({name} \"...\") in CMakeLists.txt"
    return match.group(1).strip()


def test_cmake_project_is_the_extension_name(cmake):
    # the Index's pattern: the first project(...) of the top-level CMakeLists.txt
    names = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", cmake, re.IGNORECASE | re.MULTILINE)
    assert names and names[0].strip("\"'") == JSON.stem


def _repo_file_of(url: str, entry: dict) -> Path:
    """The file of this repository that a raw.githubusercontent URL of its main branch names."""
    repo = urlparse.urlsplit(entry["scm_url"]).path.removesuffix(".git").strip("/")
    prefix = f"https://raw.githubusercontent.com/{repo}/{entry.get('scm_revision', 'main')}/"
    assert url.startswith(prefix), f"{url} is not a file of {repo} at its revision"
    return REPO / url[len(prefix):]


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_icon_and_screenshot_urls_are_https_pngs_of_this_repository(cmake, entry):
    icon = _cmake_set(cmake, "EXTENSION_ICONURL")
    shots = _cmake_set(cmake, "EXTENSION_SCREENSHOTURLS").split()
    assert shots, "no screenshot URL"
    for url in [icon, *shots]:
        assert url.startswith("https://"), url
        path = _repo_file_of(url, entry)
        assert path.is_file(), f"{url}: {path} does not exist"
        _png_size(path)
    assert _png_size(_repo_file_of(icon, entry)) == (128, 128), "the icon must be 128x128"
    assert "http" not in _cmake_set(cmake, "EXTENSION_DEPENDS")


def test_license_file_at_the_root():
    found = [n for n in LICENSE_NAMES if (REPO / n).is_file()]
    assert found, "the Index's check_license_file finds no license file"
    text = (REPO / found[0]).read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0" in text
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = { text = "Apache-2.0" }' in pyproject
    terms = (REPO / "DATA_LICENSES.md").read_text(encoding="utf-8")
    for name in ("acdc_prior.pt", "acdc_slice_unet.pt", "tests/data/acdc/",
                 "tests/data/sunnybrook/", "patient090_cine.seq.nrrd", "non-commercial",
                 "10.1109/TMI.2018.2837502", "10380/3070"):
        assert name in terms, f"DATA_LICENSES.md does not mention {name}"


def test_s4ext_cmake_and_json_agree(entry, cmake, s4ext):
    assert s4ext["scm"] == entry.get("scm_type", "git")
    assert s4ext["scmurl"] == entry["scm_url"]
    assert s4ext["scmrevision"] == entry["scm_revision"]
    assert s4ext["category"] == entry["category"] == _cmake_set(cmake, "EXTENSION_CATEGORY")
    assert s4ext["depends"].split() == entry["build_dependencies"] == \
        _cmake_set(cmake, "EXTENSION_DEPENDS").split()
    assert s4ext["build_subdirectory"] == entry["build_subdirectory"]
    assert s4ext["homepage"] == _cmake_set(cmake, "EXTENSION_HOMEPAGE")
    assert s4ext["iconurl"] == _cmake_set(cmake, "EXTENSION_ICONURL")
    assert s4ext["screenshoturls"].split() == _cmake_set(cmake, "EXTENSION_SCREENSHOTURLS").split()
    for field in ("contributors", "description", "status", "enabled"):
        assert s4ext.get(field), f"s4ext field {field} is empty"


def test_repository_is_under_the_index_size_limit():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.split(b"\0")
    total = sum((REPO / f.decode()).stat().st_size for f in files
                if f and (REPO / f.decode()).is_file())
    assert total < MAX_REPO_BYTES, f"tracked files: {total / 2**20:.1f} MB"
