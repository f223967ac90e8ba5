"""scripts/benchmark_page.py: the benchmark page generated from benchmarks/results/*.jsonl."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "benchmark_page.py"


@pytest.fixture(scope="module")
def page_module():
    spec = importlib.util.spec_from_file_location("benchmark_page", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    base = {"device": "cpu", "torch": "2.13.0+cpu", "threads": 2, "cpu": "x86_64"}
    # fit_time has a script in benchmarks/; its newer run is written first
    write_jsonl(folder / "fit_time.jsonl", [
        {"benchmark": "fit_time", **base, "git_commit": "bbbbbbb",
         "date": "2026-11-22T22:03:09", "steps": 300, "mean_seconds_per_subject": 63.21,
         "subjects": [{"subject": "sub-004", "seconds": 60.59},
                      {"subject": "sub-013", "seconds": 64.49}]},
        {"benchmark": "fit_time", **base, "git_commit": "aaaaaaa",
         "date": "2026-11-22T08:02:27", "steps": 100, "mean_seconds_per_subject": 14.09,
         "subjects": [{"subject": "sub-004", "seconds": 13.34}]},
    ])
    # no `benchmark` field and no script: named after the file; a matrix of nested figures
    write_jsonl(folder / "made_up_ablation.jsonl", [
        {"variant": "plain", "device": "NVIDIA H100 80GB HBM3", "epoch": 125,
         "outputs": "/home/someone/runs/s5/ev_test/outputs",
         "mean_dice_by_steps": {"100": {"LV": 0.8261234, "MYO": 0.647}},
         "note": "x" * 100},
    ])
    return folder


def section(text: str, name: str) -> str:
    start = text.index(f"## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_page_sections_cells_and_links(page_module, results: Path) -> None:
    text = page_module.render(results)
    assert text.startswith("# Benchmarks\n")
    assert "- [fit_time](#fit_time)" in text and "- [made_up_ablation](#made_up_ablation)" in text
    assert text.index("## fit_time") < text.index("## made_up_ablation")  # sorted by name

    fit = section(text, "fit_time")
    assert "Script: [`benchmarks/fit_time.py`](../benchmarks/fit_time.py)." in fit
    assert "`benchmarks/results/fit_time.jsonl` (2 runs)" in fit
    assert "| date | device | commit | steps | mean_seconds_per_subject | subjects |" in fit
    assert "| 63.21 |" in fit and "| 14.09 |" in fit
    assert "| 60.59-64.49 |" in fit  # a list of runs: the range of each figure
    assert fit.index("aaaaaaa") < fit.index("bbbbbbb")  # oldest first, newest last
    assert "### Run of 2026-11-22 22:03 (bbbbbbb)" in fit  # the newest run's items

    made_up = section(text, "made_up_ablation")
    assert "Script:" not in made_up
    assert "| mean_dice_by_steps | LV | MYO |" in made_up
    assert "| 100 | 0.8261 | 0.647 |" in made_up
    assert "| ev_test/outputs |" in made_up and "/home/someone" not in text  # paths: their tail
    assert all(len(c.strip()) <= page_module.MAX_CELL
               for line in text.splitlines() if line.startswith("|") for c in line.split("|"))


def test_page_is_deterministic(page_module, results: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.md"
    assert page_module.main(["--results", str(results), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == page_module.render(results)


def test_committed_page_is_up_to_date(page_module, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    page_module.main(["--results", str(ROOT / "benchmarks" / "results"), "--out", str(out)])
    committed = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == committed, (
        "docs/benchmarks.md is out of date: run `python scripts/benchmark_page.py`")
