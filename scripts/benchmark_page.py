"""Write docs/benchmarks.md from benchmarks/results/*.jsonl: one section per benchmark, a table
of its runs (date, device, commit and the figures each line holds), newest last, then the
nested figures of the runs at the newest commit.

Usage: ``python scripts/benchmark_page.py [--results DIR] [--out FILE]``. The page is a pure
function of the results folder (sorted, no clock), so a test can check that it is up to date.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
META = ("benchmark", "date", "device", "torch", "threads", "cpu", "git_commit")
MAX_CELL = 60  # characters in a table cell
MAX_FLAT = 6  # a flat dict with at most this many entries is spread into columns
MAX_LIST = 4  # a list of scalars with at most this many items is written out
MAX_COLUMNS = 12  # figure columns of the runs table; the rest stay in the jsonl
MAX_DETAIL_RUNS = 4  # runs of the newest commit whose nested figures are shown
MAX_ROWS = 20  # rows of a nested table
PATH = re.compile(r"\S*/\S*/\S*")  # a token with two slashes or more: a path


def load_runs(results: Path) -> dict[str, list[tuple[str, dict]]]:
    """Every line of ``results/*.jsonl``, grouped by benchmark name (the line's ``benchmark``,
    else the file's stem): ``{name: [(file name, record), ...]}`` in file and line order."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for path in sorted(results.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                name = str(record.get("benchmark") or path.stem)
                groups.setdefault(name, []).append((path.name, record))
    return groups


def is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt(value: Any) -> str:
    """A scalar as a short string: floats to 4 decimals at most, and a path of the machine
    that ran the benchmark cut to its last two parts."""
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    if not isinstance(value, str):
        return str(value)
    text = " ".join(value.split())
    return PATH.sub(lambda m: "/".join(m.group(0).strip("/").split("/")[-2:]), text)


def span(values: list[Any]) -> str:
    """Numbers as ``a`` or ``min-max``."""
    nums = [v for v in values if is_number(v)]
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


def flat_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(is_scalar(v) for v in value.values())


def runs_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def in_runs_table(value: Any) -> bool:
    """Whether a field is shown in the runs table (else among the nested figures)."""
    if is_scalar(value) or runs_list(value):
        return True
    if isinstance(value, list):
        return len(value) <= MAX_LIST and all(is_scalar(v) for v in value)
    return flat_dict(value) and len(value) <= MAX_FLAT


def figures(record: dict) -> dict[str, str]:
    """The figures of one run as ``{column: cell}``: scalars, small flat dicts spread into
    dotted columns, short lists written out, lists of runs as their count and the range of
    each number they hold."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if key in META or not in_runs_table(value):
            continue
        if is_scalar(value):
            out[key] = fmt(value)
        elif isinstance(value, dict):
            out.update((f"{key}.{k}", fmt(v)) for k, v in value.items())
        elif runs_list(value):
            out[key] = f"{len(value)} item{'s' if len(value) > 1 else ''}"
            for sub, first in value[0].items():
                if is_number(first):
                    out[f"{key}.{sub}"] = span([item.get(sub) for item in value])
        else:
            out[key] = ", ".join(fmt(v) for v in value) if value else "none"
    return out


def cell(text: str) -> str:
    """A markdown table cell: pipes replaced, at most :data:`MAX_CELL` characters."""
    text = text.replace("|", "/")
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 3] + "..."


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def device_cell(record: dict) -> str:
    parts = [fmt(record.get("device", "?")).removeprefix("cuda:NVIDIA ")]
    if record.get("threads") is not None:
        parts.append(f"{record['threads']} threads")
    if record.get("torch"):
        parts.append(f"torch {record['torch']}")
    return ", ".join(parts)


def script_for(name: str, root: Path) -> str | None:
    """The script that produced a benchmark, relative to ``root``, if the repository has it."""
    for rel in (f"benchmarks/{name}.py", f"benchmarks/{name}.sh", f"scripts/{name}.sh",
                f"scripts/{name}.py"):
        if (root / rel).is_file():
            return rel
    return None


def is_leaf(value: Any) -> bool:
    """A scalar or a list of scalars: one table cell."""
    return is_scalar(value) or (isinstance(value, list) and all(is_scalar(v) for v in value))


def leaf_cell(value: Any) -> str:
    if is_scalar(value):
        return fmt(value)
    return ", ".join(fmt(v) for v in value) if len(value) <= 2 * MAX_LIST \
        else f"{len(value)} values"


def nested_table(key: str, value: Any, depth: int = 0) -> list[str]:
    """A nested field as tables: a dict of dicts of leaves as a matrix, a dict of leaves as
    key / value rows, a list of dicts as one row per item; a mixed dict as the key / value
    rows of its leaves, then each deeper field in turn (three levels at most)."""
    rows: list[list[str]]
    if isinstance(value, dict) and value and all(
            isinstance(v, dict) and all(is_leaf(x) for x in v.values()) for v in value.values()):
        cols = list(dict.fromkeys(c for v in value.values() for c in v))[:MAX_COLUMNS]
        header = [key, *cols]
        rows = [[str(k), *(leaf_cell(v[c]) if c in v else "" for c in cols)]
                for k, v in value.items()]
    elif runs_list(value):
        cols = list(dict.fromkeys(c for item in value for c, v in item.items()
                                  if is_leaf(v)))[:MAX_COLUMNS]
        header = cols
        rows = [[leaf_cell(item[c]) if c in item else "" for c in cols] for item in value]
    elif isinstance(value, dict):
        leaves = {k: v for k, v in value.items() if is_leaf(v)}
        lines: list[str] = []
        if leaves:
            lines += [f"`{key}`:", "", *table([key, "value"],
                                               [[str(k), leaf_cell(v)] for k, v in leaves.items()]),
                      ""]
        for k, v in value.items():
            if k not in leaves:
                lines += nested_table(f"{key}.{k}", v, depth + 1) if depth < 2 \
                    else [f"`{key}.{k}`: nested deeper (in the jsonl).", ""]
        return lines
    else:
        return [f"`{key}`: {leaf_cell(value)}", ""]
    more = len(rows) - MAX_ROWS
    lines = [f"`{key}`:", "", *table(header, rows[:MAX_ROWS])]
    if more > 0:
        lines.append(f"| ... {more} more rows in the jsonl |" + " |" * (len(header) - 1))
    return lines + [""]


def nested_keys(record: dict) -> list[str]:
    return [k for k, v in record.items()
            if k not in META and (not in_runs_table(v) or runs_list(v))]


def details(runs: list[tuple[str, dict]]) -> list[str]:
    """The nested figures of the runs at the newest commit (the last runs of ``runs``), and
    of the newest run holding any nested field that those runs lack."""
    records = [r for _, r in runs]
    newest = records[-1].get("git_commit")
    chosen = [i for i, r in enumerate(records) if newest and r.get("git_commit") == newest]
    chosen = chosen[-MAX_DETAIL_RUNS:] or [len(records) - 1]
    covered = {k for i in chosen for k in nested_keys(records[i])}
    for i in reversed(range(len(records))):
        missing = set(nested_keys(records[i])) - covered
        if missing:
            chosen.append(i)
            covered |= missing
    lines: list[str] = []
    for i in sorted(chosen):
        record = records[i]
        keys = nested_keys(record)
        if not keys:
            continue
        label = fmt(record.get("date", "")).replace("T", " ")[:16] or "undated"
        what = ", ".join(f"{k} {fmt(record[k])}" for k in ("outputs", "variant", "split")
                         if k in record)
        commit = fmt(record.get("git_commit", "no commit"))
        lines += [f"### Run of {label} ({commit}{', ' + what if what else ''})", ""]
        for key in keys:
            lines += nested_table(key, record[key])
    return lines


def section(name: str, runs: list[tuple[str, dict]], root: Path) -> list[str]:
    """The markdown of one benchmark: its script, its files, a table of its runs and the
    nested figures of its newest runs."""
    order = sorted(range(len(runs)), key=lambda i: (str(runs[i][1].get("date", "")), i))
    runs = [runs[i] for i in order]
    lines = [f"## {name}", ""]
    script = script_for(name, root)
    if script:
        lines.append(f"Script: [`{script}`](../{script}).")
    files = sorted({f for f, _ in runs})
    lines += ["Results: " + ", ".join(f"`benchmarks/results/{f}`" for f in files)
              + f" ({len(runs)} run{'s' if len(runs) > 1 else ''}).", ""]
    rows = [figures(r) for _, r in runs]
    columns = list(dict.fromkeys(c for row in rows for c in row))
    hidden = len(columns) - MAX_COLUMNS
    columns = columns[:MAX_COLUMNS]
    body = [[fmt(r.get("date", "")).replace("T", " ")[:16], device_cell(r),
             fmt(r.get("git_commit", "")), *(row.get(c, "") for c in columns)]
            for (_, r), row in zip(runs, rows, strict=True)]
    lines += table(["date", "device", "commit", *columns], body)
    if hidden > 0:
        lines.append(f"\n{hidden} more column(s) in the jsonl.")
    return lines + [""] + details(runs)


def render(results: Path, root: Path = ROOT) -> str:
    """The whole page (it lives in ``docs/``) for the results folder ``results``; scripts are
    looked up under ``root``."""
    groups = load_runs(results)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python scripts/benchmark_page.py` from `benchmarks/results/*.jsonl`:",
        "do not edit by hand. One section per benchmark: the script that measures it, a table",
        "of its runs, oldest first (a list of runs shows as its count and the range `a-b` of",
        "each figure), then the nested figures of the runs at its newest commit. The jsonl",
        "lines hold everything. Unless a row says otherwise the CPU is a shared 2-core",
        "machine whose speed varies from hour to hour: compare runs of the same hour.",
        "",
    ]
    names = sorted(groups)
    lines += [f"- [{n}](#{n.lower()})" for n in names] + [""]
    for name in names:
        lines += section(name, groups[name], root)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                        help="folder of *.jsonl files (default: benchmarks/results)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="page to write (default: docs/benchmarks.md)")
    args = parser.parse_args(argv)
    args.out.write_text(render(args.results), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
